"""What a cold function instance loads to answer its first request (SPEC.md: cold start).

Each case starts one function in a fresh interpreter as functions-framework loads it, sends it
the request `bench/cold_start.py` times, and lists the modules loaded by the answer. How long
that takes is the benchmark's business; these tests keep a vendor stack, or a module the
request does not need, from creeping back into the path, and check that loading a function
freezes what it loaded before the fork (`shared.runtime.freeze_loaded_objects`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.emulator import Emulator
from shared.models import Source
from shared.runtime import Runtime
from shared.sources.tlink.source import TlinkSource
from tests.conftest import PROJECT

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60  # seconds for a cold interpreter to import and answer on a busy CI box

# Run in the fresh interpreter: load the function, send one request, print what is loaded
# and how many objects loading the function left frozen for the fork.
FIRST_REQUEST = """
import gc, json, sys
import functions_framework
source, target, method, path, body = sys.argv[1:6]
app = functions_framework.create_app(target, source)
frozen = gc.get_freeze_count()
response = app.test_client().open(path, method=method, json=json.loads(body) if body else None)
answer = {"status": response.status_code, "modules": sorted(sys.modules), "frozen": frozen}
print(json.dumps(answer))
"""

# The vendors' own libraries: protobuf decoding and the crypto of the Google locate, the FCM
# client, Google's OAuth and the Smartcar SDK.
VENDOR_LIBRARIES = ("gpsoauth", "firebase_messaging", "Crypto", "ecdsa", "smartcar")
VENDOR_SOURCES = ("shared.sources.google", "shared.sources.smartcar", "shared.sources.tlink")


@dataclass(frozen=True)
class FirstAnswer:
    status: int
    modules: set[str]  # loaded by the answer
    frozen: int  # objects out of the collector's reach once the function's module loaded


def first_request(
    emulator: Emulator, workdir: Path, function: str, method: str, path: str, body: str = ""
) -> FirstAnswer:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "PYTHONPATH": str(ROOT),
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "GCP_PROJECT": PROJECT,
        "SECRETS_BACKEND": "local",
        "SECRETS_DIR": str(workdir / "secrets"),
        "SCHEDULER_BACKEND": "local",
    }
    source = ROOT / "functions" / function / "main.py"
    result = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, str(source), function, method, path, body],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=True,
    )
    answer = json.loads(result.stdout.splitlines()[-1])
    return FirstAnswer(answer["status"], set(answer["modules"]), answer["frozen"])


def loaded(modules: set[str], *packages: str) -> list[str]:
    """The modules of `modules` that are one of `packages` or inside one."""
    return sorted(
        name
        for name in modules
        if any(name == package or name.startswith(package + ".") for package in packages)
    )


@pytest.mark.usefixtures("firestore_client")  # an empty database
def test_api_health_loads_no_vendor_and_no_other_route_module(
    emulator: Emulator, tmp_path: Path
) -> None:
    answer = first_request(emulator, tmp_path, "api", "GET", "/health")
    modules = answer.modules

    assert answer.status == 200
    assert loaded(modules, *VENDOR_LIBRARIES, *VENDOR_SOURCES) == []
    not_needed = ("shared.openapi", "shared.services", "shared.sync", "shared.pipeline")
    # The status page's report (issue 19) loads with its own route only.
    assert loaded(modules, "shared.status_report") == []
    assert loaded(modules, *not_needed, "shared.traccar", "shared.notify") == []


@pytest.mark.usefixtures("firestore_client")
def test_sync_device_answers_an_unknown_device_without_the_pipeline_or_a_vendor(
    emulator: Emulator, tmp_path: Path
) -> None:
    answer = first_request(
        emulator, tmp_path, "sync_device", "POST", "/", '{"device_id": "never-seen"}'
    )
    modules = answer.modules

    assert answer.status == 404
    assert loaded(modules, *VENDOR_LIBRARIES, *VENDOR_SOURCES) == []
    assert loaded(modules, "shared.pipeline", "shared.traccar") == []


@pytest.mark.usefixtures("firestore_client")
def test_refresh_devices_without_credentials_loads_no_locate_stack(
    emulator: Emulator, tmp_path: Path
) -> None:
    answer = first_request(emulator, tmp_path, "refresh_devices", "POST", "/")
    modules = answer.modules

    assert answer.status == 200
    assert loaded(modules, *VENDOR_LIBRARIES) == []
    # Nothing to locate, decode, notify or register; TLINK has no part in the refresh.
    locate = ("shared.sources.google.proto", "shared.sources.google.decode")
    assert loaded(modules, *locate, "shared.notify", "shared.services") == []
    assert loaded(modules, "shared.sources.tlink", "shared.store.smartcar") == []
    # The refresh needs the account and its refresh, not the locate side of the Google stack
    # (`GoogleStack` builds the source, places and ringer on first use).
    google = "shared.sources.google."
    locate_side = ("source", "lease", "checkin", "spot", "places", "ring")
    assert loaded(modules, *(google + name for name in locate_side), "shared.store.places") == []


@pytest.mark.parametrize(
    ("function", "method", "body"),
    [("api", "GET", ""), ("sync_device", "POST", "{}"), ("refresh_devices", "GET", "")],
)
@pytest.mark.usefixtures("firestore_client")
def test_loading_a_function_freezes_what_it_loaded_for_the_fork(
    emulator: Emulator, tmp_path: Path, function: str, method: str, body: str
) -> None:
    # Any answer will do (a 400 or 405 touches no vendor): loading the module is the point.
    answer = first_request(emulator, tmp_path, function, method, "/", body)

    assert answer.frozen > 0


def test_runtime_sources_build_each_vendor_once_on_lookup(runtime: Runtime) -> None:
    sources = runtime.sources

    assert set(sources) == set(Source)
    assert len(sources) == len(Source)
    tlink = sources[Source.TLINK]
    assert isinstance(tlink, TlinkSource)
    assert sources.get(Source.TLINK) is tlink
    assert sources.get("no such vendor") is None  # type: ignore[call-overload]
