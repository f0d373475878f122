"""Retake docs/screenshot.png: start the app, open the Compare page in headless Chromium, wait for the results.

Usage (from the repository root; needs the ``app`` and ``test`` extras and a Chromium binary):

    python docs/screenshot.py                                  # shipped models/, a free port, docs/screenshot.png
    python docs/screenshot.py --models runs/dev_models --port 8599 --out /tmp/compare.png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from apphost import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, start_app, stop_app  # docs/ is on sys.path


def shoot(url: str, out: Path, chromium: str, width: int, height: int, sample: str | None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            # Open the entry page first: a fresh server that is asked for /compare before / would serve it the old
            # pages/-folder way (without app.py's navigation and page config).
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_test_id("stSidebarNav").get_by_text("Compare", exact=True).click()
            if sample:
                page.get_by_test_id("stSelectbox").filter(has_text="Sample photo").click()
                page.get_by_role("option", name=sample, exact=True).click()
            page.get_by_text("PSNR", exact=False).first.wait_for(timeout=180_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)  # the timing chart is drawn last
            page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring
            page.mouse.move(0, 0)  # no hover toolbar
            page.wait_for_timeout(1500)  # let the images finish decoding
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port for the app (0: any free port)")
    parser.add_argument("--models", default=None, help="models folder (sets SHARPKD_MODELS; default: models/)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"), help="where to write the PNG")
    parser.add_argument("--sample", default="chelsea", help="built-in sample photo to show")
    parser.add_argument("--chromium", default=CHROMIUM, help="Chromium executable")
    parser.add_argument("--size", default="1400x1300", help="viewport WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    port = args.port or free_port()
    out = Path(args.out).resolve()
    log_path = Path(tempfile.gettempdir()) / f"sharpkd-screenshot-{port}.log"
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if args.models:
        env["SHARPKD_MODELS"] = str(Path(args.models).resolve())
    proc = start_app(port, log_path, env)
    try:
        shoot(f"http://127.0.0.1:{port}", out, args.chromium, width, height, args.sample)
    finally:
        stop_app(proc)
    log_path.unlink(missing_ok=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
