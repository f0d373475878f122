"""Distillation on a user's own footage: frames that are soft already and have no sharp originals; the teacher
labels them.

``sharpkd distill --unlabeled DIR`` and the app's Train page fine-tune a student on such footage in four steps:

1. :func:`load_footage` reads image files and video files (frames sampled evenly from each clip, the total capped);
2. :func:`label_frames` runs the teacher once on every *whole* frame (tiled with margins, as the Sharpener does), so a
   training crop sees the teacher's output of its region in context, with no border the real frame lacks; on a CPU a
   frame costs about a second per megapixel, and every crop after that is free;
3. :meth:`LabelledFootage.crops` cuts random aligned crops of (frame, teacher output) into a
   :class:`~sharpkd.training.cache.TeacherCache` whose ``gt`` *is* the teacher's output (there is no other ground
   truth), so every loss (``psnr``, ``l1``, ``kd``, ``kd_psnr``) pulls the student towards the teacher and
   :func:`~sharpkd.training.loop.fit` never runs the teacher again;
4. :meth:`LabelledFootage.targets` holds frames back as validation: :class:`TeacherTargets` scores PSNR/SSIM to the
   teacher's output (``input_psnr``: the soft frame's own), the only reference footage without originals has.

:func:`prepare_unlabeled` does 2-4 for both callers. Errors are :class:`~sharpkd.errors.NoFootageError` (no image or
video file), :class:`~sharpkd.errors.UnreadableFootageError` (no file decodes) and
:class:`~sharpkd.errors.NoUsableFramesError` (no frame as large as a crop); a single bad file among good ones is
skipped and listed in :attr:`Footage.skipped`.

Example:
    >>> footage = load_footage(find_footage("my_call_frames/"))  # doctest: +SKIP
    >>> data = prepare_unlabeled(load_model("teacher"), footage, patch_size=96, crops=2000)  # doctest: +SKIP
    >>> fit(TrainConfig(losses="psnr=1"), None, student, data.train, val=data.val)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn as nn

from sharpkd.data import to_tensor, to_uint8
from sharpkd.errors import NoFootageError, NoUsableFramesError, SharpkdError, UnreadableFootageError, VideoTooLargeError
from sharpkd.images import IMAGE_SUFFIXES, is_image_path, read_image
from sharpkd.runtime.sharpener import restore
from sharpkd.runtime.videoio import VIDEO_SUFFIXES, VideoReader, probe_video
from sharpkd.training.cache import TeacherCache

log = logging.getLogger(__name__)

T = TypeVar("T")

FOOTAGE_PRESET = "footage"  # the one "preset" of TeacherTargets: the user's frames as they are
DEFAULT_MAX_FRAMES = 64  # frames in all (the teacher runs on each once)
DEFAULT_FRAMES_PER_VIDEO = 16  # frames sampled evenly from each clip
DEFAULT_CROPS = 2000  # training crops cut from the labelled frames (float16: 110 MB at 96 px)


def is_footage_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has an image or a video suffix (the file is not opened)."""
    return is_image_path(path) or Path(path).suffix.lower() in VIDEO_SUFFIXES


def find_footage(root: str | os.PathLike) -> list[Path]:
    """Every image and video file under ``root`` (recursive, sorted).

    Raises:
        NoFootageError: ``root`` is not a folder, or holds no image or video file.
    """
    root = Path(root)
    if not root.is_dir():
        raise NoFootageError(f"footage folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if is_footage_path(p) and p.is_file())
    if not paths:
        kinds = ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        raise NoFootageError(f"no image or video files ({kinds}) under {root}")
    return paths


def sample_evenly(items: Iterable[T], k: int) -> list[T]:
    """Up to ``k`` items spread evenly over an iterable of unknown length, holding at most ``2k`` at any time.

    Keeps every ``s``-th item, doubling ``s`` (and dropping every other kept item) whenever ``2k`` are held, then
    picks ``k`` evenly from what is left: a clip is decoded once, front to back, with bounded memory.

    Raises:
        ValueError: ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kept: list[T] = []
    stride = 1
    for i, item in enumerate(items):
        if i % stride:
            continue
        kept.append(item)
        if len(kept) == 2 * k:
            kept, stride = kept[::2], stride * 2  # the kept indices are now multiples of the doubled stride
    if len(kept) <= k:
        return kept
    return [kept[int(i)] for i in np.linspace(0, len(kept) - 1, k).round()]


def read_footage(
    path: str | os.PathLike,
    frames_per_video: int = DEFAULT_FRAMES_PER_VIDEO,
    *,
    max_pixels: int | None = None,
    max_seconds: float | None = None,
) -> list[np.ndarray]:
    """The frames of one footage file: an image is one frame, a video gives up to ``frames_per_video`` frames
    sampled evenly over the clip.

    Args:
        path: an image or video file.
        frames_per_video: frames kept from a video.
        max_pixels: an image larger than this is downscaled to it (:func:`~sharpkd.images.read_image`); a video
            with larger frames is refused. ``None``: no limit.
        max_seconds: refuse videos whose header declares a longer duration (``None``: no limit).

    Returns:
        ``(H, W, 3)`` uint8 RGB frames.

    Raises:
        UnreadableFootageError: the file is not a decodable image or video, or is over the limits (the message says
            which and why).
    """
    path = Path(path)
    try:
        if is_image_path(path):
            return [read_image(path, max_pixels=max_pixels)]
        if max_seconds is not None:
            info = probe_video(path, max_pixels)
            if info.duration is not None and info.duration > max_seconds:
                raise VideoTooLargeError(f"{path.name} lasts {info.duration:.0f} s; the limit is {max_seconds:g} s")
        with VideoReader(path, max_pixels=max_pixels) as reader:
            return sample_evenly((rgb for rgb, _ in reader.frames()), frames_per_video)
    except SharpkdError as err:  # the message names the file already
        raise UnreadableFootageError(str(err)) from err


@dataclass
class Footage:
    """Decoded footage: frames, what each one is, and the files that could not be used.

    Attributes:
        frames: ``(H, W, 3)`` uint8 RGB frames.
        names: one label per frame: the file name, plus ``#i`` for the i-th frame sampled from a video.
        skipped: ``(file name, reason)`` of each file that could not be decoded or had no frame large enough.
    """

    frames: list[np.ndarray]
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


def collect_frames(
    files: Sequence[tuple[str, Sequence[np.ndarray]]],
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    min_size: int = 1,
    skipped: Sequence[tuple[str, str]] = (),
) -> Footage:
    """Decoded files ``[(file name, frames)]`` -> :class:`Footage`: frames smaller than ``min_size`` on their shorter
    side are dropped (a file left with none is listed in ``skipped``), and the total is thinned evenly to
    ``max_frames``. A video's frames are named ``<file>#<i>``.

    Raises:
        ValueError: ``max_frames`` or ``min_size`` below 1.
        NoFootageError: ``files`` is empty.
        NoUsableFramesError: no frame is at least ``min_size`` px on its shorter side.
    """
    if max_frames < 1 or min_size < 1:
        raise ValueError(f"max_frames and min_size must be >= 1, got {max_frames} and {min_size}")
    if not files:
        raise NoFootageError("no footage files given")
    frames, names, skipped = [], [], list(skipped)
    for file, got in files:
        usable = [(i, f) for i, f in enumerate(got) if min(f.shape[:2]) >= min_size]
        if not usable:
            h, w = got[0].shape[:2] if len(got) else (0, 0)
            skipped.append((file, f"{w}x{h} is smaller than {min_size} px on its shorter side"))
            continue
        video = not is_image_path(file)
        frames += [f for _, f in usable]
        names += [f"{file}#{i}" if video else file for i, _ in usable]
    if not frames:
        raise NoUsableFramesError(f"no frame of the {len(files)} files is at least {min_size} px on its shorter side")
    if len(frames) > max_frames:
        keep = [int(i) for i in np.linspace(0, len(frames) - 1, max_frames).round()]
        frames, names = [frames[i] for i in keep], [names[i] for i in keep]
    return Footage(frames, names, skipped)


def load_footage(
    paths: Sequence[str | os.PathLike],
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    frames_per_video: int = DEFAULT_FRAMES_PER_VIDEO,
    min_size: int = 1,
    max_pixels: int | None = None,
    max_seconds: float | None = None,
) -> Footage:
    """Decode footage files (:func:`read_footage`) and collect their frames (:func:`collect_frames`); a file that
    fails is skipped and listed in :attr:`Footage.skipped`, not fatal.

    Args:
        paths: image and video files (e.g. :func:`find_footage`).
        max_frames: at most this many frames in all; more are thinned evenly over the list.
        frames_per_video: frames sampled from each video.
        min_size: frames smaller than this on their shorter side are dropped (the training crop side).
        max_pixels, max_seconds: per-file limits, as in :func:`read_footage`.

    Raises:
        ValueError: ``max_frames``, ``frames_per_video`` or ``min_size`` below 1.
        NoFootageError: ``paths`` is empty.
        UnreadableFootageError: no file could be decoded (the message has the first file's reason).
        NoUsableFramesError: files were decoded, but no frame is at least ``min_size`` px on its shorter side.
    """
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
    if not paths:
        raise NoFootageError("no footage files given")
    decoded, skipped = [], []
    for p in map(Path, paths):
        try:
            decoded.append((p.name, read_footage(p, frames_per_video, max_pixels=max_pixels, max_seconds=max_seconds)))
        except UnreadableFootageError as err:
            log.info("skipping %s: %s", p, err)
            skipped.append((p.name, str(err)))
    if not decoded:
        raise UnreadableFootageError(f"none of the {len(skipped)} footage files could be decoded: {skipped[0][1]}")
    return collect_frames(decoded, max_frames=max_frames, min_size=min_size, skipped=skipped)


@torch.no_grad()
def label_frames(
    teacher: nn.Module,
    frames: Sequence[np.ndarray],
    *,
    device: str | torch.device = "cpu",
    tile: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """The teacher's output on each whole frame: one pass up to ``tile`` + 128 px a side, tiled with 64 px margins
    beyond that (as the Sharpener does), so a crop's label saw the frame around it.

    Args:
        teacher: a restorer; it is put in eval mode on ``device``.
        frames: ``(H, W, 3)`` uint8 RGB frames.
        device: where the teacher runs.
        tile: tile side of the tiled pass (px).
        progress: called as ``progress(done, total)`` after each frame.

    Returns:
        ``(H, W, 3)`` uint8 RGB, one per frame (rounding to uint8 costs nothing measurable as a training target).
    """
    teacher = teacher.to(device).eval()
    out = []
    for i, frame in enumerate(frames):
        out.append(to_uint8(restore(teacher, to_tensor(frame).to(device), tile=tile)))
        if progress is not None:
            progress(i + 1, len(frames))
    return out


class TeacherTargets:
    """Validation on footage: whole frames (centre crops of at most ``max_side``) against the teacher's output.

    Duck-types :class:`~sharpkd.data.EvalImages` for :func:`~sharpkd.training.validation.evaluate_tensor_fn` (and so
    for :func:`~sharpkd.training.loop.fit`), with one preset, :data:`FOOTAGE_PRESET`: ``psnr`` is the student's PSNR
    to the teacher and ``input_psnr`` the soft frame's own.

    Shape:
        each pair: ``(1, 3, h, w)`` float32 in [0, 1], ``h, w <= max_side``.
    """

    presets: tuple[str, ...] = (FOOTAGE_PRESET,)

    def __init__(
        self, frames: Sequence[np.ndarray], targets: Sequence[np.ndarray], names: Sequence[str], max_side: int = 256
    ) -> None:
        if not (len(frames) == len(targets) == len(names)) or not frames:
            raise ValueError(
                f"need as many frames, targets and names (>= 1), got {len(frames)}, {len(targets)}, {len(names)}"
            )
        self._pairs = []
        for name, lq, target in zip(names, frames, targets):
            assert lq.shape == target.shape, f"{name}: frame {lq.shape} and teacher output {target.shape} differ"
            H, W = lq.shape[:2]
            h, w = min(H, max_side), min(W, max_side)
            sl = (slice((H - h) // 2, (H - h) // 2 + h), slice((W - w) // 2, (W - w) // 2 + w))
            self._pairs.append((name, to_tensor(lq[sl]), to_tensor(target[sl])))

    def __len__(self) -> int:
        return len(self._pairs)

    def pairs(self, preset: str = FOOTAGE_PRESET, seed: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """``[(name, lq, teacher_output)]``; footage is degraded already, so ``seed`` is unused.

        Raises:
            ValueError: ``preset`` is not :data:`FOOTAGE_PRESET`.
        """
        if preset != FOOTAGE_PRESET:
            raise ValueError(f"footage targets have one preset, {FOOTAGE_PRESET!r}; got {preset!r}")
        return list(self._pairs)


@dataclass
class LabelledFootage:
    """Frames and the teacher's output on each, the same size."""

    frames: list[np.ndarray]
    targets: list[np.ndarray]
    names: list[str]

    def __post_init__(self) -> None:
        if not (len(self.frames) == len(self.targets) == len(self.names)):
            raise ValueError(f"got {len(self.frames)} frames, {len(self.targets)} targets, {len(self.names)} names")

    def crops(self, count: int, patch_size: int, seed: int = 0, indices: Sequence[int] | None = None) -> TeacherCache:
        """``count`` random aligned crops (random flips too) of frames and teacher outputs, spread evenly over the
        frames (``indices``: only those frames), as a :class:`~sharpkd.training.cache.TeacherCache` whose ``gt`` and
        ``teacher_pred`` are one tensor: the teacher's output.

        Raises:
            ValueError: ``count`` < 1, or no frame to crop from.
            NoUsableFramesError: a frame is smaller than ``patch_size``.

        Shape:
            each item: three ``(3, patch_size, patch_size)`` tensors.
        """
        indices = list(range(len(self.frames))) if indices is None else list(indices)
        if count < 1 or not indices:
            raise ValueError(f"need count >= 1 and at least one frame, got count={count} and {len(indices)} frames")
        small = [self.names[i] for i in indices if min(self.frames[i].shape[:2]) < patch_size]
        if small:
            raise NoUsableFramesError(f"{small[0]} is smaller than the {patch_size} px training crop")
        g = torch.Generator().manual_seed(seed)
        P = patch_size
        lq = torch.empty(count, 3, P, P, dtype=torch.float16)
        target = torch.empty_like(lq)
        for n in range(count):
            i = indices[n % len(indices)]
            H, W = self.frames[i].shape[:2]
            top, left = (
                int(torch.randint(0, H - P + 1, (), generator=g)),
                int(torch.randint(0, W - P + 1, (), generator=g)),
            )
            pair = torch.stack(
                [to_tensor(a[top : top + P, left : left + P])[0] for a in (self.frames[i], self.targets[i])]
            )
            if torch.rand((), generator=g) < 0.5:
                pair = pair.flip(-1)
            if torch.rand((), generator=g) < 0.5:
                pair = pair.flip(-2)
            lq[n], target[n] = pair[0], pair[1]
        return TeacherCache(lq, target, target)

    def validation(self, indices: Sequence[int], max_side: int = 256) -> TeacherTargets:
        """The frames at ``indices`` as :class:`TeacherTargets`."""
        return TeacherTargets(
            [self.frames[i] for i in indices],
            [self.targets[i] for i in indices],
            [self.names[i] for i in indices],
            max_side,
        )


def holdout_indices(n: int, holdout: int | None = None) -> list[int]:
    """Which of ``n`` frames to hold back for validation: ``holdout`` of them (default ``n // 8``), spread evenly.

    Raises:
        ValueError: ``holdout`` is negative or leaves no frame to train on.
    """
    holdout = n // 8 if holdout is None else holdout
    if holdout < 0 or (holdout and holdout >= n):
        raise ValueError(f"holdout must be in [0, {n - 1}] for {n} frames, got {holdout}")
    if holdout == 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n - 1, holdout + 2).round()[1:-1]})  # never the first or last


@dataclass
class UnlabeledData:
    """What :func:`prepare_unlabeled` returns: training crops, validation targets, and which frames are which."""

    train: TeacherCache
    val: TeacherTargets
    train_names: list[str]
    val_names: list[str]
    held_back: bool  # False: too few frames to hold any back, so ``val`` scores the training frames themselves


def prepare_unlabeled(
    teacher: nn.Module,
    footage: Footage,
    *,
    patch_size: int,
    crops: int = DEFAULT_CROPS,
    holdout: int | None = None,
    val_max_side: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> UnlabeledData:
    """Label ``footage`` with ``teacher`` (:func:`label_frames`), hold frames back (:func:`holdout_indices`), and cut
    ``crops`` training crops from the rest.

    Raises:
        ValueError: bad ``crops`` or ``holdout``.
        NoUsableFramesError: a frame is smaller than ``patch_size``.
    """
    small = [name for name, f in zip(footage.names, footage.frames) if min(f.shape[:2]) < patch_size]
    if small:
        raise NoUsableFramesError(f"{small[0]} is smaller than the {patch_size} px training crop")
    held = holdout_indices(len(footage), holdout)  # checked before the teacher's (slow) pass
    if crops < 1:
        raise ValueError(f"crops must be >= 1, got {crops}")
    targets = label_frames(teacher, footage.frames, device=device, progress=progress)
    labelled = LabelledFootage(list(footage.frames), targets, list(footage.names))
    train_idx = [i for i in range(len(footage)) if i not in set(held)]
    val_idx = held or train_idx
    log.info("labelled %d frames; training on %d, validating on %d", len(footage), len(train_idx), len(val_idx))
    return UnlabeledData(
        train=labelled.crops(crops, patch_size, seed, train_idx),
        val=labelled.validation(val_idx, val_max_side),
        train_names=[footage.names[i] for i in train_idx],
        val_names=[footage.names[i] for i in val_idx],
        held_back=bool(held),
    )
