"""Classical sharpeners: the non-learned peers that ``sharpkd.load(name)`` serves next to the networks.

Each method is a plain function ``frame -> frame`` on ``(H, W, 3)`` uint8 RGB whose keyword defaults are its default
setting, registered in :data:`CLASSICAL` with a description, the engine that does the work, and a search grid: the
settings :mod:`sharpkd.reporting.tuning` tries on the validation images. A keyword-only ``threads`` parameter is not
part of the setting: the :class:`~sharpkd.runtime.sharpener.Sharpener` passes its thread count there. Adding a peer is
one :func:`register_classical` decoration.

================== ======================================================== =================================
name                what it is                                                setting (default)
================== ======================================================== =================================
``unsharp``         OpenCV unsharp mask: ``x + amount * (x - GaussianBlur(x,   ``sigma`` 2, ``amount`` 1 (tuned as
                    sigma))`` on R, G and B                                   one (sigma, amount) pair)
``cas``             AMD FidelityFX Contrast Adaptive Sharpening, FFmpeg's      ``strength`` 0.5
                    ``cas`` filter (:func:`sharpkd.runtime.ffmpeg.cas`)
``ffmpeg-unsharp``  FFmpeg's ``unsharp`` filter on luma, 5x5 binomial blur     ``amount`` 1
                    (:func:`sharpkd.runtime.ffmpeg.ffmpeg_unsharp`)
``input``           no processing (the "degraded input" row)                  none
================== ======================================================== =================================

:func:`list_peers` are the methods with a grid: the baselines every quality table tunes and shows.
``sharpkd.load(peer)`` runs the setting tuned on the validation images when the peer's card ``models/<peer>.json``
exists (its :data:`CARD_SECTION` section), else the default above.

Example:
    >>> CLASSICAL["cas"].describe({"strength": 0.4})
    'FFmpeg contrast adaptive sharpening (strength 0.4)'
    >>> sharpkd.load("cas").sharpen(frame)                     # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharpkd.runtime.ffmpeg import cas, ffmpeg_unsharp

Frame = np.ndarray  # (H, W, 3) uint8 RGB
Setting = dict[str, float]  # keyword -> value, e.g. {"sigma": 1.0, "amount": 0.5}

CARD_SECTION = "classical"  # key of a peer card's section; its "setting" entry is what load() runs
THREADS = "threads"  # a keyword-only parameter of this name gets the Sharpener's thread count, not a setting


def setting_grid(**values: Sequence[float]) -> tuple[Setting, ...]:
    """Every combination of the given values, as settings: ``setting_grid(a=(1, 2), b=(3,))`` gives
    ``({"a": 1, "b": 3}, {"a": 2, "b": 3})``."""
    names = list(values)
    return tuple(dict(zip(names, combo)) for combo in itertools.product(*values.values()))


def format_setting(setting: Mapping[str, Any]) -> str:
    """``{"sigma": 2.0, "amount": 0.5}`` -> ``"sigma 2, amount 0.5"``."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in setting.items())


@dataclass(frozen=True)
class ClassicalMethod:
    """A registered classical sharpener; calling it runs ``fn`` on a frame with its default setting."""

    name: str  # what sharpkd.load() takes
    fn: Callable[..., Frame]  # fn(frame) -> frame of the same shape, uint8; its keyword defaults are the setting
    description: str  # what it is, without the setting: "OpenCV unsharp mask"
    engine: str = "none"  # what does the work, for benchmark tables: "opencv", "ffmpeg", or "none"
    grid: tuple[Setting, ...] = ()  # the settings tuning tries; empty for methods that are not tuned ("input")

    @property
    def settings(self) -> Setting:
        """The default setting: the keyword defaults ``fn`` runs with (its signature is their one owner)."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty and p.name != THREADS}

    @property
    def summary(self) -> str:
        """The description with the default setting, e.g. ``"OpenCV unsharp mask (sigma 2, amount 1)"``."""
        return self.describe()

    def describe(self, setting: Mapping[str, Any] | None = None) -> str:
        """The description with ``setting`` (default: the default setting), e.g. ``"FFmpeg ... (strength 0.4)"``."""
        text = format_setting(self.resolve(setting))
        return f"{self.description} ({text})" if text else self.description

    def resolve(self, setting: Mapping[str, Any] | None = None) -> Setting:
        """The full setting: the defaults updated with ``setting``.

        Raises:
            ValueError: ``setting`` has a keyword the method does not take, or a value that is not a finite number.
        """
        defaults = self.settings
        setting = dict(setting or {})
        unknown = sorted(set(setting) - set(defaults))
        if unknown:
            known = ", ".join(defaults) or "none"
            raise ValueError(f"{self.name} has no setting {', '.join(unknown)}; its settings: {known}")
        for key, value in setting.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.name} setting {key} must be a finite number, got {value!r}")
        return {**defaults, **setting}

    def bind(self, setting: Mapping[str, Any] | None = None, threads: int | None = None) -> Callable[[Frame], Frame]:
        """``frame -> frame`` with ``setting`` (see :meth:`resolve`) and, where ``fn`` takes it, ``threads``."""
        kwargs: dict[str, Any] = self.resolve(setting)
        if threads is not None and THREADS in inspect.signature(self.fn).parameters:
            kwargs[THREADS] = threads
        return functools.partial(self.fn, **kwargs)

    def __call__(self, frame: Frame) -> Frame:
        return self.fn(frame)


# name -> method, in registration order; sharpkd.load() and the model lists read it
CLASSICAL: dict[str, ClassicalMethod] = {}


def register_classical(
    name: str, description: str, engine: str = "none", grid: Sequence[Mapping[str, float]] = ()
) -> Callable[[Callable[..., Frame]], Callable[..., Frame]]:
    """Decorator registering ``fn(frame) -> frame`` in :data:`CLASSICAL` as ``name``; ``fn`` is returned unchanged.

    Args:
        name: what ``sharpkd.load()`` takes.
        description: what it is, without the setting.
        engine: what does the work (``"opencv"``, ``"ffmpeg"``, ``"none"``), named in benchmark tables.
        grid: the settings tuning tries (see :func:`setting_grid`); a method with a grid is a peer (:func:`list_peers`).

    Raises:
        ValueError: ``name`` is already registered, or a grid setting names a keyword ``fn`` does not take.
    """

    def decorator(fn: Callable[..., Frame]) -> Callable[..., Frame]:
        if name in CLASSICAL:
            raise ValueError(f"classical method {name!r} is already registered")
        method = ClassicalMethod(name, fn, description, engine, tuple(dict(s) for s in grid))
        for setting in method.grid:
            method.resolve(setting)  # a typo in a grid fails at import, not in the middle of a tuning run
        CLASSICAL[name] = method
        return fn

    return decorator


@register_classical(
    "unsharp",
    "OpenCV unsharp mask",
    engine="opencv",
    # sigma and amount both matter (a wide blur with a small amount is another filter than a narrow one with a large
    # amount), so the grid is every pair. It brackets each preset's best on Set14 (measured): the mean gain peaks
    # near sigma 1, amount 0.75, gauss1.5 near sigma 1-1.25 with amount 4-6, motion9 at the widest sigmas
    grid=setting_grid(
        sigma=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0), amount=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    ),
)
def unsharp_mask(frame: Frame, sigma: float = 2.0, amount: float = 1.0) -> Frame:
    """Classical baseline: ``frame + amount * (frame - GaussianBlur(frame, sigma))`` on uint8 with OpenCV.

    Shape:
        ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8 (saturated).
    """
    import cv2

    blurred = cv2.GaussianBlur(frame, (0, 0), sigma)
    return cv2.addWeighted(frame, 1.0 + amount, blurred, -amount, 0)


register_classical(
    "cas",
    "FFmpeg contrast adaptive sharpening",
    engine="ffmpeg",
    # CAS's sharpening grows slowly up to ~0.8 and then steeply: on a gauss1.5 photo the output is 47 dB from its
    # input at 0.8, 39 dB at 0.95, 31 dB at 0.99 and 22 dB at 1 (measured), so the grid is dense near 1 and stops
    # short of it
    grid=setting_grid(strength=(0.0, 0.25, 0.5, 0.75, 0.85, 0.9, 0.95, 0.975, 0.99)),
)(cas)
register_classical(
    "ffmpeg-unsharp",
    "FFmpeg unsharp filter on luma, 5x5",
    engine="ffmpeg",
    grid=setting_grid(amount=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)),  # up to FFmpeg's limit
)(ffmpeg_unsharp)


@register_classical("input", "no processing")
def passthrough(frame: Frame) -> Frame:
    """The frame unchanged, as a copy (the "input" row of comparisons).

    Shape:
        ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8.
    """
    return frame.copy()


def list_peers() -> list[str]:
    """The classical peers: registered methods with a search grid, in registration order (``input`` is none)."""
    return [name for name, method in CLASSICAL.items() if method.grid]
