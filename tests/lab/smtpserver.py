"""A real SMTP server for the mail tests: aiosmtpd on loopback, on a free port."""

from __future__ import annotations

import email
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Smtpd:
    """aiosmtpd on loopback; with tls=(cert, key) it requires STARTTLS and AUTH."""

    def __init__(self, tls=None, users=None) -> None:
        self.port = free_port()
        self.envelopes: list = []
        self.tls, self.users = tls, users or {}
        self.logins: list = []
        self.ctl = None

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    def _auth(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult
        user, pw = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((mechanism, user))
        return AuthResult(success=self.users.get(user) == pw, handled=False)

    def start(self) -> None:
        import ssl
        from aiosmtpd.controller import Controller
        kw = {}
        if self.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*self.tls)
            kw = dict(tls_context=ctx, require_starttls=True, authenticator=self._auth,
                      auth_required=True, auth_require_tls=True)
        self.ctl = Controller(self, hostname="127.0.0.1", port=self.port, **kw)
        self.ctl.start()

    def stop(self) -> None:
        if self.ctl:
            self.ctl.stop()
            self.ctl = None

    @property
    def messages(self):
        return [email.message_from_bytes(e.content) for e in self.envelopes]
