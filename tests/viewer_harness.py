"""What the viewer tests share: `saeflow view` started on a free port, and a
headless Chromium driving its page."""

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(addr, path: str, method: str = "GET") -> tuple[int, dict | str]:
    """One HTTP request; the JSON body decoded when it is JSON."""
    conn = http.client.HTTPConnection(*addr, timeout=30)
    conn.request(method, path)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    if resp.getheader("Content-Type", "").startswith("application/json"):
        return resp.status, json.loads(body)
    return resp.status, body


@contextmanager
def serve_viewer(results: Path) -> Iterator[tuple[str, int]]:
    """`saeflow view --run results` on a free port; yields (host, port)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "saeflow.cli", "view", "--run", str(results)]
        + ["--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(("127.0.0.1", port), "/api/meta")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            proc.kill()
            raise RuntimeError(f"viewer did not start: {proc.stdout.read()}")
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def headless_chrome(profile: Path):
    """A Selenium Chrome driver on /usr/bin/chromium, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
