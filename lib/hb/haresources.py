"""haresources text -> groups of resources, with FILE:LINE errors.  Pure."""

from __future__ import annotations

import ipaddress
import re

from hb import addrspec
from hb.settings import ConfigError, Group, Resource, cut, numbered_lines, strip_comment, \
    suggest

_BARE_IPV4 = re.compile(r"^[0-9].*\.[0-9].*\.[0-9].*\.[0-9]")  # ResourceManager's glob


def _resource(tok: str, line: int) -> Resource:
    if ("::" not in tok and _BARE_IPV4.match(tok)) or _is_ip(tok.split("/")[0]):
        return Resource("IPaddr", [tok], tok, line)
    if "::" not in tok:
        return Resource(tok, [], tok, line)
    name, _, rest = tok.partition("::")
    if name in ("IPaddr", "IPaddr2"):
        return Resource(name, [rest] if rest else [], tok, line)   # IPv6 holds '::'
    return Resource(name, rest.split("::"), tok, line)


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def parse_haresources(text: str, filename: str, nodes: list[str],
                      warnings: list[str] | None = None) -> list[Group]:
    """haresources text -> groups, in file order (index from 1)."""
    groups: list[Group] = []
    keys: dict[str, int] = {}
    logical: list[tuple[int, str]] = []
    errors: list[str] = []

    def err(line: int, msg: str) -> ConfigError:
        return ConfigError("%s:%d: %s" % (filename, line, cut(msg)))

    def flush() -> None:
        if not logical:
            return
        first = logical[0][0]
        node = logical[0][1].lower()
        if node not in nodes:
            raise err(first, "node %s is not listed in ha.cf (%s)%s"
                      % (logical[0][1], " ".join(nodes), suggest(node, nodes)))
        if len(logical) < 2:
            raise err(first, "node %s has no resources: NODE RESOURCE..." % node)
        rs = []
        for n, tok in logical[1:]:
            r = _resource(tok, n)
            if not r.name or "/" in r.name:
                raise err(n, "bad resource %r: NAME or NAME::ARG::ARG (a script in "
                          "resource.d or /etc/init.d)" % tok)
            if r.name in ("IPaddr", "IPaddr2"):
                try:
                    addrspec.parse_resource(r.name, r.args)
                except ValueError as e:
                    raise err(n, str(e)) from None
            if r.name == "MailTo" and (not 1 <= len(r.args) <= 2 or not r.args[0]):
                raise err(n, "MailTo takes an address list and an optional subject: "
                          "MailTo::root@example.org[,other@...][::Subject]")
            rs.append(r)
        g = Group(len(groups) + 1, node, rs, first)
        if g.key in keys:
            raise err(first, "group key %s (the first resource) also starts line %d: "
                      "keys must be unique" % (g.key, keys[g.key]))
        keys[g.key] = first
        groups.append(g)
        logical.clear()

    def group() -> None:
        try:
            flush()
        except ConfigError as e:
            errors.append(str(e))
            logical.clear()

    cont = False
    for n, raw in numbered_lines(text, filename, warnings):
        line = strip_comment(raw)
        more = line.endswith("\\")
        if more:
            line = line[:-1]
        if not cont:
            group()
        logical.extend((n, t) for t in line.split())
        cont = more
    group()
    if errors:
        raise ConfigError(errors[0], errors)
    return groups
