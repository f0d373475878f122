"""The Live page end to end: Chromium with a fake camera, START, and the processed stream plays with an FPS figure.

Uses the ``server`` fixture of conftest.py (the app on a free port with the tiny models) and test_browser.py's Chromium
settings; skipped like test_browser.py when the ``playwright`` package or Chromium is missing.
WebRTC runs over loopback host candidates only: no STUN or TURN server is configured or reachable. Chromium's fake
camera (``--use-fake-device-for-media-stream``) is a moving test pattern; ``--use-fake-ui-for-media-stream`` grants
the permission prompt. Without the fake device a headless Chromium has no camera at all: the page must say so.
Last, a file written by ``sharpen_video`` must play in Chromium's own <video> element (H.264, yuv420p).
"""

from __future__ import annotations

from pathlib import Path

import test_browser
from appserver import server  # noqa: F401  (the fixture of the browser tests)
from test_browser import CHROMIUM, CHROMIUM_ARGS, sync_api

pytestmark = test_browser.pytestmark  # skipped without Chromium, like test_browser.py

FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
STREAM_TIMEOUT_MS = 90_000  # ICE over loopback plus the first processed frames, on a busy 2-core machine


def _open_live(p, args: list[str], viewport: dict) -> tuple:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *args])
    page = browser.new_page(viewport=viewport)
    return browser, page


def _goto_live(page, url: str):
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_test_id("stSidebarNav").get_by_text("Live", exact=True).click()
    page.get_by_text("Simulated bad link").first.wait_for(timeout=60_000)
    webrtc = page.frame_locator('iframe[title="streamlit_webrtc.component.webrtc_streamer"]')
    start = webrtc.get_by_role("button", name="START")
    start.wait_for(timeout=60_000)
    return webrtc, start


def test_live_page_streams_processed_video(server, tmp_path: Path) -> None:  # noqa: F811
    url, log_path = server
    with sync_api.sync_playwright() as p:
        browser, page = _open_live(p, FAKE_CAMERA, {"width": 1400, "height": 1300})
        try:
            webrtc, start = _goto_live(page, url)
            start.click()
            video = webrtc.locator("video")
            video.wait_for(timeout=STREAM_TIMEOUT_MS)
            video.evaluate(
                "v => new Promise((ok, fail) => { const t = setTimeout(() => fail('no frames'), 80000);"
                " const check = () => v.videoWidth > 0 && v.currentTime > 0.5"
                "   ? (clearTimeout(t), ok()) : setTimeout(check, 200); check(); })"
            )
            first = video.evaluate("v => [v.videoWidth, v.videoHeight, v.currentTime]")
            # an FPS figure: the metric shows a number, not the dash it shows before any frame was processed
            fps = page.get_by_test_id("stMetric").filter(has_text="Live FPS").get_by_test_id("stMetricValue")
            page.wait_for_function(
                "el => /^[0-9]+(\\.[0-9])?$/.test(el.innerText.trim()) && parseFloat(el.innerText) > 0",
                arg=fps.element_handle(),
                timeout=STREAM_TIMEOUT_MS,
            )
            page.wait_for_timeout(1500)
            later = video.evaluate("v => [v.videoWidth, v.videoHeight, v.currentTime]")
            latency = page.get_by_test_id("stMetric").filter(has_text="Latency").get_by_test_id("stMetricValue")
            latency_text = latency.inner_text()
            page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
            webrtc.get_by_role("button", name="STOP").click()
        finally:
            browser.close()

    assert first[0] > 0 and first[1] > 0
    assert later[2] > first[2]  # time advances: the stream keeps playing
    assert later[0] / later[1] > 2, later  # side by side (the default view): two 4:3 camera frames, one row
    assert latency_text.endswith("ms"), latency_text
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_live_page_without_camera_says_so(server, tmp_path: Path) -> None:  # noqa: F811
    url, log_path = server
    with sync_api.sync_playwright() as p:
        browser, page = _open_live(p, ["--use-fake-ui-for-media-stream"], {"width": 1200, "height": 1000})
        try:
            webrtc, start = _goto_live(page, url)
            start.click()
            webrtc.get_by_text("NotFoundError", exact=False).wait_for(timeout=60_000)  # the browser's own words
            assert page.get_by_text("this computer has no camera", exact=False).is_visible()  # and what to do
            # the page keeps working: a widget still reruns the script and the stats panel is drawn
            page.get_by_text("side by side", exact=True).first.wait_for()
            page.get_by_text("split", exact=True).first.click()
            page.get_by_text("Live FPS").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "nocam.png"), full_page=True)
        finally:
            browser.close()
    assert "Traceback" not in log_path.read_text()


def test_sharpkd_video_output_plays_in_chromium(tmp_path: Path) -> None:
    from sharpkd.runtime.video import VideoConfig, sharpen_video, synthesize_clip

    clip = synthesize_clip(tmp_path / "in.mp4", frames=36, size=(320, 240), fps=12.0)
    sharpen_video(clip, tmp_path / "out.mp4", lambda rgb: rgb, VideoConfig(side_by_side=True, degrade="h264"))
    (tmp_path / "play.html").write_text('<video id="v" src="out.mp4" muted autoplay playsinline></video>')
    with sync_api.sync_playwright() as p:
        args = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            page.goto((tmp_path / "play.html").as_uri())
            page.wait_for_function("() => document.getElementById('v').currentTime > 0.5", timeout=30_000)
            size = page.evaluate("() => [v.videoWidth, v.videoHeight, v.error === null]")
        finally:
            browser.close()
    assert size == [640, 240, True]  # decoded by the browser: H.264 yuv420p, side by side
