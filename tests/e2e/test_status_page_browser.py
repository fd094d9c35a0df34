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


# Installed before the page's own scripts (Chrome DevTools' addScriptToEvaluateOnNewDocument):
# the test moves the page's clock and its interval timers by hand, decides what the Page
# Visibility API says, and counts the page's reads of status.json. The page's logic runs as is.
CONTROLLED_CLOCK = """
(() => {
  const realNow = Date.now.bind(Date);
  const realSetInterval = window.setInterval.bind(window);
  const realClearInterval = window.clearInterval.bind(window);
  const realFetch = window.fetch.bind(window);
  const timers = new Map();
  let offset = 0;
  let visibility = "visible";
  Date.now = () => realNow() + offset;
  window.setInterval = (callback, ms) => {
    const id = realSetInterval(() => {}, 2 ** 31 - 1);  // never fires by itself
    timers.set(id, { callback, ms, due: Date.now() + ms });
    return id;
  };
  window.clearInterval = (id) => { timers.delete(id); realClearInterval(id); };
  Object.defineProperty(document, "visibilityState", { get: () => visibility });
  Object.defineProperty(document, "hidden", { get: () => visibility !== "visible" });
  window.__reads = 0;
  window.__inFlight = 0;
  window.fetch = (resource, init) => {
    if (String(resource).includes("status.json")) window.__reads += 1;
    window.__inFlight += 1;
    return realFetch(resource, init).finally(() => { window.__inFlight -= 1; });
  };
  window.__advance = (ms) => {  // what `ms` of waiting would do, one timer period at a time
    const end = Date.now() + ms;
    for (;;) {
      const next = [...timers.entries()].sort((a, b) => a[1].due - b[1].due)[0];
      if (!next || next[1].due > end) break;
      offset += next[1].due - Date.now();
      next[1].due += next[1].ms;
      next[1].callback();
    }
    offset += end - Date.now();
  };
  window.__setVisibility = (state) => {
    visibility = state;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""


def test_the_page_refreshes_every_minute_while_visible_and_stops_after_fifteen_idle_minutes(
    seeded: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": CONTROLLED_CLOCK}
    )
    try:
        browser.execute_script("sessionStorage.clear()")
        browser.get(seeded + "/status")
        sign_in(browser, TOKEN)
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#devices tr[data-device]"))

        def reads() -> int:
            return int(browser.execute_script("return window.__reads"))

        def settled() -> None:  # what a read started has shown (real reads take real time)
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(browser, WAIT, poll_frequency=0.02).until(
                lambda d: d.execute_script("return window.__inFlight") == 0
            )
            time.sleep(0.05)  # the answer's rendering, after the fetch settles

        def advance(seconds: float) -> None:
            # A minute at a time, each read settled before the next minute: as in real time.
            while seconds > 0:
                step = min(seconds, 60)
                browser.execute_script("window.__advance(arguments[0])", step * 1000)
                settled()
                seconds -= step

        signed_in = reads()
        advance(59)
        assert reads() == signed_in  # not before the minute is up
        advance(1)
        assert reads() == signed_in + 1  # every 60 s while visible, without a reload
        advance(60)
        assert reads() == signed_in + 2

        browser.execute_script("window.__setVisibility('hidden')")
        advance(180)
        assert reads() == signed_in + 2  # a hidden tab reads nothing
        browser.execute_script("window.__setVisibility('visible')")
        settled()
        assert reads() == signed_in + 3  # back to a tab whose data aged: read at once

        advance(16 * 60)  # no interaction for more than 15 minutes
        idle = reads()
        advance(10 * 60)
        assert reads() == idle  # stopped for good, until the user comes back
        assert "Paused after 15 minutes" in browser.find_element(By.ID, "refresh-state").text

        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.SHIFT)  # the user is back
        wait_for(browser, lambda d: reads() == idle + 1)
        advance(60)
        assert reads() == idle + 2  # and the minute's refresh with it
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )
