"""Compare, video tab: an uploaded clip degraded and sharpened by the student, side by side, playable and downloadable.

Not a page of its own: Compare calls :func:`render` inside its "Video" tab. Guards ``return`` instead of calling
``st.stop()``, so the rest of the Compare page still draws.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from pages import load_sharpener
from sharpkd.app.clip import LIMITS, UPLOAD_TYPES, ClipResult, side_by_side_clip
from sharpkd.degrade import PRESET_SUMMARIES, PRESETS
from sharpkd.errors import SharpkdError

ALREADY_BLURRY = "already blurry (no degradation)"
RESULT_KEY = "cmpv_result"  # session_state: (upload id, preset, strength) and its ClipResult, kept across reruns
PRESET_HELP = " ".join(f"{name}: {PRESET_SUMMARIES[name]}." for name in PRESETS) + (
    " h264 and vp8 run as one continuous simulated call over the clip. Pick 'already blurry' for a clip that is "
    "soft to begin with."
)


def degradation_ui() -> tuple[str | None, float]:
    """A preset and its strength, or ``(None, 1.0)`` for a clip that is already soft."""
    a, b = st.columns(2)
    options = [*PRESETS, ALREADY_BLURRY]
    choice = a.selectbox("Degradation", options, index=PRESETS.index("h264"), help=PRESET_HELP, key="cmpv_degr")
    blurry = choice == ALREADY_BLURRY
    strength = b.slider("Strength", 0.25, 2.0, 1.0, 0.25, disabled=blurry, key="cmpv_strength")
    return (None, 1.0) if blurry else (choice, strength)


def _run(file: Any, degradation: str | None, strength: float) -> ClipResult | None:
    """Degrade and sharpen the upload with a progress bar; a bad clip becomes ``st.error`` and ``None``."""
    if file.size > LIMITS.max_bytes:  # before writing it anywhere
        st.error(f"Could not use this clip: it is {file.size / 1024**2:.0f} MB, over the {LIMITS.describe()} limit.")
        return None
    try:
        student = load_sharpener("student")
    except SharpkdError as err:
        st.error(f"The student model could not be loaded: {err}")
        return None
    bar = st.progress(0.0, text="Reading the clip…")

    def progress(done: int, total: int | None) -> None:
        fraction = min(1.0, done / total) if total else 0.0
        bar.progress(fraction, text=f"Degrading and sharpening frame {done}" + (f" of {total}" if total else ""))

    suffix = Path(file.name).suffix.lower() or ".mp4"
    with tempfile.TemporaryDirectory(prefix="sharpkd-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(file.getvalue())
        try:
            result = side_by_side_clip(path, student.sharpen, degradation, strength, progress=progress)
        except (SharpkdError, ValueError) as err:
            bar.empty()
            st.error(f"Could not use this clip. {str(err).replace(path.name, file.name)}")
            return None
    bar.progress(1.0, text="Done")
    return result


def _show(result: ClipResult, degradation: str | None) -> None:
    r = result.report
    left = f"degraded ({degradation})" if degradation else "input"
    st.video(result.video, format="video/mp4")
    st.caption(
        f"Left: {left}. Right: the student. {r.frames} frames at {r.input_fps:.1f} fps, {r.width}x{r.height} "
        f"H.264 · sharpening {r.processing_fps:.1f} FPS, whole run {r.end_to_end_fps:.1f} FPS on this server."
    )
    for note in result.notes:
        st.info(note)
    st.download_button(
        "Download side-by-side MP4",
        data=result.video,
        file_name="sharpkd-side-by-side.mp4",
        mime="video/mp4",
        on_click="ignore",
        key="cmpv_download",
    )


def render() -> None:
    """Draw the video tab: limits, upload, degradation, a run button with a progress bar, and the result."""
    st.markdown(
        f"Upload a short clip ({LIMITS.describe()}). Every frame is degraded with the preset you pick and sharpened by "
        "the student; you get both side by side as an H.264 MP4 that plays here and downloads. Longer or larger "
        "clips: use `sharpkd video` on the command line, which has no limits."
    )
    file = st.file_uploader(
        "Upload a clip",
        type=UPLOAD_TYPES,
        max_upload_size=LIMITS.max_bytes // (1024 * 1024),  # above the app-wide 25 MB image cap
        key="cmpv_upload",
    )
    degradation, strength = degradation_ui()
    if file is None:
        st.info("Upload a clip to start.")
        return
    run_key = (file.file_id, degradation, strength)
    if st.button("Degrade and sharpen the clip", type="primary", key="cmpv_run"):
        result = _run(file, degradation, strength)
        st.session_state[RESULT_KEY] = (run_key, result) if result is not None else None
    saved = st.session_state.get(RESULT_KEY)
    if saved is not None and saved[0] == run_key:
        _show(saved[1], degradation)
    elif saved is not None:
        st.info("The settings or the clip changed: press the button to run again.")
