"""The Compare viewer's image helpers: where the detail is, the same region of every panel, what a model changed.

:func:`detail_center` finds the region with the highest gradient energy (where sharpening shows), :func:`zoom_region`
cuts a region (a view, no copy), :func:`enlarge` blows it up with square pixels, and :func:`amplified_difference`
with :func:`difference_gain` makes ``|output - input|`` visible. Images are ``(H, W, 3)`` or ``(H, W)`` uint8 arrays;
no float copy of a whole image is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_GAIN = 64  # amplified_difference never scales by more than this
DETAIL_PIXELS = 250_000  # detail_center works on a block-averaged copy of at most about this many pixels


def detail_center(image: np.ndarray, window: tuple[int, int]) -> tuple[float, float]:
    """Centre of the ``window``-sized region with the highest gradient energy: where the most detail is.

    The energy is the sum of squared horizontal and vertical luma differences inside the window. Large images are
    block-averaged to about :data:`DETAIL_PIXELS` first, so this stays cheap and small in memory.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` uint8.
        window: ``(w, h)`` of the region in pixels (clipped to the image).

    Returns:
        ``(x, y)`` of the region's centre as fractions of the width and height, each in ``[0, 1]``; ``(0.5, 0.5)``
        for a flat image.

    Raises:
        ValueError: ``image`` is not 2-D or 3-D, or a window side is below 1.
    """
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    if min(window) < 1:
        raise ValueError(f"window sides must be >= 1, got {window}")
    H, W = image.shape[:2]
    s = max(1, math.floor(math.sqrt(H * W / DETAIL_PIXELS)))  # block size of the averaged copy
    h, w = H // s, W // s
    blocks = image[: h * s, : w * s].reshape(h, s, w, s, -1)  # a view: (h, s, w, s, C)
    luma = blocks.mean(axis=(1, 3, 4), dtype=np.float32)  # (h, w); accumulated in chunks, no float copy of the image
    energy = np.zeros((h, w), np.float64)
    energy[:, 1:] += np.square(np.diff(luma, axis=1))
    energy[1:, :] += np.square(np.diff(luma, axis=0))
    del luma
    if not energy.any():
        return 0.5, 0.5
    wh, ww = max(1, min(h, round(window[1] / s))), max(1, min(w, round(window[0] / s)))
    integral = np.pad(energy.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))  # (h + 1, w + 1)
    sums = integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]  # per top-left
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return float((left + ww / 2) / w), float((top + wh / 2) / h)


def region_size(H: int, W: int, zoom: int, aspect: float | None = None) -> tuple[int, int]:
    """``(h, w)`` of the :func:`zoom_region` of an ``H x W`` image at ``zoom`` and ``aspect``."""
    w = math.ceil(W / zoom)
    return (math.ceil(H / zoom) if aspect is None else min(H, max(1, round(w / aspect)))), w


def zoom_region(image: np.ndarray, center: tuple[float, float], zoom: int, aspect: float | None = None) -> np.ndarray:
    """The region ``ceil(W / zoom)`` wide around ``center``, shifted inwards to lie inside the image.

    A view on ``image`` (no copy); the viewer enlarges it on screen with nearest-neighbour pixels.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` array.
        center: ``(x, y)`` as fractions of the width and height, each in ``[0, 1]``.
        zoom: integer magnification, at least 1 (1 with no ``aspect`` is the whole image).
        aspect: width / height of the region (a wide strip fills a wide screen); ``None`` keeps the image's, so the
            region is ``ceil(H / zoom)`` high. The height is clipped to the image's.

    Returns:
        ``(h, ceil(W / zoom)[, 3])``, same dtype as ``image``.

    Raises:
        ValueError: ``zoom`` below 1 or not an int, ``aspect`` not positive, or ``center`` outside ``[0, 1]``.
    """
    if not isinstance(zoom, (int, np.integer)) or zoom < 1:
        raise ValueError(f"zoom must be an int >= 1, got {zoom!r}")
    if aspect is not None and not aspect > 0:
        raise ValueError(f"aspect must be positive, got {aspect}")
    cx, cy = center
    if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0):
        raise ValueError(f"center must be fractions in [0, 1], got {center}")
    H, W = image.shape[:2]
    h, w = region_size(H, W, zoom, aspect)
    top = min(max(0, round(cy * H - h / 2)), H - h)
    left = min(max(0, round(cx * W - w / 2)), W - w)
    return image[top : top + h, left : left + w]


def enlarge(image: np.ndarray, min_width: int) -> np.ndarray:
    """``image`` enlarged by the smallest integer factor that makes it at least ``min_width`` wide, each pixel a
    square block (nearest-neighbour), so a browser showing it never smooths the pixels; ``image`` itself if wide
    enough."""
    factor = max(1, -(-min_width // image.shape[1]))  # ceil
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def difference_gain(preds: Sequence[np.ndarray], lq: np.ndarray, *, target: int = 192) -> int:
    """One power-of-two gain that makes the changes of ``preds`` (from ``lq``) visible but rarely clipped.

    The gain brings the largest 99th percentile of ``|pred - lq|`` over ``preds`` up to about ``target`` (of 255),
    between 1 and :data:`MAX_GAIN`; 1 when nothing changed.
    """
    p99 = max((float(np.percentile(_abs_diff(p, lq), 99)) for p in preds), default=0.0)
    if p99 <= 0:
        return 1
    return int(min(MAX_GAIN, max(1, 2 ** math.floor(math.log2(target / p99)))))


def amplified_difference(pred: np.ndarray, lq: np.ndarray, gain: int) -> np.ndarray:
    """``|pred - lq|`` (the largest over the colour channels) times ``gain``, clipped: what a model changed.

    Shape:
        ``(H, W, 3)`` uint8, twice -> ``(H, W)`` uint8.

    Raises:
        ValueError: the shapes differ or ``gain`` is below 1.
    """
    if gain < 1:
        raise ValueError(f"gain must be >= 1, got {gain}")
    return np.minimum(_abs_diff(pred, lq) * gain, 255).astype(np.uint8)


def _abs_diff(pred: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """(H, W) int16: the largest absolute channel difference (int16, so no float copy of the image)."""
    if pred.shape != lq.shape:
        raise ValueError(f"pred and lq must have the same shape, got {pred.shape} and {lq.shape}")
    diff = np.abs(pred.astype(np.int16) - lq.astype(np.int16))
    return diff.max(axis=2) if diff.ndim == 3 else diff
