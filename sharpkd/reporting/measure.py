"""The benchmark's instruments: a realistic test frame, conv MAC counting, peak resident memory and a call timer.

:mod:`sharpkd.reporting.benchmark` runs the measurements; this module only provides what they are made with.

Peak memory is the growth of the process's resident-set high-water mark (``VmHWM``, the same counter as
``resource.getrusage(RUSAGE_SELF).ru_maxrss``) between :meth:`PeakMemory.start` and :meth:`PeakMemory.peak_mb`.
Every allocation counts (torch's CPU allocator, numpy, OpenCV, ONNX Runtime), not only what Python's allocator sees.
At the start, freed heap pages go back to the OS (``malloc_trim``) and on Linux the high-water mark is reset
(``/proc/self/clear_refs``), so memory that setup used and freed cannot hide the measured calls' own peak. Where that
reset is unavailable, the number is a lower bound (:attr:`PeakMemory.exact` is ``False``).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sharpkd.models.blocks import reparameterize


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut) when available, else a procedural scene with edges and texture."""
    try:
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut()[..., :3])
    except ImportError:
        yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
        rng = np.random.default_rng(0)
        base = 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 40 * ((xx // 64 + yy // 64) % 2)
        img = base[..., None] + np.array([10.0, 0.0, -10.0]) + rng.normal(0.0, 6.0, (512, 512, 3))
        return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_frame(width: int, height: int) -> np.ndarray:
    """A deterministic, realistic test frame: a photo scaled to at most 720 px high and mirror-tiled to fill.

    Returns:
        ``(height, width, 3)`` uint8 RGB, C-contiguous.

    Raises:
        ValueError: a non-positive size.
    """
    import cv2

    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    photo = _photo()
    side = max(1, min(height, 720))
    interp = cv2.INTER_AREA if side < photo.shape[0] else cv2.INTER_CUBIC
    photo = cv2.resize(photo, (side * photo.shape[1] // photo.shape[0], side), interpolation=interp)
    h, w = min(height, photo.shape[0]), min(width, photo.shape[1])
    frame = np.pad(photo[:h, :w], ((0, height - h), (0, width - w), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(frame)


def conv_macs(model: nn.Module, height: int, width: int) -> int:
    """Multiply-accumulates of the ``nn.Conv2d`` layers in one forward pass of ``model`` on a ``height x width`` frame.

    Each conv counts ``output elements * in_channels / groups * kernel_h * kernel_w``, counted by forward hooks. Only
    convolutions are counted (they dominate): activations, norms, attention products, pixel (un)shuffles, padding and
    the uint8 conversions are not; a re-parameterizable block counts as the one conv it runs as. The pass runs on
    the ``meta`` device, so no memory or time is spent on a 4K frame. Tile overlap of the tiled inference path is
    not counted either: this is one pass over the whole frame.

    Args:
        model: any module taking ``(1, 3, H, W)`` images.
        height: frame height in pixels.
        width: frame width in pixels.

    Returns:
        The MAC count for a batch of one.

    Shape:
        The model is run once on a ``(1, 3, height, width)`` meta tensor.
    """
    # re-parameterizable blocks count as the plain convs they run as (sharpkd.models.blocks.reparameterize)
    meta_model = copy.deepcopy(reparameterize(model)).to("meta")
    total = 0

    def hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta_model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            meta_model(torch.zeros(1, 3, height, width, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return int(total)


def _maxrss_mb() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _proc_status_mb(key: str) -> float:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {key} line")
    return int(match.group(1)) / 1024


class PeakMemory:
    """Peak resident memory added since :meth:`start`, in MB (see the module docstring).

    Example:
        >>> memory = PeakMemory()
        >>> memory.start()
        >>> x = torch.ones(2**24)  # 64 MB
        >>> memory.peak_mb()  # doctest: +SKIP
        64.2
    """

    base: float  # resident MB at start()
    exact: bool  # True when the high-water mark could be reset at start(); else peak_mb() is a lower bound

    def start(self) -> None:
        """Return freed heap pages to the OS and reset the high-water mark where the platform allows it."""
        try:
            ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)  # glibc only; returns freed heap pages to the OS
        except (OSError, AttributeError, TypeError):
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: high-water mark := current RSS
            self.base, self.exact = _proc_status_mb("VmRSS"), True
        except OSError:
            self.base, self.exact = _maxrss_mb(), False

    def peak_mb(self) -> float:
        """MB the resident-set high-water mark grew by since :meth:`start` (never negative)."""
        peak = _proc_status_mb("VmHWM") if self.exact else _maxrss_mb()
        return max(0.0, peak - self.base)


def time_calls(fn: Callable[[np.ndarray], Any], frame: np.ndarray, repeats: int, warmup: int) -> list[float]:
    """Milliseconds of ``repeats`` calls ``fn(frame)``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn(frame)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(frame)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


@contextmanager
def thread_count(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads in torch and OpenCV (``None``: torch's current count), then
    restore both. Yields the count in effect. A measurement sets this itself: a ``Sharpener`` never changes it."""
    import cv2

    saved = torch.get_num_threads(), cv2.getNumThreads()
    threads = threads or saved[0]
    try:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        yield threads
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])
