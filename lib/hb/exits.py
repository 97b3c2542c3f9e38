"""Every exit code hb uses, in one place.

Commands follow three conventions: LSB for init-style actions, OCF for resource
agent actions, Nagios for checks.  Where a man page names a code, it is here.
"""

# generic
OK = 0
FAIL = 1          # general failure / refused
USAGE = 2         # bad command line or configuration (also used by docopt)

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
SWITCH_DONE = 0
SWITCH_REFUSED = 1
SWITCH_TIMEOUT = 2

# Heartbeat's cl_status (hb-switch cl_status ...)
CL_OK = 0
CL_FAIL = 1
CL_PARAMETER_ERROR = 11
CL_UNKNOWN_ERROR = 13

# config check (hb-supervise --check)
CONFIG_VALID = 0
CONFIG_INVALID = 1
