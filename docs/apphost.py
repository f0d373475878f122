"""Run the app for a headless browser: ``streamlit run app.py`` on a free local port, and Chromium's flags.

The one home of what docs/screenshot.py, docs/measure_memory.py and the browser tests (tests/appserver.py,
tests/test_browser.py) share. Standard library only, so each can import it before anything else is installed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's ``chromium`` package; Playwright drives it through executable_path
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log_path: Path, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:port, its output in ``log_path``; returns once /_stcore/health answers.

    Args:
        port: the port to serve on.
        log_path: file for the server's stdout and stderr.
        env: variables added to this process's environment (``SHARPKD_MODELS``, ``OMP_NUM_THREADS``, ...).
        timeout: seconds to wait for the health check.

    Raises:
        RuntimeError: the server exited or did not answer in time; the message holds its log.
    """
    env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}; its log:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_app(proc)
    log = log_path.read_text()
    raise RuntimeError(f"streamlit did not answer on port {port} within {timeout:.0f} s; its log:\n{log}")


def stop_app(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate the server, killing it if it has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
