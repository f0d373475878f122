"""The pages package: helpers the pages share (models loaded once per process, the session's trained models,
upload decoding, the notice for a run queued behind another visitor's). Streamlit never lists ``__init__.py`` as a
page, with ``st.navigation`` or with the old pages/ scan.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

import sharpkd
import sharpkd.app.gate
from sharpkd.app.navigation import use_navigation_only
from sharpkd.errors import SharpkdError
from sharpkd.images import IMAGE_SUFFIXES, LoadedImage

use_navigation_only()  # a deep link served first must still go through app.py (see sharpkd.app.navigation)

UPLOAD_TYPES = [s.lstrip(".") for s in IMAGE_SUFFIXES]  # what st.file_uploader accepts: every format sharpkd reads
MAX_PIXELS = 2_000_000  # uploads above this are downscaled (with a note) so every model answers in seconds
# Uploads declaring more are refused before any pixel is decoded. A large JPEG is decoded at 1/2-1/8 scale (draft),
# but PNG, WebP and TIFF decode in full before the downscale, about 13 bytes a pixel at the peak: a 40 MP PNG took the
# process 534 MB up for 2 s, a 64 MP one 855 MB. Decoding is a heavy run, so only one happens at a time.
UPLOAD_HARD_LIMIT = 40_000_000
TRAINED_KEY = "trained_models"  # session_state: {name: Sharpener} trained on the Train page this session
JOB_KEY = "train_job"  # session_state: the latest sharpkd.app.jobs.TrainingJob, so reruns and other pages find it


# Tile side for the app's networks: a 512 px photo still runs in one pass (384 + 2 x 64 px margin), and the largest
# pass on a 2 MP upload is 512 px instead of 640 px: the teacher's peak on it was 170 MB lower (649 vs 821 MB RSS; ONNX
# Runtime's arena keeps its largest pass resident) for 9% more time (21.1 vs 19.3 s, one thread).
APP_TILE = 384


@st.cache_resource(show_spinner="Loading model…", max_entries=16)
def _load_sharpener(name: str, models_dir: str) -> sharpkd.Sharpener:
    # models_dir is part of the cache key, so pointing SHARPKD_MODELS elsewhere never serves stale models.
    # backend=None: the fastest installed backend (ONNX Runtime when present), so the teacher costs seconds less.
    # spin=False: the server's other threads (the web server, WebRTC's decoder and encoder, other sessions) share the
    # cores, and ONNX Runtime's spinning idle threads would hold them after every frame.
    return sharpkd.runtime.sharpener.load_pretrained(name, backend=None, tile=APP_TILE, spin=False)


def load_sharpener(name: str) -> sharpkd.Sharpener:
    """A shipped model (or a classical peer, at its tuned setting), loaded once per process and shared by all
    sessions."""
    return _load_sharpener(name, str(sharpkd.runtime.sharpener.models_dir()))


def load_models(names: list[str]) -> dict[str, sharpkd.Sharpener]:
    """Load the named shipped models; one that fails becomes a warning instead of breaking the page."""
    models = {}
    for name in names:
        try:
            models[name] = load_sharpener(name)
        except SharpkdError as err:
            st.warning(f"Skipping model {name!r}: {err}")
    return models


def trained_models() -> dict[str, sharpkd.Sharpener]:
    """Students trained on the Train page in this session, newest last.

    A job that finished while the user was on another page is registered here, so Compare lists it at once.
    """
    registry = st.session_state.setdefault(TRAINED_KEY, {})
    job = st.session_state.get(JOB_KEY)
    if job is not None and job.checkpoint_path is not None and job.name not in registry:
        registry[job.name] = job.sharpener()
    return registry


@contextmanager
def gate_notice() -> Iterator[None]:
    """Say so while the process-wide heavy-run gate (:mod:`sharpkd.app.gate`) is held by another session.

    For a cached function that takes the gate inside (it may not draw, so the gate is taken there and the notice is
    drawn here): the notice shows if the gate is busy when the call starts and goes when it returns. Uncached calls
    use :func:`heavy_run`, which shows it exactly while queued.
    """
    notice = st.empty()
    if sharpkd.app.gate.HEAVY.busy:
        notice.info(sharpkd.app.gate.WAITING)
    try:
        yield
    finally:
        notice.empty()


@contextmanager
def heavy_run() -> Iterator[None]:
    """Hold the process-wide heavy-run gate (:mod:`sharpkd.app.gate`) around a heavy call that is not cached,
    showing :data:`~sharpkd.app.gate.WAITING` for as long as this session queues behind another's run.

    Example:
        >>> with heavy_run():  # doctest: +SKIP
        ...     out = sharpener.sharpen(frame)
    """
    notice = st.empty()
    try:
        with sharpkd.app.gate.heavy(on_wait=lambda: notice.info(sharpkd.app.gate.WAITING)):
            notice.empty()
            yield
    finally:
        notice.empty()


def _decode(file: Any) -> tuple[LoadedImage | None, str]:
    try:
        with heavy_run():  # a large PNG decodes in full before it is downscaled
            return sharpkd.load_image(file, max_pixels=MAX_PIXELS, hard_limit=UPLOAD_HARD_LIMIT), ""
    except SharpkdError as err:
        return None, str(err)


def decode_upload(file: Any, *, remember: str | None = None) -> LoadedImage | None:
    """Decode an uploaded image file. A bad file becomes ``st.error`` and ``None``; notes become ``st.info``.

    Args:
        file: a Streamlit ``UploadedFile`` (or any binary file-like with a ``name``).
        remember: a session-state key: keep this decode there and reuse it while the same upload stays (one image
            per key), so widget changes do not decode the file again on every rerun.
    """
    name = getattr(file, "name", "the upload")
    file_id = getattr(file, "file_id", None) or id(file)
    cached = st.session_state.get(remember) if remember else None
    if cached is not None and cached[0] == file_id:
        loaded, error = cached[1], cached[2]
    else:
        if remember:
            st.session_state.pop(remember, None)  # drop the previous image before decoding the next
        loaded, error = _decode(file)
        if remember:
            st.session_state[remember] = (file_id, loaded, error)
    if loaded is None:
        st.error(f"Could not use this image. {error}")
        return None
    for note in loaded.notes:
        st.info(f"{name}: {note}.")
    return loaded
