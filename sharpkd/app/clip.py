"""The Compare page's video tab: an uploaded clip, degraded and sharpened into one side-by-side H.264 video.

:func:`side_by_side_clip` checks an upload against :data:`LIMITS` (before decoding a single frame), degrades every
frame with a preset (the codec presets as one continuous simulated call, :class:`~sharpkd.runtime.link.CallLink`),
sharpens it, and writes ``degraded | student`` as H.264 in yuv420p with ``+faststart``, which ``st.video`` plays in
every browser. The limits keep one run to well under a minute on a laptop CPU:

=========== ========= ===================================================================================
limit        value     why
=========== ========= ===================================================================================
file size    50 MB     ten seconds of 1080p even from a phone (~20-40 Mbit/s); Streamlit holds an upload in memory
duration     10 s      300 frames at 30 fps: degrade + sharpen + encode at ~10-30 fps on a CPU is 10-30 s
frame size   1080p     1920x1080 pixels (either orientation); a 4K frame costs 4x, and the output is twice as wide
=========== ========= ===================================================================================
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sharpkd.errors import VideoTooLargeError
from sharpkd.runtime.video import VideoConfig, VideoReport, sharpen_video
from sharpkd.runtime.videoio import VIDEO_SUFFIXES, VideoInfo, probe_video


@dataclass(frozen=True)
class ClipLimits:
    """What the video tab accepts."""

    max_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 10.0
    max_pixels: int = 1920 * 1080  # 1080p, landscape or portrait

    def describe(self) -> str:
        """One sentence for the page, e.g. "up to 50 MB, 10 s and 1080p (1920x1080 pixels)"."""
        return (
            f"up to {self.max_bytes // (1024 * 1024)} MB, {self.max_seconds:g} s and 1080p "
            f"({self.max_pixels / 1e6:.1f} MP per frame, e.g. 1920x1080)"
        )


LIMITS = ClipLimits()
UPLOAD_TYPES = [s.lstrip(".") for s in VIDEO_SUFFIXES]  # what st.file_uploader accepts


@dataclass
class ClipResult:
    """A finished side-by-side clip."""

    video: bytes  # the H.264 .mp4 file
    report: VideoReport  # frames, sizes, FPS
    info: VideoInfo  # the upload's header
    notes: list[str]  # e.g. "the clip declares no duration; only its first 10 s were used"


def check_clip(path: str | Path, limits: ClipLimits = LIMITS) -> tuple[VideoInfo, list[str]]:
    """The upload's header, and notes, if it fits ``limits``.

    Raises:
        VideoTooLargeError: over the file size, the frame size or the duration limit.
        VideoError: and its subclasses, for a missing, empty, corrupt or video-less file (see ``probe_video``).
    """
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size > limits.max_bytes:
        raise VideoTooLargeError(
            f"{path.name} is {size / 1024**2:.0f} MB; the limit is {limits.max_bytes // 1024**2} MB. Trim or "
            "re-encode it first, e.g. ffmpeg -i in.mp4 -t 10 -vf scale=-2:720 out.mp4"
        )
    info = probe_video(path, max_pixels=limits.max_pixels)
    seconds = info.duration if info.duration is not None else (info.frames / info.fps if info.frames else None)
    if seconds is not None and seconds > limits.max_seconds + 0.5 / info.fps:
        raise VideoTooLargeError(
            f"{path.name} is {seconds:.1f} s long; the limit is {limits.max_seconds:g} s. Trim it first, "
            f"e.g. ffmpeg -i in.mp4 -t {limits.max_seconds:g} -c copy out.mp4"
        )
    notes = []
    if seconds is None:
        notes.append(f"the clip declares no duration; at most its first {limits.max_seconds:g} s are used")
    return info, notes


def side_by_side_clip(
    path: str | Path,
    sharpen: Callable[[np.ndarray], np.ndarray],
    degradation: str | None,
    strength: float = 1.0,
    *,
    label: str = "student",
    limits: ClipLimits = LIMITS,
    progress: Callable[[int, int | None], None] | None = None,
) -> ClipResult:
    """Degrade every frame of the clip at ``path``, sharpen it, and return ``degraded | sharpened`` as an H.264 mp4.

    Args:
        path: the uploaded clip (any format FFmpeg reads).
        sharpen: ``(H, W, 3)`` uint8 RGB -> same, e.g. the student's ``Sharpener.sharpen``.
        degradation: a preset name (``sharpkd.degrade.PRESETS``), or ``None`` for a clip that is soft already.
        strength: scales the preset.
        label: caption of the right half.
        limits: see :class:`ClipLimits`; checked before any frame is decoded.
        progress: ``progress(done, total)`` after each frame (``total`` may be ``None``).

    Raises:
        VideoTooLargeError: over a limit. VideoDecodeError, NoVideoStreamError, VideoError: a bad file.
        ValueError: an unknown ``degradation`` or a bad ``strength``.
    """
    info, notes = check_clip(path, limits)
    max_frames = math.ceil(limits.max_seconds * info.fps) + 1
    cfg = VideoConfig(
        side_by_side=True,
        degrade=degradation,
        strength=strength,
        label=label,
        max_pixels=limits.max_pixels,
        max_frames=max_frames,
    )
    with tempfile.TemporaryDirectory(prefix="sharpkd-clip-") as tmp:
        out = Path(tmp) / "side_by_side.mp4"
        report = sharpen_video(path, out, sharpen, cfg, progress=progress)
        video = out.read_bytes()
    report.output = ""  # the file is gone; the bytes are in ClipResult.video
    if info.frames and report.frames < info.frames:
        notes.append(f"{report.frames} of the {info.frames} frames the clip declares could be decoded")
    return ClipResult(video=video, report=report, info=info, notes=notes)
