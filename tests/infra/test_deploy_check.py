"""`make deploy` refuses a configuration whose TLINK receiver would have no protection.

The check (`devtools/deploy_check.py`) reads the real `variables.tf`, copied with a test's own
`terraform.tfvars`, as `terraform apply` would: defaults, tfvars, auto tfvars, `TF_VAR_*`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devtools.deploy_check import DeployRefused, check, main

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infra" / "terraform"


@pytest.fixture
def tf_dir(tmp_path: Path) -> Path:
    target = tmp_path / "terraform"
    target.mkdir()
    for path in TF_DIR.glob("*.tf"):
        shutil.copy(path, target / path.name)
    return target


def tfvars(tf_dir: Path, text: str, name: str = "terraform.tfvars") -> None:
    (tf_dir / name).write_text('project_id = "p"\n' + text)


def test_the_shipped_defaults_protect_the_receiver_with_the_path_token(tf_dir: Path) -> None:
    tfvars(tf_dir, "")

    assert check(tf_dir, {}) == "TLINK pushes need the path token (secret tlink-path-token)"


def test_a_receiver_without_protection_is_refused_naming_what_to_set(
    tf_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tfvars(tf_dir, "tlink_require_path_token = false\n")

    with pytest.raises(DeployRefused) as refused:
        check(tf_dir, {})
    for name in ("tlink_require_path_token", "tlink_require_signature",
                 "tlink_allow_unauthenticated", "tlink-path-token"):  # fmt: skip
        assert name in str(refused.value)
    assert main([str(tf_dir)]) == 1
    assert "make deploy: refused" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tlink_require_path_token = false\ntlink_require_signature = true\n", "X-TLink-Signature"),
        ("tlink_require_path_token = false\ntlink_allow_unauthenticated = true\n",
         "accepted unauthenticated"),
    ],
)  # fmt: skip
def test_a_signature_or_the_explicit_flag_is_accepted(
    tf_dir: Path, text: str, expected: str
) -> None:
    tfvars(tf_dir, text)

    assert expected in check(tf_dir, {})


def test_auto_tfvars_and_tf_var_environment_override_as_terraform_does(tf_dir: Path) -> None:
    tfvars(tf_dir, "")
    (tf_dir / "zz.auto.tfvars").write_text("tlink_require_path_token = false\n")
    with pytest.raises(DeployRefused):
        check(tf_dir, {})

    assert "path token" in check(tf_dir, {"TF_VAR_tlink_require_path_token": "true"})
    with pytest.raises(DeployRefused, match="must be true or false"):
        check(tf_dir, {"TF_VAR_tlink_require_path_token": "maybe"})


def test_make_deploy_runs_the_check_before_terraform_apply() -> None:
    makefile = (ROOT / "infra" / "infra.mk").read_text()
    recipe = makefile.split("\ndeploy: package\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in recipe.splitlines()]
    assert lines[0] == "$(BIN)/python -m devtools.deploy_check $(TF_DIR)"
    assert lines[-1] == "$(TERRAFORM) -chdir=$(TF_DIR) apply"
