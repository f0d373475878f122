"""Shared fixtures: fixed seeds, a single thread (CI machines have 2 cores), tiny model folders, and the app served
by a real ``streamlit run`` for the browser tests."""

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
import torch

from sharpkd.checkpoint import save_checkpoint
from sharpkd.models import build_model

torch.set_num_threads(1)

# Tiny versions of every shipped role, so app/CLI tests don't depend on the trained weights.
TINY = {
    "teacher": ("nafnet", dict(width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)),
    "student": ("rt", dict(width=8)),
    "student-nokd": ("rt", dict(width=8)),
    "conv4": ("conv4", dict(width=8)),
    "resattn": ("resattn", dict(width=8, num_blocks=2)),
    "sepunet": ("sepunet", dict(width=4)),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_models_dir(tmp_path_factory, monkeypatch):
    """A models/ folder of tiny, randomly initialised checkpoints, used through ``$SHARPKD_MODELS``."""
    d = tmp_path_factory.mktemp("models")
    for name, (preset, kw) in TINY.items():
        torch.manual_seed(0)
        model = build_model(preset, **kw)
        save_checkpoint(d / f"{name}.pt", model, meta={"preset": preset, "tiny": True})
    monkeypatch.setenv("SHARPKD_MODELS", str(d))
    return d


@pytest.fixture
def photo() -> np.ndarray:
    """A 96x128 crop of scikit-image's astronaut: a real photo that is not training data."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:196, 180:308])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_models_dir, tmp_path):
    """``streamlit run app.py`` on a free port with the tiny models: yields ``(url, log_path)``.

    Always terminated; its log is attached to an early exit. Used by the browser tests (test_browser.py and others).
    """
    root = Path(__file__).resolve().parent.parent
    port = _free_port()
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
