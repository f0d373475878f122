"""End to end in a real headless browser: ``streamlit run app.py``, open Compare, upload a PNG, see the results.

Needs the Python ``playwright`` package and a Chromium at /usr/bin/chromium (Debian's ``chromium`` package); the test
is skipped, naming the missing piece, when either is absent. Nothing is fetched from the network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_models_dir, tmp_path):
    """The app on a free port with the tiny models; always terminated, its log attached to any failure."""
    port = _free_port()
    env = dict(os.environ, SHARPKD_MODELS=str(tiny_models_dir), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log_path = tmp_path / "streamlit.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, f"streamlit exited early:\n{log_path.read_text()}"
            assert time.time() < deadline, f"streamlit did not start:\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_upload_on_compare_page_shows_outputs_and_metrics(server, photo, tmp_path):
    url, log_path = server
    png = tmp_path / "photo.png"
    Image.fromarray(np.ascontiguousarray(photo)).save(png)
    failed_requests: list[str] = []

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_test_id("stSidebarNav").get_by_text("Compare", exact=True).click()
            page.get_by_text("Upload", exact=True).click()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(png))

            page.get_by_text("degraded: vc x1").first.wait_for(timeout=120_000)
            page.get_by_text("PSNR", exact=False).first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # drawn last: the page is complete
            for label in ("original (sharp)", "teacher", "student", "unsharp"):
                assert page.get_by_text(label, exact=True).count() >= 1, label
            panels = page.locator('[data-testid="stImage"] img')
            assert panels.count() >= 10  # five panels and their five zoomed crops
            assert all(panels.nth(i).evaluate("img => img.naturalWidth > 0") for i in range(panels.count()))
            metrics = page.get_by_text("dB · SSIM", exact=False)
            assert metrics.count() >= 4 and metrics.first.is_visible()  # the input and three outputs
            wipe = page.frame_locator("iframe").first.locator('input[type="range"]')
            assert wipe.count() == 1
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        finally:
            browser.close()

    assert (tmp_path / "compare.png").stat().st_size > 10_000
    assert not failed_requests, f"requests failed (is something loaded from the network?): {failed_requests}"
    assert "Traceback" not in log_path.read_text()
