"""Every function the Terraform calls is one of Terraform's own.

HCL parses `sorted(local.functions)` as well as `sort(local.functions)`; only evaluating it says
that `sorted` is no Terraform function, and `plan` cannot run here (the provider cannot be
downloaded). monitoring.tf carried exactly that mistake, which would have stopped `terraform
apply`. The list of functions comes from the installed Terraform itself (`terraform metadata
functions -json`, offline), so the check follows the version the README asks for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

TF_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform"

# A call: a name right before "(", not a member (`a.b(`) nor the end of a longer name.
CALL = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)\(")
# Type constraints read like calls (`list(string)`) and are no functions.
TYPE_CONSTRUCTORS = frozenset({"list", "map", "set", "object", "tuple", "optional"})


def calls(text: str) -> list[tuple[int, str]]:
    """(line, name) of each call in HCL text, comments left out."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        code = re.split(r"\s#|\s//|^\s*#|^\s*//", line, maxsplit=1)[0]
        found += [(number, m.group(1)) for m in CALL.finditer(code)]
    return found


def test_calls_are_found_and_comments_ignored() -> None:
    text = "a = sort(x)\n# b = sorted(y)\nc = upper(d) // lower(e)\nt = list(string)\n"
    assert calls(text) == [(1, "sort"), (3, "upper"), (4, "list")]


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_every_function_called_is_terraforms() -> None:
    answer = subprocess.run(
        ["terraform", "metadata", "functions", "-json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    functions = set(json.loads(answer.stdout)["function_signatures"])
    assert {"sort", "sha256", "join"} <= functions

    unknown = [
        f"{path.name}:{line}: {name}()"
        for path in sorted(TF_DIR.glob("*.tf"))
        for line, name in calls(path.read_text())
        if name not in functions and name not in TYPE_CONSTRUCTORS
    ]

    assert unknown == [], "not a Terraform function"
