"""The pages package: helpers the pages share (models loaded once per process, the session's trained models,
upload decoding). Streamlit never lists ``__init__.py`` as a page, with ``st.navigation`` or with the old pages/ scan.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import sharpkd
from sharpkd.app.navigation import use_navigation_only
from sharpkd.errors import SharpkdError
from sharpkd.images import IMAGE_SUFFIXES, LoadedImage

use_navigation_only()  # a deep link served first must still go through app.py (see sharpkd.app.navigation)

UPLOAD_TYPES = [s.lstrip(".") for s in IMAGE_SUFFIXES]  # what st.file_uploader accepts: every format sharpkd reads
MAX_PIXELS = 2_000_000  # uploads above this are downscaled (with a note) so every model answers in seconds
TRAINED_KEY = "trained_models"  # session_state: {name: Sharpener} trained on the Train page this session
JOB_KEY = "train_job"  # session_state: the latest sharpkd.app.jobs.TrainingJob, so reruns and other pages find it


@st.cache_resource(show_spinner="Loading model…", max_entries=16)
def _load_sharpener(name: str, models_dir: str) -> sharpkd.Sharpener:
    # models_dir is part of the cache key, so pointing SHARPKD_MODELS elsewhere never serves stale models.
    return sharpkd.runtime.sharpener.load_pretrained(name)


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


def decode_upload(file: Any) -> LoadedImage | None:
    """Decode an uploaded image file. A bad file becomes ``st.error`` and ``None``; notes become ``st.info``."""
    name = getattr(file, "name", "the upload")
    try:
        loaded = sharpkd.load_image(file, max_pixels=MAX_PIXELS)
    except SharpkdError as err:
        st.error(f"Could not use this image. {err}")
        return None
    for note in loaded.notes:
        st.info(f"{name}: {note}.")
    return loaded
