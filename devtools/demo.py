"""`make demo`: the whole bridge on a workstation with simulated vendors, no vendor account.

A DEMO, for a first look only, and local only: it refuses to start where a cloud runtime is
recognised (`K_SERVICE` or `FUNCTION_TARGET` set) and is never deployed (devtools/package.py
packs `functions/<name>/` and `shared/` only).

It starts `make run`'s stack (devtools/run.py: the Firestore emulator, the four functions, the
scheduler loop) beside simulated vendors, the test fakes of tests/fakes speaking the vendors'
wire protocols on local ports:

- Google: one account with two trackers and an Android phone (OAuth, Nova, FCM's MCS over TLS).
  Its `secrets.json` is uploaded through the API (`PUT /auth/secrets`) as a user would; the
  scheduler loop's first refresh auto-registers the three devices, and the demo presses
  Traccar's "locate now" (`position-single`) for each, so the first locate runs at once and
  then every minute (`AUTO_REGISTER_TIMER=60`).
- Smartcar: a vehicle driving a short route; a webhook delivery every few seconds, signed with
  the demo's management token (and Smartcar's OAuth and API origins point at the fake too).
- TLINK: a cold room pushing its temperature, door and position every few seconds; once it is
  known, a pull service is registered through the API (`PUT /devices/tlink-2864/services`).
- Traccar: a stand-in (OsmAnd endpoint and REST API sharing one device table) that creates the
  devices the bridge asks for and prints one line per position it receives.

Everything lives in its own folder, `DEMO_DIR` (default `.local/demo/`, git-ignored): the
emulator's data and the demo's secrets, never `make run`'s `.local-data/` or `.secrets/`. It is
emptied at each start. Ports: `LOCAL_BASE_PORT` (default 8180) and `FIRESTORE_PORT` (default
8190), so a `make run` on 8080 can stay up. Ctrl-C, SIGTERM or SIGHUP stop everything.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

from devtools import run
from shared.secrets import LocalSecretStore

# The simulated vendors are the test fakes. devtools importing the tests package is fine here
# only because the demo is local by construction: devtools/ never reaches a deployed zip
# (tests/e2e/test_demo.py checks it), and the demo refuses a cloud runtime (`cloud_marker`).
from tests.fakes.nova import FakeGoogle, FakeTracker
from tests.fakes.osmand import DecodedPosition, OsmAndServer, TraccarDevices
from tests.fakes.smartcar import FakeVehicle, SmartcarServer
from tests.fakes.tlink import FakeTlink
from tests.fakes.traccar_api import FakeTraccarApi
from tests.unit.google.encryptor import LAST_KNOWN, Report

ROOT = run.ROOT
DEFAULT_FOLDER = ".local/demo"
MARKER = ".traccar-bridge-demo"  # only a folder holding it is ever emptied by the demo
DEFAULT_BASE_PORT = 8180
DEFAULT_FIRESTORE_PORT = 8190
CLOUD_MARKERS = ("K_SERVICE", "FUNCTION_TARGET")  # set by Cloud Run / Cloud Functions
API_TOKEN = "demo"  # noqa: S105 - the demo's own, printed in its banner; loopback only
PROJECT = "traccar-bridge-demo"
SERVICE_TIMER = 60  # seconds: the smallest sync interval the API accepts
REQUEST_TIMEOUT = 10.0  # seconds for one call to a local function
TICK = 0.5  # seconds between two looks at what the stand-in received
SMARTCAR_EVERY = 5.0  # seconds between two webhook deliveries
TLINK_EVERY = 8.0  # seconds between two TLINK pushes
GOOGLE_MOVE_EVERY = 15.0  # seconds between two new reports of each Google device
SERVICES_EVERY = 2.0  # seconds between two looks at the services, until all have run once
KNOTS_TO_KMH = 1.852

VEHICLE_ID = "7e1d2c3b-4a59-4e68-8f70-91a2b3c4d5e6"
SMARTCAR_USER_ID = "e0514ef4-5226-4d6f-9a6f-3c2b1a0f9e8d"
TLINK_USER_ID = "385"
TLINK_DEVICE_ID = 2864
TLINK_ZONE = ZoneInfo("Asia/Shanghai")  # TLINK's naive timestamps (TLINK_TIME_ZONE's default)
# A short loop around the Place de la Concorde, Paris: the Smartcar vehicle drives it.
ROUTE = (
    (48.86561, 2.32121),
    (48.86379, 2.31355),
    (48.86002, 2.31534),
    (48.85954, 2.32526),
    (48.86358, 2.32756),
)
STEPS_PER_LEG = 4
GOOGLE_DEVICES = (  # canonic id, name, phone, home
    ("demo-keys", "Keys", False, (48.85837, 2.29448)),
    ("demo-backpack", "Backpack", False, (48.86110, 2.33590)),
    ("demo-phone", "Pixel 8", True, (48.85296, 2.34990)),
)
COLD_ROOM = (31.23042, 121.47370)  # the TLINK device, in Shanghai


def cloud_marker(environ: Mapping[str, str]) -> str | None:
    """The variable that says this runs in a cloud runtime, or None on a workstation."""
    return next((name for name in CLOUD_MARKERS if environ.get(name)), None)


def demo_folder() -> Path:
    return ROOT / os.environ.get("DEMO_DIR", DEFAULT_FOLDER)


def reset_folder(folder: Path) -> None:
    """Empty the demo's folder; one the demo did not make is refused, never deleted."""
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise SystemExit(
            f"make demo: {folder} exists and is not a demo folder (no {MARKER} in it): "
            "set DEMO_DIR to an empty or new folder"
        )
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `make demo`; emptied at each start\n")


def route_point(step: int) -> tuple[float, float, float]:
    """(lat, lon, heading in degrees) of the vehicle at `step` along the looped route."""
    leg, part = divmod(step % (len(ROUTE) * STEPS_PER_LEG), STEPS_PER_LEG)
    (lat0, lon0), (lat1, lon1) = ROUTE[leg], ROUTE[(leg + 1) % len(ROUTE)]
    fraction = part / STEPS_PER_LEG
    heading = math.degrees(math.atan2((lon1 - lon0) * math.cos(math.radians(lat0)), lat1 - lat0))
    return lat0 + (lat1 - lat0) * fraction, lon0 + (lon1 - lon0) * fraction, heading % 360


@dataclass
class Vendors:
    """The simulated vendors and the Traccar stand-in, on local ports."""

    folder: Path
    api_url: str
    google: FakeGoogle = field(init=False)
    smartcar: SmartcarServer = field(init=False)
    tlink: FakeTlink = field(init=False)
    osmand: OsmAndServer = field(init=False)
    traccar_api: FakeTraccarApi = field(init=False)
    traccar_token: str = field(default_factory=lambda: secrets.token_hex(16))
    management_token: str = field(default_factory=lambda: secrets.token_hex(24))
    command_key: str = field(default_factory=lambda: secrets.token_hex(24))

    def start(self, stack: ExitStack) -> None:
        self.google = FakeGoogle(self.folder, trackers=0)
        for canonic_id, name, phone, home in GOOGLE_DEVICES:
            add = self.google.add_phone if phone else self.google.add_tracker
            move(add(canonic_id, name), home, 0)
        stack.enter_context(self.google)
        self.smartcar = stack.enter_context(
            SmartcarServer(
                client_id="demo-smartcar-client",
                client_secret=secrets.token_hex(16),
                redirect_uri=self.api_url + "/smartcar/exchange",
                management_token=self.management_token,
            )
        )
        self.smartcar.user.id = SMARTCAR_USER_ID
        self.smartcar.add_vehicle(
            FakeVehicle(VEHICLE_ID, latitude=ROUTE[0][0], longitude=ROUTE[0][1])
        )
        self.tlink = stack.enter_context(FakeTlink())
        self.tlink.set_devices(TLINK_USER_ID, [cold_room_record(datetime.now(TLINK_ZONE), 4.0)])
        devices = TraccarDevices()
        self.osmand = stack.enter_context(OsmAndServer(devices))
        self.traccar_api = stack.enter_context(FakeTraccarApi(self.traccar_token, devices=devices))

    def environment(self, secrets_dir: Path, data_dir: Path) -> dict[str, str]:
        """The bridge's settings for the demo: every vendor URL at a fake, nothing mailed."""
        return {
            "GCP_PROJECT": PROJECT,
            "SECRETS_BACKEND": "local",
            "SCHEDULER_BACKEND": "local",
            "SECRETS_DIR": str(secrets_dir),
            "LOCAL_DATA_DIR": str(data_dir),
            "API_TOKEN": API_TOKEN,
            "API_URL": self.api_url,
            "TRACCAR_SERVER_URL": self.osmand.url,
            "TRACCAR_API_URL": self.traccar_api.url,
            "TRACCAR_API_AUTH": "token",
            "TRACCAR_DEVICE_USER_ID": "",
            "TRACCAR_DEVICE_GROUP_ID": "",
            "AUTO_REGISTER_SERVICES": "true",
            "AUTO_REGISTER_TIMER": str(SERVICE_TIMER),
            "AUTO_REGISTER_DELTA": "5",
            "FCM_TIMEOUT": "10",
            **self.google.environment(),  # auth, check-in, Nova, MCS and the CA of its TLS
            "SMARTCAR_CLIENT_ID": self.smartcar.client_id,
            "SMARTCAR_REDIRECT_URI": self.smartcar.redirect_uri,
            "SMARTCAR_MODE": "simulated",
            "SMARTCAR_API_ORIGIN": self.smartcar.url,
            "SMARTCAR_AUTH_ORIGIN": self.smartcar.token_url,
            "SMARTCAR_CONNECT_ORIGIN": self.smartcar.url,
            "SMARTCAR_MANAGEMENT_ORIGIN": self.smartcar.url,
            "SMARTCAR_VEHICLE_API_URL": self.smartcar.vehicle_api_url,
            "SMARTCAR_IAM_TOKEN_URL": self.smartcar.iam_token_url,
            "TLINK_API_URL": self.tlink.url,
            "TLINK_REQUIRE_PATH_TOKEN": "true",
            "TLINK_ALLOW_UNAUTHENTICATED": "false",
            "NOTIFY_SMTP_HOST": "",
            "NOTIFY_EMAIL_TO": "",
        }

    def store_secrets(self, store: LocalSecretStore) -> None:
        """What a user stores with `make secret` before a first start (Google's secrets.json
        goes through the API instead, in `Demo.ready`)."""
        store.add_version("traccar-api-token", self.traccar_token)
        store.add_version("traccar-command-key", self.command_key)
        store.add_version("smartcar-management-token", self.management_token)
        store.add_version("smartcar-client-secret", self.smartcar.client_secret)
        credentials = self.tlink.credentials(userId=TLINK_USER_ID)
        store.add_version("tlink-credentials", json.dumps(credentials))
        store.add_version("tlink-path-token", secrets.token_hex(24))


def move(fake: FakeTracker, home: tuple[float, float], step: int) -> None:
    """A new own report near `home` (a slow circle), timed now: the next locate finds it."""
    angle = step * 0.6
    fake.recent = Report(
        "own",
        timestamp=int(time.time()),
        latitude=round(home[0] + 0.0006 * math.sin(angle), 6),
        longitude=round(home[1] + 0.0009 * math.cos(angle), 6),
        accuracy=12.0,
        status=LAST_KNOWN,
        is_own_report=True,
    )


def cold_room_record(moment: datetime, temperature: float) -> dict[str, object]:
    """The cold room as TLINK's pull API lists it (PROTOCOLS.md §4; tests/fakes/tlink.py)."""
    update = moment.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "id": TLINK_DEVICE_ID, "deviceName": "Cold room", "lat": str(COLD_ROOM[0]),
        "lng": str(COLD_ROOM[1]), "isLine": 1,
        "sensorsList": [
            {"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1,
             "value": f"{temperature:.1f}", "unit": "℃", "isLine": 1, "updateDate": update},
            {"id": 11925, "sensorName": "Position", "sensorTypeId": 3, "value": "",
             "lat": COLD_ROOM[0], "lng": COLD_ROOM[1], "updateDate": update},
        ],
    }  # fmt: skip


def tlink_push(moment: datetime, temperature: float, door_open: bool) -> bytes:
    """A TLINK push of the cold room (the shape of tests/data/tlink_push_location.json)."""
    times = moment.strftime("%H:%M:%S")
    location = f"{COLD_ROOM[0]},{COLD_ROOM[1]}"
    body = {
        "flag": "00", "deviceUserid": int(TLINK_USER_ID), "deviceId": TLINK_DEVICE_ID,
        "time": moment.strftime("%Y-%m-%d %H:%M:%S"),
        "sensorsDates": [
            {"times": times, "sensorsId": 11922, "isAlarm": "0", "sensorsTypeId": 1,
             "isLine": 1, "reVal": f"{temperature:.4f}", "value": f"{temperature:.1f}"},
            {"times": times, "sensorsId": 11925, "isAlarm": "0", "sensorsTypeId": 3,
             "isLine": 1, "reVal": location, "value": location},
            {"times": times, "sensorsId": 11926, "isAlarm": "1" if door_open else "0",
             "sensorsTypeId": 2, "isLine": 1, "reVal": str(int(door_open)),
             "value": str(int(door_open)), "switcher": str(int(door_open))},
        ],
    }  # fmt: skip
    return json.dumps(body).encode()


def smartcar_delivery(step: int, now_ms: int) -> bytes:
    """A Smartcar VEHICLE_STATE delivery, 4.0 shape (tests/data/smartcar_vehicle_state_v4.json),
    of the vehicle at `step` of its route."""
    lat, lon, heading = route_point(step)
    meta = {"oemUpdatedAt": now_ms - 1_000, "fetchedAt": now_ms - 500}
    body = {
        "eventId": str(uuid.uuid4()),
        "eventType": "VEHICLE_STATE",
        "vehicleId": VEHICLE_ID,
        "data": {
            "user": {"id": SMARTCAR_USER_ID},
            "vehicle": {"id": VEHICLE_ID, "make": "TESLA", "model": "Model 3", "year": 2020},
            "triggers": [{"code": "location-preciselocation", "name": "PreciseLocation",
                          "group": "Location"}],
            "signals": [
                {"code": "location-preciselocation", "name": "PreciseLocation",
                 "group": "Location", "meta": meta,
                 "body": {"latitude": round(lat, 6), "longitude": round(lon, 6),
                          "heading": round(heading), "locationType": "CURRENT"}},
                {"code": "odometer-traveleddistance", "name": "TraveledDistance",
                 "group": "Odometer", "meta": meta,
                 "body": {"unit": "kilometers", "value": round(10_254.3 + 0.2 * step, 1)}},
                {"code": "tractionbattery-stateofcharge", "name": "StateOfCharge",
                 "group": "TractionBattery", "meta": meta,
                 "body": {"unit": "percent", "value": max(5, 80 - step // 10)}},
            ],
        },
        "meta": {"version": "4.0", "deliveryId": str(uuid.uuid4()), "deliveredAt": now_ms,
                 "webhookId": "demo-webhook", "webhookName": "Demo", "mode": "TEST",
                 "signalCount": 3},
    }  # fmt: skip
    return json.dumps(body).encode()


def position_line(position: DecodedPosition) -> str:
    """One line per position the stand-in received: device, time, lat/lon, key attributes."""
    when = position.fix_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    where = (
        f"{position.latitude:.5f},{position.longitude:.5f}"
        if position.latitude is not None and position.longitude is not None
        else "no fix"
    )
    details = []
    if position.speed_knots is not None:
        details.append(f"speed={position.speed_knots * KNOTS_TO_KMH:.0f}km/h")
    if position.course is not None:
        details.append(f"course={position.course:.0f}")
    if position.accuracy is not None:
        details.append(f"accuracy={position.accuracy:.0f}m")
    details += [f"{key}={value}" for key, value in sorted(position.attributes.items())][:5]
    return f"TRACCAR <- {position.unique_id:<45} {when}  {where:<20} {' '.join(details)}"


class Demo:
    """The demo's part of the stack's life (devtools/run.py's `StackHooks`)."""

    def __init__(self, vendors: Vendors, path_token: str) -> None:
        self.vendors = vendors
        self.path_token = path_token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {API_TOKEN}"
        self.stop = threading.Event()
        self.worker: threading.Thread | None = None
        self.urls: dict[str, str] = {}
        self.located: set[str] = set()  # services whose first run was asked for
        self.reported: set[str] = set()  # failures said once

    def hooks(self) -> run.StackHooks:
        return run.StackHooks(ready=self.ready, running=self.running, stopping=self.stopping)

    def ready(self, urls: dict[str, str]) -> None:
        """Upload Google's secrets.json through the API, as a user would, before the loop's
        first refresh looks for the account's devices."""
        self.urls = urls
        answer = self.session.put(
            urls["api"] + "/auth/secrets",
            json=self.vendors.google.secrets(),
            timeout=REQUEST_TIMEOUT,
        )
        if answer.status_code != 200:
            raise RuntimeError(
                f"uploading the demo's Google secrets: {answer.status_code} {answer.text}"
            )

    def running(self, urls: dict[str, str]) -> None:
        self.print_banner(urls)
        self.worker = threading.Thread(target=self.work, name="demo", daemon=True)
        self.worker.start()

    def stopping(self) -> None:
        self.stop.set()
        if self.worker is not None:
            self.worker.join(timeout=REQUEST_TIMEOUT + 1)

    def print_banner(self, urls: dict[str, str]) -> None:
        api, auth = urls["api"], f"-H 'Authorization: Bearer {API_TOKEN}'"
        vendors = self.vendors
        print("=" * 78)
        print("DEMO: simulated vendors, local only (never deploy this). No vendor account used.")
        print(f"  google           {vendors.google.nova.url} (2 trackers and a phone)")
        every = f"a delivery every {SMARTCAR_EVERY:.0f} s"
        print(f"  smartcar         {vendors.smartcar.url} (vehicle {VEHICLE_ID}, {every})")
        every = f"a push every {TLINK_EVERY:.0f} s"
        print(f"  tlink            {vendors.tlink.url} (device {TLINK_DEVICE_ID}, {every})")
        print(f"  traccar stand-in {vendors.osmand.url} (OsmAnd), {vendors.traccar_api.url} (API)")
        print(f"  demo data        {demo_folder()} (emptied at each `make demo`)")
        print(f"  api token        {API_TOKEN}")
        print("  look around:")
        views = ("/devices", "/services", "/push-log", "/locations", "/smartcar/vehicles")
        for path in (*views, f"/tlink/users/{TLINK_USER_ID}/devices"):
            print(f"    curl {auth} {api}{path}")
        print(f"    status page: {api}/status (token: {API_TOKEN})")
        print("Each position the Traccar stand-in receives is printed below (TRACCAR <- ...).")
        print("=" * 78, flush=True)

    # --- the worker thread: the vendors' side of the demo --------------------------------

    def work(self) -> None:
        printed = created = 0
        step = 0
        next_smartcar = next_tlink = next_google = next_services = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_smartcar:
                next_smartcar = now + SMARTCAR_EVERY
                self.deliver_smartcar(step)
                step += 1
            if now >= next_tlink:
                next_tlink = now + TLINK_EVERY
                self.push_tlink(step)
            if now >= next_google:
                next_google = now + GOOGLE_MOVE_EVERY
                for fake, (_, _, _, home) in zip(
                    self.vendors.google.nova.trackers.values(), GOOGLE_DEVICES, strict=True
                ):
                    move(fake, home, step)
            if now >= next_services and len(self.located) < len(GOOGLE_DEVICES) + 1:
                next_services = now + SERVICES_EVERY
                self.start_services()
            for device in self.vendors.traccar_api.created[created:]:
                created += 1
                print(f"TRACCAR    device {device.unique_id} created by the bridge", flush=True)
            for position in self.vendors.osmand.positions[printed:]:
                printed += 1
                print(position_line(position), flush=True)
            self.stop.wait(TICK)

    def call(self, what: str, method: str, url: str, **kwargs: Any) -> requests.Response | None:
        """One request; the answer when it is a 2xx, else None, and a failure is said once per
        `what` (quietly once stopping: the functions may be going)."""
        try:
            answer = self.session.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            self.report(what, type(exc).__name__)
            return None
        if not answer.ok:
            self.report(what, f"{answer.status_code} {answer.text.strip()[:200]}")
            return None
        return answer

    def report(self, what: str, problem: str) -> None:
        if what not in self.reported and not self.stop.is_set():
            self.reported.add(what)
            print(f"DEMO: {what} failed: {problem}", file=sys.stderr, flush=True)

    def deliver_smartcar(self, step: int) -> None:
        body = smartcar_delivery(step, int(time.time() * 1000))
        signature = hmac.new(self.vendors.management_token.encode(), body, hashlib.sha256)
        headers = {"Content-Type": "application/json", "SC-Signature": signature.hexdigest()}
        url = self.urls["webhooks"] + "/smartcar"
        self.call("the Smartcar delivery", "POST", url, data=body, headers=headers)

    def push_tlink(self, step: int) -> None:
        moment = datetime.now(TLINK_ZONE).replace(microsecond=0)
        temperature = 4.0 + math.sin(step / 5)
        self.vendors.tlink.set_devices(TLINK_USER_ID, [cold_room_record(moment, temperature)])
        body = tlink_push(moment, temperature, door_open=step % 6 == 0)
        url = f"{self.urls['webhooks']}/tlink/{self.path_token}"
        headers = {"Content-Type": "application/json"}
        self.call("the TLINK push", "POST", url, data=body, headers=headers)

    def start_services(self) -> None:
        """Press Traccar's "locate now" once per service (the scheduler loop runs it at its
        next tick); give the TLINK device a pull service once its pushes made it known."""
        api = self.urls["api"]
        answer = self.call("listing the services", "GET", api + "/services")
        if answer is None:
            return
        services = {entry["id"] for entry in answer.json()}
        tlink_id = f"tlink-{TLINK_DEVICE_ID}"
        if tlink_id not in services:
            known = self.call("listing the devices", "GET", api + "/devices")
            if known is not None and tlink_id in json.dumps(known.json()):
                url, spec = f"{api}/devices/{tlink_id}/services", {"timer": SERVICE_TIMER}
                if self.call("registering the TLINK service", "PUT", url, json=spec):
                    services.add(tlink_id)
        # Traccar's "Send command → locate now" (PROTOCOLS.md §2b), with the command key.
        command = {"Authorization": f"Bearer {self.vendors.command_key}"}
        for device_id in sorted(services - self.located):
            url = f"{api}/devices/{device_id}/position-single"
            if self.call(f"locate now for {device_id}", "POST", url, headers=command):
                self.located.add(device_id)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n")[0])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_arguments(argv)
    marker = cloud_marker(os.environ)
    if marker is not None:
        print(
            f"make demo: refusing to start: {marker} is set, this looks like a cloud runtime. "
            "The demo runs simulated vendors and is for a workstation only.",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("LOCAL_BASE_PORT", str(DEFAULT_BASE_PORT))
    os.environ.setdefault("FIRESTORE_PORT", str(DEFAULT_FIRESTORE_PORT))
    try:
        base_port = int(os.environ["LOCAL_BASE_PORT"])
        # Before the folder is emptied: a demo already running there keeps its data.
        run.check_ports(base_port, int(os.environ["FIRESTORE_PORT"]))
    except (ValueError, run.PortsTaken) as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 2
    folder = demo_folder()
    reset_folder(folder)
    api_url = f"http://127.0.0.1:{base_port}"
    print(
        f"DEMO: starting simulated vendors and a Traccar stand-in (data in {folder}) ...",
        flush=True,
    )
    with ExitStack() as stack:
        vendors = Vendors(folder, api_url)
        vendors.start(stack)
        secrets_dir = folder / "secrets"
        store = LocalSecretStore(secrets_dir)
        vendors.store_secrets(store)
        # The stack reads its settings from the environment; the demo's win over any `.env`.
        os.environ.update(vendors.environment(secrets_dir, folder / "data"))
        demo = Demo(vendors, store.read("tlink-path-token").strip())
        return run.main(["--reset"], hooks=demo.hooks())
    return 1  # unreachable: ExitStack does not swallow exceptions; mypy wants a return


if __name__ == "__main__":
    raise SystemExit(main())
