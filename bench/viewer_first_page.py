"""How fast the feature viewer answers and renders its first page.

Starts `saeflow view` on a results folder (read only), then times
- each API endpoint's first (cold) answer and the median of 10 warm answers;
- in headless Chromium (when /usr/bin/chromium exists): navigation until the first
  headline chips are drawn, first load after server start (browser already
  running) and the median of 5 more.

    .venv/bin/python bench/viewer_first_page.py --run results
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENDPOINTS = [
    "/",
    "/api/meta",
    "/api/headlines?limit=25",
    "/api/features?model=finetuned&layer={layer}&metric=specialization&limit=50",
    "/api/feature_info?model=finetuned&layer={layer}&id=0",
]


def timed_get(port: int, path: str) -> float:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}")
    return time.perf_counter() - t0


def start(run: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "saeflow.cli", "view", "--run", run]
        + ["--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def api_timings(run: str, layer: int) -> None:
    proc, port = start(run)
    try:
        print(f"{'endpoint':78s} {'cold s':>8s} {'warm median s':>14s} ratio")
        for path in ENDPOINTS:
            path = path.format(layer=layer)
            cold = timed_get(port, path)
            warm = statistics.median(timed_get(port, path) for _ in range(10))
            print(f"{path:78s} {cold:8.3f} {warm:14.4f} {cold / warm:5.0f}x")
    finally:
        proc.terminate()


def browser_timings(run: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    proc, port = start(run)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="viewer-bench-")
    for flag in (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync"
    ).split() + [f"--user-data-dir={profile}", "--window-size=1400,1000"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
    try:
        # Start the renderer on this origin without touching any data, so the
        # first timed load measures a cold server, not a cold browser.
        driver.get(f"http://127.0.0.1:{port}/static/viewer.css")
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            driver.get(f"http://127.0.0.1:{port}/")
            while not driver.find_elements(By.CSS_SELECTOR, "#hl-list .chip"):
                time.sleep(0.01)
            times.append(time.perf_counter() - t0)
        print(
            f"first page with chips: first load {times[0]:.3f} s (server cold), "
            f"median of next 5 {statistics.median(times[1:]):.3f} s"
        )
    finally:
        driver.quit()
        proc.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="results")
    parser.add_argument("--layer", type=int, default=None)
    args = parser.parse_args()

    manifest = json.loads((Path(args.run) / "viewer" / "manifest.json").read_text())
    layer = args.layer if args.layer is not None else manifest["layers"][0]
    api_timings(args.run, layer)
    if Path("/usr/bin/chromium").exists():
        browser_timings(args.run)
    else:
        print("browser timing skipped: /usr/bin/chromium not installed")


if __name__ == "__main__":
    main()
