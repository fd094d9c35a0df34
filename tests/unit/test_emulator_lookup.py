"""Without the Firestore emulator, one clear message says how to install it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import emulator


def test_a_missing_emulator_explains_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor gcloud
    monkeypatch.setattr(emulator, "SDK_ROOTS", (tmp_path / "no-sdk",))

    with pytest.raises(emulator.EmulatorMissing) as missing:
        emulator.find_emulator()

    message = str(missing.value)
    assert "google-cloud-cli-firestore-emulator" in message
    assert "gcloud components install cloud-firestore-emulator" in message
    assert "Java" in message


def test_an_explicit_emulator_path_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_BIN", "/opt/emulator/cloud_firestore_emulator")
    assert emulator.find_emulator() == ["/opt/emulator/cloud_firestore_emulator", "start"]


def test_the_installed_sdk_script_is_found_when_java_is_there() -> None:
    command = emulator.find_emulator()
    assert Path(command[0]).name in {"cloud_firestore_emulator", "gcloud"}


def test_the_jvm_is_started_directly_so_that_its_death_signal_is_its_own() -> None:
    # The SDK script forks java: a death signal set on the script would not reach the JVM.
    command = emulator.jvm_command(emulator.find_emulator())
    if Path(command[0]).name == "gcloud":
        pytest.skip("gcloud's wrapper: no jar beside a script to start directly")
    assert Path(command[0]).name == "java"
    assert command[-2:] == [emulator.MAIN_CLASS, "start"]
    assert Path(command[command.index("-cp") + 1]).is_file()
