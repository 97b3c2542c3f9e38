"""Every exit code hb uses, in one place.

TABLE is the one exit-code table of all six commands; every man page's EXIT STATUS
section carries it word for word (man_table() writes it, a test compares).  Three
modes keep the convention their caller expects, on top of the table: `hb-watch
--check` (Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), `hb-switch cl_status`
(Heartbeat's cl_status: 11 and 13 besides) and the resource agents' actions
(hb-ipaddr and hb-mailto: LSB and OCF codes, which share 0, 1, 2 and 6 with it).
"""

from __future__ import annotations

# generic: the table
OK = 0
FAIL = 1          # failed or refused; hb not running; status stale
USAGE = 2         # bad command line (LSB: invalid or excess arguments)
UNKNOWN = 3       # the status cannot be read (permission): nothing can be said
CONFIG = 6        # configuration error (LSB/OCF: not configured; systemd: NOTCONFIGURED)
TIMEOUT = 124     # hb-switch waited --wait seconds for the result (as timeout(1))

TABLE: list[tuple[int, str]] = [
    (OK, "success: done, valid, running; the status is current."),
    (FAIL, "failure: refused or failed (the message says why); hb is not running, "
           "or its status is stale."),
    (USAGE, "bad command line: one line on standard error says what was wrong."),
    (UNKNOWN, "the status cannot be read: the caller is neither root nor a member of "
              "the group haclient (or the file is unreadable)."),
    (CONFIG, "configuration error: one line per error, FILE:LINE: message."),
    (TIMEOUT, "hb-switch: the result did not show within --wait seconds."),
]


def man_table() -> str:
    """The roff of TABLE, as every man page's EXIT STATUS section starts."""
    return "".join(".TP\n.B %d\n%s\n" % (code, text.replace("--", "\\-\\-"))
                   for code, text in TABLE)


# LSB init-script / Heartbeat "status" action
LSB_OK = 0
LSB_DEAD_PID = 1
LSB_DEAD_LOCK = 2
LSB_NOT_RUNNING = 3
LSB_UNKNOWN = 4

# OCF resource agent actions
OCF_SUCCESS = 0
OCF_ERR_GENERIC = 1
OCF_ERR_ARGS = 2
OCF_ERR_UNIMPLEMENTED = 3
OCF_ERR_PERM = 4
OCF_ERR_INSTALLED = 5
OCF_ERR_CONFIGURED = 6
OCF_NOT_RUNNING = 7

# Nagios plugin checks (hb-watch --check)
NAGIOS_OK = 0
NAGIOS_WARNING = 1
NAGIOS_CRITICAL = 2
NAGIOS_UNKNOWN = 3

# hb-switch
SWITCH_DONE = OK
SWITCH_REFUSED = FAIL
SWITCH_TIMEOUT = TIMEOUT

# Heartbeat's cl_status (hb-switch cl_status ...)
CL_OK = 0
CL_FAIL = 1
CL_PARAMETER_ERROR = 11
CL_UNKNOWN_ERROR = 13

# config check (hb-supervise --check)
CONFIG_VALID = OK
CONFIG_INVALID = CONFIG
