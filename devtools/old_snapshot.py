# mypy: ignore-errors
# (it imports commit 0d16ee4's modules, whose names and signatures differ from this tree's)
"""Make `tests/data/firestore-0d16ee4/`: the Firestore data commit 0d16ee4 writes.

The upgrade test (`tests/integration/test_upgrade.py`) loads this export into an emulator and
runs the current code on it. The data must come from the old code itself, not from today's
idea of it, so this script runs *that commit's* code, driven by that commit's own test fakes,
against an emulator it starts and exports at the end:

    mkdir -p /tmp/old0d16 && git archive 0d16ee4 | tar -x -C /tmp/old0d16
    cd /tmp/old0d16 && PYTHONPATH=/tmp/old0d16 /work/main/.venv/bin/python \\
        /work/main/devtools/old_snapshot.py /work/main/tests/data/firestore-0d16ee4

It imports only what 0d16ee4 had (`shared.*`, `tests.fakes.*`, `devtools.emulator`'s start and
stop), so it must not be run against the current tree. What it writes, with fixed ids so the
upgrade test's fakes can answer for the same devices:

- Google: trackers `canonic-0..2` with services; one sync (token, FCM lease, credentials and
  auth state in `state/`, delivery states, push log); `canonic-2` unknown to Traccar, so its
  position waits in the outbox.
- TLINK: device `tlink-2864` pulled once (readings, cached token in `state/`), then a push.
- Smartcar: a Connect (vehicles, connect state), a pull of one vehicle, a webhook delivery.
- An excluded device and a paused service.
"""

from __future__ import annotations

import sys

# Run as a script, its own folder (this tree's devtools/) comes first on sys.path, and its
# `secrets.py` would shadow the standard library's, which pydantic imports.
sys.path[:] = [p for p in sys.path if not p.endswith("devtools")]

import copy  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

PROJECT = "traccar-bridge-test"  # the test session's project (tests/conftest.py)
EXPORT_NAME = "export"
T0 = int(time.time()) - 3_600


def main(target: Path) -> int:
    import requests

    from devtools.emulator import Emulator
    from shared import sync
    from shared.config import load_settings
    from shared.models import Device, Source
    from shared.runtime import Runtime
    from shared.services import ServiceSpec, exclude_device, upsert_service
    from shared.sources.smartcar import connect
    from shared.sources.smartcar import webhook as smartcar_webhook
    from shared.sources.tlink import webhook as tlink_webhook
    from tests.fakes.nova import FakeGoogle
    from tests.fakes.osmand import OsmAndServer
    from tests.fakes.smartcar import FakeVehicle, SmartcarServer
    from tests.fakes.tlink import FakeTlink
    from tests.unit.google.encryptor import LAST_KNOWN, Report

    old = Path.cwd()
    data = old / "tests" / "data"
    work = Path(tempfile.mkdtemp(prefix="old-snapshot-"))
    emulator = Emulator()
    emulator.start(log_path=work / "firestore.log")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
    try:
        from google.cloud import firestore

        client = firestore.Client(project=PROJECT)
        car, van = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e", "1c2d3e4f-0000-4b0c-9d3e-aaaaaaaaaaaa"
        with (
            FakeGoogle(work, trackers=3) as google,
            FakeTlink() as tlink,
            SmartcarServer(
                client_id="8229df9f-91a0-4ff0-a1ae-a1f38ee24d07",
                client_secret="sc-client-secret-b7d1f0a2",  # noqa: S106 - the fake's
                redirect_uri="https://bridge.example.test/smartcar/exchange",
            ) as smartcar,
        ):
            os.environ["SSL_CERT_FILE"] = str(google.ca_file)
            ids = ["canonic-0", "canonic-1", "tlink-2864", f"smartcar-{car}", f"smartcar-{van}"]
            with OsmAndServer(known_ids=ids) as traccar:
                settings = load_settings(
                    _env_file=None,
                    gcp_project=PROJECT,
                    secrets_backend="local",
                    secrets_dir=work / "secrets",
                    scheduler_backend="local",
                    traccar_server_url=traccar.url,
                    tlink_api_url=tlink.url,
                    smartcar_client_id=smartcar.client_id,
                    smartcar_redirect_uri=smartcar.redirect_uri,
                    smartcar_api_origin=smartcar.url,
                    smartcar_auth_origin=smartcar.token_url,
                    smartcar_connect_origin=smartcar.url,
                    **google.settings(),
                )
                runtime = Runtime(settings, firestore_client=client)
                secrets = runtime.secrets
                google.store_secrets(secrets)
                secrets.add_version(settings.smartcar_client_secret_secret, smartcar.client_secret)
                secrets.add_version(settings.smartcar_management_token_secret, "sc-management")
                secrets.add_version(
                    "tlink-credentials", json.dumps(tlink.credentials(userId="385"))
                )

                # Google
                for index, tracker in enumerate(google.trackers):
                    tracker.recent = Report(
                        "own", timestamp=T0 + index, latitude=48.85 + index, longitude=2.35,
                        altitude=30, accuracy=5.0, is_own_report=True, status=LAST_KNOWN,
                    )  # fmt: skip
                    canonic = tracker.tracker.canonic_id
                    runtime.store.devices.put(
                        Device(id=canonic, source=Source.GOOGLE, name=tracker.tracker.name,
                               traccar_unique_id=canonic)
                    )  # fmt: skip
                    upsert_service(runtime, canonic, ServiceSpec(timer=600, delta=5))
                sync.sync_device(runtime, "canonic-0")

                # TLINK: a pull, then a push
                tlink.add_device("385", _cold_room())
                runtime.store.devices.put(
                    Device(id="tlink-2864", source=Source.TLINK, traccar_unique_id="tlink-2864")
                )
                upsert_service(runtime, "tlink-2864", ServiceSpec(timer=300, delta=0))
                sync.sync_device(runtime, "tlink-2864")
                push = json.loads((data / "tlink_push_location.json").read_bytes())
                tlink_webhook.receive(
                    runtime, json.dumps(push).encode(), signature_header=None, path_token=None
                )

                # Smartcar: Connect two vehicles, pull one, one webhook delivery
                for vehicle in (car, van):
                    smartcar.add_vehicle(FakeVehicle(vehicle))
                started = connect.start(runtime)
                back = requests.get(started.authorize_url, allow_redirects=False, timeout=10)
                query = back.headers["Location"].split("?", 1)[1]
                connect.exchange(
                    runtime,
                    connect.ExchangeQuery(**{k: v[0] for k, v in parse_qs(query).items()}),
                )
                for vehicle in (car, van):
                    runtime.store.devices.put(
                        Device(id=vehicle, source=Source.SMARTCAR,
                               traccar_unique_id=f"smartcar-{vehicle}")
                    )  # fmt: skip
                upsert_service(runtime, car, ServiceSpec(timer=900, delta=10))
                sync.sync_device(runtime, car)
                event = json.loads((data / "smartcar_vehicle_state_v4.json").read_text())
                event = copy.deepcopy(event)
                event["eventId"] = str(uuid.UUID(int=1))
                raw = json.dumps(event).encode()
                signed = hmac.new(b"sc-management", raw, hashlib.sha256).hexdigest()
                smartcar_webhook.receive(runtime, raw, signed)

                # A paused service and an excluded device
                upsert_service(runtime, van, ServiceSpec(timer=900, delta=0))
                runtime.scheduler.pause(van)
                service = runtime.store.services.get(van)
                assert service is not None
                runtime.store.services.put(service.model_copy(update={"paused": True}))
                exclude_device(runtime, "canonic-9")
        _export(emulator.address, target)
    finally:
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"exported to {target}")
    return 0


def _cold_room() -> dict[str, object]:
    update = "2019-05-10 14:16:21"
    return {
        "id": 2864, "deviceName": "Cold room", "lat": "31.2304", "lng": "121.4737", "isLine": 1,
        "sensorsList": [
            {"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1, "value": "5.0",
             "unit": "℃", "isLine": 1, "updateDate": update},
            {"id": 11923, "sensorName": "Door", "sensorTypeId": 2, "value": "0",
             "updateDate": update},
        ],
    }  # fmt: skip


def _export(address: str, target: Path) -> None:
    """The emulator's REST export (0d16ee4's devtools/emulator.py had no `export`)."""
    # Only the export is replaced: the folder's README stays.
    shutil.rmtree(target / EXPORT_NAME, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    body = {
        "database": f"projects/{PROJECT}/databases/(default)",
        "export_directory": str(target.resolve()),
        "export_name": EXPORT_NAME,
    }
    request = urllib.request.Request(
        f"http://{address}/emulator/v1/projects/{PROJECT}:export",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60):  # noqa: S310 - loopback
        pass


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
