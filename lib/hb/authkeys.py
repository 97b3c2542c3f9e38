"""authkeys text -> Auth: the signing key and the keys accepted.  Pure.

The file's mode and owner are config.load's business (authkeys_mode_problem)."""

from __future__ import annotations

from hb.settings import Auth, AuthKey, ConfigError, cut, digits, number, numbered_lines, \
    short, suggest

AUTH_METHODS = ("sha1", "md5", "crc", "sha256")


def parse_authkeys(text: str, filename: str, warnings: list[str] | None = None) -> Auth:
    """authkeys text -> Auth.  A key is one token, as in Heartbeat (it may hold '#')."""
    use = None
    use_line = 0
    keys: dict[int, AuthKey] = {}
    warnings = warnings if warnings is not None else []

    def err(line: int, msg: str) -> ConfigError:
        return ConfigError("%s:%d: %s" % (filename, line, cut(msg)))

    def line(n: int, toks: list[str]) -> None:
        nonlocal use, use_line
        if toks[0].startswith("a"):
            if toks[0] != "auth" or len(toks) < 2 or not digits(toks[1]):
                raise err(n, "write auth N, N being the key that signs (e.g. auth 1)")
            if number(toks[1], 1, 15) is None:
                raise err(n, "auth %s: the key number is from 1 to 15" % short(toks[1])[1:-1])
            if use is not None:
                warnings.append("%s:%d: auth given again (line %d): this one wins"
                                % (filename, n, use_line))
            use, use_line = int(toks[1]), n
            return
        num = number(toks[0], 0, 15)
        if num is None:
            raise err(n, "write N METHOD KEY, N from 1 to 15 (e.g. 1 sha1 SECRET)")
        if len(toks) < 2:
            raise err(n, "key %d has no method: sha1, md5 or crc" % num)
        method = toks[1].lower()
        if method not in AUTH_METHODS:
            raise err(n, "unknown method %r%s: sha1, md5 or crc"
                      % (toks[1], suggest(method, AUTH_METHODS)))
        if method == "crc":
            if len(toks) > 2:
                raise err(n, "crc takes no key")
            warnings.append("%s:%d: key %d is crc: it authenticates nothing; anyone on the "
                            "link can take the resources (use sha1)" % (filename, n, num))
            key = b""
        else:
            if len(toks) < 3:
                raise err(n, "%s needs a key: %d %s SECRET" % (method, num, method))
            if len(toks) > 3:
                warnings.append("%s:%d: a key is one word: %s ignored"
                                % (filename, n, " ".join(toks[3:])))
            key = toks[2].encode("utf-8", "surrogateescape")
        if method == "sha256":
            warnings.append("%s:%d: sha256 is an hb extension: a Heartbeat peer cannot "
                            "verify it (use sha1 while Heartbeat nodes remain)" % (filename, n))
        if num in keys:
            warnings.append("%s:%d: key %d listed again (line %d): this one wins"
                            % (filename, n, num, keys[num].line))
        keys[num] = AuthKey(num, method, key, n)

    errors: list[str] = []
    last = 1
    for n, raw in numbered_lines(text, filename, warnings):
        toks = raw.split()
        if not toks or toks[0].startswith("#"):
            continue
        last = n
        try:
            line(n, toks)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError(errors[0], errors)
    if use is None:
        raise err(last, "no auth line: add auth N naming the key that signs")
    if use not in keys:
        raise err(use_line, "auth %d: there is no key %d (listed: %s)"
                  % (use, use, " ".join(map(str, sorted(keys))) or "none"))
    return Auth(use, keys)
