"""A simulated poor video-call link for streams: what the other side of a call sees, frame by frame, in real time.

:class:`CallLink` does to a live stream what the ``h264`` and ``vp8`` presets of :mod:`sharpkd.degrade.codec` do to
one still image: downscale 2x, encode at a poor call's bitrate in the codec's real-time mode, decode, upscale back
(bicubic). It keeps one encoder and one decoder open for the whole stream, so each frame costs one real-time encode
and decode (a few ms at webcam sizes) and is inter-coded from the frames before it, as in a real call; the still-image
preset instead encodes a short panning clip per image (~0.4 s at 1080p), far too slow for a camera. The encoder
settings (bitrate per pixel, rate control, profile) are the preset's, read from :mod:`sharpkd.degrade.codec`.

Example:
    >>> link = CallLink("h264")
    >>> lq = [link.send(frame) for frame in camera_frames]  # (H, W, 3) uint8 RGB in and out
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from sharpkd.degrade.codec import _DECODERS, _ENCODERS, BPP, CODEC_PRESETS, FPS, GOP, _encoder_options, _qrange
from sharpkd.errors import CodecError

SCALE = 2  # the sender downscales by this, as the still-image presets do
MIN_SIDE = 16  # the coded frame is at least one macroblock each way


class CallLink:
    """A persistent real-time encoder and decoder pair that degrades each frame sent through it.

    Args:
        codec: ``"h264"`` (libx264) or ``"vp8"`` (libvpx), with :mod:`sharpkd.degrade.codec`'s settings.
        strength: divides the bitrate, as the presets' ``strength`` does (2 = half the bits).

    Raises:
        ValueError: unknown ``codec`` or a non-positive ``strength``.
        CodecError: FFmpeg lacks the encoder or fails (raised by :meth:`send`).
    """

    def __init__(self, codec: str = "h264", strength: float = 1.0) -> None:
        if codec not in CODEC_PRESETS:
            raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODEC_PRESETS)}")
        if not (isinstance(strength, int | float) and math.isfinite(strength) and strength > 0):
            raise ValueError(f"strength must be a positive finite number, got {strength!r}")
        self.codec = codec
        self.strength = float(strength)
        self._size: tuple[int, int] | None = None  # (H, W) of the frames the codec pair was opened for
        self._enc: Any = None
        self._dec: Any = None
        self._last: np.ndarray | None = None
        self._pts = 0

    def _open(self, H: int, W: int) -> None:
        import av

        h, w = max(1, round(H / SCALE)), max(1, round(W / SCALE))
        coded_h, coded_w = max(MIN_SIDE, h + h % 2), max(MIN_SIDE, w + w % 2)
        bit_rate = max(1, round(BPP / self.strength * coded_h * coded_w * FPS / 1000)) * 1000
        try:
            enc = av.CodecContext.create(_ENCODERS[self.codec], "w")
            enc.width, enc.height, enc.pix_fmt = coded_w, coded_h, "yuv420p"
            enc.time_base, enc.framerate = Fraction(1, FPS), Fraction(FPS)
            enc.bit_rate, enc.gop_size, enc.max_b_frames, enc.thread_count = bit_rate, GOP, 0, 1
            enc.qmin, enc.qmax = _qrange(self.codec)
            enc.options = _encoder_options(self.codec, bit_rate)
            dec = av.CodecContext.create(_DECODERS[self.codec], "r")
            dec.thread_count = 1  # frame threads would delay each output by a frame
        except (av.error.FFmpegError, ValueError) as err:
            raise CodecError(f"cannot open the {self.codec} encoder at {coded_w}x{coded_h}: {err}") from err
        self._enc, self._dec, self._size, self._pts, self._last = enc, dec, (H, W), 0, None
        self._small = (h, w)
        self._coded = (coded_h, coded_w)

    def send(self, rgb: np.ndarray) -> np.ndarray:
        """Send one frame over the link; returns what the receiver displays, the same shape.

        A change of frame size restarts the codec pair (a new call). Should the decoder hold a frame back, the
        previous received frame is shown again, as a receiver would.

        Shape:
            ``(H, W, 3)`` uint8 RGB -> ``(H, W, 3)`` uint8 RGB.
        """
        import av

        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {got}")
        H, W = rgb.shape[:2]
        if self._size != (H, W):
            self._open(H, W)
        (h, w), (coded_h, coded_w) = self._small, self._coded
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)  # antialiased, like downup's sender side
        small = cv2.copyMakeBorder(small, 0, coded_h - h, 0, coded_w - w, cv2.BORDER_REFLECT_101)
        frame = av.VideoFrame.from_ndarray(small, format="rgb24").reformat(format="yuv420p")  # BT.601, TV range
        frame.pts = self._pts
        self._pts += 1
        try:
            for packet in self._enc.encode(frame):
                for decoded in self._dec.decode(packet):
                    self._last = decoded.to_ndarray(format="rgb24")[:h, :w]
        except av.error.FFmpegError as err:
            raise CodecError(f"{self.codec} failed on frame {self._pts - 1} ({coded_w}x{coded_h}): {err}") from err
        if self._last is None:  # nothing decoded yet: the receiver still shows the downscaled frame, blurred
            self._last = small[:h, :w]
        return cv2.resize(self._last, (W, H), interpolation=cv2.INTER_CUBIC)
