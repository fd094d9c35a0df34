"""A real SMTP server for tests (aiosmtpd on a local port) that records what it receives.

`SmtpServer` speaks plain SMTP, STARTTLS or SSL-on-connect, optionally requires a login
(checked against one user/password pair) and can refuse chosen recipients; each delivered mail
is kept as a `ReceivedMail` with the parsed message, the login used and whether TLS protected it.
`self_signed_certificate()` makes (once per test session) a certificate for `localhost` /
`127.0.0.1`; its `client_context()` is the `ssl.SSLContext` a client passes to trust it.
`SilentServer` accepts connections and never answers, for timeout tests.

    with SmtpServer(tls="starttls", credentials=("bridge", "s3cret")) as server:
        notifier = Notifier(config_for(server), ssl_context=server.client_context())
        ...
        assert server.messages[0].message["Subject"] == ...
"""

from __future__ import annotations

import email
import email.policy
import functools
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from devtools.emulator import free_port  # one way to pick a port the OS will not hand out

HOST = "127.0.0.1"
TlsMode = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class TlsCertificate:
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # load_cert_chain only reads files.
        with tempfile.TemporaryDirectory() as folder:
            cert_path = os.path.join(folder, "cert.pem")
            key_path = os.path.join(folder, "key.pem")
            with open(cert_path, "wb") as cert_file, open(key_path, "wb") as key_file:
                cert_file.write(self.cert_pem)
                key_file.write(self.key_pem)
            context.load_cert_chain(cert_path, key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server as usual (hostname included) but trusts only this certificate."""
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))


@functools.cache
def self_signed_certificate() -> TlsCertificate:
    """A certificate for `localhost` and `127.0.0.1`, valid for a day; EC keys are quick to make."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return TlsCertificate(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None
    tls: bool


@dataclass
class _Recorder:
    """aiosmtpd handler and authenticator: keeps mails and login attempts."""

    credentials: tuple[str, str] | None
    refuse: frozenset[str]
    ssl_on_connect: bool
    messages: list[ReceivedMail] = field(default_factory=list)
    login_attempts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        # Line ends as a mail client shows them, not SMTP's CRLF.
        content = envelope.content.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            message=message,
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            tls=self.ssl_on_connect or session.ssl is not None,
        )
        with self.lock:
            self.messages.append(mail)
        return "250 Message accepted"

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        with self.lock:
            self.login_attempts.append(login)
        user, password = self.credentials
        ok = login == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class SmtpServer:
    """An SMTP server on `HOST`:`port` for the duration of a `with` block.

    tls="none": plain SMTP; AUTH is offered (in clear) when `credentials` are given, so a test
    can prove the client declines to use it. tls="starttls": STARTTLS offered and required, login
    required when `credentials` are given. tls="ssl": TLS from the first byte, AUTH offered.
    """

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        credentials: tuple[str, str] | None = None,
        refuse: frozenset[str] = frozenset(),
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.tls = tls
        self._recorder = _Recorder(
            credentials=credentials, refuse=refuse, ssl_on_connect=tls == "ssl"
        )
        smtp_options: dict[str, Any] = {"authenticator": self._recorder}
        if tls == "starttls":
            smtp_options |= {
                "tls_context": self_signed_certificate().server_context(),
                "require_starttls": True,
                "auth_required": credentials is not None,
            }
        else:
            # No STARTTLS to wait for: offer AUTH on the connection as it is.
            smtp_options["auth_require_tls"] = False
        self._controller = Controller(
            self._recorder,
            hostname=self.host,
            port=self.port,
            ssl_context=self_signed_certificate().server_context() if tls == "ssl" else None,
            # Skips socket.getfqdn() for the greeting, which can stall on a slow resolver.
            server_hostname="localhost",
            **smtp_options,
        )

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._recorder.lock:
            return list(self._recorder.messages)

    @property
    def login_attempts(self) -> list[str]:
        with self._recorder.lock:
            return list(self._recorder.login_attempts)

    def client_context(self) -> ssl.SSLContext:
        return self_signed_certificate().client_context()

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._controller.stop()


class SilentServer:
    """Listens on `HOST`:`port` and never says a word: SMTP clients wait for a greeting."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind((HOST, 0))
        self.host = HOST
        self.port: int = self._socket.getsockname()[1]

    def __enter__(self) -> SilentServer:
        # The kernel completes handshakes into the backlog; nothing ever accepts or writes.
        self._socket.listen(8)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._socket.close()
