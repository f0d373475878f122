"""Sharpen a video file or a camera stream frame by frame, and measure speed and temporal stability.

:func:`sharpen_video` reads any video FFmpeg reads (through PyAV, see :mod:`sharpkd.runtime.videoio`) or a camera,
optionally degrades each frame first (to demo on sharp footage), hands it to a ``sharpen`` callable, and writes the
result as H.264 in yuv420p, which browsers play, optionally next to its input and with the measured FPS drawn on.
Every input frame is written, with its timestamp, and a file's audio is carried over (see
:func:`~sharpkd.runtime.videoio.mux_audio`). Decoding (and degrading), sharpening and encoding run as a
pipeline: a reader thread and a writer thread around the caller's thread (plus one for the flicker meter), joined
by small bounded queues, so the whole clip runs about as fast as its slowest stage rather than the sum of them.
Torch, FFmpeg's decoders, x264 and numpy release the GIL, so the stages overlap given spare CPU cores.

It returns a :class:`VideoReport` with the throughput and the :func:`~sharpkd.runtime.flicker.flicker_ratio`, a check
that a per-frame model does not add temporal shimmer. :func:`synthesize_clip` writes a small moving test pattern for
tests and docs.

Example:
    >>> clip = synthesize_clip("/tmp/clip.mp4")
    >>> report = sharpen_video(clip, "/tmp/out.mp4", lambda rgb: rgb, VideoConfig(side_by_side=True))
    >>> report.frames, report.width, report.flicker_ratio
    (24, 128, 1.0)
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sharpkd.data import degrade_image
from sharpkd.degrade import CODEC_PRESETS, list_degradations
from sharpkd.runtime.flicker import FlickerMeter
from sharpkd.runtime.link import CallLink
from sharpkd.runtime.videoio import (
    DEFAULT_ENCODER,
    CameraReader,
    VideoReader,
    VideoWriter,
    mux_audio,
    resolve_encoder,
    synthesize_clip,
)

__all__ = ["VideoConfig", "VideoReport", "sharpen_video", "synthesize_clip"]

logger = logging.getLogger(__name__)

_FPS_WINDOW = 30  # frames in the rolling mean behind the FPS overlay
_QUIT_KEYS = (ord("q"), 27)  # q or Esc closes the preview window and stops early
_END = object()  # closes a queue: no more frames
_POLL_S = 0.05  # how often a blocked queue put re-checks whether its consumer is still there


@dataclass
class VideoConfig:
    """How :func:`sharpen_video` reads, processes and writes frames."""

    side_by_side: bool = False  # write input | output next to each other (double width), each half labelled
    fps_overlay: bool = False  # draw the processing FPS (rolling mean over the last 30 frames) on the output
    show: bool = False  # preview in a cv2 window; falls back to headless (one warning) without a display or GUI
    degrade: str | None = None  # degradation applied to each input frame first (see sharpkd.degrade); None = none
    strength: float = 1.0  # scales the degradation, as sharpkd.degrade's presets' strength
    seed: int = 0  # frame i is degraded with torch.Generator seeded to seed + i, so runs are reproducible
    max_frames: int | None = None  # stop after this many frames; None reads to the end (a camera: until q/Ctrl-C)
    codec: str = DEFAULT_ENCODER  # FFmpeg encoder: libx264 (H.264, yuv420p: plays in browsers), mpeg4, libvpx-vp9...
    label: str = "sharpkd"  # caption of the output half in side-by-side mode and title of the preview window
    max_pixels: int | None = None  # refuse a source whose frames have more pixels (VideoTooLargeError); None = any
    queue_size: int = 4  # frames buffered between two stages: enough to absorb jitter, few enough to bound memory
    audio: bool = True  # carry a file's first audio stream over to the output (copied, or re-encoded if need be)


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
    codec: str = DEFAULT_ENCODER  # the FFmpeg encoder that wrote it
    audio: str = "off"  # what became of the source's audio: mux_audio()'s report, "off", or "none (camera)"


class _Worker(threading.Thread):
    """A pipeline stage: runs ``target`` once and keeps the exception it raised, for the caller's thread."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as err:  # noqa: B036 -- handed to the caller's thread, which re-raises it
            self.error = err


def _put(q: queue.Queue, item: object, alive: Callable[[], bool]) -> bool:
    """Put ``item``, waiting while the queue is full; give up (False) once ``alive()`` says the other side is gone."""
    while True:
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            if not alive():
                return False


def _degrader(cfg: VideoConfig) -> Callable[[np.ndarray, int], np.ndarray]:
    """``(frame, index) -> lq``. A codec preset runs as one persistent stream (sharpkd.runtime.link.CallLink), the
    way a call codes a video, instead of the still-image preset's short clip per frame (~100x slower)."""
    if cfg.degrade is None:
        return lambda rgb, i: rgb
    if cfg.degrade in CODEC_PRESETS:
        link = CallLink(cfg.degrade, cfg.strength)
        return lambda rgb, i: link.send(rgb)
    name, seed, strength = cfg.degrade, cfg.seed, cfg.strength
    return lambda rgb, i: degrade_image(rgb, name, seed + i, strength)


def _open_source(source: str | os.PathLike | int, max_pixels: int | None) -> VideoReader | CameraReader:
    if isinstance(source, bool):  # bool is an int subclass; True is surely not meant as camera 1
        raise TypeError(f"source must be a path or an int camera index, got {source!r}")
    if isinstance(source, int):
        return CameraReader(source)
    return VideoReader(source, max_pixels=max_pixels)


def sharpen_video(
    source: str | os.PathLike | int,
    output: str | os.PathLike,
    sharpen: Callable[[np.ndarray], np.ndarray],
    cfg: VideoConfig | None = None,
    *,
    progress: Callable[[int, int | None], None] | None = None,
) -> VideoReport:
    """Run ``sharpen`` on every frame of a video file or camera and write the result.

    The frames are decoded with FFmpeg (a file) or OpenCV (a camera), optionally degraded (``cfg.degrade``) in the
    reader thread, sharpened in the caller's thread, then composed (side by side, FPS overlay) and encoded in the
    writer thread, at the source's timestamps. The output is always finished: if ``sharpen`` (or anything else)
    raises midway, or on Ctrl-C, the frames sharpened so far are written and stay playable, and the error
    propagates unchanged. Written frames are cropped to even width and height (4:2:0 chroma needs it).

    Args:
        source: a video file path (any format FFmpeg reads), or an ``int`` camera index (``0`` is the default webcam).
        output: the video to write; its extension picks the container (``.mp4`` for H.264 in browsers). Missing
            parent folders are created.
        sharpen: maps an ``(H, W, 3)`` uint8 RGB frame to an ``(H, W, 3)`` uint8 RGB frame of the same shape.
        cfg: the options, see :class:`VideoConfig`; ``None`` means the defaults.
        progress: called as ``progress(done, total)`` in the caller's thread after each sharpened frame; ``total``
            is the source's frame count (capped by ``cfg.max_frames``) or ``None`` when unknown, as for cameras.
            Drives e.g. a tqdm bar or a Streamlit progress bar.

    Returns:
        A :class:`VideoReport`. ``flicker_ratio`` compares ``sharpen``'s outputs with the frames it was given (after
        degradation, before any overlay or encoding).

    Raises:
        VideoError: the file is missing or cannot be written, or the camera cannot be opened or gives no frames;
            and its subclasses VideoDecodeError (zero bytes, corrupt, no decodable frame), NoVideoStreamError
            (e.g. an audio file) and VideoTooLargeError (frames above ``cfg.max_pixels``).
        ValueError: an unknown ``cfg.degrade`` or ``cfg.codec``, ``cfg.max_frames < 1``, a non-positive
            ``cfg.strength``, ``output`` equal to ``source``, or ``sharpen`` returning a frame of the wrong shape.
        TypeError: ``sharpen`` returns something other than a uint8 numpy array.

    Example:
        >>> sharpen_video("call.webm", "call_sharp.mp4", my_sharpen, VideoConfig(side_by_side=True, fps_overlay=True))
    """
    cfg = VideoConfig() if cfg is None else cfg
    encoder = _check_config(cfg)
    out_path = Path(output)
    if not isinstance(source, int) and Path(source).resolve() == out_path.resolve():
        raise ValueError(f"output must differ from the source, got {str(out_path)!r} for both")

    start = time.perf_counter()
    reader = _open_source(source, cfg.max_pixels)
    try:
        info = reader.info
        writer = VideoWriter(out_path, info.fps, time_base=info.time_base, encoder=encoder)
    except BaseException:
        reader.close()
        raise
    total = info.frames if cfg.max_frames is None else min(info.frames or cfg.max_frames, cfg.max_frames)
    run = _Run(cfg, reader, writer, sharpen, total, progress)
    run.go()
    audio = "off"
    if cfg.audio:
        audio = "none (camera)" if isinstance(source, int) else mux_audio(source, out_path) if run.done else "none"
    elapsed = time.perf_counter() - start
    return VideoReport(
        frames=run.done,
        width=run.size[0],
        height=run.size[1],
        input_fps=info.fps,
        processing_fps=run.done / run.sharpen_seconds if run.sharpen_seconds > 0 else math.inf,
        end_to_end_fps=run.done / elapsed if elapsed > 0 else math.inf,
        flicker_ratio=run.meter.ratio,
        output=str(out_path),
        codec=encoder,
        audio=audio,
    )


class _Run:
    """One :func:`sharpen_video` pipeline: reader thread -> caller's thread (sharpen) -> writer thread -> flicker
    meter thread."""

    def __init__(
        self,
        cfg: VideoConfig,
        reader: VideoReader | CameraReader,
        writer: VideoWriter,
        sharpen: Callable[[np.ndarray], np.ndarray],
        total: int | None,
        progress: Callable[[int, int | None], None] | None,
    ) -> None:
        self.cfg, self.reader, self.writer, self.sharpen_fn = cfg, reader, writer, sharpen
        self.total, self.progress = total, progress
        self.meter = FlickerMeter()
        self.done = 0
        self.sharpen_seconds = 0.0
        self.size = (0, 0)  # (width, height) of the written frames
        self.stop = threading.Event()  # set when the caller's thread stops taking frames
        self.decoded: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self.sharpened: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self.written: queue.Queue = queue.Queue(maxsize=cfg.queue_size)  # (lq, pred) pairs for the flicker meter
        self.measure = _Worker("sharpkd-video-flicker", self._measure)
        self.degrade = _degrader(cfg)

    def go(self) -> None:
        read = _Worker("sharpkd-video-read", self._read)
        write = _Worker("sharpkd-video-write", self._write)
        for worker in (read, write, self.measure):
            worker.start()
        try:
            self._sharpen_all(write)
        finally:
            self.stop.set()
            _put(self.sharpened, _END, write.is_alive)
            write.join()
            self.measure.join()
            read.join()
            self.reader.close()
        for worker in (read, write, self.measure):
            if worker.error is not None:
                raise worker.error

    def _frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        frames = self.reader.frames()
        return frames if self.cfg.max_frames is None else itertools.islice(frames, self.cfg.max_frames)

    def _read(self) -> None:
        try:
            for i, (rgb, pts) in enumerate(self._frames()):
                if self.stop.is_set() or not _put(self.decoded, (self.degrade(rgb, i), pts), self._taking):
                    break
        finally:
            _put(self.decoded, _END, self._taking)

    def _taking(self) -> bool:
        return not self.stop.is_set()

    def _sharpen_all(self, write: _Worker) -> None:
        window = _Preview(self.cfg.label) if self.cfg.show else None
        recent: deque[float] = deque(maxlen=_FPS_WINDOW)  # seconds spent in sharpen() on the last frames
        try:
            while (item := self.decoded.get()) is not _END:
                lq, pts = item
                tick = time.perf_counter()
                pred = self._sharpen(lq)
                recent.append(time.perf_counter() - tick)
                self.sharpen_seconds += recent[-1]
                fps = len(recent) / sum(recent) if sum(recent) > 0 else math.inf
                frame = _compose(lq, pred, self.cfg, fps) if window is not None else None
                if not _put(self.sharpened, (lq, pred, pts, fps, frame), write.is_alive):
                    break  # the writer failed; go() raises its error
                self.done += 1
                if self.progress is not None:
                    self.progress(self.done, self.total)
                if window is not None and window.show(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
                    logger.info("preview closed by key press after %d frames", self.done)
                    break
        finally:
            if window is not None:
                window.close()

    def _sharpen(self, lq: np.ndarray) -> np.ndarray:
        pred = self.sharpen_fn(lq)
        _check_frame(pred, lq.shape)
        # the writer reads it later, in another thread: a model that reuses its output buffer must not change it
        return pred if pred is lq else pred.copy()

    def _write(self) -> None:
        try:
            while (item := self.sharpened.get()) is not _END:
                lq, pred, pts, fps, frame = item
                frame = _compose(lq, pred, self.cfg, fps) if frame is None else frame
                self.writer.write(frame, pts)
                self.size = (frame.shape[1] - frame.shape[1] % 2, frame.shape[0] - frame.shape[0] % 2)
                _put(self.written, (lq, pred), self.measure.is_alive)
        finally:
            self.writer.close()
            _put(self.written, _END, self.measure.is_alive)

    def _measure(self) -> None:
        # its own thread: two mean absolute differences of a 1080p frame pair cost about as much as encoding it
        while (item := self.written.get()) is not _END:
            self.meter.update(*item)


def _check_config(cfg: VideoConfig) -> str:
    if cfg.degrade is not None and cfg.degrade not in list_degradations():
        raise ValueError(f"unknown degradation {cfg.degrade!r}; known: {', '.join(list_degradations())}")
    if cfg.max_frames is not None and cfg.max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {cfg.max_frames}")
    if not (isinstance(cfg.strength, int | float) and math.isfinite(cfg.strength) and cfg.strength > 0):
        raise ValueError(f"strength must be a positive finite number, got {cfg.strength!r}")
    if cfg.queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {cfg.queue_size}")
    return resolve_encoder(cfg.codec)


def _check_frame(pred: object, shape: tuple[int, ...]) -> None:
    if not isinstance(pred, np.ndarray) or pred.dtype != np.uint8:
        got = pred.dtype if isinstance(pred, np.ndarray) else type(pred).__name__
        raise TypeError(f"sharpen must return a uint8 numpy array, got {got}")
    if pred.shape != shape:
        raise ValueError(f"sharpen must return a frame of its input's shape {shape}, got {pred.shape}")


def _compose(lq: np.ndarray, pred: np.ndarray, cfg: VideoConfig, fps: float) -> np.ndarray:
    """The RGB frame to write: ``pred``, or ``lq | pred`` side by side, with captions; cropped to even size."""
    out = pred.copy() if cfg.fps_overlay or cfg.side_by_side else pred
    if cfg.fps_overlay:
        _put_text(out, f"{fps:.1f} fps", bottom=True)
    if cfg.side_by_side:
        inp = lq.copy()
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
