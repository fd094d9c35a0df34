"""`make deploy`'s check before `terraform apply`: no deployment with an open TLINK receiver.

A TLINK receiver with neither protection (`tlink_require_path_token`, `tlink_require_signature`)
refuses every push (503) unless `tlink_allow_unauthenticated` is on, in which case anyone who
knows the URL puts positions into Traccar (issue 13). Either way such a configuration is a
mistake unless the flag says otherwise, so it is refused here, before anything is applied,
with a message saying what to set.

The values are read as Terraform reads them for `make deploy` (no `-var` there): the defaults
of `variables.tf`, then `terraform.tfvars`, then `*.auto.tfvars` in name order, then `TF_VAR_*`
environment variables, each overriding the one before.

    python -m devtools.deploy_check [infra/terraform]    # exit 0, or 1 with the reason
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "infra" / "terraform"
SWITCHES = ("tlink_require_path_token", "tlink_require_signature", "tlink_allow_unauthenticated")


class DeployRefused(Exception):
    """The configuration must not be applied; the message says why and what to set."""


def _as_bool(name: str, value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().strip('"').lower()
    if text in {"true", "1"}:
        return True
    if text in {"false", "0"}:
        return False
    raise DeployRefused(f"{where}: {name} must be true or false, not {value!r}")


def _parse(path: Path) -> dict[str, Any]:
    options = hcl2.SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=options)
    return parsed


def _defaults(tf_dir: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(tf_dir.glob("*.tf")):
        for entry in _parse(path).get("variable", []):
            for name, body in entry.items():
                if name in SWITCHES and "default" in body:
                    found[name] = body["default"]
    return found


def switches(tf_dir: Path, environ: Mapping[str, str]) -> dict[str, bool]:
    """The three TLINK switches as `terraform apply` in `tf_dir` would set them."""
    values: dict[str, tuple[object, str]] = {
        name: (value, f"{tf_dir.name}/variables.tf") for name, value in _defaults(tf_dir).items()
    }
    files = [tf_dir / "terraform.tfvars", *sorted(tf_dir.glob("*.auto.tfvars"))]
    for path in files:
        if path.is_file():
            for name, value in _parse(path).items():
                if name in SWITCHES:
                    values[name] = (value, f"{tf_dir.name}/{path.name}")
    for name in SWITCHES:
        if f"TF_VAR_{name}" in environ:
            values[name] = (environ[f"TF_VAR_{name}"], f"TF_VAR_{name}")
    missing = [name for name in SWITCHES if name not in values]
    if missing:
        raise DeployRefused(f"{tf_dir}/variables.tf: no default for {', '.join(missing)}")
    return {name: _as_bool(name, value, where) for name, (value, where) in values.items()}


def check(tf_dir: Path, environ: Mapping[str, str]) -> str:
    """What the deployment's TLINK receiver will want; `DeployRefused` if it wants nothing."""
    on = switches(tf_dir, environ)
    wanted = [
        what
        for what, switch in (
            ("the path token (secret tlink-path-token)", "tlink_require_path_token"),
            ("X-TLink-Signature (secret tlink-webhook-secret)", "tlink_require_signature"),
        )
        if on[switch]
    ]
    if wanted:
        return "TLINK pushes need " + " and ".join(wanted)
    if on["tlink_allow_unauthenticated"]:
        return "TLINK pushes are accepted unauthenticated (tlink_allow_unauthenticated = true)"
    raise DeployRefused(
        "the TLINK receiver would have no protection: set tlink_require_path_token = true "
        "(and add the tlink-path-token secret's value, docs/deploy.md step 6) or "
        "tlink_require_signature = true in infra/terraform/terraform.tfvars; or, to accept "
        "unauthenticated pushes on purpose, tlink_allow_unauthenticated = true"
    )


def main(argv: list[str]) -> int:
    tf_dir = Path(argv[0]) if argv else TF_DIR
    try:
        print(f"deploy check: {check(tf_dir, os.environ)}")
    except DeployRefused as exc:
        print(f"make deploy: refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
