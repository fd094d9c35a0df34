"""`make package` (devtools/package.py): deployable, deterministic function zips."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from devtools.package import ROOT, PackageError, function_names, package

COMMIT_DATE = "2024-05-06T07:08:09Z"
COMMIT_EPOCH = 1714979289
GIT = (
    "git",
    "-c",
    "user.name=test",
    "-c",
    "user.email=test@example.com",
    "-c",
    "commit.gpgsign=false",
)


def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as opened:
        return opened.namelist()


def read(archive: Path, name: str) -> bytes:
    with zipfile.ZipFile(archive) as opened:
        return opened.read(name)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small repository: two functions, a shared package, and the litter a checkout has."""
    root = tmp_path / "repo"
    for function in ("alpha", "beta"):
        write(root / "functions" / function / "main.py", f"NAME = {function!r}\n")
        write(root / "functions" / function / "requirements.txt", "requests==2.34.2\n")
    write(root / "shared" / "__init__.py", "")
    write(root / "shared" / "sub" / "module.py", "VALUE = 1\n")
    write(root / "shared" / "sub" / "data.json", "{}\n")
    write(root / "shared" / "__pycache__" / "module.cpython-311.pyc", "cache")
    write(root / "shared" / "sub" / "stale.pyc", "cache")
    write(root / "shared" / ".DS_Store", "litter")
    write(root / "shared" / "build_info.json", '{"built_at": "left over"}')
    return root


def git(root: Path, *args: str, date: str = COMMIT_DATE) -> None:
    environment = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(
        [*GIT, *args],
        cwd=root,
        env=environment,
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_same_sources_give_byte_identical_zips(tmp_path: Path) -> None:
    first = package(ROOT, tmp_path / "first")
    second = package(ROOT, tmp_path / "second")
    assert set(first) == {"api", "sync_device", "refresh_devices", "webhooks"}
    for function, archive in first.items():
        assert archive.read_bytes() == second[function].read_bytes(), function


def test_zip_holds_main_requirements_and_shared_without_litter(tree: Path, tmp_path: Path) -> None:
    archive = package(tree, tmp_path / "dist", source_date_epoch=0)["alpha"]
    assert names(archive) == [
        "main.py",
        "requirements.txt",
        "shared/__init__.py",
        "shared/build_info.json",
        "shared/sub/data.json",
        "shared/sub/module.py",
    ]
    assert read(archive, "main.py") == b"NAME = 'alpha'\n"
    assert json.loads(read(archive, "shared/build_info.json")) == {
        "built_at": "1970-01-01T00:00:00Z"
    }


def test_every_function_zip_carries_its_own_main_and_requirements(tmp_path: Path) -> None:
    for function, archive in package(ROOT, tmp_path).items():
        folder = ROOT / "functions" / function
        assert read(archive, "main.py") == (folder / "main.py").read_bytes()
        assert read(archive, "requirements.txt") == (folder / "requirements.txt").read_bytes()
        assert "shared/__init__.py" in names(archive)


def test_file_times_and_modes_do_not_change_the_zip(tree: Path, tmp_path: Path) -> None:
    before = package(tree, tmp_path / "before", source_date_epoch=0)["alpha"].read_bytes()
    module = tree / "shared" / "sub" / "module.py"
    module.chmod(0o755)
    os.utime(module, (2_000_000_000, 2_000_000_000))
    after = package(tree, tmp_path / "after", source_date_epoch=0)["alpha"].read_bytes()
    assert after == before
    with zipfile.ZipFile(io.BytesIO(after)) as opened:
        for info in opened.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644


def test_a_changed_source_changes_only_the_zips_that_contain_it(tree: Path, tmp_path: Path) -> None:
    before = {
        name: path.read_bytes()
        for name, path in package(tree, tmp_path / "0", source_date_epoch=0).items()
    }
    write(tree / "functions" / "alpha" / "main.py", "NAME = 'alpha, changed'\n")
    after_main = package(tree, tmp_path / "1", source_date_epoch=0)
    assert after_main["alpha"].read_bytes() != before["alpha"]
    assert after_main["beta"].read_bytes() == before["beta"]
    write(tree / "shared" / "sub" / "module.py", "VALUE = 2\n")
    after_shared = package(tree, tmp_path / "2", source_date_epoch=0)
    assert after_shared["beta"].read_bytes() != before["beta"]


def test_built_at_is_the_newest_commit_of_the_functions_sources(tree: Path, tmp_path: Path) -> None:
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "sources")
    write(tree / "README.md", "unrelated\n")
    git(tree, "add", "README.md")
    git(tree, "commit", "-q", "-m", "docs", date="2025-01-01T00:00:00Z")
    archive = package(tree, tmp_path / "dist")["alpha"]
    assert json.loads(read(archive, "shared/build_info.json")) == {"built_at": COMMIT_DATE}
    write(tree / "functions" / "beta" / "main.py", "NAME = 'beta, changed'\n")
    git(tree, "commit", "-q", "-am", "beta", date="2025-02-03T04:05:06Z")
    rebuilt = package(tree, tmp_path / "again")
    assert rebuilt["alpha"].read_bytes() == archive.read_bytes()
    beta_info = json.loads(read(rebuilt["beta"], "shared/build_info.json"))
    assert beta_info == {"built_at": "2025-02-03T04:05:06Z"}


def test_packaging_an_unknown_function_fails_clearly(tree: Path, tmp_path: Path) -> None:
    assert function_names(tree) == ["alpha", "beta"]
    with pytest.raises(PackageError, match="unknown functions: gamma"):
        package(tree, tmp_path, functions=["gamma"])
    (tree / "functions" / "beta" / "requirements.txt").unlink()
    with pytest.raises(PackageError, match=r"functions/beta/requirements\.txt is missing"):
        package(tree, tmp_path, functions=["beta"])


def test_packaged_api_reports_its_build_time(tmp_path: Path) -> None:
    """The zip is a working function: unpacked alone, it serves GET /versions with built_at."""
    archive = package(ROOT, tmp_path / "dist", functions=["api"], source_date_epoch=COMMIT_EPOCH)
    unpacked = tmp_path / "api"
    with zipfile.ZipFile(archive["api"]) as opened:
        opened.extractall(unpacked)
    script = (
        "import json, functions_framework, shared\n"
        "client = functions_framework.create_app('api', 'main.py').test_client()\n"
        "response = client.get('/versions')\n"
        "print(json.dumps([shared.__file__, response.status_code, response.get_json()]))\n"
    )
    # Only the unpacked folder and the installed packages: not the repository's shared/.
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=unpacked,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shared_file, status, body = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(shared_file).is_relative_to(unpacked)
    assert status == 200
    assert body["built_at"] == COMMIT_DATE


def test_the_api_zip_carries_the_status_page_and_leaflet(tmp_path: Path) -> None:
    """Issue 19: the page's files ship with the api function (no CDN, no build at deploy)."""
    zips = package(ROOT, tmp_path, functions=["api"])
    names = set(zipfile.ZipFile(zips["api"]).namelist())
    for name in ("status.html", "status.js", "status.css", "leaflet/leaflet.js"):
        assert f"static/{name}" in names
