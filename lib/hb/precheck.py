"""What hb-supervise checks beyond config.load before it starts, and `--check` with it.

`hb-supervise --check` and a start refuse the same things: config.load with its
system checks (authkeys mode, interfaces, devices) and, here, a resource whose
agent is in neither CONFDIR/resource.d, /etc/init.d nor hb's built-ins.  Warnings:
a script in CONFDIR/resource.d (Heartbeat's, when its package is installed) that
shadows a built-in hb would otherwise use: resource.d comes first.
"""

from __future__ import annotations

import os

from hb import agents
from hb.settings import Config, ConfigError


def problems(cfg: Config, initd: str = agents.INITD) -> tuple[list[str], list[str]]:
    """(errors, warnings), each one line 'FILE:LINE: message'."""
    har = os.path.join(cfg.confdir, "haresources")
    errors: list[str] = []
    warnings: list[str] = []
    shadowed: dict[str, list[int]] = {}
    for g in cfg.groups:
        for r in g.resources:
            a = agents.lookup(r.name, cfg.confdir, initd)
            if a is None:
                errors.append("%s:%d: %s: no resource agent %s in %s, in %s, nor built in "
                              "(%s)" % (har, r.line, r.text, r.name,
                                        os.path.join(cfg.confdir, "resource.d"), initd,
                                        ", ".join(sorted(agents.BUILTINS))))
            elif r.name in agents.BUILTINS and a.path:
                shadowed.setdefault(r.name, []).append(r.line)
    for name, lines in sorted(shadowed.items()):
        path = os.path.join(cfg.confdir, "resource.d", name)
        warnings.append(
            "%s:%d: %s: %s runs instead of hb's built-in %s (resource.d comes first; it is "
            "Heartbeat's if its package is installed): remove the heartbeat package once "
            "hb has replaced it (or move %s away) to use the built-in" % (
                har, lines[0], name, path, name, path))
    return errors, warnings


def load(confdir: str, node: str | None) -> tuple[Config, list[str]]:
    """config.load as a start does it (devices, interfaces and authkeys' mode checked),
    then problems(): the configuration and its warnings, or ConfigError with all errors."""
    from hb import config
    cfg = config.load(confdir, node, check_devices=True)
    errors, warnings = problems(cfg)
    if errors:
        raise ConfigError(errors[0], errors)
    return cfg, warnings
