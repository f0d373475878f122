"""The Live page's engine: webcam frames through an optional simulated bad link, then the student, shown two ways.

:class:`LiveProcessor` is what streamlit-webrtc calls, in its own worker thread, with the camera frames that arrived
since its last call (``recv_queued``). It processes only the newest and drops the rest, so when sharpening falls
behind the camera the picture skips frames but never lags: latency stays one frame's processing time. Each kept
frame is downscaled to at most :attr:`LiveSettings.max_side`, sent through a :class:`~sharpkd.runtime.link.CallLink`
(the other side of a poor call: downscale 2x plus a real-time H.264 or VP8 codec) when one is chosen, sharpened, and
composed side by side or as a split view. :class:`LiveStats` keeps the FPS, the per-frame latency and the drop count
for the page. :func:`ice_servers` reads the ICE (STUN/TURN) servers from ``st.secrets``.

Frames are ``(H, W, 3)`` uint8 RGB everywhere here; the page never touches pixels.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from sharpkd.degrade import CODEC_PRESETS
from sharpkd.runtime.link import CallLink

VIEWS = ("side by side", "split")
MAX_SIDES = (320, 480, 640, 960, 1280)  # longest side the frames are processed at; the student's cost grows with it
_WINDOW_S = 2.0  # FPS: frames shown in the last two seconds
_LATENCY_FRAMES = 30  # latency: mean over the last 30 processed frames


@dataclass(frozen=True)
class LiveSettings:
    """What the user picked on the Live page; the processor reads a fresh copy for every frame."""

    link: str | None = "h264"  # simulated bad link: a codec preset (downscale 2x + codec), or None for the clean camera
    strength: float = 1.0  # divides the link's bitrate, as the presets' strength
    sharpen: bool = True  # False shows the link's output on both sides (to see what the student adds)
    view: str = "side by side"  # one of VIEWS
    split: float = 0.5  # split view: the fraction of the width showing the input, from the left
    max_side: int = 640  # frames larger than this are downscaled first (one of MAX_SIDES, or any positive int)
    mirror: bool = False  # flip left-right, as a selfie preview does


def check_settings(s: LiveSettings) -> LiveSettings:
    """Return ``s`` unchanged, or raise ``ValueError`` naming the bad field."""
    if s.link is not None and s.link not in CODEC_PRESETS:
        raise ValueError(f"unknown link {s.link!r}; known: {', '.join(CODEC_PRESETS)} or None")
    if s.view not in VIEWS:
        raise ValueError(f"unknown view {s.view!r}; known: {', '.join(VIEWS)}")
    if not 0.0 <= s.split <= 1.0:
        raise ValueError(f"split must be in [0, 1], got {s.split}")
    if s.max_side < 16 or not (math.isfinite(s.strength) and s.strength > 0):
        raise ValueError(f"max_side must be >= 16 and strength positive, got {s.max_side} and {s.strength}")
    return s


@dataclass
class LiveStats:
    """Counters of one live session, written by the worker thread and read by the page (take :meth:`snapshot`)."""

    processed: int = 0  # frames sharpened and sent back
    dropped: int = 0  # frames skipped because a newer one was waiting
    error: str | None = None  # the last processing error, shown on the page; the stream goes on
    _shown: deque = field(default_factory=lambda: deque(maxlen=240))  # monotonic times frames were returned
    _latency: deque = field(default_factory=lambda: deque(maxlen=_LATENCY_FRAMES))  # seconds per processed frame
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, dropped: int, now: float) -> None:
        """One processed frame that took ``seconds``, after skipping ``dropped`` older ones."""
        with self._lock:
            self.processed += 1
            self.dropped += dropped
            self._shown.append(now)
            self._latency.append(seconds)

    def fail(self, message: str) -> None:
        with self._lock:
            self.error = message

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """``{"fps", "latency_ms", "processed", "dropped", "error"}``; fps and latency are ``None`` before a frame."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._shown if now - t <= _WINDOW_S]
            span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
            fps = (len(recent) - 1) / span if span > 0 else None
            latency = 1000 * sum(self._latency) / len(self._latency) if self._latency else None
            return {
                "fps": fps,
                "latency_ms": latency,
                "processed": self.processed,
                "dropped": self.dropped,
                "error": self.error,
            }


def fit_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area) so the longer side is at most ``max_side``, keeping even sizes; smaller frames pass as is."""
    H, W = rgb.shape[:2]
    if max(H, W) <= max_side:
        return rgb
    scale = max_side / max(H, W)
    size = (max(2, round(W * scale / 2) * 2), max(2, round(H * scale / 2) * 2))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _label(img: np.ndarray, text: str, right: bool = False) -> None:
    H, W = img.shape[:2]
    scale = max(0.35, H / 900)
    thickness = max(1, round(1.4 * scale))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, round(5 * scale))
    x = W - tw - 2 * pad if right else 0
    box = img[: th + base + 2 * pad, max(0, x) : x + tw + 2 * pad]
    box[:] = (box * 0.35).astype(np.uint8)
    cv2.putText(
        img, text, (x + pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )


def compose(lq: np.ndarray, pred: np.ndarray, settings: LiveSettings, lq_name: str) -> np.ndarray:
    """The frame sent back: ``lq | pred`` side by side (double width), or one frame split at ``settings.split``
    (input on the left, student on the right, a white divider between).

    Shape:
        two ``(H, W, 3)`` uint8 -> ``(H, 2W, 3)`` (side by side) or ``(H, W, 3)`` (split).
    """
    assert lq.shape == pred.shape, f"{lq.shape} != {pred.shape}"
    if settings.view == "side by side":
        left, right = lq.copy(), pred.copy()
        _label(left, lq_name)
        _label(right, "student" if settings.sharpen else lq_name)
        return np.concatenate([left, right], axis=1)  # (H, 2W, 3)
    W = lq.shape[1]
    x = min(W, max(0, round(settings.split * W)))
    out = np.concatenate([lq[:, :x], pred[:, x:]], axis=1)
    _label(out, lq_name)
    _label(out, "student" if settings.sharpen else lq_name, right=True)
    out[:, max(0, x - 1) : x + 1] = 255  # the divider, 2 px, over the captions
    return out


class LiveProcessor:
    """Per-session frame processor for streamlit-webrtc: newest frame only, degraded, sharpened, composed.

    Args:
        sharpen: ``(H, W, 3)`` uint8 RGB -> same; e.g. ``Sharpener.sharpen`` of the student.
        settings: the initial :class:`LiveSettings`; :meth:`update` swaps them while the stream runs.

    Example:
        >>> proc = LiveProcessor(student.sharpen)
        >>> webrtc_streamer(key="live", queued_video_frames_callback=proc.recv_queued, ...)
    """

    def __init__(self, sharpen: Callable[[np.ndarray], np.ndarray], settings: LiveSettings | None = None) -> None:
        self.sharpen = sharpen
        self.settings = check_settings(settings or LiveSettings())
        self.stats = LiveStats()
        self._link: CallLink | None = None
        self._lock = threading.Lock()

    def update(self, settings: LiveSettings) -> None:
        """Use ``settings`` from the next frame on (called by the page on every rerun)."""
        check_settings(settings)
        with self._lock:
            self.settings = settings

    def reset_stats(self) -> None:
        self.stats = LiveStats()

    def _link_for(self, s: LiveSettings) -> CallLink | None:
        if s.link is None:
            self._link = None
        elif self._link is None or (self._link.codec, self._link.strength) != (s.link, s.strength):
            self._link = CallLink(s.link, s.strength)  # a new codec or bitrate: a new call
        return self._link

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """One camera frame -> the frame to show (see :func:`compose`)."""
        with self._lock:
            s = replace(self.settings)
        frame = fit_side(rgb[:, ::-1] if s.mirror else rgb, s.max_side)
        frame = np.ascontiguousarray(frame)
        link = self._link_for(s)
        lq = link.send(frame) if link is not None else frame
        pred = self.sharpen(lq) if s.sharpen else lq
        return compose(lq, pred, s, f"{s.link} call" if s.link else "camera")

    async def recv_queued(self, frames: list[Any]) -> list[Any]:
        """streamlit-webrtc's ``queued_video_frames_callback``: the ``av.VideoFrame``s that arrived since the last
        call in, one processed frame out. Only the newest is processed; the older ones are dropped undecoded, so a
        slow model skips frames instead of falling behind. Should processing fail, the newest input goes back
        unchanged and the error is shown on the page: the call must not stop."""
        import av

        latest = frames[-1]
        tick = time.perf_counter()
        try:
            out = self.process(latest.to_ndarray(format="rgb24"))
        except Exception as err:  # noqa: BLE001 -- any failure is shown on the page; the call goes on
            self.stats.fail(f"{type(err).__name__}: {err}")
            return [latest]
        self.stats.record(time.perf_counter() - tick, len(frames) - 1, time.monotonic())
        frame = av.VideoFrame.from_ndarray(out, format="rgb24")
        frame.pts, frame.time_base = latest.pts, latest.time_base
        return [frame]


def ice_servers(secrets: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ICE servers of ``secrets["webrtc"]["ice_servers"]`` (``st.secrets``), or ``[]``: host candidates only,
    which is all two ends on one machine (localhost) need.

    Each server is ``{"urls": str | [str, ...], "username": str, "credential": str}`` (the last two for TURN).

    Raises:
        ValueError: the entry is there but is not a list of such tables.

    Example (``.streamlit/secrets.toml``)::

        [webrtc]
        ice_servers = [{ urls = ["turn:turn.example.com:3478"], username = "u", credential = "p" }]
    """
    section = secrets.get("webrtc") if hasattr(secrets, "get") else None
    servers = section.get("ice_servers") if isinstance(section, Mapping) else None
    if servers is None:
        return []
    if not isinstance(servers, Sequence) or isinstance(servers, str):
        raise ValueError(f"webrtc.ice_servers must be a list of tables with 'urls', got {type(servers).__name__}")
    out = []
    for i, server in enumerate(servers):
        urls = server.get("urls") if isinstance(server, Mapping) else None
        if not urls or not all(isinstance(u, str) for u in ([urls] if isinstance(urls, str) else urls)):
            raise ValueError(f"webrtc.ice_servers[{i}] needs 'urls': a URL or a list of URLs, got {server!r}")
        out.append({k: (list(v) if k == "urls" and not isinstance(v, str) else v) for k, v in dict(server).items()})
    return out
