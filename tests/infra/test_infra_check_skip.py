"""`make test` without Terraform: the infra checks are skipped with a visible notice, except in
CI, where a missing Terraform fails (issue 18)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def infra_check(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        ["make", "-s", "infra-check", "TERRAFORM=/nonexistent/terraform"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_terraform_the_infra_checks_are_skipped_with_a_notice() -> None:
    result = infra_check()
    assert result.returncode == 0, result.stderr
    assert "terraform is not installed: SKIPPING the infra checks" in result.stderr


def test_in_ci_a_missing_terraform_fails() -> None:
    result = infra_check(CI="true")
    assert result.returncode != 0
    assert "terraform is not installed" in result.stderr
