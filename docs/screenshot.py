"""Retake docs/screenshot.png: start the app, open the Compare page in headless Chromium, wait for the results.

Usage (from the repository root; needs the ``app`` and ``test`` extras and a Chromium binary):

    python docs/screenshot.py                                  # shipped models/, a free port, docs/screenshot.png
    python docs/screenshot.py --models runs/dev_models --port 8599 --out /tmp/compare.png
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, models: str | None, log_path: Path) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:port; returns once /_stcore/health answers (or raises)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if models:
        env["SHARPKD_MODELS"] = str(Path(models).resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"streamlit did not answer on port {port} within 60 s; see {log_path}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--size", default="1400x1300", help="viewport WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    port = args.port or free_port()
    out = Path(args.out).resolve()
    log_path = Path(tempfile.gettempdir()) / f"sharpkd-screenshot-{port}.log"
    proc = start_app(port, args.models, log_path)
    try:
        shoot(f"http://127.0.0.1:{port}", out, args.chromium, width, height, args.sample)
    finally:
        stop_app(proc)
    log_path.unlink(missing_ok=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
