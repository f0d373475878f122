"""Sharpen a video file or a camera stream frame by frame, and measure speed and temporal stability.

:func:`sharpen_video` reads frames with OpenCV, optionally degrades them first (to demo on sharp footage), hands each
one to a ``sharpen`` callable, and writes the result, optionally next to its input and with the measured FPS drawn on.
It returns a :class:`VideoReport` with the throughput and the :func:`~sharpkd.runtime.flicker.flicker_ratio`, a check
that a per-frame model does not add temporal shimmer. :func:`synthesize_clip` writes a small moving test pattern for
tests and docs.

Frames cross the ``sharpen`` boundary as ``(H, W, 3)`` uint8 RGB arrays; OpenCV's BGR order stays inside this module.

Example:
    >>> clip = synthesize_clip("/tmp/clip.mp4")
    >>> report = sharpen_video(clip, "/tmp/out.mp4", lambda rgb: rgb, VideoConfig(side_by_side=True))
    >>> report.frames, report.width, report.flicker_ratio
    (24, 128, 1.0)
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sharpkd.data import degrade_image
from sharpkd.degrade import list_degradations
from sharpkd.errors import VideoError
from sharpkd.runtime.flicker import FlickerMeter

logger = logging.getLogger(__name__)

DEFAULT_CAMERA_FPS = 30.0  # what a camera (or a file) that declares no frame rate is written at
_FPS_WINDOW = 30  # frames in the rolling mean behind the FPS overlay
_QUIT_KEYS = (ord("q"), 27)  # q or Esc closes the preview window and stops early


@dataclass
class VideoConfig:
    """How :func:`sharpen_video` reads, processes and writes frames."""

    side_by_side: bool = False  # write input | output next to each other (double width), each half labelled
    fps_overlay: bool = False  # draw the processing FPS (rolling mean over the last 30 frames) on the output
    show: bool = False  # preview in a cv2 window; falls back to headless (one warning) without a display or GUI
    degrade: str | None = None  # degradation applied to each input frame first (see sharpkd.degrade); None = none
    seed: int = 0  # frame i is degraded with torch.Generator seeded to seed + i, so runs are reproducible
    max_frames: int | None = None  # stop after this many frames; None reads to the end (a camera: until q/Ctrl-C)
    codec: str = "mp4v"  # fourcc of the writer; must suit the output's extension (mp4v: .mp4/.mkv/.avi, MJPG: .avi)
    label: str = "sharpkd"  # caption of the output half in side-by-side mode and title of the preview window


@dataclass
class VideoReport:
    """What :func:`sharpen_video` did and how fast."""

    frames: int  # frames processed and written
    width: int  # of the written frames (doubled in side-by-side mode, rounded down to even)
    height: int  # of the written frames (rounded down to even)
    input_fps: float  # the source's declared frame rate; 30 when it declares none (typical for cameras)
    processing_fps: float  # frames / seconds spent inside sharpen() alone
    end_to_end_fps: float  # frames / wall seconds including decode, degrade, sharpen, drawing and encode
    flicker_ratio: float  # see sharpkd.runtime.flicker.flicker_ratio(); nan with fewer than 2 frames or a static input
    output: str  # path of the written video


def synthesize_clip(
    path: str | os.PathLike, frames: int = 24, size: tuple[int, int] = (64, 48), fps: float = 12.0
) -> str:
    """Write a deterministic moving test pattern: a checkerboard drifting right and a disc circling over it.

    Args:
        path: output file; ``.mp4`` (written with the ``mp4v`` codec). Missing parent folders are created.
        frames: number of frames, at least 1.
        size: ``(width, height)`` in pixels, OpenCV's order; even sizes avoid the encoder cropping a row or column.
        fps: declared frame rate.

    Returns:
        ``str(path)``.

    Raises:
        ValueError: non-positive ``frames``, ``size`` or ``fps``.
        VideoError: OpenCV cannot open a writer for ``path``.
    """
    width, height = size
    if frames < 1 or width < 1 or height < 1 or fps <= 0:
        raise ValueError(f"frames, size and fps must be positive, got frames={frames}, size={size}, fps={fps}")
    path = Path(path)
    writer = _open_writer(path, "mp4v", fps, (width, height))
    cell = max(2, min(width, height) // 6)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = max(2, min(width, height) // 5)
    try:
        for t in range(frames):
            board = (((xx - t) // cell + yy // cell) % 2).astype(np.uint8)  # (H, W), shifts 1 px per frame
            frame = np.where(board[..., None] == 1, np.uint8(200), np.uint8(40)).repeat(3, axis=2)
            angle = 2 * math.pi * t / max(frames, 2)
            cx = int(width / 2 + width / 4 * math.cos(angle))
            cy = int(height / 2 + height / 4 * math.sin(angle))
            cv2.circle(frame, (cx, cy), radius, (40, 80, 230), thickness=-1, lineType=cv2.LINE_AA)  # BGR: red
            writer.write(frame)
    finally:
        writer.release()
    return str(path)


def sharpen_video(
    source: str | os.PathLike | int,
    output: str | os.PathLike,
    sharpen: Callable[[np.ndarray], np.ndarray],
    cfg: VideoConfig | None = None,
    *,
    progress: Callable[[int, int | None], None] | None = None,
) -> VideoReport:
    """Run ``sharpen`` on every frame of a video file or camera and write the result.

    The frames are read with OpenCV, optionally degraded (``cfg.degrade``), sharpened, composed (side by side, FPS
    overlay) and written at the source's frame rate. The writer is always released: if ``sharpen`` (or anything else)
    raises midway, or on Ctrl-C, the frames written so far stay playable and the error propagates unchanged.
    Written frames are cropped to even width and height, as the usual codecs (4:2:0 chroma) would do anyway.

    Args:
        source: a video file path, or an ``int`` camera index (``0`` is the default webcam).
        output: the video to write; its extension must suit ``cfg.codec``. Missing parent folders are created.
        sharpen: maps an ``(H, W, 3)`` uint8 RGB frame to an ``(H, W, 3)`` uint8 RGB frame of the same shape.
        cfg: the options, see :class:`VideoConfig`; ``None`` means the defaults.
        progress: called as ``progress(done, total)`` after each written frame; ``total`` is the source's frame count
            (capped by ``cfg.max_frames``) or ``None`` when unknown, as for cameras. Drives e.g. a tqdm bar.

    Returns:
        A :class:`VideoReport`. ``flicker_ratio`` compares ``sharpen``'s outputs with the frames it was given (after
        degradation, before any overlay or encoding).

    Raises:
        VideoError: the file is missing, not a decodable video, or holds no frames; the camera cannot be opened or
            gives no frames; the output's folder cannot be created or OpenCV cannot open a writer for it.
        ValueError: an unknown ``cfg.degrade``, a ``cfg.codec`` that is not 4 characters, ``cfg.max_frames < 1``,
            ``output`` equal to ``source``, or ``sharpen`` returning a frame of the wrong shape.
        TypeError: ``sharpen`` returns something other than a uint8 numpy array.

    Example:
        >>> sharpen_video("call.mp4", "call_sharp.mp4", my_sharpen, VideoConfig(side_by_side=True, fps_overlay=True))
    """
    cfg = VideoConfig() if cfg is None else cfg
    _check_config(cfg)
    out_path = Path(output)
    if not isinstance(source, int) and Path(source).resolve() == out_path.resolve():
        raise ValueError(f"output must differ from the source, got {str(out_path)!r} for both")

    start = time.perf_counter()
    capture, name = _open_capture(source)
    writer: cv2.VideoWriter | None = None
    window: _Preview | None = _Preview(cfg.label) if cfg.show else None
    meter = FlickerMeter()
    recent = deque(maxlen=_FPS_WINDOW)  # seconds spent in sharpen() on the last frames
    sharpen_seconds = 0.0
    done = 0
    width = height = 0
    try:
        ok, bgr = capture.read()
        if not ok:
            raise VideoError(f"{name} holds no decodable frames (empty, truncated or an unsupported codec)")
        input_fps = _declared_fps(capture, name)
        total = _frame_total(capture, source, cfg.max_frames)
        while ok and (cfg.max_frames is None or done < cfg.max_frames):
            lq = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8 RGB
            if cfg.degrade is not None:
                lq = degrade_image(lq, cfg.degrade, cfg.seed + done)

            tick = time.perf_counter()
            pred = sharpen(lq)
            seconds = time.perf_counter() - tick
            _check_frame(pred, lq.shape)
            sharpen_seconds += seconds
            recent.append(seconds)
            meter.update(lq, pred)

            frame = _compose(lq, pred, cfg, len(recent) / sum(recent) if sum(recent) > 0 else math.inf)
            if writer is None:
                height, width = frame.shape[:2]
                writer = _open_writer(out_path, cfg.codec, input_fps, (width, height))
            writer.write(frame)
            done += 1
            if progress is not None:
                progress(done, total)
            if window is not None and window.show(frame):
                logger.info("preview closed by key press after %d frames", done)
                break
            ok, bgr = capture.read()
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if window is not None:
            window.close()

    elapsed = time.perf_counter() - start
    return VideoReport(
        frames=done,
        width=width,
        height=height,
        input_fps=input_fps,
        processing_fps=done / sharpen_seconds if sharpen_seconds > 0 else math.inf,
        end_to_end_fps=done / elapsed if elapsed > 0 else math.inf,
        flicker_ratio=meter.ratio,
        output=str(out_path),
    )


def _check_config(cfg: VideoConfig) -> None:
    if cfg.degrade is not None and cfg.degrade not in list_degradations():
        raise ValueError(f"unknown degradation {cfg.degrade!r}; known: {', '.join(list_degradations())}")
    if len(cfg.codec) != 4:
        raise ValueError(f"codec must be a 4-character fourcc such as 'mp4v', got {cfg.codec!r}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {cfg.max_frames}")


def _open_capture(source: str | os.PathLike | int) -> tuple[cv2.VideoCapture, str]:
    if isinstance(source, bool):  # bool is an int subclass; True is surely not meant as camera 1
        raise TypeError(f"source must be a path or an int camera index, got {source!r}")
    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise VideoError(f"cannot open camera {source} (no such device, or it is in use)")
        return capture, f"camera {source}"
    path = Path(source)
    if not path.is_file():
        raise VideoError(f"no such video file: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"cannot open video {path}: not a video OpenCV can decode, or truncated")
    return capture, f"video {path}"


def _declared_fps(capture: cv2.VideoCapture, name: str) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not math.isfinite(fps) or fps <= 0:
        logger.warning("%s declares no frame rate; writing at %.0f fps", name, DEFAULT_CAMERA_FPS)
        return DEFAULT_CAMERA_FPS
    return float(fps)


def _frame_total(capture: cv2.VideoCapture, source: str | os.PathLike | int, max_frames: int | None) -> int | None:
    count = 0 if isinstance(source, int) else int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # -1 or 0 when unknown
    if count <= 0:
        return max_frames
    return count if max_frames is None else min(count, max_frames)


def _open_writer(path: Path, codec: str, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VideoError(f"cannot create the folder of {path}: {err}") from err
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        writer.release()
        raise VideoError(
            f"cannot write video {path}: OpenCV opened no writer for codec {codec!r} at {size[0]}x{size[1]} "
            "(is the folder writable, and does the extension suit the codec, e.g. mp4v -> .mp4, MJPG -> .avi?)"
        )
    return writer


def _check_frame(pred: object, shape: tuple[int, ...]) -> None:
    if not isinstance(pred, np.ndarray) or pred.dtype != np.uint8:
        got = pred.dtype if isinstance(pred, np.ndarray) else type(pred).__name__
        raise TypeError(f"sharpen must return a uint8 numpy array, got {got}")
    if pred.shape != shape:
        raise ValueError(f"sharpen must return a frame of its input's shape {shape}, got {pred.shape}")


def _compose(lq: np.ndarray, pred: np.ndarray, cfg: VideoConfig, fps: float) -> np.ndarray:
    """The BGR frame to write: ``pred``, or ``lq | pred`` side by side, with captions; cropped to even size."""
    out = cv2.cvtColor(pred, cv2.COLOR_RGB2BGR)
    if cfg.fps_overlay:
        _put_text(out, f"{fps:.1f} fps", bottom=True)
    if cfg.side_by_side:
        inp = cv2.cvtColor(lq, cv2.COLOR_RGB2BGR)
        _put_text(inp, "input" if cfg.degrade is None else f"input ({cfg.degrade})", bottom=False)
        _put_text(out, cfg.label, bottom=False)
        out = np.concatenate([inp, out], axis=1)  # (H, 2W, 3)
    H, W = out.shape[:2]
    return np.ascontiguousarray(out[: H - H % 2, : W - W % 2])


def _put_text(img: np.ndarray, text: str, *, bottom: bool) -> None:
    """Draw ``text`` in place, white on a dark box, scaled to the frame height (readable from 360p to 4K)."""
    H, W = img.shape[:2]
    scale = max(0.3, H / 720)
    thickness = max(1, round(1.5 * scale))
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, round(5 * scale))
    top = H - text_h - baseline - 2 * pad if bottom else 0
    box = img[max(top, 0) : top + text_h + baseline + 2 * pad, : min(W, text_w + 2 * pad)]
    box[:] = (box * 0.35).astype(np.uint8)  # darken rather than cover, so the picture stays visible behind
    origin = (pad, top + pad + text_h)
    cv2.putText(img, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _has_display() -> bool:
    # X11/Wayland need an environment variable; macOS and Windows always have a window server
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class _Preview:
    """A cv2 window that turns itself off (one warning) when there is no display or OpenCV lacks a GUI backend."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.enabled = _has_display()
        self.opened = False
        if not self.enabled:
            logger.warning("show=True but no display found (DISPLAY/WAYLAND_DISPLAY unset); running headless")

    def show(self, frame: np.ndarray) -> bool:
        """Display ``frame``; return True when the user pressed q or Esc."""
        if not self.enabled:
            return False
        try:
            cv2.imshow(self.title, frame)
            self.opened = True
            return (cv2.waitKey(1) & 0xFF) in _QUIT_KEYS
        except cv2.error as err:  # opencv-python-headless: "The function is not implemented"
            self.enabled = False
            logger.warning("show=True but OpenCV cannot open a window (%s); running headless", str(err).strip()[:120])
            return False

    def close(self) -> None:
        if self.opened:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error as err:
                logger.debug("closing the preview window failed: %s", err)
