"""The ``server`` fixture of the browser tests: ``streamlit run app.py`` on a free port with the tiny models.

It lives here, imported by the browser test modules, and not in conftest.py: defined in conftest.py (loaded for
every test), it made test_distributed.py's forked gloo workers stall on this machine (reproduced four times in a
row; passing again once it moved out), a cause not understood yet.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture
def server(tiny_models_dir, tmp_path):
    """``streamlit run app.py`` on a free port with the tiny models: yields ``(url, log_path)``.

    Always terminated; its log is attached to an early exit. Used by the browser tests (test_browser.py and others).
    """
    root = Path(__file__).resolve().parent.parent
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SHARPKD_MODELS=str(tiny_models_dir), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log_path = tmp_path / "streamlit.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
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
