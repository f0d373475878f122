"""Train: fine-tune (or train from scratch) a student distilled from the shipped teacher, in a background thread, with
live loss and validation curves; or fine-tune the shipped student on the user's own soft frames or clip, which the
teacher labels (sharpkd.app.finetune). Runs live in a server-wide registry: a reloaded page (job id in the URL)
reattaches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

import sharpkd
import sharpkd.app.finetune
import sharpkd.app.jobs
from pages import JOB_KEY, UPLOAD_TYPES, decode_upload, heavy_run, load_models, trained_models
from sharpkd.app.charts import gain_figure, loss_figure
from sharpkd.app.finetune import FootageJob
from sharpkd.app.jobs import JobConfig, JobSnapshot, TrainingJob
from sharpkd.degrade import PRESETS, list_degradations
from sharpkd.errors import SharpkdError
from sharpkd.models import list_models

if TYPE_CHECKING:
    import torch.nn as nn  # only for annotations: pages import torch through sharpkd (see app.py)

    from sharpkd.training.unlabeled import Footage

DEFAULTS = JobConfig()
FOOTAGE_DEFAULTS = sharpkd.app.finetune.footage_config()
SAMPLES, MINE, FOOTAGE = "Built-in sample photos", "My photos", "My soft footage (the teacher labels it)"
FOOTAGE_CACHE_KEY = "tr_footage_decoded"  # session_state: {upload file_id: FootageUpload or error text}
FINE_TUNE, SCRATCH = "Fine-tune the shipped student", "Train from scratch"
JOB_PARAM = "job"  # st.query_params: the id of the run this page shows, so a browser reload finds it again
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


def init_ui(disabled: bool) -> str | None:
    """What the student starts from: the shipped student's weights (the default, when shipped) or None (scratch)."""
    options = (FINE_TUNE, SCRATCH) if DEFAULTS.init in sharpkd.list_pretrained() else (SCRATCH,)
    choice = st.radio(
        "Start from",
        options,
        horizontal=True,
        disabled=disabled,
        key="tr_init",
        help="Fine-tuning starts from models/student.pt (its own architecture) and adapts it to the training photos; "
        "from scratch, a minute of training barely gets past the degraded input.",
    )
    return DEFAULTS.init if choice == FINE_TUNE else None


def settings_ui(has_teacher: bool, disabled: bool) -> JobConfig | None:
    """The run's settings; None (with an error shown) when the loss weights are unusable."""
    init = init_ui(disabled)
    a, b, c = st.columns(3)
    students = list_models("student")
    if init is None:
        student = a.selectbox(
            "Student architecture",
            students,
            index=students.index(DEFAULTS.student),
            disabled=disabled,
            key="tr_student",
        )
    else:  # the checkpoint describes itself: its architecture is the one trained
        shipped = load_models([init]).get(init)
        preset = shipped.meta.get("preset", "?") if shipped is not None else "?"
        a.selectbox(
            "Student architecture",
            [f"{preset} (the shipped student's)"],
            disabled=True,
            help="Fine-tuning keeps the shipped student's architecture; train from scratch to pick another.",
            key="tr_student_shipped",
        )
        student = DEFAULTS.student
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
    cfg = JobConfig(
        init=init, student=student, steps=int(steps), patch_size=int(patch), losses=losses, degradation=degradation
    )
    st.caption(
        f"Loss: `{losses}` · batch {cfg.batch_size} · peak learning rate {cfg.peak_lr:g} · validation every "
        f"{cfg.val_every} steps on {', '.join(cfg.val_images)}"
    )
    return cfg


def source_ui(footage_ok: bool, disabled: bool) -> str:
    """What to train on: sharp photos (built-in or uploaded, degraded on the fly) or soft footage (teacher-labelled;
    offered when the teacher and the student are shipped)."""
    return st.radio(
        "Training photos",
        (SAMPLES, MINE, FOOTAGE) if footage_ok else (SAMPLES, MINE),
        horizontal=True,
        disabled=disabled,
        key="tr_source",
        help="Sharp photos are degraded on the fly and the student learns to undo that. Soft footage (frames or a "
        "clip of your own calls, no sharp originals) is labelled by the teacher, and the shipped student learns to "
        "imitate it on exactly that footage.",
    )


def data_ui(source: str, disabled: bool) -> list[np.ndarray] | None:
    """None for the built-in photos, else the decoded uploads (bad files are reported and skipped)."""
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


def footage_settings_ui(disabled: bool) -> JobConfig:
    """A footage run's settings: steps and crop size; the rest is the recipe of sharpkd.app.finetune."""
    d = FOOTAGE_DEFAULTS
    a, b = st.columns(2)
    steps = a.number_input("Steps", 1, 20000, d.steps, step=100, disabled=disabled, key="tr_ft_steps")
    patch = b.select_slider("Patch size", PATCH_SIZES, value=d.patch_size, disabled=disabled, key="tr_ft_patch")
    cfg = sharpkd.app.finetune.footage_config(steps=int(steps), patch_size=int(patch))
    st.caption(
        f"Fine-tunes the shipped student. Targets: the teacher's output on each whole frame · loss `{cfg.losses}` · "
        f"batch {cfg.batch_size} · peak learning rate {cfg.peak_lr:g} · {sharpkd.app.finetune.FOOTAGE_CROPS} crops · "
        "validation: PSNR to the teacher's output on held-back frames (one in eight; with fewer than eight frames, "
        "the training frames). The student adapts to this footage and may sharpen other kinds of softness less."
    )
    return cfg


def _decode_footage(file) -> sharpkd.app.finetune.FootageUpload | None:
    """One upload, decoded once per session (a clip decodes in seconds); a bad file becomes ``st.error``."""
    cache = st.session_state.setdefault(FOOTAGE_CACHE_KEY, {})
    if file.file_id not in cache:
        try:
            with heavy_run():
                cache[file.file_id] = sharpkd.app.finetune.decode_footage(file.name, file.getvalue())
        except SharpkdError as err:
            cache[file.file_id] = str(err)
    got = cache[file.file_id]
    if isinstance(got, str):
        reason = got.removeprefix(f"{file.name}: ")  # the library's message may already name the file
        st.error(f"Could not use {file.name}: {reason}")
        return None
    for note in got.notes:
        st.caption(f"{file.name}: {note}.")
    return got


def footage_ui(disabled: bool, patch_size: int) -> Footage | None:
    """The uploaded soft frames and clips as footage; None (with the reason shown) when there is nothing usable."""
    limits = sharpkd.app.finetune.LIMITS
    st.caption(f"Upload {limits.describe()}.")
    files = st.file_uploader(
        "Soft frames or a short clip",
        type=sharpkd.app.finetune.FOOTAGE_TYPES,
        accept_multiple_files=True,
        max_upload_size=limits.clip.max_bytes // (1024 * 1024),
        disabled=disabled,
        key="tr_footage",
    )
    ids = {f.file_id for f in files or []}
    cache = st.session_state.get(FOOTAGE_CACHE_KEY, {})
    for stale in [k for k in cache if k not in ids]:  # removed uploads: drop their frames
        del cache[stale]
    uploads = [u for u in (_decode_footage(f) for f in files or []) if u is not None]
    if not uploads:
        return None
    try:
        footage = sharpkd.app.finetune.footage_from_uploads(uploads, patch_size)
    except SharpkdError as err:
        st.error(f"Could not use the footage: {err}")
        return None
    for name, reason in footage.skipped:
        st.warning(f"Skipping {name}: {reason}.")
    st.caption(f"{len(footage)} frames to fine-tune on: {', '.join(footage.names)}")
    return footage


def render_progress(snap: JobSnapshot, labelling: tuple[int, int] | None = None) -> None:
    if labelling is not None and snap.status == "running":
        done, total = labelling
        st.progress(
            done / max(1, total),
            text=f"The teacher is labelling the frames: {done} of {total} · {snap.elapsed_s:.0f} s",
        )
        return
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
        c.metric(
            "Gain over the degraded input",
            f"{last['psnr'] - last['input_psnr']:+.2f} dB",
            help=f"degraded input: {last['input_psnr']:.2f} dB",
        )
    left, mid, right = st.columns(3)
    left.plotly_chart(loss_figure(snap.losses), key="tr_loss_chart")
    mid.plotly_chart(gain_figure(snap.val, "psnr"), key="tr_psnr_chart")
    right.plotly_chart(gain_figure(snap.val, "ssim"), key="tr_ssim_chart")


def job_view(job: TrainingJob) -> None:
    running = job.status == "running"
    cfg = job.cfg
    footage = isinstance(job, FootageJob)
    start = f"fine-tunes `{cfg.init}`" if cfg.init is not None else f"trains a `{cfg.student}` from scratch"
    data = "of your footage, labelled by the teacher" if footage else f"({cfg.degradation})"
    st.caption(
        f"**{job.name}** {start}: {cfg.steps} steps of {cfg.batch_size} patches of {cfg.patch_size} px "
        f"{data}, loss `{cfg.losses}`, peak learning rate {cfg.peak_lr:g}."
    )
    if footage:
        st.caption(
            "Validation is agreement with the teacher: PSNR and SSIM of the student's output to the teacher's on "
            "held-back frames, and their gain over the soft frames' own (footage has no sharp originals)."
        )

    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        snap = job.snapshot()
        if running and snap.status != "running":
            st.rerun()  # the whole page: the result, the download and the Compare registration appear
        render_progress(snap, job.labelling if footage else None)
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


def attached_job() -> TrainingJob | None:
    """The run this page shows: the one in the URL (after a reload or a shared link), else this session's latest."""
    job_id = st.query_params.get(JOB_PARAM)
    job = sharpkd.app.jobs.JOBS.get(job_id)
    if job is None and job_id is not None:
        st.warning("That training run is no longer on this server (the app was restarted or the run is too old).")
        del st.query_params[JOB_PARAM]
    job = job or st.session_state.get(JOB_KEY)
    if job is not None:
        st.session_state[JOB_KEY] = job  # so trained_models() (and Compare) find it
        st.query_params[JOB_PARAM] = job.id
    return job


def runs_ui(current: TrainingJob | None) -> None:
    """The runs on this server (running and finished), each with a button that opens it."""
    jobs = sharpkd.app.jobs.JOBS.jobs()
    if not jobs or (len(jobs) == 1 and jobs[0] is current):
        return
    with st.expander(f"Training runs on this server ({len(jobs)})"):
        for job in jobs:
            snap = job.snapshot()
            gain = f" · {snap.val[-1]['psnr'] - snap.val[-1]['input_psnr']:+.2f} dB over the input" if snap.val else ""
            text, button = st.columns([5, 1])
            text.markdown(f"**{job.name}** · {snap.status} · step {snap.step} of {snap.total}{gain}")
            shown = job is current
            if button.button("Shown" if shown else "Open", disabled=shown, key=f"tr_open_{job.id}"):
                st.session_state[JOB_KEY] = job
                st.query_params[JOB_PARAM] = job.id
                st.rerun()


def new_job(source: str, cfg: JobConfig, teacher: nn.Module | None, data: Any) -> TrainingJob:
    """The run the button starts, named by the server's run count: a reloaded page (a new session) must not reuse the
    name of its old run."""
    number = sharpkd.app.jobs.JOBS.started + 1
    if source == FOOTAGE:
        return FootageJob(cfg, teacher, data, name=f"my-{cfg.init}-footage-{number}")
    stem = cfg.student if cfg.init is None else cfg.init
    return TrainingJob(cfg, teacher, data, name=f"my-{stem}-{number}")


st.title("Train a student")
st.caption(
    "A short run in the background: by default it fine-tunes the shipped student on the built-in photos, distilling "
    "from the teacher, in about a minute on one CPU core; or on your own soft footage, which the teacher labels. "
    "Widget clicks, other pages and browser reloads don't interrupt it."
)
job = attached_job()
busy = job is not None and job.status == "running"
teacher = teacher_ui()
source = source_ui(teacher is not None and FOOTAGE_DEFAULTS.init in sharpkd.list_pretrained(), busy)
if source == FOOTAGE:
    cfg = footage_settings_ui(busy)
    data = footage_ui(busy, cfg.patch_size)
    missing = data is None
    if missing:
        st.info("Upload a few soft frames or a short clip of your own calls; no sharp originals are needed.")
else:
    cfg = settings_ui(teacher is not None, busy)
    data = data_ui(source, busy)
    missing = data == []
    if missing:
        st.info("Upload at least one sharp photo, or train on the built-in sample photos.")
start = st.button("Start training", type="primary", disabled=busy or cfg is None or missing, key="tr_start")
if start:
    try:
        job = sharpkd.app.jobs.JOBS.start(new_job(source, cfg, teacher, data))
    except (ValueError, RuntimeError, SharpkdError) as err:
        st.error(f"Could not start training: {err}")
    else:
        st.session_state[JOB_KEY] = job
        st.query_params[JOB_PARAM] = job.id
        st.rerun()
runs_ui(job)
if job is None:
    st.info("Set up a run and press **Start training**.")
    st.stop()
job_view(job)
