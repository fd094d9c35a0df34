"""Further Google accounts' secrets in Terraform (docs/decisions/0004): `google_accounts` gives
each further account the secret `google-secrets-<key>` the code looks for, the key derived in HCL
(secrets.tf) as `shared/sources/google/layout.py` derives it, with the first account's access.

`terraform console` evaluates the real expressions offline: no provider is needed for variables
and locals (the resources' attributes are stubbed as in test_terraform_matches_code.py), and
`terraform plan` of such a module says whether a variable's validation lets a value through.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.sources.google.layout import AccountLayout, account_key, normalized
from tests.infra.hcl import TF_DIR, Terraform, block, expression
from tests.infra.test_terraform_matches_code import REQUIRED_VARIABLES, STUBS, needs_terraform

ROOT = TF_DIR.parents[1]
SECRET_BASE = str(Settings.model_fields["google_secret_name"].default)  # google-secrets
# Usernames Terraform must key exactly as the code does: case, dots, plus signs, blanks around,
# nothing but punctuation (the digest alone), a cut that ends on "-", a long one, characters that
# HCL would read as templates or escapes in a .tf file.
ASCII_USERNAMES = [
    "family.member@example.org",
    "First.Last+Tracker@GMail.com",
    "UPPER.CASE@EXAMPLE.COM",
    "  padded@example.org\t",
    "a_b-c@sub.example.co.uk",
    "-leading.and.trailing-@example.org-",
    "+++",
    "a" * 39 + ".b@example.org",
    "very.long." + "x" * 120 + "@a-rather-long-domain.example.org",
    "o'brien@example.org",
    'quote"d\\slash@example.org',
    "${not.a.template}%{if}@example.org",
    "12345@example.org",
]
# Usernames whose key HCL cannot derive: Terraform's lower() is not Python's casefold()
# ("ß" → "ss", "İ" → "i̇"), and cty normalizes strings to NFC (a decomposed "é" hashes apart).
DIVERGING_USERNAMES = ["straße@example.de", "İlker@example.com", "e\u0301lodie@example.fr"]
# Refused alike, though HCL would key them right today: not trusted case by case.
OTHER_UNICODE = ["josé@example.es", "ünal@example.de", "你好@example.cn"]


def locals_blocks(*files: str) -> str:
    paths = [TF_DIR / name for name in files] if files else sorted(TF_DIR.glob("*.tf"))
    text = "\n".join(
        match.group(0)
        for path in paths
        for match in re.finditer(r"^locals \{\n.*?^\}\n", path.read_text(), re.S | re.M)
    )
    for reference, value in STUBS.items():
        text = text.replace(reference, value)
    return text


def real_module(directory: Path) -> Path:
    """infra/terraform's variables (validations included) and every locals block."""
    directory.mkdir()
    (directory / "variables.tf").write_text((TF_DIR / "variables.tf").read_text())
    (directory / "locals.tf").write_text(locals_blocks())
    return directory


def bare_module(directory: Path) -> Path:
    """secrets.tf's locals over the two variables without their validations: what the HCL
    derivation alone makes of any username."""
    directory.mkdir()
    variables = """
variable "google_accounts" {
  type = list(string)
}
variable "google_account_keys" {
  type    = list(string)
  default = []
}
"""
    (directory / "main.tf").write_text(variables + locals_blocks("secrets.tf"))
    return directory


def var_file(directory: Path, variables: dict[str, Any]) -> str:
    # JSON: every username arrives exactly as written (no HCL quoting, no templates).
    path = directory / "test.tfvars.json"
    path.write_text(json.dumps({**REQUIRED_VARIABLES, **variables}, ensure_ascii=False))
    return f"-var-file={path}"


def console(module: Path, variables: dict[str, Any], query: str) -> Any:
    result = subprocess.run(
        ["terraform", f"-chdir={module}", "console", var_file(module, variables)],
        input=f"jsonencode({query})\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # console reports a failed validation but still answers (exit 0): never accept that here.
    assert "Error" not in result.stderr, result.stderr
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


def plan(module: Path, variables: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`terraform plan` of a module without resources: the variables' validations, offline."""
    arguments = ["plan", "-input=false", "-no-color", var_file(module, variables)]
    return subprocess.run(
        ["terraform", f"-chdir={module}", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def secret_name(username: str) -> str:
    return AccountLayout(account_key(username)).secret_name(SECRET_BASE)


# --- (a) the key -------------------------------------------------------------------------------


@needs_terraform
def test_terraform_names_each_further_accounts_secret_as_the_code_does(tmp_path: Path) -> None:
    module = real_module(tmp_path / "real")
    keys, secrets = console(
        module,
        {"google_accounts": ASCII_USERNAMES},
        "[local.google_account_keys_by_name, local.google_account_secrets]",
    )
    assert keys == {normalized(username): account_key(username) for username in ASCII_USERNAMES}
    assert set(secrets.values()) == {secret_name(username) for username in ASCII_USERNAMES}
    # The odd cases are really exercised: a digest alone, a cut ending on "-", the longest key.
    assert keys["+++"] == account_key("+++") and len(keys["+++"]) == 8
    cut = keys[normalized(ASCII_USERNAMES[7])]
    assert cut.startswith("a" * 39 + "-") and len(cut) == 39 + 1 + 8
    assert max(len(key) for key in keys.values()) == 49


@needs_terraform
def test_no_further_account_no_secret(tmp_path: Path) -> None:
    module = real_module(tmp_path / "real")
    assert console(
        module,
        {},
        "[local.google_account_secrets, local.google_account_read_grants,"
        " local.google_account_write_grants]",
    ) == [{}, {}, {}]


@needs_terraform
def test_hcl_cannot_key_unicode_usernames_so_terraform_refuses_them(tmp_path: Path) -> None:
    bare = bare_module(tmp_path / "bare")
    keys = console(
        bare, {"google_accounts": DIVERGING_USERNAMES}, "local.google_account_keys_by_name"
    )
    assert sorted(keys.values()) != sorted(account_key(u) for u in DIVERGING_USERNAMES)
    for username in DIVERGING_USERNAMES:
        assert account_key(username) not in keys.values(), username

    real = real_module(tmp_path / "real")
    for username in [*DIVERGING_USERNAMES, *OTHER_UNICODE, "two words@example.org"]:
        refused = plan(real, {"google_accounts": ["family.member@example.org", username]})
        assert refused.returncode == 1, username
        assert "Invalid value for variable" in refused.stderr, username
        assert "google_account_keys" in refused.stderr and "google-account-key" in refused.stderr
    assert plan(real, {"google_accounts": ASCII_USERNAMES}).returncode == 0


@needs_terraform
def test_a_unicode_username_goes_in_as_the_key_make_prints(tmp_path: Path) -> None:
    printed = {
        username: subprocess.run(
            ["make", "-s", "google-account-key", f"ACCOUNT={username}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        for username in DIVERGING_USERNAMES
    }
    assert printed == {username: account_key(username) for username in DIVERGING_USERNAMES}

    real = real_module(tmp_path / "real")
    secrets = console(
        real,
        {
            "google_accounts": ["family.member@example.org"],
            # The same account twice (as its key too) still makes one secret.
            "google_account_keys": [*printed.values(), account_key("family.member@example.org")],
        },
        "local.google_account_secrets",
    )
    assert sorted(secrets.values()) == sorted(
        {secret_name(u) for u in [*DIVERGING_USERNAMES, "family.member@example.org"]}
    )
    for wrong in ["Family-1a2b3c4d", "family-member", "-1a2b3c4d", "a" * 41 + "-1a2b3c4d"]:
        refused = plan(real, {"google_account_keys": [wrong]})
        assert refused.returncode == 1, wrong
        assert "google_account_keys: keys as make" in refused.stderr, wrong


@needs_terraform
def test_a_username_listed_twice_is_refused(tmp_path: Path) -> None:
    real = real_module(tmp_path / "real")
    refused = plan(
        real, {"google_accounts": ["Family.Member@example.org", " family.member@EXAMPLE.org"]}
    )
    assert refused.returncode == 1
    assert "listed twice" in refused.stderr


# --- (b) the secret and its access -------------------------------------------------------------


def test_a_further_accounts_secret_is_made_like_the_first_accounts(terraform: Terraform) -> None:
    first = terraform.resource("google_secret_manager_secret", "secret")
    further = terraform.resource("google_secret_manager_secret", "google_account")
    assert expression(further["for_each"]) == "local.google_account_secrets"
    assert expression(further["secret_id"]) == "each.value"
    for argument in ("labels", "replication", "depends_on"):
        assert further[argument] == first[argument], argument
    assert block(further, "replication") == {"auto": [{}]}
    assert terraform.variables["google_accounts"]["default"] == []
    assert terraform.variables["google_account_keys"]["default"] == []


def grantees(
    terraform: Terraform, grants: dict[str, dict[str, dict[str, str]]], secret: str
) -> set[tuple[str, str]]:
    """(role, function) of every IAM member resource that grants on `secret`, as Terraform
    expands them (`grants`: each resource's for_each, evaluated)."""
    found = set()
    for name, body in terraform.of_type("google_secret_manager_secret_iam_member").items():
        assert body["member"] == (
            "serviceAccount:${google_service_account.runtime[each.value.function].email}"
        ), name
        for grant in grants[name].values():
            target = f"{SECRET_BASE}-{grant['key']}" if "key" in grant else grant["secret"]
            if target == secret:
                found.add((body["role"], grant["function"]))
    return found


@needs_terraform
def test_a_further_accounts_secret_is_granted_exactly_as_google_secrets(
    terraform: Terraform, tmp_path: Path
) -> None:
    members = terraform.of_type("google_secret_manager_secret_iam_member")
    for_each = {name: expression(body["for_each"]) for name, body in members.items()}
    for name, body in members.items():
        secret_id = expression(body["secret_id"])
        if name.startswith("google_account_"):
            assert secret_id == "google_secret_manager_secret.google_account[each.value.key].id"
        else:
            assert secret_id == "google_secret_manager_secret.secret[each.value.secret].id"
    usernames = ["family.member@example.org", "Grandma+Tracker@Example.org"]
    module = real_module(tmp_path / "real")
    query = "{" + ", ".join(f"{name} = {value}" for name, value in for_each.items()) + "}"
    grants = console(module, {"google_accounts": usernames}, query)

    first = grantees(terraform, grants, SECRET_BASE)
    assert {function for _, function in first} == {"api", "sync_device", "refresh_devices"}
    assert {role for role, _ in first} == {
        "roles/secretmanager.secretAccessor",
        "${google_project_iam_custom_role.secret_rotator.name}",
    }
    for username in usernames:
        assert grantees(terraform, grants, secret_name(username)) == first, username
