"""Email notifications against a real SMTP server (aiosmtpd) over local sockets.

Covers the switch-off rule, plain / STARTTLS / SSL-on-connect delivery, login, the refusal to send
a password in clear text, certificate checks, every failure coming back as `failed` with a clear
message (and never the password), and the subject and body of each event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from shared.config import Settings, load_settings
from shared.notify import Notifier, NotifierConfig, NotifyResult
from shared.runtime import notifier_config
from tests.fakes.smtp import SilentServer, SmtpServer, free_port

SENDER = "bridge@example.com"
RECIPIENT = "owner@example.com"
USER = "bridge-user"
PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "wrong-password-0123456789"


def notify_settings(**values: object) -> Settings:
    """Settings with every NOTIFY_* variable given here, none from the environment or `.env`."""
    defaults: dict[str, object] = {
        "notify_smtp_host": "",
        "notify_smtp_port": 587,
        "notify_smtp_user": "",
        "notify_smtp_pass": "",
        "notify_email_from": "",
        "notify_email_to": "",
        "notify_smtp_ssl": False,
    }
    return load_settings(_env_file=None, **(defaults | values))


def config_for(server: SmtpServer | SilentServer, **values: object) -> NotifierConfig:
    fields: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "sender": SENDER,
        "recipients": (RECIPIENT,),
    }
    return NotifierConfig(**(fields | values))


@pytest.fixture(scope="module")
def plain_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def last_mail_subject(server: SmtpServer) -> str:
    return str(server.messages[-1].message["Subject"])


@pytest.mark.parametrize(
    "missing",
    [{"notify_smtp_host": ""}, {"notify_email_to": " , "}],
    ids=["without-host", "without-recipient"],
)
def test_notifications_are_disabled_without_host_or_recipient(
    plain_server: SmtpServer, missing: dict[str, str]
) -> None:
    complete = {
        "notify_smtp_host": plain_server.host,
        "notify_smtp_port": plain_server.port,
        "notify_email_from": SENDER,
        "notify_email_to": RECIPIENT,
    }
    settings = notify_settings(**(complete | missing))
    before = len(plain_server.messages)
    notifier = Notifier(notifier_config(settings))

    result = notifier.test()

    assert not notifier.enabled
    assert result == NotifyResult(status="disabled")
    assert len(plain_server.messages) == before


def test_plain_send_delivers_subject_body_and_sender_to_every_recipient() -> None:
    with SmtpServer() as server:
        settings = notify_settings(
            notify_smtp_host=server.host,
            notify_smtp_port=server.port,
            notify_email_from=SENDER,
            notify_email_to=" owner@example.com, , second@example.org ",
        )

        result = Notifier(notifier_config(settings)).send("Hello", "First line\nSecond line\n")

        assert result.status == "sent", result.error
        assert result.recipients == ["owner@example.com", "second@example.org"]
        [mail] = server.messages
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == ["owner@example.com", "second@example.org"]
    assert mail.login is None
    assert not mail.tls, "without a login, a relay without STARTTLS is used as it is"
    assert mail.message["From"] == SENDER
    assert mail.message["To"] == "owner@example.com, second@example.org"
    assert mail.message["Subject"] == "[traccar-bridge] Hello"
    assert mail.message["Date"] and mail.message["Message-ID"]
    assert mail.message.get_content() == "First line\nSecond line\n"


def test_sender_defaults_to_the_smtp_user() -> None:
    config = notifier_config(
        notify_settings(notify_smtp_host="smtp.example.com", notify_smtp_user=USER + "@x.org")
    )

    assert config.sender == USER + "@x.org"


def test_starttls_login_with_the_right_password_sends_over_tls() -> None:
    with SmtpServer(tls="starttls", credentials=(USER, PASSWORD)) as server:
        settings = notify_settings(
            notify_smtp_host=server.host,
            notify_smtp_port=server.port,
            notify_smtp_user=USER,
            notify_smtp_pass=PASSWORD,
            notify_email_from=SENDER,
            notify_email_to=RECIPIENT,
        )
        notifier = Notifier(notifier_config(settings), ssl_context=server.client_context())

        result = notifier.test()

        assert result.status == "sent", result.error
        [mail] = server.messages
    assert mail.tls
    assert mail.login == USER
    assert mail.rcpt_tos == [RECIPIENT]


def test_wrong_password_fails_with_a_clear_message_that_hides_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SmtpServer(tls="starttls", credentials=(USER, PASSWORD)) as server:
        config = config_for(server, user=USER, password=WRONG_PASSWORD)
        notifier = Notifier(config, ssl_context=server.client_context())

        with caplog.at_level(logging.INFO, logger="shared.notify"):
            result = notifier.test()

        # smtplib tries each mechanism the server offers (PLAIN, then LOGIN) before giving up.
        assert server.login_attempts and set(server.login_attempts) == {USER}
        assert server.messages == []
    assert result.status == "failed"
    assert result.error is not None
    assert f"login as '{USER}' refused" in result.error
    assert "535" in result.error
    assert WRONG_PASSWORD not in result.error
    assert caplog.records, "the failure is logged"
    assert all(WRONG_PASSWORD not in record.getMessage() for record in caplog.records)
    assert WRONG_PASSWORD not in caplog.text


def test_non_ascii_password_fails_cleanly_without_showing_it() -> None:
    password = "pässwörd-1234567"
    with SmtpServer(tls="starttls", credentials=(USER, password)) as server:
        config = config_for(server, user=USER, password=password)

        result = Notifier(config, ssl_context=server.client_context()).test()

        assert server.messages == []
    assert result.status == "failed"
    assert result.error is not None
    assert "must be ASCII" in result.error
    assert password not in result.error


def test_address_with_a_line_break_fails_cleanly(plain_server: SmtpServer) -> None:
    before = len(plain_server.messages)
    config = config_for(plain_server, recipients=("owner@example.com\nBcc: x@example.net",))

    result = Notifier(config).test()

    assert result.status == "failed"
    assert result.error is not None
    assert "NOTIFY_EMAIL_TO" in result.error
    assert len(plain_server.messages) == before


def test_ssl_on_connect_sends_with_login() -> None:
    with SmtpServer(tls="ssl", credentials=(USER, PASSWORD)) as server:
        config = config_for(server, user=USER, password=PASSWORD, use_ssl=True)

        result = Notifier(config, ssl_context=server.client_context()).test()

        assert result.status == "sent", result.error
        [mail] = server.messages
    assert mail.tls
    assert mail.login == USER


def test_password_is_never_sent_in_clear_text_when_the_server_lacks_starttls() -> None:
    # This server would accept the login in clear text: the notifier must not offer it.
    with SmtpServer(tls="none", credentials=(USER, PASSWORD)) as server:
        result = Notifier(config_for(server, user=USER, password=PASSWORD)).test()

        assert server.login_attempts == []
        assert server.messages == []
    assert result.status == "failed"
    assert result.error is not None
    assert "does not offer STARTTLS" in result.error
    assert "clear text" in result.error


def test_untrusted_certificate_fails_instead_of_falling_back_to_clear_text() -> None:
    with SmtpServer(tls="starttls") as server:
        # No ssl_context: the system's CAs, which do not know the test's self-signed certificate.
        result = Notifier(config_for(server)).test()

        assert server.messages == []
    assert result.status == "failed"
    assert result.error is not None
    assert "certificate" in result.error
    assert "not trusted" in result.error


def test_ssl_setting_against_a_plain_port_fails_with_a_hint(plain_server: SmtpServer) -> None:
    before = len(plain_server.messages)
    config = config_for(plain_server, use_ssl=True)

    result = Notifier(config, ssl_context=plain_server.client_context()).test()

    assert result.status == "failed"
    assert result.error is not None
    assert "TLS failure" in result.error
    assert "NOTIFY_SMTP_SSL=false" in result.error
    assert len(plain_server.messages) == before


def test_connection_refused_is_a_failed_result() -> None:
    config = NotifierConfig(
        host="127.0.0.1", port=free_port(), sender=SENDER, recipients=(RECIPIENT,)
    )

    result = Notifier(config).test()

    assert result.status == "failed"
    assert result.error is not None
    assert "refused" in result.error
    assert f"127.0.0.1:{config.port}" in result.error


def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with SilentServer() as server:
        started = time.monotonic()

        result = Notifier(config_for(server, timeout=0.3)).test()

        elapsed = time.monotonic() - started
    assert result.status == "failed"
    assert result.error == f"no answer from {server.host}:{server.port} within 0.3 s"
    assert elapsed < 2


def test_every_recipient_refused_is_a_failed_result_naming_them() -> None:
    with SmtpServer(refuse=frozenset({RECIPIENT})) as server:
        result = Notifier(config_for(server)).test()

        assert server.messages == []
    assert result.status == "failed"
    assert result.error is not None
    assert "refused every recipient" in result.error
    assert RECIPIENT in result.error
    assert "550" in result.error


def test_some_recipients_refused_still_delivers_to_the_others() -> None:
    with SmtpServer(refuse=frozenset({"gone@example.com"})) as server:
        config = config_for(server, recipients=("gone@example.com", RECIPIENT))

        result = Notifier(config).test()

        [mail] = server.messages
    assert result.status == "sent"
    assert result.recipients == [RECIPIENT]
    assert result.refused == ["gone@example.com"]
    assert mail.rcpt_tos == [RECIPIENT]


def test_missing_sender_fails_naming_the_variable(plain_server: SmtpServer) -> None:
    before = len(plain_server.messages)

    result = Notifier(config_for(plain_server, sender="")).test()

    assert result.status == "failed"
    assert result.error is not None
    assert "NOTIFY_EMAIL_FROM" in result.error
    assert len(plain_server.messages) == before


def test_a_device_name_cannot_inject_headers(plain_server: SmtpServer) -> None:
    notifier = Notifier(config_for(plain_server))

    result = notifier.new_device("Keys\r\nBcc: attacker@example.net", "dev-1", "google")

    assert result.status == "sent", result.error
    mail = plain_server.messages[-1]
    assert mail.message["Subject"] == "[traccar-bridge] New device: Keys Bcc: attacker@example.net"
    assert mail.message["Bcc"] is None
    assert mail.rcpt_tos == [RECIPIENT]


@pytest.mark.parametrize(
    ("event", "subject", "body_parts"),
    [
        (
            lambda n: n.new_device("Car keys", "a1b2c3", "google"),
            "New device: Car keys",
            ["google device", "Car keys", "a1b2c3", "/excluded-devices/<id>"],
        ),
        (
            lambda n: n.device_auto_registered("Car keys", "a1b2c3", 600, 5),
            "Device auto-registered: Car keys",
            ["a1b2c3", "600 s (± 5 s)", "PUT /excluded-devices/a1b2c3"],
        ),
        (
            lambda n: n.google_token_expired(),
            "Google credentials expired - action required",
            ["BadAuthentication", "PUT /auth/secrets", "PUT /auth/aas-token", "503"],
        ),
        (
            lambda n: n.google_sign_in_required(),
            "Google wants a browser sign-in - action required",
            ["NeedsBrowser", "accounts.google.com", "region", "PUT /auth/secrets"],
        ),
        (
            lambda n: n.google_mcs_login_refused("login refused"),
            "Google push channel refused - action required",
            ["login refused", "GET /health"],
        ),
        (
            lambda n: n.google_owner_key_not_renewable("no shared_key"),
            "Google owner key outdated - action required",
            ["no shared_key", "GET /health"],
        ),
        (lambda n: n.test(), "Test notification", ["traccar-bridge"]),
    ],
    ids=[
        "new-device",
        "auto-registered",
        "google-token-expired",
        "sign-in",
        "mcs-login",
        "owner-key",
        "test",
    ],
)
def test_each_event_sends_its_subject_and_explains_itself(
    plain_server: SmtpServer, event, subject: str, body_parts: list[str]
) -> None:
    result = event(Notifier(config_for(plain_server)))

    assert result.status == "sent", result.error
    message = plain_server.messages[-1].message
    assert message["Subject"] == f"[traccar-bridge] {subject}"
    body = message.get_content()
    for part in body_parts:
        assert part in body
