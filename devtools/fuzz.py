"""`make fuzz`: schemathesis against a running API, every phase, every operation.

    python -m devtools.fuzz --url http://127.0.0.1:8080 --token "$API_TOKEN" --max-examples 300

Runs `schemathesis run` on the checked-in OpenAPI document (`shared/openapi.json`) with the
examples, coverage, fuzzing and stateful phases (the stateful one follows the document's
links from `GET /devices` and `GET /smartcar/vehicles` to the routes taking their ids), the
checks `not_a_server_error` (a 5xx only where the document lists it for the operation) and
`json_errors` (`devtools/fuzz_hooks.py`). `tests/resilience/test_fuzz_http.py` runs the same
against the functions on a local socket with a small count; `make fuzz` against `make run`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "shared" / "openapi.json"
PHASES = "examples,coverage,fuzzing,stateful"
CHECKS = "not_a_server_error,json_errors"
DEFAULT_MAX_EXAMPLES = 300  # per operation (issue 12)
DEFAULT_SEED = 12
NOT_SERVER_ERRORS = ["2xx", "3xx", "4xx"]


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def config(document: dict[str, Any]) -> str:
    """schemathesis.toml: per operation, the 5xx statuses the document lists are expected."""
    lines = ["[checks.not_a_server_error]", f"expected-statuses = {_toml_list(NOT_SERVER_ERRORS)}"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            listed = sorted(code for code in operation["responses"] if code.startswith("5"))
            if not listed:
                continue
            lines += [
                "",
                "[[operations]]",
                f"include-path = {json.dumps(path)}",
                f"include-method = {json.dumps(method.upper())}",
                f"checks.not_a_server_error.expected-statuses = "
                f"{_toml_list(NOT_SERVER_ERRORS + listed)}",
            ]
    return "\n".join(lines) + "\n"


def command(
    *, url: str, token: str | None, max_examples: int, seed: int, config_file: Path
) -> list[str]:
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "--config-file",
        str(config_file),
        "run",
        str(DOCUMENT),
        "--url",
        url,
        "--phases",
        PHASES,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--generation-deterministic",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
    ]
    if token:
        argv += ["--header", f"Authorization: Bearer {token}"]
    return argv


def run(
    *,
    url: str,
    token: str | None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    seed: int = DEFAULT_SEED,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run schemathesis; its output is in the result (`stdout`, the summary at its end)."""
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "schemathesis.toml"
        config_file.write_text(config(json.loads(DOCUMENT.read_text())))
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "devtools.fuzz_hooks"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        argv = command(
            url=url,
            token=token,
            max_examples=max_examples,
            seed=seed,
            config_file=config_file,
        )
        return subprocess.run(
            argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("FUZZ_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("API_TOKEN"))
    parser.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    arguments = parser.parse_args()
    result = run(
        url=arguments.url,
        token=arguments.token,
        max_examples=arguments.max_examples,
        seed=arguments.seed,
    )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
