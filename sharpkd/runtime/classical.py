"""Classical sharpeners: the non-learned baselines that ``sharpkd.load(name)`` serves next to the networks.

Each method is a plain function ``frame -> frame`` on ``(H, W, 3)`` uint8 RGB whose keyword defaults are its default
setting, registered in :data:`CLASSICAL` with a description. Adding a peer (an FFmpeg filter, say) is one
:func:`register_classical` decoration.

Example:
    >>> CLASSICAL["unsharp"].summary
    'OpenCV unsharp mask (sigma 2, amount 1)'
    >>> sharpkd.load("unsharp").sharpen(frame)                     # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Frame = np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class ClassicalMethod:
    """A registered classical sharpener; calling it runs ``fn`` on a frame with its default setting."""

    name: str  # what sharpkd.load() takes
    fn: Callable[..., Frame]  # fn(frame) -> frame of the same shape, uint8; its keyword defaults are the setting
    description: str  # what it is, without the setting: "OpenCV unsharp mask"
    engine: str = "none"  # what does the work, for benchmark tables: "opencv", "ffmpeg", or "none"

    @property
    def settings(self) -> dict[str, Any]:
        """The keyword defaults ``fn`` runs with; its signature is their one owner."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    @property
    def summary(self) -> str:
        """The description with the setting, e.g. ``"OpenCV unsharp mask (sigma 2, amount 1)"``."""
        settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.settings.items())
        return f"{self.description} ({settings})" if settings else self.description

    def __call__(self, frame: Frame) -> Frame:
        return self.fn(frame)


# name -> method, in registration order; sharpkd.load() and the model lists read it
CLASSICAL: dict[str, ClassicalMethod] = {}


def register_classical(
    name: str, description: str, engine: str = "none"
) -> Callable[[Callable[..., Frame]], Callable[..., Frame]]:
    """Decorator registering ``fn(frame) -> frame`` in :data:`CLASSICAL` as ``name``; ``fn`` is returned unchanged.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorator(fn: Callable[..., Frame]) -> Callable[..., Frame]:
        if name in CLASSICAL:
            raise ValueError(f"classical method {name!r} is already registered")
        CLASSICAL[name] = ClassicalMethod(name, fn, description, engine)
        return fn

    return decorator


@register_classical("unsharp", "OpenCV unsharp mask", engine="opencv")
def unsharp_mask(frame: Frame, sigma: float = 2.0, amount: float = 1.0) -> Frame:
    """Classical baseline: ``frame + amount * (frame - GaussianBlur(frame, sigma))`` on uint8 with OpenCV.

    Shape:
        ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8 (saturated).
    """
    import cv2

    blurred = cv2.GaussianBlur(frame, (0, 0), sigma)
    return cv2.addWeighted(frame, 1.0 + amount, blurred, -amount, 0)


@register_classical("input", "no processing")
def passthrough(frame: Frame) -> Frame:
    """The frame unchanged, as a copy (the "input" row of comparisons).

    Shape:
        ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8.
    """
    return frame.copy()
