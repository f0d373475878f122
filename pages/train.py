"""Train: distil a student from the shipped teacher in a background thread, with live loss and validation curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import sharpkd
import sharpkd.app.jobs
from pages import JOB_KEY, UPLOAD_TYPES, decode_upload, load_models, trained_models
from sharpkd.app.jobs import JobConfig, JobSnapshot, TrainingJob
from sharpkd.degrade import PRESETS, list_degradations
from sharpkd.errors import SharpkdError
from sharpkd.models import list_models

if TYPE_CHECKING:
    import torch.nn as nn  # only for annotations: pages import torch through sharpkd (see app.py)

DEFAULTS = JobConfig()
SAMPLES, MINE = "Built-in sample photos", "My photos"
PATCH_SIZES = (32, 48, 64, 96)
# (name, label, default, help); the teacher terms are switched off when no teacher is shipped.
LOSS_SLIDERS = (
    ("l1", "L1 to ground truth", 1.0, "Charbonnier distance to the sharp image"),
    ("kd", "KD: L1 to the teacher", 0.5, "Output distillation: imitate the teacher's restored image"),
    ("feat", "Feature distillation", 0.0, "Match the teacher's internal features through a 1x1 adapter"),
    ("ssim", "1 - SSIM", 0.0, "Structural similarity to ground truth"),
    ("edge", "Edge (Sobel) L1", 0.0, "Match image gradients: rewards crisp edges"),
)


def teacher_ui() -> nn.Module | None:
    """The shipped teacher's network, or None (with a note) when there is none."""
    if "teacher" not in sharpkd.list_pretrained():
        st.info(
            "No shipped teacher in models/ (or $SHARPKD_MODELS), so the distillation terms (KD, features) are off "
            "and the student learns from the sharp photos alone."
        )
        return None
    models = load_models(["teacher"])
    return models["teacher"].model if "teacher" in models else None


def settings_ui(has_teacher: bool, disabled: bool) -> JobConfig | None:
    """The run's settings; None (with an error shown) when the loss weights are unusable."""
    a, b, c = st.columns(3)
    students = list_models("student")
    student = a.selectbox(
        "Student architecture", students, index=students.index(DEFAULTS.student), disabled=disabled, key="tr_student"
    )
    steps = b.number_input("Steps", 1, 5000, DEFAULTS.steps, step=50, disabled=disabled, key="tr_steps")
    patch = c.select_slider("Patch size", PATCH_SIZES, value=DEFAULTS.patch_size, disabled=disabled, key="tr_patch")
    degradations = list_degradations()
    degradation = a.selectbox(
        "Training degradation",
        degradations,
        index=degradations.index(DEFAULTS.degradation),
        help=f"presets: the {len(PRESETS)} evaluation presets ({', '.join(PRESETS)}); mix: random blur, resize, "
        "noise and JPEG chains; mix+presets: half each",
        disabled=disabled,
        key="tr_degradation",
    )
    st.markdown("**Loss weights**")
    weights = {}
    for col, (name, text, default, help_text) in zip(st.columns(len(LOSS_SLIDERS)), LOSS_SLIDERS):
        needs_teacher = name in ("kd", "feat")
        value = col.slider(
            text,
            0.0,
            2.0,
            default,
            0.1,
            help=help_text,
            disabled=disabled or (needs_teacher and not has_teacher),
            key=f"tr_w_{name}",
        )
        weights[name] = 0.0 if needs_teacher and not has_teacher else value
    try:
        losses = sharpkd.app.jobs.loss_spec(weights)
    except ValueError as err:
        st.error(f"Check the loss weights: {err}")
        return None
    st.caption(f"Loss: `{losses}` · batch {DEFAULTS.batch_size} · validation every {DEFAULTS.val_every} steps")
    return JobConfig(student=student, steps=int(steps), patch_size=int(patch), losses=losses, degradation=degradation)


def data_ui(disabled: bool) -> list[np.ndarray] | None:
    """None for the built-in photos, else the decoded uploads (bad files are reported and skipped)."""
    source = st.radio("Training photos", (SAMPLES, MINE), horizontal=True, disabled=disabled, key="tr_source")
    if source == SAMPLES:
        return None
    files = st.file_uploader(
        "Sharp photos to train on",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        disabled=disabled,
        key="tr_upload",
    )
    loaded = [decode_upload(f) for f in files or []]
    return [x.pixels for x in loaded if x is not None]


def loss_chart(snap: JobSnapshot) -> go.Figure:
    steps, losses = zip(*snap.losses) if snap.losses else ((), ())
    fig = go.Figure(go.Scatter(x=steps, y=losses, mode="lines", name="training loss"))
    fig.update_layout(title="Training loss", xaxis_title="step", yaxis_type="log", height=300, margin=_MARGIN)
    return fig


def val_chart(snap: JobSnapshot, metric: str, unit: str) -> go.Figure:
    steps = [v["step"] for v in snap.val]
    fig = go.Figure(go.Scatter(x=steps, y=[v[metric] for v in snap.val], mode="lines+markers", name="student"))
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=[v[f"input_{metric}"] for v in snap.val],
            mode="lines",
            name="degraded input",
            line=dict(dash="dash"),
        )
    )
    fig.update_layout(
        title=f"Validation {metric.upper()}", xaxis_title="step", yaxis_title=unit, height=300, margin=_MARGIN
    )
    return fig


_MARGIN = dict(l=10, r=10, t=50, b=10)


def render_progress(snap: JobSnapshot) -> None:
    st.progress(snap.fraction, text=f"{snap.status}: step {snap.step} of {snap.total} · {snap.elapsed_s:.0f} s")
    if snap.status == "failed":
        st.error(f"Training failed: {snap.error}")
    elif snap.status == "cancelled":
        st.warning(f"Cancelled at step {snap.step}; the student trained so far is kept.")
    if snap.val:
        first, last = snap.val[0], snap.val[-1]
        a, b, c = st.columns(3)
        a.metric("Validation PSNR", f"{last['psnr']:.2f} dB", f"{last['psnr'] - first['psnr']:+.2f} dB since step 0")
        b.metric("Validation SSIM", f"{last['ssim']:.4f}", f"{last['ssim'] - first['ssim']:+.4f} since step 0")
        c.metric("Degraded input PSNR", f"{last['input_psnr']:.2f} dB")
    left, mid, right = st.columns(3)
    left.plotly_chart(loss_chart(snap), key="tr_loss_chart")
    mid.plotly_chart(val_chart(snap, "psnr", "dB"), key="tr_psnr_chart")
    right.plotly_chart(val_chart(snap, "ssim", ""), key="tr_ssim_chart")


def job_view(job: TrainingJob) -> None:
    running = job.status == "running"

    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        snap = job.snapshot()
        if running and snap.status != "running":
            st.rerun()  # the whole page: the result, the download and the Compare registration appear
        render_progress(snap)
        if snap.status == "running" and st.button("Cancel training", key="tr_cancel"):
            job.cancel()
            st.toast("Cancelling after the current step…")

    live()
    if job.checkpoint_path is not None:
        trained_models()  # registers the finished student for the Compare page
        st.success(f"**{job.name}** is ready: tick it under *More students* on the Compare page.")
        st.page_link("pages/compare.py", label="Open Compare", icon=":material/compare:")
        st.download_button(
            "Download checkpoint (.pt)",
            data=job.checkpoint_bytes,
            file_name=f"{job.name}.pt",
            mime="application/octet-stream",
            on_click="ignore",
            key="tr_download",
        )
        st.caption(f"In Python: `sharpkd.load('{job.name}.pt').sharpen(frame)`.")


st.title("Train a student")
st.caption(
    "A short distillation run in the background: the defaults take about a minute on two CPU cores and lift the "
    "validation PSNR from where the untrained student starts. Widget clicks don't interrupt it."
)
job: TrainingJob | None = st.session_state.get(JOB_KEY)
busy = job is not None and job.status == "running"
teacher = teacher_ui()
cfg = settings_ui(teacher is not None, busy)
images = data_ui(busy)
if images == []:
    st.info("Upload at least one sharp photo, or train on the built-in sample photos.")
start = st.button("Start training", type="primary", disabled=busy or cfg is None or images == [], key="tr_start")
if start:
    count = st.session_state["tr_count"] = st.session_state.get("tr_count", 0) + 1
    try:
        job = TrainingJob(cfg, teacher, images, name=f"my-{cfg.student}-{count}").start()
    except (ValueError, SharpkdError) as err:
        st.error(f"Could not start training: {err}")
    else:
        st.session_state[JOB_KEY] = job
        st.rerun()
if job is None:
    st.info("Set up a run and press **Start training**.")
    st.stop()
job_view(job)
