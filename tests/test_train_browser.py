"""End to end in a real headless browser: start a training run on the Train page, reload the page while it trains,
and check that the page reattaches to the run and then shows its finished student.

Uses conftest.py's ``server`` fixture (the app on a free port with the tiny models) and test_browser.py's Chromium
settings; skipped like test_browser.py when the ``playwright`` package or Chromium is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from appserver import server  # noqa: F401  (the fixture of the browser tests)
from test_browser import CHROMIUM, CHROMIUM_ARGS, sync_api

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

STEPS = 150  # long enough to still be training when the reload lands, a few seconds with the tiny models


def test_reload_during_training_reattaches_to_the_run(server, tmp_path):  # noqa: F811
    url, log_path = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_test_id("stSidebarNav").get_by_text("Train", exact=True).click()
            steps = page.get_by_label("Steps")
            steps.fill(str(STEPS))
            steps.press("Enter")
            page.get_by_text("Fine-tune the shipped student", exact=True).wait_for(timeout=60_000)
            page.get_by_role("button", name="Start training").click()

            page.get_by_text(re.compile(rf"running: step \d+ of {STEPS}")).wait_for(timeout=120_000)
            page.wait_for_url(re.compile(r"[?&]job=[\w-]+"), timeout=30_000)
            job_url = page.url
            page.reload(wait_until="domcontentloaded")

            # the fresh session shows the same run again: its progress, or its result if it has just finished
            page.get_by_text(re.compile(rf"(running|done): step \d+ of {STEPS}")).wait_for(timeout=120_000)
            assert page.url == job_url
            page.screenshot(path=str(tmp_path / "after_reload.png"), full_page=True)
            page.get_by_text(re.compile(r"is ready: tick it")).wait_for(timeout=300_000)
            # the rest of the result view renders a moment after the "is ready" line: wait for each part, then count
            done = page.get_by_text(f"done: step {STEPS} of {STEPS}", exact=False)
            download = page.get_by_role("button", name="Download checkpoint (.pt)")
            charts = page.locator(".js-plotly-plot")
            for part in (done, download, charts.nth(2)):
                part.wait_for(timeout=30_000)
            assert done.count() == 1 and download.count() == 1
            assert charts.count() == 3  # loss, PSNR gain, SSIM gain
            page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "finished.png").stat().st_size > 10_000
    assert "Traceback" not in log_path.read_text()
