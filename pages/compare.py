"""Compare: one photo through the student, the tuned classical peers and (optionally) the teacher; a large
before/after wipe on the most detailed region, what each model changed, scores and timings."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import sharpkd
import sharpkd.app.compare
import sharpkd.app.gate
import sharpkd.app.wipe
from pages import MAX_PIXELS, UPLOAD_HARD_LIMIT, UPLOAD_TYPES, decode_upload, gate_notice, load_models, trained_models
from sharpkd.app.compare import INPUT, ORIGINAL, Comparison, model_label
from sharpkd.app.viewer import enlarge
from sharpkd.data import sample_images
from sharpkd.degrade import PRESET_SUMMARIES, PRESETS
from sharpkd.runtime.classical import CLASSICAL, list_peers

SOURCES = ("Sample photo", "Upload", "Webcam snapshot")
WEBCAM = SOURCES[2]
ALREADY_BLURRY = "already blurry"  # short, so the select box shows all of it; PRESET_HELP explains it
DEFAULT_PRESET = "vc"
TEACHER = "teacher"
STUDENT = "student"
PRESET_HELP = " ".join(f"{name}: {PRESET_SUMMARIES[name]}." for name in PRESETS) + (
    f" '{ALREADY_BLURRY}': the photo is soft to begin with (a webcam snapshot, say), so nothing is degraded and "
    "there is no sharp original to score against: the outputs get a no-reference sharpness score instead."
)
PEER_HELP = (
    "Non-learned sharpeners, each at the setting tuned on the validation images (models/<peer>.json): "
    + "; ".join(f"{name}: {CLASSICAL[name].description}" for name in list_peers())
)
# Off by default: the teacher (the large model the student learned from) takes 10-30 s on a 512 px photo on a
# shared CPU, and most of a visit is spent changing presets, peers and the zoom, which should answer at once. Its
# result is cached per photo, preset and strength, so ticking it costs that wait once.
TEACHER_HELP = (
    "The large network the student was distilled from: the quality the student aims for, but 10-30 s on a 512 px "
    "photo here. Runs once per photo, preset and strength (then cached), through its fastest backend."
)
FAST_CALLS = 3  # sharpen() calls per fast model; the time shown is their median
ZOOMS = (1, 2, 3, 4, 6, 8)  # 1 is the whole photo
DEFAULT_ZOOM = 4
WIPE_WIDTH = 1400  # CSS px of the main view on a wide page (it shrinks with the page)
VIEW_ASPECT = 16 / 9  # zoomed regions are wide strips, so the main view fills the page's width, not its height
THUMBS_PER_ROW = 6
DIFFS_PER_ROW = 3  # the amplified differences are shown larger than the thumbnails: they are what to look at
DIFF_WIDTH = 400  # px the amplified differences are enlarged to (nearest-neighbour), at least


@st.cache_data(show_spinner=False)
def gallery() -> dict[str, np.ndarray]:
    return sample_images()


def image_key(image: np.ndarray) -> str:
    # The caches below are keyed on this instead of hashing the array on every call.
    return f"{image.shape}:{hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()}"


@st.cache_data(show_spinner=False, max_entries=8)
def run_teacher(
    key: str, degradation: str | None, strength: float, teacher_id: str, _image: np.ndarray, _teacher: sharpkd.Sharpener
) -> tuple[np.ndarray, float, int]:
    # One call: it is the slow one, and its time is stated as a single call.
    lq = sharpkd.app.compare.degraded_input(_image, degradation, strength)
    with sharpkd.app.gate.heavy():
        pred, ms = sharpkd.app.compare.run_timed(_teacher, lq, calls=1)
    return pred, ms, 1


@st.cache_data(show_spinner=False, max_entries=4)
def run_compare(
    key: str,
    degradation: str | None,
    strength: float,
    ids: tuple[str, ...],
    _image: np.ndarray,
    _models: dict,
    _precomputed: dict,
) -> Comparison:
    # `ids` stands in for the unhashable models (and the cached teacher output) in the key shared by all sessions.
    with sharpkd.app.gate.heavy():
        return sharpkd.app.compare.compare(
            _image, degradation, strength, _models, calls=FAST_CALLS, precomputed=_precomputed
        )


def model_ids(models: dict[str, sharpkd.Sharpener]) -> tuple[str, ...]:
    # Students trained here are named per session ("my-conv4-1"); their checkpoint path is unique across sessions.
    return tuple(f"{name}:{model.meta.get('checkpoint', '')}" for name, model in models.items())


def _source_changed() -> None:
    # A webcam frame has no sharp original: default it to "already blurry", and back when leaving the webcam.
    if st.session_state.get("cmp_source") == WEBCAM:
        st.session_state["cmp_degr"] = ALREADY_BLURRY
    elif st.session_state.get("cmp_degr") == ALREADY_BLURRY:
        st.session_state["cmp_degr"] = DEFAULT_PRESET


def image_ui() -> np.ndarray | None:
    """The photo to work on: a built-in sample, an upload or a webcam snapshot (None until there is one)."""
    source = st.radio("Image", SOURCES, horizontal=True, key="cmp_source", on_change=_source_changed)
    if source == SOURCES[0]:
        photos = gallery()
        name = st.selectbox("Sample photo", list(photos), key="cmp_sample")
        st.image(list(photos.values()), caption=list(photos), width=64)
        return photos[name]
    if source == SOURCES[1]:
        file = st.file_uploader(
            "Upload a photo (PNG, JPEG, WebP, BMP, GIF or TIFF)",
            type=UPLOAD_TYPES,
            help=f"Up to {UPLOAD_HARD_LIMIT / 1e6:.0f} MP; photos over {MAX_PIXELS / 1e6:.0f} MP are downscaled to it.",
            key="cmp_upload",
        )
    else:
        file = st.camera_input("Take a snapshot", key="cmp_camera")
    if file is None:
        return None
    loaded = decode_upload(file, remember="cmp_decoded")
    return loaded.pixels if loaded is not None else None


def degradation_ui() -> tuple[str | None, float]:
    """A preset and its strength, or (None, 1.0) for an already blurry photo."""
    webcam = st.session_state.get("cmp_source") == WEBCAM
    st.session_state.setdefault("cmp_degr", ALREADY_BLURRY if webcam else DEFAULT_PRESET)
    choice = st.selectbox("Degradation", [*PRESETS, ALREADY_BLURRY], help=PRESET_HELP, key="cmp_degr")
    blurry = choice == ALREADY_BLURRY
    strength = st.slider("Strength", 0.25, 2.0, 1.0, 0.25, disabled=blurry, key="cmp_strength")
    return (None, 1.0) if blurry else (choice, strength)


def models_ui() -> tuple[dict[str, sharpkd.Sharpener], sharpkd.Sharpener | None]:
    """The fast models (student, the classical peers, the students the user ticks) and the teacher when ticked."""
    shipped = sharpkd.list_pretrained()
    trained = trained_models()
    others = [n for n in shipped if n not in (TEACHER, STUDENT)]
    with_teacher = TEACHER in shipped and st.checkbox(
        "Run the teacher too (slow)", value=False, help=TEACHER_HELP, key="cmp_teacher"
    )
    peers = st.multiselect("Classical peers", list_peers(), default=list_peers(), help=PEER_HELP, key="cmp_peers")
    extra = st.multiselect(
        "More students",
        [*others, *trained],
        default=list(trained),
        help="The student always runs; tick shipped students or ones trained on the Train page",
        key="cmp_extra",
    )
    if not shipped:
        st.info(
            "No trained models found in models/ (or $SHARPKD_MODELS), so only the classical peers run. "
            "Train a student on the Train page to compare it here."
        )
    models = load_models([n for n in (STUDENT,) if n in shipped] + peers + [n for n in extra if n in others])
    models.update({n: trained[n] for n in extra if n in trained})
    teacher = load_models([TEACHER]).get(TEACHER) if with_teacher else None
    return models, teacher


def label(result: Comparison, name: str, labels: dict[str, str]) -> str:
    if name == ORIGINAL:
        return "original (sharp)"
    if name == INPUT:
        return f"degraded: {result.degradation} x{result.strength:g}" if result.has_reference else "your photo (input)"
    return labels.get(name, name)


def gain_text(result: Comparison, name: str) -> str:
    gain = result.gain_db(name)
    return f"{gain:+.2f} dB over the input" if gain is not None and name not in (ORIGINAL, INPUT) else ""


def score_line(result: Comparison, name: str) -> str:
    s = result.scores[name]
    ms, calls = result.timings_ms.get(name), result.timing_calls.get(name, 1)
    parts = [gain_text(result, name)]
    parts += [f"PSNR {s['psnr']:.2f} dB", f"SSIM {s['ssim']:.4f}"] if "psnr" in s else []
    parts += [f"sharpness {s['sharpness']:.2f}"]
    parts += [f"{ms:.0f} ms ({'median of ' + str(calls) if calls > 1 else '1 call'})"] if ms is not None else []
    return " · ".join(p for p in parts if p)


def view_ui(result: Comparison, key: str) -> tuple[str, str, tuple[float, float], int]:
    """The two panels of the main wipe, the zoom and its centre (defaults: input vs student, the most detailed
    region; the centre follows the detail until the user moves it)."""
    names = list(result.panels)
    right_default = STUDENT if STUDENT in names else (result.outputs or names)[-1]
    a, b, c = st.columns([2, 2, 3])
    left = a.selectbox("Left of the divider", names, index=names.index(INPUT), key="cmp_wipe_left")
    right = b.selectbox("Right of the divider", names, index=names.index(right_default), key="cmp_wipe_right")
    zoom = c.select_slider(
        "Zoom", ZOOMS, value=DEFAULT_ZOOM, format_func=lambda z: "whole photo" if z == 1 else f"{z}x", key="cmp_zoom"
    )
    auto = tuple(round(100 * f) for f in result.detail_center(zoom, aspect(zoom)))
    current = (st.session_state.get("cmp_zoom_x"), st.session_state.get("cmp_zoom_y"))
    last_key, last_auto = st.session_state.get("cmp_zoom_auto", (None, None))
    if last_key != key or current == last_auto or None in current:  # a new photo, or the user has not moved it
        st.session_state["cmp_zoom_x"], st.session_state["cmp_zoom_y"] = auto
    st.session_state["cmp_zoom_auto"] = (key, auto)
    x, y = st.columns(2)
    cx = x.slider("Zoom centre x (%)", 0, 100, key="cmp_zoom_x", disabled=zoom == 1)
    cy = y.slider("Zoom centre y (%)", 0, 100, key="cmp_zoom_y", disabled=zoom == 1)
    return left, right, (cx / 100, cy / 100), zoom


def aspect(zoom: int) -> float | None:
    return None if zoom == 1 else VIEW_ASPECT


def render_view(result: Comparison, labels: dict[str, str], key: str) -> None:
    left, right, center, zoom = view_ui(result, key)
    region = result.region(center, zoom, aspect(zoom))
    view = sharpkd.app.wipe.wipe_view(
        np.ascontiguousarray(region[left]),
        np.ascontiguousarray(region[right]),
        before_label=" ".join([label(result, left, labels), gain_text(result, left)]).strip(),
        after_label=" ".join([label(result, right, labels), gain_text(result, right)]).strip(),
        max_width=WIPE_WIDTH,
        display_width=WIPE_WIDTH,
    )
    st.iframe(view.html, height="content", alt=f"wipe between {left} and {right}")
    h, w = region[INPUT].shape[:2]
    where = (
        "the whole photo" if zoom == 1 else f"a {w}x{h} px region, {zoom}x, centred at {center[0]:.0%}, {center[1]:.0%}"
    )
    st.caption(
        f"Drag the divider (or use the slider under the image). Showing {where}; the zoom starts on the most "
        "detailed region (highest gradient energy) and enlarges with square pixels, so what you see is the output."
    )
    if result.outputs:
        diffs, gain = result.differences(center, zoom, aspect(zoom))
        st.subheader("What each model changed")
        st.caption(f"|output − input| on the same region, amplified {gain}x (brighter: a bigger change; black: none).")
        names = list(diffs)
        for start in range(0, len(names), DIFFS_PER_ROW):
            for col, name in zip(st.columns(DIFFS_PER_ROW), names[start : start + DIFFS_PER_ROW]):
                caption = " · ".join(p for p in (label(result, name, labels), gain_text(result, name)) if p)
                col.image(enlarge(diffs[name], DIFF_WIDTH), caption=caption, width="stretch", output_format="PNG")


def render_panels(result: Comparison, labels: dict[str, str]) -> None:
    names = list(result.panels)
    for start in range(0, len(names), THUMBS_PER_ROW):
        for col, name in zip(st.columns(THUMBS_PER_ROW), names[start : start + THUMBS_PER_ROW]):
            col.image(result.panels[name], caption=label(result, name, labels), width="stretch", output_format="PNG")
            col.caption(score_line(result, name))
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
    single = [n for n in names if result.timing_calls.get(n, 1) == 1]
    note = f"median of {FAST_CALLS} calls" + (f"; {', '.join(single)}: 1 call" if single else "")
    fig.update_layout(
        title=f"Inference time on this {w}x{h} image (this machine; {note})",
        yaxis_title="ms",
        height=320,
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


def run(
    image: np.ndarray, key: str, degradation: str | None, strength: float, models: dict, teacher
) -> Comparison | None:
    """The teacher (cached on its own, so changing the peers never reruns it), then the fast models."""
    precomputed = {}
    try:
        if teacher is not None:
            with gate_notice(), st.spinner("Running the teacher (10-30 s; once per photo, preset and strength)…"):
                precomputed[TEACHER] = run_teacher(
                    key, degradation, strength, model_ids({TEACHER: teacher})[0], image, teacher
                )
        ids = model_ids(models) + tuple(precomputed)
        with gate_notice(), st.spinner(f"Sharpening with {len(models)} models ({FAST_CALLS} timed calls each)…"):
            return run_compare(key, degradation, strength, ids, image, models, precomputed)
    except ValueError as err:
        st.error(f"Could not compare on this image: {err}")
        return None


def render_photo() -> None:
    source_col, degradation_col, models_col = st.columns([2, 1, 1])
    with source_col:
        image = image_ui()
    with degradation_col:
        degradation, strength = degradation_ui()
    with models_col:
        models, teacher = models_ui()
    if image is None:
        st.info("Pick a sample photo, upload an image or take a webcam snapshot to start.")
        return
    key = image_key(image)
    result = run(image, key, degradation, strength, models, teacher)
    if result is None:
        return
    all_models = {**({TEACHER: teacher} if teacher is not None else {}), **models}
    labels = {name: model_label(name, model) for name, model in all_models.items()}

    render_view(result, labels, key)
    st.subheader("All outputs")
    render_panels(result, labels)
    if result.has_reference:
        st.caption(
            "PSNR and SSIM are measured against the sharp original; higher is better. The gain is the PSNR "
            "over the degraded input's."
        )
    else:
        st.info(
            "This photo has no sharp original, and SSIM and PSNR need a sharp reference, so the outputs are scored "
            "by a no-reference sharpness score instead (mean edge strength: higher is crisper, but noise and halos "
            "raise it too)."
        )
    st.dataframe(result.table(), hide_index=True, key="cmp_table")
    if result.timings_ms:
        st.plotly_chart(timing_chart(result), key="cmp_timing")


def render_video() -> None:
    # pages/compare_video.py (the Video tab) is written separately; until it exists the tab says so.
    if importlib.util.find_spec("pages.compare_video") is None:
        st.info("Video comparison is not available in this version.")
        return
    import pages.compare_video

    pages.compare_video.render()


st.title("Compare")
st.caption(
    "One photo through the student, the classical peers (tuned on the validation images), any other students you "
    "tick and, if you like, the teacher; a short clip through the student on the Video tab."
)
photo_tab, video_tab = st.tabs(["Photo", "Video"], key="cmp_tab", on_change="rerun")
if video_tab.open:
    with video_tab:
        render_video()
if photo_tab.open:
    with photo_tab:
        render_photo()
