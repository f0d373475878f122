"""Classical sharpeners from FFmpeg's filters, run on one RGB frame through a PyAV filter graph.

:func:`ffmpeg_filter` runs any FFmpeg video filter on an ``(H, W, 3)`` uint8 RGB frame: ``buffer (rgb24) -> format
-> filter -> format (rgb24) -> buffersink``. The filter works in a planar format without chroma subsampling, so
odd sizes are fine and no colour resolution is lost: ``gbrp`` (the RGB planes, converted losslessly) where the
filter takes it, else ``yuv444p`` (BT.601 TV range: a round trip moves a pixel by at most 2 levels).

Two sharpeners with one setting each, for the classical baselines:

=================== ===========================================================================================
function             filter
=================== ===========================================================================================
``cas(f, s)``        AMD FidelityFX Contrast Adaptive Sharpening (FFmpeg ``cas``), ``strength`` in [0, 1], on
                     the R, G and B planes (``gbrp``). CAS sharpens a little even at 0 (its weakest setting)
``ffmpeg_unsharp``   FFmpeg ``unsharp`` on luma only (``yuv444p``) with a 5x5 matrix, ``amount`` in [-2, 5]
                     (negative blurs); chroma is left alone. FFmpeg's 5x5 "matrix" is a binomial blur,
                     [1 4 6 4 1] / 16 each way (about a Gaussian of sigma 1), edge pixels repeated
=================== ===========================================================================================
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from sharpkd.errors import CodecError

UNSHARP_SIZE = 5  # unsharp's luma matrix, width and height (odd, 3-23)
WORKING_FORMATS = ("gbrp", "yuv444p")
_UNSHARP_MIN_ROWS = 8


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got dtype {frame.dtype} and shape {frame.shape}")


def _check_setting(name: str, value: float, low: float, high: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}") from err
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return value


def _run_graph(frame: np.ndarray, name: str, args: str, pix_fmt: str, threads: int) -> np.ndarray:
    import av

    H, W = frame.shape[:2]
    graph = av.filter.Graph()
    graph.threads = threads
    nodes = [
        graph.add_buffer(width=W, height=H, format="rgb24", time_base=Fraction(1, 30)),
        graph.add("format", pix_fmt),
        graph.add(name, args) if args else graph.add(name),
        graph.add("format", "rgb24"),
        graph.add("buffersink"),
    ]
    graph.link_nodes(*nodes).configure()
    src = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    src.pts = 0
    graph.push(src)
    out = graph.pull().to_ndarray(format="rgb24")
    if out.shape != frame.shape:
        raise CodecError(f"FFmpeg filter {name!r} changed the frame size from {W}x{H} to {out.shape[1]}x{out.shape[0]}")
    return out


def ffmpeg_filter(
    frame: np.ndarray, name: str, args: str = "", *, pix_fmt: str = "gbrp", threads: int = 0
) -> np.ndarray:
    """Run the FFmpeg video filter ``name`` with option string ``args`` on one RGB frame.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        name: an FFmpeg filter that keeps the frame size, e.g. ``"cas"``.
        args: its options in FFmpeg syntax, e.g. ``"strength=0.6"``.
        pix_fmt: the format the filter runs in, one of :data:`WORKING_FORMATS`.
        threads: FFmpeg's slice threads for the graph; 0 lets FFmpeg choose (all cores), 1 runs on one.

    Returns:
        The filtered frame, ``(H, W, 3)`` uint8 RGB.

    Raises:
        TypeError: ``frame`` is not a numpy array.
        ValueError: not an ``(H, W, 3)`` uint8 frame, an empty ``name``, an unknown ``pix_fmt``, or negative
            ``threads``.
        CodecError: PyAV is missing, FFmpeg has no such filter, rejects ``args``, fails on the frame, or the filter
            changes the frame size.

    Shape:
        ``(H, W, 3) -> (H, W, 3)``.

    Example:
        >>> out = ffmpeg_filter(np.zeros((9, 16, 3), np.uint8), "cas", "strength=0.6")
    """
    _check_frame(frame)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be an FFmpeg filter name, got {name!r}")
    if pix_fmt not in WORKING_FORMATS:
        raise ValueError(f"pix_fmt must be one of {', '.join(WORKING_FORMATS)}, got {pix_fmt!r}")
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    try:
        import av
    except ImportError as err:
        raise CodecError(f"the FFmpeg filters need PyAV (pip install av): {err}") from err
    try:
        return _run_graph(frame, name, args, pix_fmt, threads)
    except (av.error.FFmpegError, ValueError, KeyError) as err:  # PyAV: unknown filter -> KeyError or ValueError
        H, W = frame.shape[:2]
        raise CodecError(f"FFmpeg filter {name!r} ({args or 'no options'}) failed on a {W}x{H} frame: {err}") from err


def cas(frame: np.ndarray, strength: float = 0.5, *, threads: int = 0) -> np.ndarray:
    """AMD FidelityFX Contrast Adaptive Sharpening (FFmpeg ``cas``) on the R, G and B planes.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        strength: sharpening in [0, 1]; 0 is CAS's weakest setting, which still sharpens slightly.
        threads: as :func:`ffmpeg_filter`.

    Returns:
        The sharpened frame, ``(H, W, 3)`` uint8 RGB.

    Raises:
        TypeError, ValueError: a bad frame, or ``strength`` outside [0, 1].
        CodecError: PyAV or FFmpeg's ``cas`` is missing or fails.

    Shape:
        ``(H, W, 3) -> (H, W, 3)``.
    """
    strength = _check_setting("strength", strength, 0.0, 1.0)
    return ffmpeg_filter(frame, "cas", f"strength={strength:.6f}", pix_fmt="gbrp", threads=threads)


def ffmpeg_unsharp(frame: np.ndarray, amount: float = 1.0, *, threads: int = 0) -> np.ndarray:
    """FFmpeg's ``unsharp`` filter on luma: ``Y + amount * (Y - blur(Y))``, blur 5x5 binomial; chroma unchanged.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        amount: luma amount in FFmpeg's range [-2, 5]; 0 leaves the frame as it is (up to the yuv444p round trip,
            at most 2 levels), negative values blur.
        threads: as :func:`ffmpeg_filter`.

    Returns:
        The sharpened frame, ``(H, W, 3)`` uint8 RGB.

    Raises:
        TypeError, ValueError: a bad frame, or ``amount`` outside [-2, 5].
        CodecError: PyAV or FFmpeg's ``unsharp`` is missing or fails.

    Shape:
        ``(H, W, 3) -> (H, W, 3)``.
    """
    amount = _check_setting("amount", amount, -2.0, 5.0)
    _check_frame(frame)
    n = UNSHARP_SIZE
    args = f"luma_msize_x={n}:luma_msize_y={n}:luma_amount={amount:.6f}:chroma_amount=0"
    if frame.shape[0] >= _UNSHARP_MIN_ROWS:
        return ffmpeg_filter(frame, "unsharp", args, pix_fmt="yuv444p", threads=threads)
    # FFmpeg's unsharp returns garbage on frames under 8 rows. Its border repeats the edge pixels, so padding with
    # them first (n rows each way) and cropping after gives the result it would have given.
    padded = np.pad(frame, ((n, n), (0, 0), (0, 0)), mode="edge")
    return ffmpeg_filter(padded, "unsharp", args, pix_fmt="yuv444p", threads=threads)[n:-n]
