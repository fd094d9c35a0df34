"""Email notifications over SMTP: the seed's events, sent with the standard library.

Notifications are optional. With `NOTIFY_SMTP_HOST` or `NOTIFY_EMAIL_TO` empty, `Notifier.send`
sends nothing and answers `disabled`, which is not an error.

Transport security:
- `NOTIFY_SMTP_SSL=true` (port 465 style): TLS from the first byte (`smtplib.SMTP_SSL`).
- otherwise (port 587 style): a plain connection upgraded with STARTTLS whenever the server offers
  it. When a login is configured (`NOTIFY_SMTP_USER`) and the server does not offer STARTTLS, the
  send fails rather than put the password on the wire in clear text. Without a login, plain
  SMTP is allowed: that is a local relay on a trusted network.
Certificates are verified against the system's CAs (tests pass an `ssl.SSLContext` that trusts
their own self-signed certificate); a certificate that does not verify fails the send, it never
downgrades to clear text.

A notification is a side effect of some other work (a sync, a device refresh), so `send` never
raises: every failure (refused connection, timeout, TLS, login, refused recipients) comes back as
a `failed` result with a message saying what went wrong, and is logged. The SMTP password never
appears in a result or a log line.

`smtplib` and `email` are imported on first send: most function instances never send a mail and
should not pay for those imports at cold start.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, SecretStr

from shared.logs import register_secret
from shared.models import Model

if TYPE_CHECKING:
    import ssl
    from datetime import datetime
    from email.message import EmailMessage

logger = logging.getLogger(__name__)

PRODUCT = "traccar-bridge"
# Applies to the connection and to every read and write of the SMTP dialogue.
DEFAULT_SMTP_TIMEOUT = 15.0


class NotifierConfig(Model):
    """The SMTP settings a `Notifier` needs (`shared.runtime.notifier_config` maps `Settings`)."""

    model_config = ConfigDict(frozen=True)

    host: str = ""
    port: int = Field(587, ge=1, le=65_535)
    user: str = ""
    password: SecretStr = SecretStr("")
    sender: str = ""
    recipients: tuple[str, ...] = ()
    use_ssl: bool = False
    timeout: float = Field(DEFAULT_SMTP_TIMEOUT, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.recipients)


class NotifyResult(Model):
    """What became of one notification.

    `recipients` are the addresses the server accepted; `refused` those it turned down while
    accepting others (the mail was still sent). `error` is set only when `status` is `failed`.
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["sent", "disabled", "failed"]
    error: str | None = None
    recipients: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)


class _Refused(Exception):
    """A send this module declines before talking further (clear-text login, no sender)."""


class Notifier:
    """Sends the bridge's notification emails; one per function instance is enough."""

    def __init__(
        self, config: NotifierConfig, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.config = config
        # None: the system's CAs, built on first send.
        self._ssl_context = ssl_context
        # Belt and braces: should a server echo the password in an error, the logs still mask it.
        register_secret(config.password.get_secret_value())

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # The seed's events, the Google alerts (issue 14) and the test mail of POST /notify/test.

    def new_device(self, device_name: str, device_id: str, source: str) -> NotifyResult:
        name = _one_line(device_name) or device_id
        return self.send(
            f"New device: {name}",
            f"A new {source} device appeared in the account.\n\n"
            f"  Name: {device_name}\n"
            f"  Id:   {device_id}\n\n"
            "Unless it is excluded (PUT /excluded-devices/<id>), auto-registration gives it a\n"
            "sync service and its positions start flowing to Traccar.\n",
        )

    def device_auto_registered(
        self, device_name: str, device_id: str, timer: int, delta: int
    ) -> NotifyResult:
        name = _one_line(device_name) or device_id
        return self.send(
            f"Device auto-registered: {name}",
            "A sync service was created for this device:\n\n"
            f"  Name:   {device_name}\n"
            f"  Id:     {device_id}\n"
            f"  Every:  {timer} s (± {delta} s)\n\n"
            f"Change its schedule with PUT /devices/{device_id}/services, or stop syncing it\n"
            f"with PUT /excluded-devices/{device_id}.\n",
        )

    def google_token_expired(self, account: str | None = None) -> NotifyResult:
        # The account is named when known (several accounts, ADR 0004): only its jobs pause.
        whose = f" of {_one_line(account)}" if account else ""
        return self.send(
            "Google credentials expired - action required",
            f"Google rejected the stored credentials{whose} (BadAuthentication): the AAS token\n"
            "has expired or was revoked. The account's Google sync jobs are paused and\n"
            "GET /health answers 503 auth_required until new credentials are uploaded.\n\n"
            "To recover, on a machine with Chrome:\n"
            "  1. Run GoogleFindMyTools' main.py to write a fresh Auth/secrets.json.\n"
            "  2. Upload it:\n"
            "       PUT /auth/secrets     with the whole secrets.json as the JSON body, or\n"
            '       PUT /auth/aas-token   with {"aas_token": "aas_et/..."} if only the token\n'
            "                             changed (with several accounts, add\n"
            "                             ?account=<username>).\n"
            "The sync jobs resume as soon as the upload succeeds.\n",
        )

    def google_sign_in_required(self) -> NotifyResult:
        return self.send(
            "Google wants a browser sign-in - action required",
            "Google answered NeedsBrowser for the stored credentials: it wants the account's\n"
            "owner to sign in again in a browser (this often follows use from an unusual IP or\n"
            "region). The credentials are kept and the sync jobs keep their schedule; Google is\n"
            "asked again every few hours, and GET /health lists the alert until it clears.\n\n"
            "To recover: sign in at accounts.google.com from the region you deploy in, then\n"
            "upload new credentials (GoogleFindMyTools' main.py writes Auth/secrets.json) with\n"
            "PUT /auth/secrets.\n",
        )

    def google_mcs_login_refused(self, reason: str) -> NotifyResult:
        return self.send(
            "Google push channel refused - action required",
            "Google locate answers arrive over FCM (MCS), and it keeps refusing the bridge:\n\n"
            f"  {_one_line(reason)}\n\n"
            "GET /health lists the alert until a session logs in again. This mail is sent once\n"
            "per incident.\n",
        )

    def google_owner_key_not_renewable(self, reason: str) -> NotifyResult:
        return self.send(
            "Google owner key outdated - action required",
            "The trackers' locations can no longer be decrypted:\n\n"
            f"  {_one_line(reason)}\n\n"
            "GET /health lists the alert until an update decrypts again. This mail is sent once\n"
            "per incident.\n",
        )

    def tlink_push_refused(self, reason: str) -> NotifyResult:
        return self.send(
            "TLINK push refused",
            "The TLINK receiver (POST <webhooks>/tlink) refused a push:\n\n"
            f"  {_one_line(reason)}\n\n"
            "Either someone without the path token or signature is posting there, or TLINK's\n"
            "console still uses a push URL without the token. The push URL must be\n"
            "<webhooks>/tlink/<token>, <token> being the secret tlink-path-token\n"
            "(TLINK_REQUIRE_PATH_TOKEN=true); see docs/tlink.md. This mail is sent once: delete\n"
            "the Firestore document state/tlink_refused_push to be told again.\n",
        )

    def tlink_sensor_cap(self, device_id: int, cap: int) -> NotifyResult:
        return self.send(
            f"TLINK device {device_id}: too many sensors",
            f"TLINK device {device_id} reported a sensor beyond its cap of {cap}\n"
            "(TLINK_MAX_SENSORS_PER_DEVICE). New sensors of this device are skipped (logged);\n"
            "its known sensors still update. If the device really has that many sensors, raise\n"
            "the cap. This mail is sent once per device.\n",
        )

    def traccar_api_unauthorized(self, reason: str) -> NotifyResult:
        return self.send(
            "Traccar API credentials refused - action required",
            "Traccar's REST API refused the bridge's credentials:\n\n"
            f"  {_one_line(reason)}\n\n"
            "Devices Traccar does not know cannot be created; their positions wait in the\n"
            "outbox and go once new credentials are stored. A token made in Traccar's UI\n"
            "expires after 7 days: make one with a far expiry, or store a dedicated user's\n"
            "email:password with TRACCAR_API_AUTH=basic (README, Traccar setup), in the\n"
            "secret traccar-api-token. GET /health shows traccar_api: unauthorized until then.\n"
            "This mail is sent once per incident.\n",
        )

    def incident_opened(self, title: str, reason: str, advice: str) -> NotifyResult:
        """An operations alert (issue 20, `shared.alerts`) opened: sent once per incident."""
        return self.send(
            f"{title} - action required",
            f"{_one_line(reason)}\n\n{advice}\n\n"
            "GET /health lists the alert (with the API token: its reason) until it clears; a\n"
            "second mail says when it does. This mail is sent once per incident.\n",
        )

    def incident_resolved(self, title: str, since: datetime) -> NotifyResult:
        return self.send(
            f"Resolved: {title}",
            f"The incident open since {since.isoformat(timespec='minutes')} has ended:\n"
            f"{_one_line(title)} no longer holds.\n",
        )

    def smartcar_signal_cap(self, vehicle: str, cap: int) -> NotifyResult:
        return self.send(
            f"Smartcar vehicle {_one_line(vehicle)}: too many signal codes",
            f"Smartcar vehicle {vehicle} sent a signal code beyond its cap of {cap}\n"
            "(SMARTCAR_MAX_SIGNALS_PER_VEHICLE). New codes of this vehicle are skipped (logged,\n"
            "and listed in each stored event's `skipped`); its known signals still update. If\n"
            "the vehicle really has that many signals, raise the cap. This mail is sent once\n"
            "per vehicle.\n",
        )

    def test(self) -> NotifyResult:
        return self.send(
            "Test notification",
            f"This is a test message from {PRODUCT}: the SMTP settings work.\n",
        )

    def send(self, subject: str, body: str) -> NotifyResult:
        """Send one mail to every recipient; never raises (see the module docstring)."""
        config = self.config
        if not config.enabled:
            logger.debug("notification not sent: notifications are disabled")
            return NotifyResult(status="disabled")
        subject = f"[{PRODUCT}] {_one_line(subject)}"
        try:
            message = self._compose(subject, body)
            refused = self._deliver(message)
        except (OSError, ValueError, _Refused) as exc:
            error = self._scrub(_describe(exc, config))
            logger.warning(
                "notification failed: %s",
                error,
                extra={"subject": subject, "smtp_host": config.host, "smtp_port": config.port},
            )
            return NotifyResult(status="failed", error=error)
        accepted = [address for address in config.recipients if address not in refused]
        if refused:
            logger.warning(
                "notification sent, but some recipients were refused",
                extra={"subject": subject, "refused": self._scrub(_refusals(refused))},
            )
        logger.info("notification sent", extra={"subject": subject, "recipients": accepted})
        return NotifyResult(status="sent", recipients=accepted, refused=sorted(refused))

    def _compose(self, subject: str, body: str) -> EmailMessage:
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid, parseaddr

        sender = self.config.sender
        if not sender:
            raise _Refused("no sender address: set NOTIFY_EMAIL_FROM (or NOTIFY_SMTP_USER)")
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(self.config.recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        # The sender's domain, not socket.getfqdn(), which may block on a slow resolver.
        domain = parseaddr(sender)[1].rpartition("@")[2]
        message["Message-ID"] = make_msgid(domain=domain or PRODUCT)
        message.set_content(body)
        return message

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Send `message`; returns the recipients refused while others were accepted."""
        import smtplib
        import ssl

        config = self.config
        context = self._ssl_context or ssl.create_default_context()
        client: smtplib.SMTP
        if config.use_ssl:
            client = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=context
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        with client:
            if not config.use_ssl:
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=context)
                    client.ehlo()
                elif config.user:
                    raise _Refused(
                        f"{config.host}:{config.port} does not offer STARTTLS; refusing to send "
                        "the SMTP password in clear text (use a server with STARTTLS, or "
                        "NOTIFY_SMTP_SSL=true for an SSL port such as 465)"
                    )
            if config.user:
                client.login(config.user, config.password.get_secret_value())
            return client.send_message(message)

    def _scrub(self, text: str) -> str:
        password = self.config.password.get_secret_value()
        return text.replace(password, "[REDACTED]") if password else text


def _one_line(text: str) -> str:
    """`text` with line breaks folded into spaces: header values must not carry them."""
    return " ".join(text.split())


def _server_reply(reply: bytes | str) -> str:
    text = reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else reply
    return _one_line(text)


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {_server_reply(reply)})" for address, (code, reply) in refused.items()
    )


def _describe(exc: OSError | ValueError | _Refused, config: NotifierConfig) -> str:
    """A message for `exc` that tells the user what failed, without any secret."""
    import smtplib
    import ssl

    where = f"{config.host}:{config.port}"
    if isinstance(exc, _Refused):
        return str(exc)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (
            f"SMTP login as {config.user!r} refused by {where}: "
            f"{exc.smtp_code} {_server_reply(exc.smtp_error)} (check NOTIFY_SMTP_USER and "
            "NOTIFY_SMTP_PASS)"
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return (
            f"{where} does not support this: {exc} (a login needs AUTH; clear NOTIFY_SMTP_USER "
            "to send without one)"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"{where} refused every recipient: {_refusals(exc.recipients)}"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return (
            f"{where} refused the sender {exc.sender!r}: "
            f"{exc.smtp_code} {_server_reply(exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{where} answered {exc.smtp_code} {_server_reply(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, TimeoutError
    ):
        # smtplib reports a read timeout as a disconnection; the cause is the timeout.
        return f"no answer from {where} within {config.timeout:g} s"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{where} closed the connection unexpectedly ({exc})"
    if isinstance(exc, smtplib.SMTPException):
        return f"SMTP error with {where}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        hint = (
            " (is this port SSL-on-connect? otherwise set NOTIFY_SMTP_SSL=false)"
            if config.use_ssl
            else ""
        )
        return f"TLS failure with {where}: {exc.reason or exc}{hint}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {config.timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused (is an SMTP server listening there?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the SMTP host {config.host!r}: {exc.strerror}"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    # What is left are ValueErrors (ssl's certificate error above is one too, hence this order).
    if isinstance(exc, UnicodeEncodeError | UnicodeDecodeError):
        # smtplib encodes logins as ASCII.
        return (
            f"cannot send non-ASCII text to {where} ({exc.reason}): NOTIFY_SMTP_USER and "
            "NOTIFY_SMTP_PASS must be ASCII"
        )
    return f"cannot build the mail: {exc} (check NOTIFY_EMAIL_FROM and NOTIFY_EMAIL_TO)"
