"""The app under test: the ``server`` fixture of the browser tests (``streamlit run app.py`` on a free port with the
tiny models) and :func:`fresh_app`, the AppTest session of the script-level app tests.

It lives here, imported by the browser test modules, and not in conftest.py: defined in conftest.py (loaded for
every test), it made test_distributed.py's forked gloo workers stall on this machine (reproduced four times in a
row; passing again once it moved out), a cause not understood yet. Starting and stopping the app is docs/apphost.py's
(shared with docs/screenshot.py and docs/measure_memory.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
from apphost import CHROMIUM, CHROMIUM_ARGS, free_port, start_app, stop_app  # noqa: E402

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "fresh_app", "server"]
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@contextmanager
def fresh_app(timeout: float, job_wait_s: float) -> Iterator[AppTest]:
    """app.py run once in an AppTest, with Streamlit's caches cleared before and after (they are per process, so
    tests would share them); a training job the test left in the session is cancelled and waited for."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=timeout)
    try:
        yield at.run()
    finally:
        job = at.session_state["train_job"] if "train_job" in at.session_state else None
        if job is not None:
            job.cancel()
            job.wait(job_wait_s)
        st.cache_data.clear()
        st.cache_resource.clear()


@pytest.fixture
def server(tiny_models_dir, tmp_path):
    """``streamlit run app.py`` on a free port with the tiny models: yields ``(url, log_path)``.

    Always terminated; its log is attached to an early exit. Used by the browser tests (test_browser.py and others).
    """
    port, log_path = free_port(), tmp_path / "streamlit.log"
    try:
        proc = start_app(port, log_path, env={"SHARPKD_MODELS": str(tiny_models_dir), "OMP_NUM_THREADS": "1"})
    except RuntimeError as err:
        pytest.fail(str(err))
    try:
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        stop_app(proc)
