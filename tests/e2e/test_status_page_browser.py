"""The status page in a real browser (issue 19): headless Chromium (Debian's `chromium` and
`chromium-driver`, which `make test` installs in CI) driven by Selenium against `make run`
(`devtools.run`) with seeded data. The page signs in, lists the devices, shows an error and an
outbox, puts a marker per positioned device on the map, pauses a device from the keyboard,
logs out on a revoked token, fits 360 px; its screenshot goes to docs/status-page.png."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT
from tests.fakes import status_seed

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "status-page.png"
TOKEN = "browser-test-token-5f2a"
START_TIMEOUT = 120  # seconds: the emulator and four functions on a busy CI box
WAIT = 20  # seconds for the page to show what it read
# What the machine's probe found Chromium needs as root in this closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER) and os.environ.get("CI") != "true":
    pytest.skip(
        "no chromium/chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )


def free_ports(count: int) -> int:
    """The first of `count` consecutive free local ports (make run uses base..base+3)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65_000:
            continue
        try:
            sockets = []
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def bridge() -> Iterator[tuple[str, str]]:
    """`make run` in a scratch data folder; yields the API URL and the emulator address."""
    base, firestore_port = free_ports(4), free_ports(1)
    work = Path(tempfile.mkdtemp(prefix="status-browser-"))
    env = {
        **os.environ,
        "API_TOKEN": TOKEN,
        "GCP_PROJECT": PROJECT,
        "LOCAL_BASE_PORT": str(base),
        "FIRESTORE_PORT": str(firestore_port),
        "LOCAL_DATA_DIR": str(work / "data"),
        "SECRETS_DIR": str(work / "secrets"),
    }
    env.pop("FIRESTORE_EMULATOR_HOST", None)
    log = (work / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while "Ctrl-C stops everything" not in (work / "run.log").read_text(errors="replace"):
            assert process.poll() is None, (work / "run.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "make run did not start"
            time.sleep(0.5)
        banner = (work / "run.log").read_text(errors="replace")
        assert f"http://127.0.0.1:{base}/status" in banner  # issue 19: the banner names it
        yield f"http://127.0.0.1:{base}", f"127.0.0.1:{firestore_port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def seeded(bridge: tuple[str, str]) -> str:
    from google.cloud import firestore

    url, emulator = bridge
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator
    try:
        status_seed.seed(firestore.Client(project=PROJECT))
    finally:
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    return url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="status-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER or "chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def sign_in(driver: Any, token: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = wait_for(driver, lambda d: d.find_element(By.ID, "token"))
    wait_for(driver, lambda d: field.is_displayed())
    field.clear()
    field.send_keys(token, Keys.ENTER)  # the keyboard alone


def test_the_status_page_in_chromium(seeded: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(seeded + "/status")
    sign_in(browser, "not-the-token")
    error = wait_for(browser, lambda d: d.find_element(By.ID, "login-error").text)
    assert "Wrong token" in error

    sign_in(browser, TOKEN)
    rows = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#devices tr[data-device]"))
    assert len(rows) == len(status_seed.DEVICES)
    table = browser.find_element(By.ID, "devices").text
    assert status_seed.FAILING_ERROR in table  # the failing device's error
    assert "2 waiting" in table and status_seed.OUTBOX_ERROR in table  # its outbox
    assert "1 parked" in table and "excluded" in table
    markers = browser.find_elements(By.CSS_SELECTOR, "#map path.device-marker")
    assert len(markers) == len(status_seed.DEVICES)  # each seeded device has a position
    assert "expired" not in browser.find_element(By.ID, "overview").text

    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    # An action from the keyboard: Enter on the Keys row's Pause button.
    pause = browser.find_element(By.CSS_SELECTOR, 'button[aria-label="Pause Keys"]')
    pause.send_keys(Keys.ENTER)
    message = wait_for(
        browser, lambda d: "paused" in d.find_element(By.ID, "message").text and d
    ).find_element(By.ID, "message")
    assert message.text == "Pause Keys: paused"
    keys_row = wait_for(
        browser,
        lambda d: "paused by you" in d.find_element(By.CSS_SELECTOR, '[data-device="keys"]').text,
    )
    assert keys_row
    browser.find_element(By.CSS_SELECTOR, 'button[aria-label="Resume Keys"]').send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "Resume Keys: resumed" in d.find_element(By.ID, "message").text)

    # Readable at 360 px: no sideways scrolling.
    browser.set_window_size(360, 800)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= browser.execute_script("return window.innerWidth")
    browser.set_window_size(1280, 1000)

    # A token revoked while the tab is open: the next read logs out.
    browser.execute_script("sessionStorage.setItem('traccar-bridge-token', 'revoked')")
    browser.find_element(By.ID, "refresh").click()
    revoked = wait_for(browser, lambda d: d.find_element(By.ID, "login-error").text)
    assert "revoked" in revoked
    assert browser.execute_script("return sessionStorage.getItem('traccar-bridge-token')") is None
