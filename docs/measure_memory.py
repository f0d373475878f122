"""Measure the app server's memory while four visitors upload photos on the Compare page at the same time.

Starts ``streamlit run app.py`` with the shipped models, opens four headless Chromium sessions (Playwright), and in
each one switches Compare to *Upload* and uploads a different photo (scikit-image samples, resized to 0.26-1.95
megapixels) at the same moment. It waits until every session shows its scores, while a thread samples the resident
memory (RSS) of the server process and its children every 0.1 s. It prints the idle RSS (server started, one page
served), the peak, and the RSS once the sessions have closed, and exits with status 1 when a session got no result
(2 when the server or the browser could not start).

Run it from the repository root::

    .venv/bin/python docs/measure_memory.py [--sessions 4] [--teacher] [--timeout 900] [--port 8599]

``--teacher`` also ticks the Compare page's (off by default) teacher in every session: the heaviest case.

Needs the ``playwright`` package and Chromium at /usr/bin/chromium (or ``--chromium PATH``); nothing is fetched
from the network.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from apphost import CHROMIUM, CHROMIUM_ARGS, free_port, start_app, stop_app  # docs/ is on sys.path
from PIL import Image

# (skimage.data sample, scale): four different photos from 0.26 to 1.95 megapixels; the app downscales above 2 MP.
PHOTOS = (("astronaut", 1.0), ("coffee", 1.6), ("rocket", 2.0), ("hubble_deep_field", 1.45))
MB = 1024 * 1024
TEACHER_BOX = "Run the teacher too (slow)"  # the Compare page's checkbox (the teacher is off by default)
SCORE = re.compile(r"\d+\.\d+ dB")  # a score on the page: the results are shown


def _rss_tree(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, from /proc (0 once the process is gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    """Samples the RSS of a process tree every ``period`` seconds until stopped; keeps the peak."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss = _rss_tree(self.pid)
            self.samples.append((time.time(), rss))
            self.peak = max(self.peak, rss)
            self._done.wait(self.period)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _photos(folder: Path, count: int) -> list[Path]:
    import skimage.data

    paths = []
    for i in range(count):
        name, scale = PHOTOS[i % len(PHOTOS)]
        img = getattr(skimage.data, name)()
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        pil = Image.fromarray(np.ascontiguousarray(img))
        pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.Resampling.LANCZOS)
        path = folder / f"{i}-{name}.jpg"
        pil.save(path, quality=92)
        paths.append(path)
        print(f"photo {i}: {name} {pil.width}x{pil.height} ({pil.width * pil.height / 1e6:.2f} MP)")
    return paths


async def _session(
    browser, url: str, photo: Path, start: asyncio.Event, timeout_s: float, teacher: bool, shots: Path | None
) -> float:
    """One visitor: open Compare, choose Upload (and tick the teacher), wait for the others, upload, wait for the
    scores. Returns seconds from the upload to the scores."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        await page.goto(url, wait_until="domcontentloaded")
        await page.get_by_test_id("stSidebarNav").get_by_text("Compare", exact=True).click()
        await page.get_by_text("Upload", exact=True).first.click()
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
        await uploader.wait_for(state="attached", timeout=timeout_s * 1000)
        if teacher:
            await page.get_by_text(TEACHER_BOX, exact=True).click()
        # the sample photo's scores (shown before Upload was picked) must be gone before ours count
        scores = page.get_by_text(SCORE)
        deadline = time.time() + timeout_s
        while await scores.count() and time.time() < deadline:
            await asyncio.sleep(0.2)
        await start.wait()
        t0 = time.time()
        await uploader.set_input_files(str(photo))
        await scores.first.wait_for(timeout=timeout_s * 1000)
        return time.time() - t0
    finally:
        if shots is not None:
            await page.screenshot(path=str(shots / f"{photo.stem}.png"), full_page=True)
        await page.close()


async def _first_visit(chromium: str, url: str) -> None:
    """Open the home page once and close it: the server has then imported the app (torch, the library)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=["--headless", *CHROMIUM_ARGS])
        try:
            page = await browser.new_page()
            await page.goto(url, wait_until="domcontentloaded")
            await page.get_by_test_id("stSidebarNav").wait_for(timeout=120_000)
            await page.get_by_test_id("stMain").get_by_text("sharpkd").first.wait_for(timeout=120_000)
        finally:
            await browser.close()


async def _visitors(
    chromium: str, url: str, photos: list[Path], timeout_s: float, teacher: bool, shots: Path | None
) -> list[float | BaseException]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=["--headless", *CHROMIUM_ARGS])
        try:
            start = asyncio.Event()
            tasks = [
                asyncio.create_task(_session(browser, url, photo, start, timeout_s, teacher, shots)) for photo in photos
            ]
            await asyncio.sleep(0)
            # let every session reach its uploader (each first renders Compare on the sample photo), then go at once
            await asyncio.sleep(1.0)
            ready_deadline = time.time() + timeout_s
            while not any(t.done() for t in tasks) and time.time() < ready_deadline:  # a failed one: go
                if await _all_waiting(browser, len(photos)):
                    break
                await asyncio.sleep(0.5)
            start.set()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await browser.close()


async def _all_waiting(browser, n: int) -> bool:
    """True when ``n`` pages show an uploader and no stale scores (every session is ready to upload)."""
    ready = 0
    for context in browser.contexts:
        for page in context.pages:
            has_uploader = await page.locator('[data-testid="stFileUploader"]').count()
            if has_uploader and not await page.get_by_text(SCORE).count():
                ready += 1
    return ready >= n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="browser sessions uploading at once")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a session may take")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--screenshots", type=Path, default=None, help="save each session's final page here")
    parser.add_argument("--teacher", action="store_true", help=f"also tick '{TEACHER_BOX}' in every session")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sharpkd-memory-") as tmp:
        folder = Path(tmp)
        photos = _photos(folder, args.sessions)
        port = args.port or free_port()
        log_path = folder / "streamlit.log"
        try:
            server = start_app(port, log_path, timeout=120)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 2
        sampler = Sampler(server.pid)
        sampler.start()
        try:
            url = f"http://127.0.0.1:{port}"
            t0 = time.time()
            try:
                asyncio.run(_first_visit(args.chromium, url))
                time.sleep(3)
                idle = _rss_tree(server.pid)
                print(f"idle RSS: {idle / MB:.0f} MB (server started, the home page served once)")
                t0 = time.time()
                results = asyncio.run(
                    _visitors(args.chromium, url, photos, args.timeout, args.teacher, args.screenshots)
                )
            except Exception as err:  # noqa: BLE001 - the browser failing to start is a setup problem, reported
                print(f"could not run the browser sessions: {type(err).__name__}: {err}", file=sys.stderr)
                return 2
            wall = time.time() - t0
            time.sleep(5)
            after = _rss_tree(server.pid)
        finally:
            sampler.stop()
            stop_app(server)
        failed = 0
        for photo, result in zip(photos, results):
            if isinstance(result, BaseException):
                failed += 1
                print(f"session {photo.name}: NO RESULT ({type(result).__name__}: {str(result).splitlines()[0]})")
            else:
                print(f"session {photo.name}: scores shown {result:.1f} s after the upload")
        log_text = log_path.read_text(errors="replace")
        if "Traceback" in log_text:
            print("the server log has a traceback:\n" + log_text[-3000:])
        print(f"{args.sessions} sessions in {wall:.0f} s; {len(sampler.samples)} RSS samples")
        print(f"peak RSS: {sampler.peak / MB:.0f} MB; idle RSS: {idle / MB:.0f} MB")
        print(f"RSS after the sessions closed: {after / MB:.0f} MB")
        return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
