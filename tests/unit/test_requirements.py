"""Every function deploys with exactly the pins the tests ran with."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("api", "sync_device", "refresh_devices", "webhooks")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        name, separator, version = line.partition("==")
        assert separator, f"{path.name}: {line!r} is not pinned with =="
        found[name.lower()] = version
    return found


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_functions_requirements_are_root_pins(function: str) -> None:
    root = pins(ROOT / "requirements.txt")
    own = pins(ROOT / "functions" / function / "requirements.txt")

    assert own, "a function needs at least functions-framework"
    assert "functions-framework" in own
    for name, version in own.items():
        assert root.get(name) == version, f"{function}: {name}=={version} differs from the root"


def test_dev_requirements_are_pinned_and_include_the_runtime_ones() -> None:
    text = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in text
    assert pins(ROOT / "requirements-dev.txt")
