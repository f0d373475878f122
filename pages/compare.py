"""Compare: one photo through the teacher, the students and the tuned classical peers, side by side, scored, timed."""

from __future__ import annotations

from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import sharpkd
import sharpkd.app.compare
import sharpkd.app.wipe
from pages import UPLOAD_TYPES, decode_upload, load_models, trained_models
from sharpkd.app.compare import INPUT, ORIGINAL, Comparison, model_label
from sharpkd.data import sample_images
from sharpkd.degrade import PRESET_SUMMARIES, PRESETS
from sharpkd.runtime.classical import CLASSICAL, list_peers

SOURCES = ("Sample photo", "Upload", "Webcam snapshot")
ALREADY_BLURRY = "already blurry (no sharp original)"
MAIN_MODELS = ("teacher", "student")  # always shown when shipped; the classical peers the user keeps follow them
PRESET_HELP = " ".join(f"{name}: {PRESET_SUMMARIES[name]}." for name in PRESETS) + (
    " Pick 'already blurry' for a photo that is soft to begin with: there is then no sharp original to score against."
)
PEER_HELP = (
    "Non-learned sharpeners, each at the setting tuned on the validation images (models/<peer>.json): "
    + "; ".join(f"{name}: {CLASSICAL[name].description}" for name in list_peers())
)
ZOOMS = (2, 3, 4, 6, 8)
ZOOM_SIZE = 160  # px; crops are shown at exactly this size, so the browser never smooths the enlarged pixels


@st.cache_data(show_spinner=False)
def gallery() -> dict[str, np.ndarray]:
    return sample_images()


@st.cache_data(show_spinner="Sharpening…", max_entries=4)
def run_compare(
    image: np.ndarray, degradation: str | None, strength: float, ids: tuple[str, ...], _models: dict
) -> Comparison:
    # `ids` stands in for the unhashable models in the cache key (the cache is shared by all sessions).
    return sharpkd.app.compare.compare(image, degradation, strength, _models)


def model_ids(models: dict[str, sharpkd.Sharpener]) -> tuple[str, ...]:
    # Students trained here are named per session ("my-conv4-1"); their checkpoint path is unique across sessions.
    return tuple(f"{name}:{model.meta.get('checkpoint', '')}" for name, model in models.items())


def image_ui() -> np.ndarray | None:
    """The photo to work on: a built-in sample, an upload or a webcam snapshot (None until there is one)."""
    source = st.radio("Image", SOURCES, horizontal=True, key="cmp_source")
    if source == SOURCES[0]:
        photos = gallery()
        name = st.selectbox("Sample photo", list(photos), key="cmp_sample")
        st.image(list(photos.values()), caption=list(photos), width=64)
        return photos[name]
    if source == SOURCES[1]:
        file = st.file_uploader(
            "Upload a photo (PNG, JPEG, WebP, BMP, GIF or TIFF)", type=UPLOAD_TYPES, key="cmp_upload"
        )
    else:
        file = st.camera_input("Take a snapshot", key="cmp_camera")
    if file is None:
        return None
    loaded = decode_upload(file)
    return loaded.pixels if loaded is not None else None


def degradation_ui() -> tuple[str | None, float]:
    """A preset and its strength, or (None, 1.0) for an already blurry photo."""
    options = [*PRESETS, ALREADY_BLURRY]
    choice = st.selectbox("Degradation", options, index=PRESETS.index("vc"), help=PRESET_HELP, key="cmp_degr")
    blurry = choice == ALREADY_BLURRY
    strength = st.slider("Strength", 0.25, 2.0, 1.0, 0.25, disabled=blurry, key="cmp_strength")
    return (None, 1.0) if blurry else (choice, strength)


def models_ui() -> dict[str, sharpkd.Sharpener]:
    """Teacher, student and the classical peers, plus the students the user ticks (shipped ones and ones trained
    here)."""
    shipped = sharpkd.list_pretrained()
    trained = trained_models()
    others = [n for n in shipped if n not in MAIN_MODELS]
    peers = st.multiselect("Classical peers", list_peers(), default=list_peers(), help=PEER_HELP, key="cmp_peers")
    extra = st.multiselect(
        "More students",
        [*others, *trained],
        default=list(trained),
        help="Teacher and student always run; tick shipped students or ones trained on the Train page",
        key="cmp_extra",
    )
    if not shipped:
        st.info(
            "No trained models found in models/ (or $SHARPKD_MODELS), so only the classical peers run. "
            "Train a student on the Train page to compare it here."
        )
    models = load_models([n for n in MAIN_MODELS if n in shipped] + peers + [n for n in extra if n in others])
    models.update({n: trained[n] for n in extra if n in trained})
    return models


def zoom_ui() -> tuple[tuple[float, float], int]:
    """Centre (fractions of width and height) and magnification of the zoomed region."""
    a, b, c = st.columns(3)
    cx = a.slider("Zoom centre x (%)", 0, 100, 50, key="cmp_zoom_x")
    cy = b.slider("Zoom centre y (%)", 0, 100, 45, key="cmp_zoom_y")
    zoom = c.select_slider("Zoom", ZOOMS, value=4, format_func=lambda z: f"{z}x", key="cmp_zoom")
    return (cx / 100, cy / 100), zoom


def wipe_ui(result: Comparison) -> tuple[str, str]:
    """The two panels to wipe between: the input and (by default) the student or the first output."""
    names = list(result.panels)
    right_default = "student" if "student" in names else (result.outputs or names)[0]
    a, b = st.columns(2)
    left = a.selectbox("Left of the divider", names, index=names.index(INPUT), key="cmp_wipe_left")
    right = b.selectbox("Right of the divider", names, index=names.index(right_default), key="cmp_wipe_right")
    return left, right


def label(result: Comparison, name: str) -> str:
    if name == ORIGINAL:
        return "original (sharp)"
    if name == INPUT:
        return f"degraded: {result.degradation} x{result.strength:g}" if result.has_reference else "your photo (input)"
    return model_label(name, models[name]) if name in models else name


def score_line(scores: dict[str, float]) -> str:
    parts = [f"PSNR {scores['psnr']:.2f} dB", f"SSIM {scores['ssim']:.4f}"] if "psnr" in scores else []
    return " · ".join([*parts, f"sharpness {scores['sharpness']:.2f}"])


def render_panels(result: Comparison) -> None:
    names = list(result.panels)
    per_row = min(5, len(names))
    for start in range(0, len(names), per_row):
        for col, name in zip(st.columns(per_row), names[start : start + per_row]):
            col.image(result.panels[name], caption=label(result, name), width="stretch", output_format="PNG")
            ms = result.timings_ms.get(name)
            col.caption(score_line(result.scores[name]) + (f" · {ms:.0f} ms" if ms is not None else ""))
            if name != ORIGINAL:
                col.download_button(
                    "Download PNG",
                    data=partial(result.png, name),
                    file_name=f"sharpkd-{name.replace(' ', '_')}.png",
                    mime="image/png",
                    on_click="ignore",
                    key=f"cmp_dl_{name}",
                )


def timing_chart(result: Comparison) -> go.Figure:
    names = list(result.timings_ms)
    fig = go.Figure(go.Bar(x=names, y=[result.timings_ms[n] for n in names]))
    h, w = result.panels[INPUT].shape[:2]
    fig.update_layout(
        title=f"Inference time on this {w}x{h} image (this machine)",
        yaxis_title="ms",
        height=320,
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


st.title("Compare")
st.caption(
    "One photo through the teacher, the student, the classical peers (tuned on the validation images) and any other "
    "students you tick."
)

source_col, degradation_col, models_col = st.columns([2, 1, 1])
with source_col:
    image = image_ui()
with degradation_col:
    degradation, strength = degradation_ui()
with models_col:
    models = models_ui()
if image is None:
    st.info("Pick a sample photo, upload an image or take a webcam snapshot to start.")
    st.stop()
try:
    result = run_compare(image, degradation, strength, model_ids(models), models)
except ValueError as err:
    st.error(f"Could not compare on this image: {err}")
    st.stop()

render_panels(result)
if result.has_reference:
    st.caption("PSNR and SSIM are measured against the sharp original; higher is better.")
else:
    st.info(
        "This photo has no sharp original, and SSIM and PSNR need a sharp reference, so the outputs are scored "
        "by a no-reference sharpness score instead (mean edge strength: higher is crisper, but noise and halos "
        "raise it too)."
    )
st.dataframe(result.table(), hide_index=True, key="cmp_table")

st.subheader("Zoom")
center, zoom = zoom_ui()
crops = result.zoomed(center, zoom, size=ZOOM_SIZE)
for start in range(0, len(crops), 5):
    for col, (name, crop) in zip(st.columns(5), list(crops.items())[start : start + 5]):
        col.image(crop, caption=label(result, name), width=crop.shape[1], output_format="PNG")

st.subheader("Before / after")
left, right = wipe_ui(result)
view = sharpkd.app.wipe.wipe_view(
    result.panels[left], result.panels[right], before_label=label(result, left), after_label=label(result, right)
)
st.iframe(view.html, height=view.height, alt=f"wipe between {left} and {right}")

if result.timings_ms:
    st.plotly_chart(timing_chart(result), key="cmp_timing")
