"""End to end in a real headless browser: ``streamlit run app.py``, open Compare, upload a PNG, see the results, and
drag the before/after divider.

Needs the Python ``playwright`` package and a Chromium at /usr/bin/chromium (Debian's ``chromium`` package); the tests
are skipped, naming the missing piece, when either is absent. Nothing is fetched from the network. The ``server``
fixture (the app on a free port with the tiny models) lives in appserver.py; CHROMIUM and CHROMIUM_ARGS are
re-exported here for the modules that take them from this one.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from appserver import CHROMIUM, CHROMIUM_ARGS, server  # noqa: F401  (server: the fixture of the browser tests)
from PIL import Image

RESULT_TIMEOUT_MS = 120_000  # the first Compare run loads every model on a busy 2-core machine

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


def _open_compare(p, url: str, viewport: dict | None = None):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1800})
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_test_id("stSidebarNav").get_by_text("Compare", exact=True).click()
    return browser, page


def test_upload_on_compare_page_shows_outputs_and_metrics(server, photo, tmp_path):  # noqa: F811
    url, log_path = server
    png = tmp_path / "photo.png"
    Image.fromarray(np.ascontiguousarray(photo)).save(png)
    failed_requests: list[str] = []

    with sync_api.sync_playwright() as p:
        browser, page = _open_compare(p, url)
        try:
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            # let the page's first run (the sample photo through every model) finish before switching to Upload:
            # an upload sent while that run is still going can be dropped by the rerun that ends it
            page.get_by_text("What each model changed").wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("Upload", exact=True).click()
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            uploader.wait_for(state="attached", timeout=60_000)
            uploader.set_input_files(str(png))
            page.get_by_text("photo.png").wait_for(timeout=60_000)

            page.get_by_text("degraded: vc x1").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("PSNR", exact=False).first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # drawn last: the page is complete
            for label in ("original (sharp)", "student", "unsharp (sigma 2, amount 1)"):
                assert page.get_by_text(label, exact=True).count() >= 1, label
            panels = page.locator('[data-testid="stImage"] img')
            assert panels.count() >= 10  # six whole-photo panels and four amplified differences
            assert all(panels.nth(i).evaluate("img => img.naturalWidth > 0") for i in range(panels.count()))
            metrics = page.get_by_text("dB · SSIM", exact=False)
            assert metrics.count() >= 4 and metrics.first.is_visible()  # the input and the outputs
            assert page.get_by_text("dB over the input", exact=False).count() >= 4  # each output's gain
            wipe = page.frame_locator("iframe").first.locator('input[type="range"]')
            assert wipe.count() == 1
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        finally:
            browser.close()

    assert (tmp_path / "compare.png").stat().st_size > 10_000
    assert not failed_requests, f"requests failed (is something loaded from the network?): {failed_requests}"
    assert "Traceback" not in log_path.read_text()


def test_wipe_divider_follows_a_mouse_drag(server, tmp_path):  # noqa: F811
    """Chromium used to start its own image drag on the press (dragstart, then pointercancel): a drag from 20% to
    80% stopped near 30%. The divider must end where the mouse was released."""
    url, log_path = server
    with sync_api.sync_playwright() as p:
        browser, page = _open_compare(p, url, {"width": 1400, "height": 1100})
        try:
            frame = page.frame_locator("iframe").first
            wipe = frame.locator("#wipe")
            wipe.wait_for(timeout=RESULT_TIMEOUT_MS)
            frame.locator("#top").evaluate("img => img.complete || new Promise(ok => img.onload = ok)")
            wipe.scroll_into_view_if_needed()
            box = wipe.bounding_box()
            assert box is not None and box["width"] > 300, box  # the main view is large
            assert float(wipe.get_attribute("data-pos")) == pytest.approx(50.0)
            y = box["y"] + 0.4 * box["height"]  # on the image, above the range input at the bottom
            page.mouse.move(box["x"] + 0.2 * box["width"], y)
            page.mouse.down()
            page.mouse.move(box["x"] + 0.8 * box["width"], y, steps=15)
            page.mouse.up()
            pos = float(wipe.get_attribute("data-pos"))
            bar_left = frame.locator("#bar").evaluate("bar => bar.getBoundingClientRect().left")
            frame_x = page.locator("iframe").first.bounding_box()["x"]
            page.screenshot(path=str(tmp_path / "wipe.png"))
            assert pos == pytest.approx(80.0, abs=2.0), f"the divider stopped at {pos}%"
            # the drawn divider is there too, not only the number (to within 2% of the width)
            assert abs(frame_x + bar_left + 1 - (box["x"] + 0.8 * box["width"])) < 0.02 * box["width"]
            clip = frame.locator("#top").evaluate("img => img.style.clipPath")
            assert clip.startswith("inset(0px 20") or clip.startswith("inset(0 20"), clip
        finally:
            browser.close()
    assert "Traceback" not in log_path.read_text()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("notes.png", b"these are my meeting notes, not a photo\n" * 20, "is not an image Pillow can read"),
        ("huge.png", None, "more than the limit of 40,000,000 pixels"),  # a header declaring 100 MP, no pixels
    ],
    ids=["text", "bomb"],
)
def test_bad_upload_on_compare_page_is_a_message(server, tmp_path, name, data, expected):  # noqa: F811
    url, log_path = server
    if data is None:
        data = _png_header(10_000, 10_000)
    path = tmp_path / name
    path.write_bytes(data)
    with sync_api.sync_playwright() as p:
        browser, page = _open_compare(p, url)
        try:
            page.get_by_text("Upload", exact=True).click()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
            error = page.get_by_test_id("stAlertContentError")
            error.first.wait_for(timeout=RESULT_TIMEOUT_MS)
            text = error.first.inner_text()
            assert text.startswith("Could not use this image.") and expected in text, text
            assert text.count("limit") <= 1
            page.get_by_text("Pick a sample photo, upload an image").first.wait_for(timeout=30_000)  # page still works
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
    assert "Traceback" not in log_path.read_text()


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width x height`` RGB pixels, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_deep_link_on_a_cold_server_gets_the_apps_navigation(server):  # noqa: F811
    # The first request of a fresh server asks for /benchmark: Streamlit's pages/ folder scan would serve
    # pages/benchmark.py alone, with a sidebar of raw file names (app, benchmark, compare video, ...); the page
    # reruns itself through app.py instead (sharpkd.app.navigation).
    url, log_path = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/benchmark", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Benchmark", exact=True).wait_for(timeout=RESULT_TIMEOUT_MS)
            nav = page.get_by_test_id("stSidebarNav")
            nav.get_by_text("Home", exact=True).wait_for(timeout=30_000)
            items = [t.strip() for t in nav.inner_text().split("\n") if t.strip()]
            assert items == ["Home", "Compare", "Live", "Train", "Benchmark"], items
            assert page.url.rstrip("/").endswith("/benchmark")
        finally:
            browser.close()
    assert "Traceback" not in log_path.read_text()
