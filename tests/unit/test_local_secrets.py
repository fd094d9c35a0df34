"""The local secrets backend: numbered versions in 0600 files, in a 0700 folder."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import BridgeError
from shared.secrets import LocalSecretStore, SecretNotFound, read_json

WRITERS = 8
VERSIONS_PER_WRITER = 25


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / ".secrets"


@pytest.fixture
def store(directory: Path) -> LocalSecretStore:
    return LocalSecretStore(directory)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    # With no umask to help, only the store's own modes keep other users out.
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_versions_are_numbered_and_read_returns_the_latest(store: LocalSecretStore) -> None:
    assert store.add_version("traccar-api-token", "first") == "1"
    assert store.add_version("traccar-api-token", "second") == "2"

    assert store.read("traccar-api-token") == "second"


def test_value_is_read_back_exactly(store: LocalSecretStore) -> None:
    value = '{"aas_token": "aas_et/x"}\n  trailing spaces and ünïcödé  \n'
    store.add_version("google-secrets", value)

    assert store.read("google-secrets") == value


def test_read_json_parses_the_latest_version(store: LocalSecretStore) -> None:
    store.add_version("google-secrets", '{"aas_token": "old"}')
    store.add_version("google-secrets", '{"aas_token": "new", "keys": [1, 2]}')

    assert read_json(store, "google-secrets") == {"aas_token": "new", "keys": [1, 2]}


def test_missing_secret_raises_secret_not_found(store: LocalSecretStore) -> None:
    with pytest.raises(SecretNotFound) as caught:
        store.read("never-written")

    assert isinstance(caught.value, BridgeError)
    assert caught.value.status == 404


def test_secrets_are_kept_apart_by_name(store: LocalSecretStore) -> None:
    store.add_version("one", "value of one")
    store.add_version("two", "value of two")

    assert store.read("one") == "value of one"
    assert store.read("two") == "value of two"
    assert store.add_version("one", "again") == "2"


def test_disable_versions_keeps_only_the_given_version_readable(store: LocalSecretStore) -> None:
    for value in ("v1", "v2", "v3"):
        store.add_version("token", value)

    assert store.disable_versions("token", keep="3") == 2

    assert store.read("token") == "v3"
    assert store.disable_versions("token", keep="3") == 0  # nothing left to disable


def test_disabling_the_latest_makes_the_kept_older_version_current(
    store: LocalSecretStore,
) -> None:
    store.add_version("token", "good")
    store.add_version("token", "bad")

    store.disable_versions("token", keep="1")

    assert store.read("token") == "good"


def test_disabling_every_version_leaves_nothing_to_read(store: LocalSecretStore) -> None:
    store.add_version("token", "v1")
    store.add_version("token", "v2")

    assert store.disable_versions("token") == 2

    with pytest.raises(SecretNotFound):
        store.read("token")


def test_version_numbers_are_not_reused_after_disabling(store: LocalSecretStore) -> None:
    store.add_version("token", "v1")
    store.add_version("token", "v2")
    store.disable_versions("token")

    assert store.add_version("token", "v3") == "3"
    assert store.read("token") == "v3"


def test_disable_versions_of_missing_secret_disables_nothing(store: LocalSecretStore) -> None:
    assert store.disable_versions("never-written") == 0


def test_destroy_disabled_removes_all_but_the_newest_disabled_versions(
    store: LocalSecretStore, directory: Path
) -> None:
    for number in range(1, 6):
        store.add_version("token", f"v{number}")
    store.disable_versions("token", keep="5")

    assert store.destroy_disabled("token", keep=2, limit=1) == 1
    assert store.destroy_disabled("token", keep=2, limit=10) == 1
    assert store.destroy_disabled("token", keep=2, limit=10) == 0

    assert sorted(p.name for p in (directory / "token").iterdir()) == [
        "3.disabled", "4.disabled", "5"]  # fmt: skip
    assert store.read("token") == "v5" and store.add_version("token", "v6") == "6"
    assert store.destroy_disabled("never-written", keep=2, limit=10) == 0


def test_files_are_0600_and_folders_0700(
    store: LocalSecretStore, directory: Path, permissive_umask: None
) -> None:
    store.add_version("token", "v1")
    store.add_version("token", "v2")

    assert mode(directory) == 0o700
    assert mode(directory / "token") == 0o700
    files = list((directory / "token").iterdir())
    assert len(files) == 2
    assert all(mode(path) == 0o600 for path in files)


def test_existing_open_secrets_folder_is_closed_to_others(
    store: LocalSecretStore, directory: Path
) -> None:
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)

    store.add_version("token", "v1")

    assert mode(directory) == 0o700


@pytest.mark.parametrize(
    "name",
    ["../x", "../../etc/passwd", "a/b", "/abs", ".", "..", "", "with space", "x" * 256, "name\n"],
)
def test_invalid_names_are_rejected_before_touching_the_disk(
    store: LocalSecretStore, tmp_path: Path, name: str
) -> None:
    before = sorted(tmp_path.rglob("*"))

    with pytest.raises(ValueError, match="invalid secret name"):
        store.add_version(name, "value")
    with pytest.raises(ValueError, match="invalid secret name"):
        store.read(name)
    with pytest.raises(ValueError, match="invalid secret name"):
        store.disable_versions(name)

    assert sorted(tmp_path.rglob("*")) == before


def test_concurrent_writers_never_lose_or_overwrite_a_version(
    store: LocalSecretStore, directory: Path
) -> None:
    start = threading.Barrier(WRITERS)
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(writer: int) -> None:
        start.wait()
        for n in range(VERSIONS_PER_WRITER):
            value = f"writer {writer} value {n}"
            try:
                version = store.add_version("shared-token", value)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                assert version not in results, f"version {version} handed out twice"
                results[version] = value

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    total = WRITERS * VERSIONS_PER_WRITER
    assert sorted(int(version) for version in results) == list(range(1, total + 1))
    folder = directory / "shared-token"  # the documented layout `<dir>/<name>/<n>`
    for version, value in results.items():
        assert (folder / version).read_text(encoding="utf-8") == value
    assert store.read("shared-token") == results[str(total)]


def test_reader_never_sees_a_half_written_version(store: LocalSecretStore) -> None:
    value = "x" * 200_000  # large enough that writing it is not one instant
    store.add_version("big", value)
    stop = threading.Event()
    seen: set[int] = set()

    def read() -> None:
        while not stop.is_set():
            seen.add(len(store.read("big")))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            store.add_version("big", value)
    finally:
        stop.set()
        reader.join()

    assert seen == {len(value)}
