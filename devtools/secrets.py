"""`make secret NAME=<name>` and `make secrets`: the local secret store (`SECRETS_DIR`) by hand.

The names are Secret Manager's (`make secrets` lists the ones the bridge reads, from the
settings, next to whatever else is stored), so a value stored here for `make run` goes to the
same name in the cloud with `gcloud secrets versions add <name> --data-file=-`.

`set NAME` reads the value from stdin when it is not a terminal (`make secret NAME=x < file`),
otherwise from a prompt that does not echo; it adds a version, as Secret Manager does, and
prints the version number, never the value. `list` prints names and version numbers only: no
value is ever read.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from shared.config import Settings, load_settings
from shared.errors import ConfigError
from shared.secrets import LocalSecretStore, check_secret_name

ROOT = Path(__file__).resolve().parent.parent


def known_secrets(settings: Settings) -> dict[str, str]:
    """Secret name → the setting naming it, for every secret the bridge reads: the settings
    whose names end in `_secret` or `_secret_name` (so a new vendor's secret is listed too)."""
    found = {}
    for field in sorted(type(settings).model_fields):
        if field.endswith(("_secret", "_secret_name")):
            value = getattr(settings, field)
            if isinstance(value, str) and value:
                found[value] = field.upper()
    return found


def store_for(settings: Settings) -> LocalSecretStore:
    # The functions run in the repository: a relative SECRETS_DIR is theirs (devtools/run.py).
    return LocalSecretStore(ROOT / settings.secrets_dir)


def read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (not shown): ")
    else:
        value = sys.stdin.read()
    # A file or `echo` ends with a newline that is not part of a token.
    return value.removesuffix("\n").removesuffix("\r")


def set_secret(settings: Settings, name: str) -> int:
    try:
        check_secret_name(name)
    except ValueError:
        print(
            f"make secret: {name!r} is not a secret name (letters, digits, - and _)",
            file=sys.stderr,
        )
        return 2
    value = read_value(name)
    if not value:
        print(f"make secret: no value given for {name}; nothing stored", file=sys.stderr)
        return 2
    version = store_for(settings).add_version(name, value)
    print(f"stored {name} version {version} in {ROOT / settings.secrets_dir}")
    if name not in known_secrets(settings):
        print(f"note: the bridge reads no secret named {name} (see `make secrets`)")
    return 0


def list_secrets(settings: Settings) -> int:
    stored = store_for(settings).names()
    known = known_secrets(settings)
    print(f"local secrets in {ROOT / settings.secrets_dir} (values are never shown):")
    for name in sorted(set(stored) | set(known)):
        enabled, disabled = stored.get(name, ([], 0))
        if enabled:
            state = f"versions {', '.join(map(str, enabled))} (latest {enabled[-1]} in use)"
        else:
            state = "not stored"
        if disabled:
            state += f", {disabled} disabled"
        setting = f"  [{known[name]}]" if name in known else ""
        print(f"  {name:<28} {state}{setting}")
    print("store one: make secret NAME=<name>   (value from stdin or a prompt)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.secrets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="names and versions of the local secrets")
    setter = commands.add_parser("set", help="add a version of a secret (stdin or a prompt)")
    setter.add_argument("name")
    arguments = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"make secrets: {exc}", file=sys.stderr)
        return 2
    if settings.secrets_backend != "local":
        print(
            "make secret(s) manages the local store (SECRETS_BACKEND=local); in the cloud use "
            "`gcloud secrets versions add <name> --data-file=-`",
            file=sys.stderr,
        )
        return 2
    if arguments.command == "set":
        return set_secret(settings, arguments.name)
    return list_secrets(settings)


if __name__ == "__main__":
    raise SystemExit(main())
