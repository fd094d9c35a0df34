"""infra/terraform read with python-hcl2, for the layout tests.

`terraform validate` needs the Google provider, which CI cannot download; the tests read the
files instead and check what matters: least privilege, the functions' settings, the TTL
policies, that every reference resolves. The helpers below answer the questions the tests ask
of a function: its plain environment, its secret environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from pydantic import AliasChoices

from shared.config import Settings

TF_DIR = Path(__file__).resolve().parents[2] / "infra" / "terraform"
FUNCTION = "google_cloudfunctions2_function"
_OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)
_REFERENCE = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


@dataclass
class Terraform:
    """Every block of every .tf file, merged by kind, plus the raw text."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(kind, {})

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        return self.resources[kind][name]


def expression(value: object) -> str:
    """The expression inside `${...}`; a literal string is returned as it is."""
    text = str(value)
    match = _REFERENCE.match(text)
    return match.group(1) if match else text


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The one nested block `name` (hcl2 gives every block as a list)."""
    (only,) = body[name]
    return only


def load(directory: Path) -> Terraform:
    config = Terraform()
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text()
        config.texts[path.name] = text
        parsed = hcl2.loads(text, serialization_options=_OPTIONS)
        for entry in parsed.get("resource", []):
            for kind, named in entry.items():
                for name, body in named.items():
                    assert name not in config.resources.get(kind, {}), f"{kind}.{name} twice"
                    config.resources.setdefault(kind, {})[name] = body
        for entry in parsed.get("data", []):
            for kind, named in entry.items():
                config.data.setdefault(kind, {}).update(named)
        for entry in parsed.get("variable", []):
            config.variables.update(entry)
        for entry in parsed.get("output", []):
            config.outputs.update(entry)
        for entry in parsed.get("locals", []):
            config.locals.update(entry)
        config.terraform.extend(parsed.get("terraform", []))
    return config


def service_config(terraform: Terraform, function: str) -> dict[str, Any]:
    return block(terraform.resource(FUNCTION, function), "service_config")


def environment_names(terraform: Terraform, function: str) -> set[str]:
    """Names of the plain environment variables a function gets."""
    value = expression(service_config(terraform, function)["environment_variables"])
    # Only locals (merged): every name is then a key of a literal map this test can read.
    assert re.fullmatch(r"merge\(local\.\w+(, local\.\w+)*\)|local\.\w+", value), value
    names: set[str] = set()
    for local in re.findall(r"local\.(\w+)", value):
        names |= set(terraform.locals[local])
    return names


def environment_locals(terraform: Terraform, function: str) -> set[str]:
    """Names of the locals whose maps make up a function's plain environment."""
    value = expression(service_config(terraform, function)["environment_variables"])
    return set(re.findall(r"local\.(\w+)", value))


def secret_environment(terraform: Terraform, function: str) -> dict[str, set[str]]:
    """Secret environment variable → the secret ids it may come from."""
    config = service_config(terraform, function)
    found: dict[str, set[str]] = {}
    for entry in config.get("secret_environment_variables", []):
        secrets = re.findall(r'google_secret_manager_secret\.secret\["([^"]+)"\]', entry["secret"])
        found[entry["key"]] = set(secrets)
    for dynamic in config.get("dynamic", []):
        body = dynamic.get("secret_environment_variables")
        if body is not None:
            (content,) = body["content"]
            found[content["key"]] = set(re.findall(r'"([^"]+)"', body["for_each"]))
    for key, secrets in found.items():
        assert secrets, f"{function}: cannot tell which secret {key} comes from"
    return found


def setting_names() -> set[str]:
    """Every environment variable name Settings reads (aliases included)."""
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        else:
            names.add((alias if isinstance(alias, str) else name).upper())
    return names
