"""Who may read RUNDIR/status: root and the monitoring group haclient.

RUNDIR is set-gid haclient (2755) so that status is created in that group, mode 0640;
without the group, 0755 and 0644.  read() turns a permission error into Unreadable,
whose text is the one line a command prints before exiting exits.UNKNOWN.
"""

from __future__ import annotations

import errno
import os

GROUP = "haclient"      # Heartbeat's monitoring group: its members read RUNDIR/status


def group_id() -> int | None:
    """The monitoring group's gid, None when it does not exist."""
    import grp
    try:
        return grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return None


_GID: list[int | None] = []


def mode() -> int:
    """file_mode() for the group as it was when first asked (a group made later counts
    from hb's next start)."""
    if not _GID:
        _GID.append(group_id())
    return file_mode(_GID[0])


def file_mode(gid: int | None) -> int:
    """RUNDIR/status: 0640 (root:haclient, the group from RUNDIR's set-gid bit) when
    the monitoring group exists; 0644 otherwise."""
    return 0o640 if gid is not None else 0o644


def rundir_mode(gid: int | None) -> int:
    """RUNDIR: set-gid haclient, so that status is created in that group (2755)."""
    return 0o2755 if gid is not None else 0o755


def prepare_rundir(rundir: str) -> None:
    """Give an existing RUNDIR (ours) the monitoring group and its mode."""
    gid = group_id()
    st = os.stat(rundir)
    if gid is not None and st.st_gid != gid:
        os.chown(rundir, -1, gid)
    if st.st_mode & 0o7777 != rundir_mode(gid):
        os.chmod(rundir, rundir_mode(gid))


class Unreadable(Exception):
    """The status exists but this user may not read it."""


def read(path: str) -> str | None:
    """The status text; None when there is none; Unreadable without permission."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise Unreadable(denied(path)) from None
    except NotADirectoryError:
        return None
    except OSError as e:
        if e.errno == errno.EACCES:
            raise Unreadable(denied(path)) from None
        raise


def denied(path: str) -> str:
    return "cannot read %s: permission denied (root and members of the group %s may)" % (
        path, GROUP)
