"""Temporal stability of a per-frame model: :func:`flicker_ratio` and its streaming form :class:`FlickerMeter`.

A model that sharpens each frame on its own may re-invent detail or noise differently from one frame to the next;
the flicker ratio compares how much its output changes between consecutive frames with how much its input does.
:func:`sharpkd.runtime.video.sharpen_video` reports it for every video it processes.

Example:
    >>> frames = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10, 20)]
    >>> flicker_ratio(frames, frames)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class FlickerMeter:
    """Streaming accumulator behind :func:`flicker_ratio`: feed ``(input, output)`` frame pairs in order.

    Keeps only the previous pair, so it runs alongside a live stream in constant memory.
    """

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._input_change = 0.0  # sum over consecutive pairs of mean |in_t - in_{t-1}|
        self._output_change = 0.0  # same for the outputs
        self.pairs = 0  # consecutive frame pairs seen (frames - 1)

    def update(self, inp: np.ndarray, out: np.ndarray) -> None:
        """Add the next frame: ``inp`` is what the model was given, ``out`` what it returned (any equal shapes)."""
        # copies, because a caller may reuse its frame buffers
        inp, out = np.array(inp, copy=True), np.array(out, copy=True)
        if self._prev is not None:
            prev_in, prev_out = self._prev
            if inp.shape != prev_in.shape or out.shape != prev_out.shape:
                raise ValueError(
                    f"frame shapes must stay constant, got input {prev_in.shape} -> {inp.shape} "
                    f"and output {prev_out.shape} -> {out.shape}"
                )
            self._input_change += _mean_abs_diff(inp, prev_in)
            self._output_change += _mean_abs_diff(out, prev_out)
            self.pairs += 1
        self._prev = (inp, out)

    @property
    def ratio(self) -> float:
        """Output change over input change; ``nan`` until two frames arrived or while the input is static."""
        if self.pairs == 0 or self._input_change == 0.0:
            return math.nan
        return self._output_change / self._input_change


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        # exact, and several times faster than float64 on a 1080p frame (sharpen_video runs this on every frame):
        # int16 holds any uint8 difference, int64 any sum of them
        return float(np.abs(np.subtract(a, b, dtype=np.int16)).sum(dtype=np.int64)) / a.size
    # float64 so other dtypes neither wrap around nor lose precision
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def flicker_ratio(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float:
    """How much a per-frame model changes the frame-to-frame difference of a video.

    ``mean_t |out_t - out_{t-1}| / mean_t |in_t - in_{t-1}|`` over consecutive frames. ``1.0`` means the output moves
    exactly as much as its input (an identity model); above 1 the model adds temporal shimmer (noise or detail that is
    re-invented differently each frame); below 1 it smooths motion or noise away. Both means use the same number of
    pairs, so the ratio of sums equals the ratio of means.

    Args:
        inputs: the frames given to the model, in order, e.g. ``(H, W, 3)`` uint8 arrays.
        outputs: the model's outputs for the same frames, same length; the two shapes may differ, but each must stay
            constant along its sequence.

    Returns:
        The ratio, or ``nan`` when it is undefined: fewer than 2 frames, or a static input (no change to compare to).

    Raises:
        ValueError: ``inputs`` and ``outputs`` differ in length, or a frame's shape changes along a sequence.

    Example:
        >>> frames = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10, 20)]
        >>> flicker_ratio(frames, frames)
        1.0
    """
    meter = FlickerMeter()
    sentinel = object()
    in_iter, out_iter = iter(inputs), iter(outputs)
    count = 0
    while True:
        inp, out = next(in_iter, sentinel), next(out_iter, sentinel)
        if inp is sentinel or out is sentinel:
            if inp is not out:
                longer = "inputs" if out is sentinel else "outputs"
                raise ValueError(f"inputs and outputs must have the same length; {longer} has more than {count}")
            return meter.ratio
        meter.update(inp, out)
        count += 1
