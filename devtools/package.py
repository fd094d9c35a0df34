"""`make package`: one deployable zip per function in `dist/` (`python -m devtools.package`).

A zip holds what Cloud Functions builds from, at its root: the function's `main.py` and
`requirements.txt`, and the `shared/` package beside them. The Functions Framework puts
`main.py`'s folder on `sys.path`, so `import shared` resolves inside the zip exactly as it does
in the repository. `shared/build_info.json` (`{"built_at": ...}`) is added for `GET /versions`.
Nothing else goes in: not `devtools/` (`make run`, `make demo` and its simulated vendors) nor
`tests/` (tests/e2e/test_demo.py checks every zip for them).

The zips are deterministic: the same sources give the same bytes. Terraform names each uploaded
object after its zip's MD5 (infra/terraform/storage.tf), so a function is redeployed when, and
only when, its own sources changed. Hence: entries sorted, every timestamp 1980-01-01 (the zip
epoch), every mode 0644, caches and hidden files left out, and `built_at` taken from the newest
commit touching the function's sources (or `SOURCE_DATE_EPOCH` when set, as reproducible-build
tools do), never from the wall clock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "dist"
BUILD_INFO = "shared/build_info.json"
# The earliest time a zip entry can hold; any fixed value would do, this one is conventional.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Regular file, rw-r--r--: the mode Cloud Build sees whatever the checkout's umask was.
FILE_MODE = 0o100644
UNIX = 3  # zip "made by" system; ZipFile writes 0 on Windows, which would change the bytes
GIT_TIMEOUT = 30.0  # seconds; a local `git log` answers in milliseconds
_EXCLUDED_DIRS = frozenset({"__pycache__"})
_EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo"})


class PackageError(Exception):
    """A function folder cannot be packaged (a missing main.py or requirements.txt)."""


def function_names(root: Path) -> list[str]:
    """The functions of the repository: each folder of `functions/` holding a `main.py`."""
    return sorted(path.parent.name for path in (root / "functions").glob("*/main.py"))


def _packaged(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return (
        path.is_file()
        and not any(part in _EXCLUDED_DIRS or part.startswith(".") for part in parts)
        and path.suffix not in _EXCLUDED_SUFFIXES
    )


def source_files(root: Path, function: str) -> dict[str, Path]:
    """What goes into the function's zip: archive name → file, build_info.json excepted."""
    folder = root / "functions" / function
    files: dict[str, Path] = {}
    for name in ("main.py", "requirements.txt"):
        if not (folder / name).is_file():
            raise PackageError(f"functions/{function}/{name} is missing")
        files[name] = folder / name
    # A function's own files beside main.py (the api's status page: functions/api/static/).
    for path in (folder / "static").rglob("*"):
        if _packaged(path, folder):
            files[path.relative_to(folder).as_posix()] = path
    for path in (root / "shared").rglob("*"):
        if _packaged(path, root):
            files[path.relative_to(root).as_posix()] = path
    # A build_info.json left in a checkout must not override the one made for this build.
    files.pop(BUILD_INFO, None)
    return files


def source_epoch(root: Path, paths: Sequence[Path]) -> int:
    """When the sources last changed: the newest commit touching them, in seconds.

    Outside a git checkout (a source tarball), the newest modification time of the files:
    stable for one tree, though a fresh copy with new mtimes would change `built_at`.
    """
    relative = [path.relative_to(root).as_posix() for path in paths]
    try:
        result = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "--", *relative],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError):
        result = None
    if result is not None and result.stdout.strip():
        return int(result.stdout.strip())
    return max(int(path.stat().st_mtime) for path in paths)


def build_info(epoch: int) -> bytes:
    built_at = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (json.dumps({"built_at": built_at}, sort_keys=True) + "\n").encode()


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = UNIX
    info.external_attr = FILE_MODE << 16
    return info


def write_zip(entries: dict[str, bytes], target: Path) -> None:
    """Write the entries, sorted by name, with fixed metadata; atomically replaces `target`."""
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in sorted(entries):
            archive.writestr(_entry(name), entries[name], compresslevel=9)
    partial.replace(target)


def package_function(
    root: Path, function: str, out_dir: Path, *, source_date_epoch: int | None = None
) -> Path:
    """Build `<out_dir>/<function>.zip` and return its path."""
    files = source_files(root, function)
    if source_date_epoch is None:
        source_date_epoch = source_epoch(root, [root / "functions" / function, root / "shared"])
    entries = {name: path.read_bytes() for name, path in files.items()}
    entries[BUILD_INFO] = build_info(source_date_epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{function}.zip"
    write_zip(entries, target)
    return target


def package(
    root: Path,
    out_dir: Path,
    *,
    functions: Sequence[str] = (),
    source_date_epoch: int | None = None,
) -> dict[str, Path]:
    """Build the zip of each named function (every function when none is named)."""
    known = function_names(root)
    unknown = sorted(set(functions) - set(known))
    if unknown:
        raise PackageError(f"unknown functions: {', '.join(unknown)} (known: {', '.join(known)})")
    return {
        name: package_function(root, name, out_dir, source_date_epoch=source_date_epoch)
        for name in functions or known
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("functions", nargs="*", help="functions to package (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    try:
        built = package(
            ROOT,
            args.out,
            functions=args.functions,
            source_date_epoch=int(epoch) if epoch else None,
        )
    except PackageError as exc:
        print(f"package: {exc}")
        return 2
    for path in built.values():
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        print(f"{path}  {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
