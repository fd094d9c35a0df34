"""`make secret NAME=…` / `make secrets` (devtools.secrets, run as the Makefile runs it) and the
"no … stored in secret X" messages that say how to store X for the backend in use (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import functions_framework
import pytest
from flask.testing import FlaskClient

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.runtime import get_runtime
from shared.secrets import LocalSecretStore, SecretManagerStore, SecretNotFound, missing
from tests.conftest import PROJECT
from tests.fakes.secret_manager import FakeSecretManager

ROOT = Path(__file__).resolve().parents[2]
VALUE = "tok-4f1d9c-not-for-your-eyes"
TIMEOUT = 30.0


def secrets_command(
    tmp_path: Path, *arguments: str, stdin: str = ""
) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "GCP_PROJECT": PROJECT,
    }
    return subprocess.run(
        [sys.executable, "-m", "devtools.secrets", *arguments],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_make_secret_stores_a_version_from_stdin_and_never_prints_it(tmp_path: Path) -> None:
    first = secrets_command(tmp_path, "set", "smartcar-management-token", stdin=VALUE + "\n")
    second = secrets_command(tmp_path, "set", "smartcar-management-token", stdin="newer\n")

    assert first.returncode == 0, first.stderr
    assert "stored smartcar-management-token version 1" in first.stdout
    assert "version 2" in second.stdout
    store = LocalSecretStore(tmp_path / "secrets")
    assert store.read("smartcar-management-token") == "newer"  # the newline is not the value
    assert VALUE not in first.stdout + first.stderr


def test_make_secrets_lists_names_and_versions_never_values(tmp_path: Path) -> None:
    LocalSecretStore(tmp_path / "secrets").add_version("traccar-api-token", VALUE)
    LocalSecretStore(tmp_path / "secrets").add_version("traccar-api-token", VALUE + "2")

    listed = secrets_command(tmp_path, "list")

    assert listed.returncode == 0, listed.stderr
    assert VALUE not in listed.stdout
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert "versions 1, 2 (latest 2 in use)" in lines["traccar-api-token"]
    # The names the bridge reads are listed even when nothing is stored yet.
    assert "not stored" in lines["smartcar-management-token"]
    assert "not stored" in lines["google-secrets"]


def test_make_secret_refuses_a_bad_name_and_an_empty_value(tmp_path: Path) -> None:
    bad = secrets_command(tmp_path, "set", "../escape", stdin=VALUE)
    empty = secrets_command(tmp_path, "set", "traccar-api-token", stdin="")

    assert bad.returncode == 2 and "not a secret name" in bad.stderr
    assert empty.returncode == 2 and "nothing stored" in empty.stderr
    assert not (tmp_path / "secrets" / "traccar-api-token").exists()


@pytest.fixture
def webhooks(
    emulator: Emulator, firestore_client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FlaskClient]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "SECRETS_BACKEND": "local",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    yield functions_framework.create_app(
        "webhooks", str(ROOT / "functions" / "webhooks" / "main.py")
    ).test_client()
    get_settings.cache_clear()
    get_runtime.cache_clear()


def test_a_missing_secret_says_the_local_command_that_stores_it(webhooks: FlaskClient) -> None:
    verify = {"eventType": "VERIFY", "data": {"challenge": "x"}}

    response = webhooks.post("/smartcar", json=verify)

    assert response.status_code == 503, response.data
    error = response.get_json()["error"]
    assert "no Smartcar management token stored in secret smartcar-management-token" in error
    assert "make secret NAME=smartcar-management-token" in error


def test_a_missing_secret_in_secret_manager_says_the_gcloud_command() -> None:
    with FakeSecretManager(project_numbers={PROJECT: "314159265358"}) as fake:
        store = SecretManagerStore(fake.client(), PROJECT)
        with pytest.raises(SecretNotFound) as absent:
            store.read("smartcar-management-token")

    message = missing("Smartcar management token", "smartcar-management-token", absent.value)
    assert message == (
        "no Smartcar management token stored in secret smartcar-management-token; store it "
        "with `gcloud secrets versions add smartcar-management-token --data-file=-`"
    )
