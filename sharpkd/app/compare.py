"""Side-by-side comparison of restorers on one photo, and latency sweeps, for the app and notebooks.

:func:`compare` degrades a sharp photo with a named preset (or takes an already blurry one as is), runs every model on
it, and scores each output: PSNR/SSIM against the sharp original when there is one, the no-reference sharpness score
always. :func:`measure_latency` times models over frame sizes (through :mod:`sharpkd.reporting.benchmark`). The model
cards (``models/<name>.json``) are read by :mod:`sharpkd.reporting.catalog`. The classical peers
(:func:`sharpkd.runtime.classical.list_peers`) load like models, at their tuned settings; :func:`model_label` names
them with it.

Images are ``(H, W, 3)`` uint8 RGB here, as in :mod:`sharpkd.runtime`; metrics convert to ``(1, 3, H, W)`` floats.

Example:
    >>> models = {"student": sharpkd.load("student"), "cas": sharpkd.load("cas")}  # doctest: +SKIP
    >>> result = compare(photo, "vc", 1.0, models)  # doctest: +SKIP
    >>> result.scores["student"]  # doctest: +SKIP
    {'psnr': 29.1, 'ssim': 0.88, 'sharpness': 4.2}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharpkd.data import degrade_image, to_tensor
from sharpkd.degrade import PRESETS
from sharpkd.images import encode_image
from sharpkd.metrics import psnr, sharpness, ssim
from sharpkd.runtime.classical import format_setting
from sharpkd.runtime.sharpener import Sharpener

ORIGINAL = "original"  # panel: the sharp photo (only when a degradation was synthesized)
INPUT = "input"  # panel: what the models see (the degraded photo, or the user's already blurry one)
MIN_SIDE = 16  # smallest image side compare() accepts


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes:
        panels: ``name -> (H, W, 3) uint8`` in display order: ``"original"`` (only with a reference), ``"input"``,
            then every model in the order given.
        scores: ``name -> {"sharpness"}`` for every panel, plus ``"psnr"`` (dB) and ``"ssim"`` against the original
            for ``"input"`` and the outputs when there is a reference.
        timings_ms: ``model name -> wall time of its sharpen() call`` on this image.
        degradation: the preset applied, or ``None`` for an already blurry photo.
        strength: the preset strength (1.0 when no degradation was applied).
    """

    panels: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]
    timings_ms: dict[str, float]
    degradation: str | None
    strength: float

    @property
    def has_reference(self) -> bool:
        """Whether a sharp original exists, so PSNR/SSIM are meaningful."""
        return ORIGINAL in self.panels

    @property
    def outputs(self) -> list[str]:
        """Names of the model outputs, in display order."""
        return [name for name in self.panels if name not in (ORIGINAL, INPUT)]

    def table(self) -> list[dict[str, Any]]:
        """One row per panel (``{"image", "PSNR (dB)", "SSIM", "sharpness", "time (ms)"}``), for a data frame.

        PSNR/SSIM columns are present only with a reference; time is ``None`` for the original and the input.
        """
        rows = []
        for name in self.panels:
            s = self.scores[name]
            row: dict[str, Any] = {"image": name}
            if self.has_reference:
                row["PSNR (dB)"] = round(s["psnr"], 2) if "psnr" in s else None
                row["SSIM"] = round(s["ssim"], 4) if "ssim" in s else None
            row["sharpness"] = round(s["sharpness"], 3)
            ms = self.timings_ms.get(name)
            row["time (ms)"] = round(ms, 1) if ms is not None else None
            rows.append(row)
        return rows

    def zoomed(self, center: tuple[float, float], zoom: int, size: int = 240) -> dict[str, np.ndarray]:
        """The same region of every panel enlarged with nearest-neighbour (see :func:`zoom_crop`)."""
        return {name: zoom_crop(img, center, zoom, size) for name, img in self.panels.items()}

    def png(self, name: str) -> bytes:
        """One panel encoded as PNG, for a download button."""
        return encode_image(self.panels[name], "PNG")


def model_label(name: str, model: Sharpener) -> str:
    """A panel's caption: the name, with the setting for a classical peer (``"cas (strength 0.9)"``)."""
    return f"{name} ({format_setting(model.setting)})" if model.setting else name


def _check_rgb(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected an (H, W, 3) uint8 numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape} and dtype {image.dtype}")
    return image


def compare(
    image: np.ndarray,
    degradation: str | None,
    strength: float = 1.0,
    models: Mapping[str, Sharpener] | None = None,
    *,
    seed: int = 0,
) -> Comparison:
    """Degrade ``image`` (unless it is already blurry), sharpen it with every model, and score the results.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, at least 16 px on each side: the sharp original, or the blurry photo itself
            when ``degradation`` is ``None``.
        degradation: a preset from :data:`sharpkd.degrade.PRESETS`, or ``None`` for a real photo with no sharp
            original (then only the no-reference sharpness is scored).
        strength: preset strength (see :func:`sharpkd.degrade.degrade`); ignored without a degradation.
        models: ``display name -> Sharpener``, run in this order (``sharpkd.load("cas")`` and the other peers give
            the classical baselines, at their tuned settings). May be empty.
        seed: seeds the degradation (the motion blur angle).

    Returns:
        A :class:`Comparison` with panels, scores and timings.

    Raises:
        TypeError: ``image`` is not a numpy array.
        ValueError: ``image`` is not ``(H, W, 3)`` uint8 or is smaller than 16 px, the degradation is unknown, the
            strength is not positive, or a model is named ``"original"`` or ``"input"``.
    """
    image = _check_rgb(image)
    H, W = image.shape[:2]
    if min(H, W) < MIN_SIDE:
        raise ValueError(f"the image is {W}x{H} px; compare needs at least {MIN_SIDE} px on each side")
    if degradation is not None and degradation not in PRESETS:
        raise ValueError(f"unknown degradation {degradation!r}; known: {', '.join(PRESETS)} or None (already blurry)")
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength}")
    models = dict(models or {})
    reserved = sorted({ORIGINAL, INPUT} & set(models))
    if reserved:
        raise ValueError(f"model names {reserved} are reserved for the original and input panels")

    panels: dict[str, np.ndarray] = {}
    if degradation is None:
        panels[INPUT] = image
        strength = 1.0
    else:
        panels[ORIGINAL] = image
        panels[INPUT] = degrade_image(image, degradation, seed=seed, strength=strength)
    timings: dict[str, float] = {}
    for name, model in models.items():
        panels[name], timings[name] = model.timed_sharpen(panels[INPUT])

    gt = to_tensor(image) if degradation is not None else None
    scores: dict[str, dict[str, float]] = {}
    for name, pixels in panels.items():
        x = to_tensor(pixels)  # (1, 3, H, W)
        scores[name] = {"sharpness": float(sharpness(x))}
        if gt is not None and name != ORIGINAL:
            scores[name].update(psnr=float(psnr(x, gt)), ssim=float(ssim(x, gt)))
    return Comparison(panels, scores, timings, degradation, float(strength))


def zoom_crop(image: np.ndarray, center: tuple[float, float], zoom: int, size: int = 240) -> np.ndarray:
    """A square region around ``center`` enlarged ``zoom`` times with nearest-neighbour (each pixel a block).

    The region is ``ceil(size / zoom)`` pixels on a side (smaller when the image is), shifted inwards at the borders
    so it always lies inside the image.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` array.
        center: ``(x, y)`` as fractions of the width and height, each in ``[0, 1]``.
        zoom: integer magnification, at least 1.
        size: side of the output in pixels (before clipping to what the image can give).

    Returns:
        ``(min(size, zoom * H), min(size, zoom * W)[, 3])``, same dtype as ``image``.

    Raises:
        ValueError: ``zoom`` or ``size`` below 1, or ``center`` outside ``[0, 1]``.
    """
    if not isinstance(zoom, (int, np.integer)) or zoom < 1 or size < 1:
        raise ValueError(f"zoom must be an int >= 1 and size >= 1, got zoom={zoom!r}, size={size!r}")
    cx, cy = center
    if not (0.0 <= cx <= 1.0 and 0.0 <= cy <= 1.0):
        raise ValueError(f"center must be fractions in [0, 1], got {center}")
    H, W = image.shape[:2]
    side = math.ceil(size / zoom)
    h, w = min(side, H), min(side, W)
    top = min(max(0, round(cy * H - h / 2)), H - h)
    left = min(max(0, round(cx * W - w / 2)), W - w)
    crop = image[top : top + h, left : left + w]
    big = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
    return np.ascontiguousarray(big[:size, :size])


def measure_latency(
    models: Mapping[str, str | os.PathLike],
    resolutions: Sequence[str] = ("320x180", "360p"),
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """A quick in-process speed sweep with ``run_benchmark``: torch backend, one warm-up call.

    It runs in the calling process (no fresh process per measurement, so no memory figures) and with few repeats,
    whatever else the machine is doing: an indication, not the careful ``sharpkd benchmark`` numbers.

    Args:
        models: ``display name -> what to load`` (a shipped name, a checkpoint path, or a classical peer).
        resolutions: frame sizes as names (``"360p"``, ``"720p"``, ... see ``reporting.benchmark.RESOLUTIONS``)
            or ``"WxH"``.
        repeats: timed calls per model and size, at least 1.

    Returns:
        One row per model and size, models in the given order: ``{"model", "resolution", "width", "height",
        "megapixels", "ms" (median), "p95 ms", "fps", "x unsharp"}`` (latency over the OpenCV unsharp mask's).

    Raises:
        ValueError: no models, an unknown resolution, or ``repeats`` below 1.
        CheckpointError: a model that cannot be loaded.
    """
    from sharpkd.reporting.benchmark import BenchmarkConfig, run_benchmark

    if not models:
        raise ValueError("measure_latency needs at least one model")
    sources = tuple(dict.fromkeys(str(source) for source in models.values()))
    cfg = BenchmarkConfig(
        models=sources, resolutions=tuple(resolutions), backends=("torch",), repeats=repeats, warmup=1, isolate=False
    )
    report = run_benchmark(cfg)
    rows = []
    for name, source in models.items():
        for r in report.results:
            if r.model != str(source):
                continue
            rows.append(
                {
                    "model": name,
                    "resolution": r.resolution,
                    "width": r.width,
                    "height": r.height,
                    "megapixels": round(r.width * r.height / 1e6, 3),
                    "ms": round(r.p50_ms, 3),
                    "p95 ms": round(r.p95_ms, 3),
                    "fps": round(r.fps, 1),
                    "x unsharp": round(r.ratio_to_unsharp, 2),
                }
            )
    return rows
