"""The configuration model: seed variable names, `.env`, precedence, errors naming the variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import flask
import pytest
from pydantic import AliasChoices, HttpUrl, SecretStr

from shared.config import Settings, load_settings
from shared.errors import ConfigError, NotConfigured, Unauthorized
from shared.web import check_bearer

ROOT = Path(__file__).resolve().parents[2]
CHECK_TIMEOUT = 30  # seconds for `python -m shared.config`, a cold interpreter on a busy CI box


def variable_names(field: str) -> list[str]:
    """The environment variable name(s) a Settings field is read from."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [field.upper()]


ALL_VARIABLES = sorted(name for field in Settings.model_fields for name in variable_names(field))


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No configuration variable in the environment, and a working directory without `.env`."""
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_apply_without_environment_or_env_file(clean_env: Path) -> None:
    settings = load_settings()

    assert settings.traccar_server_url == HttpUrl("http://localhost:5055")
    assert settings.traccar_api_url is None
    assert settings.api_token is None
    assert settings.auto_register_services is True
    assert (settings.auto_register_timer, settings.auto_register_delta) == (600, 5)
    assert settings.smart_tracking_enabled is False
    assert settings.smart_tracking_distance == 100.0
    assert (settings.smart_tracking_timer, settings.smart_tracking_delta) == (60, 10)
    assert settings.smart_tracking_duration == 900
    assert settings.notify_enabled is False
    assert settings.notify_smtp_port == 587
    assert settings.gcp_project == "traccar-bridge-local"
    assert settings.gcp_region == "europe-west1"
    assert settings.secrets_backend == "local"
    assert settings.scheduler_backend == "local"
    assert settings.secrets_dir == Path(".secrets")
    assert settings.log_level == "INFO"


def test_seed_variable_names_are_read_from_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "TRACCAR_SERVER_URL": "https://traccar.example.org:5055",
        "API_TOKEN": "a-long-api-token-value",
        "AUTO_REGISTER_SERVICES": "false",
        "AUTO_REGISTER_TIMER": "900",
        "AUTO_REGISTER_DELTA": "30",
        "SMART_TRACKING_ENABLED": "true",
        "SMART_TRACKING_DISTANCE": "250.5",
        "SMART_TRACKING_TIMER": "120",
        "SMART_TRACKING_DELTA": "15",
        "SMART_TRACKING_DURATION": "1800",
        "NOTIFY_SMTP_HOST": "smtp.example.org",
        "NOTIFY_SMTP_PORT": "465",
        "NOTIFY_SMTP_USER": "bridge@example.org",
        "NOTIFY_SMTP_PASS": "smtp-password",
        "NOTIFY_EMAIL_FROM": "alerts@example.org",
        "NOTIFY_EMAIL_TO": "me@example.org",
        "NOTIFY_SMTP_SSL": "true",
        "GCP_PROJECT": "my-project",
        "GCP_REGION": "us-central1",
        "SECRETS_BACKEND": "secret_manager",
        "SCHEDULER_BACKEND": "cloud_scheduler",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    assert settings.traccar_server_url == HttpUrl("https://traccar.example.org:5055")
    assert settings.api_token == SecretStr("a-long-api-token-value")
    assert settings.auto_register_services is False
    assert (settings.auto_register_timer, settings.auto_register_delta) == (900, 30)
    assert settings.smart_tracking_enabled is True
    assert settings.smart_tracking_distance == 250.5
    assert (settings.smart_tracking_timer, settings.smart_tracking_delta) == (120, 15)
    assert settings.smart_tracking_duration == 1800
    assert settings.notify_smtp_host == "smtp.example.org"
    assert settings.notify_smtp_port == 465
    assert settings.notify_smtp_user == "bridge@example.org"
    assert settings.notify_smtp_pass.get_secret_value() == "smtp-password"
    assert settings.notify_sender == "alerts@example.org"
    assert settings.notify_recipients == ["me@example.org"]
    assert settings.notify_smtp_ssl is True
    assert settings.gcp_project == "my-project"
    assert settings.gcp_region == "us-central1"
    assert settings.secrets_backend == "secret_manager"
    assert settings.scheduler_backend == "cloud_scheduler"


def test_google_cloud_project_is_an_alias_of_gcp_project(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-google-variable")
    assert load_settings().gcp_project == "from-google-variable"

    monkeypatch.setenv("GCP_PROJECT", "from-gcp-variable")
    assert load_settings().gcp_project == "from-gcp-variable"


def test_env_file_in_working_directory_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "AUTO_REGISTER_TIMER=1200\nNOTIFY_SMTP_HOST=smtp.example.org\nGCP_PROJECT=from-dotenv\n",
        encoding="utf-8",
    )

    settings = load_settings()

    assert settings.auto_register_timer == 1200
    assert settings.notify_smtp_host == "smtp.example.org"
    assert settings.gcp_project == "from-dotenv"


def test_explicit_env_file_is_read(clean_env: Path) -> None:
    env_file = clean_env / "elsewhere.env"
    env_file.write_text("SMART_TRACKING_TIMER=30\n", encoding="utf-8")

    assert load_settings(_env_file=env_file).smart_tracking_timer == 30


def test_environment_wins_over_env_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text(
        "AUTO_REGISTER_TIMER=1200\nAUTO_REGISTER_DELTA=20\n", encoding="utf-8"
    )
    monkeypatch.setenv("AUTO_REGISTER_TIMER", "3000")

    settings = load_settings()

    assert settings.auto_register_timer == 3000
    assert settings.auto_register_delta == 20  # not in the environment: `.env` still counts


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTO_REGISTER_TIMER", "abc"),
        ("AUTO_REGISTER_TIMER", "10"),
        ("AUTO_REGISTER_DELTA", "-1"),
        ("TRACCAR_SERVER_URL", "not-a-url"),
        ("SYNC_DEVICE_URL", "not-a-url"),
        ("SECRETS_BACKEND", "vault"),
        ("SCHEDULER_BACKEND", "cron"),
        ("SMART_TRACKING_ENABLED", "maybe"),
        ("SMART_TRACKING_DISTANCE", "0"),
        ("NOTIFY_SMTP_PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("GCP_PROJECT", ""),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert variable in str(caught.value)


def test_bad_google_cloud_project_names_the_variable_that_was_set(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "")

    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        load_settings()


def test_bad_value_in_env_file_names_the_variable(clean_env: Path) -> None:
    (clean_env / ".env").write_text("SMART_TRACKING_DELTA=lots\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="SMART_TRACKING_DELTA"):
        load_settings()


def test_every_bad_variable_is_named_at_once(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTO_REGISTER_TIMER", "abc")
    monkeypatch.setenv("SECRETS_BACKEND", "vault")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "AUTO_REGISTER_TIMER" in str(caught.value)
    assert "SECRETS_BACKEND" in str(caught.value)


def run_config_check(cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **variables}
    return subprocess.run(
        [sys.executable, "-m", "shared.config"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )


def test_config_check_command_exits_2_naming_the_bad_variable(clean_env: Path) -> None:
    result = run_config_check(clean_env, AUTO_REGISTER_TIMER="abc")

    assert result.returncode == 2
    assert "AUTO_REGISTER_TIMER" in result.stdout + result.stderr


def test_config_check_command_accepts_a_good_configuration(clean_env: Path) -> None:
    result = run_config_check(clean_env, AUTO_REGISTER_TIMER="900")

    assert result.returncode == 0, result.stdout + result.stderr


def test_empty_api_token_means_no_authentication_with_the_local_backend(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "")
    settings = load_settings(secrets_backend="local")
    app = flask.Flask(__name__)

    assert settings.api_token is None and not settings.api_token_required
    with app.test_request_context("/services"):
        check_bearer(flask.request, settings.api_token, required=settings.api_token_required)


def test_empty_api_token_in_the_cloud_fails_closed_naming_the_secret(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "")
    settings = load_settings(secrets_backend="secret_manager")
    app = flask.Flask(__name__)

    assert settings.api_token_required
    with app.test_request_context("/services"), pytest.raises(NotConfigured) as refused:
        check_bearer(flask.request, settings.api_token, required=settings.api_token_required)
    assert refused.value.status == 503 and "api-token" in refused.value.message


def test_set_api_token_requires_the_bearer_token(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cret-token-value")
    settings = load_settings()
    app = flask.Flask(__name__)

    with app.test_request_context("/services"), pytest.raises(Unauthorized):
        check_bearer(flask.request, settings.api_token, required=True)
    with app.test_request_context(
        "/services", headers={"Authorization": "Bearer s3cret-token-value"}
    ):
        check_bearer(flask.request, settings.api_token, required=True)


@pytest.mark.parametrize(
    ("host", "to", "enabled"),
    [
        ("smtp.example.org", "me@example.org", True),
        ("smtp.example.org", "", False),
        ("", "me@example.org", False),
        ("smtp.example.org", " , ,", False),
    ],
)
def test_notifications_need_a_host_and_a_recipient(
    clean_env: Path, host: str, to: str, enabled: bool
) -> None:
    settings = load_settings(notify_smtp_host=host, notify_email_to=to)

    assert settings.notify_enabled is enabled


def test_recipients_are_split_on_commas_and_sender_defaults_to_user(clean_env: Path) -> None:
    settings = load_settings(
        notify_email_to=" a@example.org, b@example.org ,,", notify_smtp_user="user@example.org"
    )

    assert settings.notify_recipients == ["a@example.org", "b@example.org"]
    assert settings.notify_sender == "user@example.org"


ENV_EXAMPLE = ROOT / ".env.example"
_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def documented_variables() -> list[str]:
    return _ASSIGNMENT.findall(ENV_EXAMPLE.read_text(encoding="utf-8"))


def test_env_example_documents_every_variable_once() -> None:
    documented = documented_variables()
    # One name per field: an alias (GOOGLE_CLOUD_PROJECT) is mentioned in a comment only.
    expected = {variable_names(field)[0] for field in Settings.model_fields}

    assert sorted(documented) == sorted(set(documented)), "a variable is listed twice"
    assert set(documented) == expected


def test_env_example_shows_the_defaults(clean_env: Path) -> None:
    from_example = load_settings(_env_file=ENV_EXAMPLE)

    assert from_example == load_settings(_env_file=None)
