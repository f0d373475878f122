"""The Train page's footage mode: fine-tune the shipped student on a user's own soft frames or short clip, with the
teacher as the labeler (:mod:`sharpkd.training.unlabeled`: no sharp originals, so the targets are the teacher's
output), as a background run like any other (:class:`FootageJob` is a :class:`~sharpkd.app.jobs.TrainingJob`).

The limits (:data:`LIMITS`, stated on the page before anything is uploaded) keep one run to a few minutes on one CPU
core: the teacher labels every frame whole, about a second per megapixel, and then the student trains.

=========== ================ ==============================================================================
limit        value            why
=========== ================ ==============================================================================
files        16               a few frames or a short clip is what the page is for; ``sharpkd distill
                              --unlabeled DIR`` has no limits
frames       16 in all        clips are sampled evenly; 16 1080p frames take the teacher about a minute
clip         50 MB, 30 s,     :class:`~sharpkd.app.clip.ClipLimits`, checked before a frame is decoded
             1080p
image        2 MP             larger images are downscaled, with a note (as on the other pages)
=========== ================ ==============================================================================

Example:
    >>> upload = decode_footage("call.mp4", data)  # doctest: +SKIP
    >>> footage = footage_from_uploads([upload], patch_size=96)  # doctest: +SKIP
    >>> job = JOBS.start(FootageJob(footage_config(), teacher, footage))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from sharpkd.app.clip import ClipLimits, check_clip
from sharpkd.app.jobs import JobCancelled, JobConfig, TrainingJob
from sharpkd.errors import FootageError, NoUsableFramesError, SharpkdError, UnreadableFootageError
from sharpkd.images import IMAGE_SUFFIXES, is_image_path, load_image
from sharpkd.losses import parse_weights
from sharpkd.runtime.videoio import VIDEO_SUFFIXES
from sharpkd.training.unlabeled import Footage, collect_frames, holdout_indices, prepare_unlabeled, read_footage

FOOTAGE_TYPES = [s.lstrip(".") for s in IMAGE_SUFFIXES + VIDEO_SUFFIXES]  # what the page's uploader accepts
# The loss of a footage run: PSNR to the teacher's output (the footage's only "ground truth"), the shipped student's
# own training loss.
FOOTAGE_LOSSES = "psnr=1"
# A footage run's JobConfig fields where they differ from JobConfig's (a run on sharp photos). Measured with
# docs/unlabeled_demo.py on 16 h264 frames, one core: 1500 steps of 16 crops of 96 px at lr 1e-3 (36 s) gained 0.031 dB
# more than the shipped student on held-back frames (better on 12 of 14); JobConfig's 300 steps of 4 crops of 48 px
# at 1e-4, 0.007 dB (9 of 14).
FOOTAGE_DEFAULTS: dict[str, Any] = dict(
    init="student", steps=1500, batch_size=16, patch_size=96, lr=1e-3, losses=FOOTAGE_LOSSES, warmup_steps=75
)
FOOTAGE_CROPS = 2000  # training crops cut from the labelled frames (110 MB of float16 at 96 px)


@dataclass(frozen=True)
class FootageLimits:
    """What the footage mode accepts; see the module docstring."""

    max_files: int = 16
    max_frames: int = 16
    clip: ClipLimits = field(default_factory=lambda: ClipLimits(max_seconds=30.0))
    max_image_pixels: int = 2_000_000

    def describe(self) -> str:
        """One sentence for the page."""
        return (
            f"up to {self.max_files} files: frames (images; above {self.max_image_pixels / 1e6:g} MP they are "
            f"downscaled) and/or clips ({self.clip.describe()}); {self.max_frames} frames are used in all, sampled "
            "evenly from clips"
        )


LIMITS = FootageLimits()


@dataclass(frozen=True)
class FootageUpload:
    """One decoded upload: its frames and what was done to them."""

    name: str
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    notes: tuple[str, ...] = ()


def footage_config(**overrides: Any) -> JobConfig:
    """A :class:`~sharpkd.app.jobs.JobConfig` for a footage run: :data:`FOOTAGE_DEFAULTS` plus ``overrides``."""
    return JobConfig(**{**FOOTAGE_DEFAULTS, **overrides})


def decode_footage(name: str, data: bytes, limits: FootageLimits = LIMITS) -> FootageUpload:
    """An uploaded file -> its frames: an image is one frame, a clip gives up to ``limits.max_frames`` frames sampled
    evenly.

    Args:
        name: the upload's file name; its suffix says image or video.
        data: the file's bytes.
        limits: see :class:`FootageLimits`; a clip's size, length and frame size are checked before decoding.

    Raises:
        UnreadableFootageError: neither an image nor a video suffix, a corrupt or empty file, or a clip over a limit
            (the message names the file and the reason).
    """
    suffix = Path(name).suffix.lower()
    if is_image_path(name):
        try:
            loaded = load_image(data, max_pixels=limits.max_image_pixels)
        except SharpkdError as err:
            raise UnreadableFootageError(f"{name}: {err}") from err
        return FootageUpload(name, [loaded.pixels], loaded.notes)
    if suffix not in VIDEO_SUFFIXES:
        raise UnreadableFootageError(f"{name} is neither an image nor a video ({', '.join(FOOTAGE_TYPES)})")
    with tempfile.TemporaryDirectory(prefix="sharpkd-footage-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            check_clip(path, limits.clip)
            frames = read_footage(path, limits.max_frames, max_pixels=limits.clip.max_pixels)
        except SharpkdError as err:
            raise UnreadableFootageError(str(err).replace(path.name, name)) from err
    return FootageUpload(name, frames, (f"{len(frames)} frames sampled evenly from the clip",))


def footage_from_uploads(uploads: Sequence[FootageUpload], patch_size: int, limits: FootageLimits = LIMITS) -> Footage:
    """The frames of decoded uploads as one :class:`~sharpkd.training.unlabeled.Footage`, thinned evenly to
    ``limits.max_frames``; frames smaller than ``patch_size`` are dropped (listed in ``skipped``).

    Raises:
        FootageError: more than ``limits.max_files`` files.
        NoFootageError: no upload.
        NoUsableFramesError: no frame is at least ``patch_size`` on its shorter side.
    """
    if len(uploads) > limits.max_files:
        raise FootageError(f"{len(uploads)} files; the limit is {limits.max_files}")
    return collect_frames([(u.name, u.frames) for u in uploads], max_frames=limits.max_frames, min_size=patch_size)


class FootageJob(TrainingJob):
    """Fine-tune on soft footage with the teacher as the labeler, in the background.

    A :class:`~sharpkd.app.jobs.TrainingJob` whose training data are crops of the frames labelled by the teacher
    (built in the job's thread: :meth:`labelling` reports that phase) and whose validation is PSNR to the teacher's
    output on held-back frames (:func:`~sharpkd.training.unlabeled.holdout_indices`: one in eight, or the training
    frames themselves when there are fewer than eight).

    Args:
        cfg: the run (e.g. :func:`footage_config`); ``degradation`` and ``val_images`` are unused.
        teacher: the labeler; read only (shared with the app's other pages).
        footage: the frames (:func:`footage_from_uploads`).
        name, checkpoint_dir: as for :class:`~sharpkd.app.jobs.TrainingJob`.
        crops: training crops cut from the labelled frames.

    Raises:
        ValueError: no teacher, a ``feat`` loss (features are not cached), ``crops`` below the batch size, or what
            :class:`~sharpkd.app.jobs.TrainingJob` refuses.
        NoUsableFramesError: a frame is smaller than ``cfg.patch_size``.
    """

    def __init__(
        self,
        cfg: JobConfig,
        teacher: nn.Module,
        footage: Footage,
        *,
        name: str | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        crops: int = FOOTAGE_CROPS,
    ) -> None:
        if teacher is None:
            raise ValueError("fine-tuning on footage needs a teacher: it makes the training targets")
        if "feat" in parse_weights(cfg.losses):
            raise ValueError(f"losses {cfg.losses!r}: footage runs train on cached teacher outputs, without 'feat'")
        if crops < cfg.batch_size:
            raise ValueError(f"crops must be at least the batch size {cfg.batch_size}, got {crops}")
        self.footage, self.crops = footage, crops
        self._labelled: tuple[int, int] | None = (0, len(footage))
        super().__init__(cfg, teacher, None, name=name, checkpoint_dir=checkpoint_dir)
        self.train_cfg.meta.update(degradation="none (soft footage, teacher-labelled)", footage=list(footage.names))

    def _datasets(self, cfg: JobConfig, images: Sequence[np.ndarray] | None) -> tuple[None, None]:
        small = [n for n, f in zip(self.footage.names, self.footage.frames) if min(f.shape[:2]) < cfg.patch_size]
        if small:
            raise NoUsableFramesError(f"{small[0]} is smaller than the {cfg.patch_size} px training crop")
        holdout_indices(len(self.footage))
        return None, None  # built by _prepare, in the job's thread: the teacher's pass takes a while

    def _prepare(self) -> None:
        def progress(done: int, total: int) -> None:
            if self._cancel.is_set():  # Cancel pressed while the teacher labels: stop after this frame
                raise JobCancelled
            with self._lock:
                self._labelled = (done, total)

        cfg = self.cfg
        try:
            data = prepare_unlabeled(
                self.teacher,
                self.footage,
                patch_size=cfg.patch_size,
                crops=self.crops,
                seed=cfg.seed,
                progress=progress,
            )
        finally:
            self.footage = None  # the crops (or the error) are what is left of it
        self.data, self.val = data.train, data.val
        self.train_cfg.meta.update(train_frames=data.train_names, val_frames=data.val_names, held_back=data.held_back)
        with self._lock:
            self._labelled = None

    @property
    def labelling(self) -> tuple[int, int] | None:
        """``(frames labelled, frames)`` while the teacher labels the footage; ``None`` once training has begun."""
        with self._lock:
            return self._labelled
