"""Side-by-side comparison of restorers on one photo, and latency sweeps, for the app and notebooks.

:func:`compare` degrades a sharp photo with a named preset (or takes an already blurry one as is), runs every model on
it, and scores each output (:func:`score`): PSNR/SSIM against the sharp original when there is one, the no-reference
sharpness score always. Timings are medians of a few calls (:func:`run_timed`). :class:`Comparison` finds the most
detailed region, cuts the same region out of every panel and amplifies what each model changed, with
:mod:`sharpkd.app.viewer`. :func:`measure_latency` times models over frame sizes (through
:mod:`sharpkd.reporting.benchmark`). The classical peers (:func:`sharpkd.runtime.classical.list_peers`) load like
models, at their tuned settings; :func:`model_label` names them with it.

Images are ``(H, W, 3)`` uint8 RGB here, as in :mod:`sharpkd.runtime`; the metrics convert strips of rows to
``(1, 3, h, W)`` floats one at a time, so no float copy of a whole panel is ever held.

Example:
    >>> models = {"student": sharpkd.load("student"), "cas": sharpkd.load("cas")}  # doctest: +SKIP
    >>> result = compare(photo, "vc", 1.0, models)  # doctest: +SKIP
    >>> result.scores["student"], result.gain_db("student")  # doctest: +SKIP
    ({'psnr': 29.1, 'ssim': 0.88, 'sharpness': 4.2}, 1.3)
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharpkd.app.viewer import amplified_difference, detail_center, difference_gain, region_size, zoom_region
from sharpkd.data import degrade_image, to_tensor
from sharpkd.degrade import PRESETS
from sharpkd.images import encode_image
from sharpkd.metrics import MSE_FLOOR, gaussian_window, sharpness, ssim
from sharpkd.runtime.classical import format_setting
from sharpkd.runtime.sharpener import Sharpener

ORIGINAL = "original"  # panel: the sharp photo (only when a degradation was synthesized)
INPUT = "input"  # panel: what the models see (the degraded photo, or the user's already blurry one)
MIN_SIDE = 16  # smallest image side compare() accepts
MISSING = "—"  # table cell for a score or time that does not apply (the original has no PSNR, the input no time)
SCORE_ROWS = 128  # panels are scored in strips of about this many rows: a 2 MP SSIM at once needed 300 MB more


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes:
        panels: ``name -> (H, W, 3) uint8`` in display order: ``"original"`` (only with a reference), ``"input"``,
            then every model in the order given.
        scores: ``name -> {"sharpness"}`` for every panel, plus ``"psnr"`` (dB) and ``"ssim"`` against the original
            for ``"input"`` and the outputs when there is a reference.
        timings_ms: ``model name -> median wall time of its sharpen() calls`` on this image.
        degradation: the preset applied, or ``None`` for an already blurry photo.
        strength: the preset strength (1.0 when no degradation was applied).
        timing_calls: ``model name -> how many calls its median is taken over``.
    """

    panels: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]
    timings_ms: dict[str, float]
    degradation: str | None
    strength: float
    timing_calls: dict[str, int] = field(default_factory=dict)

    @property
    def has_reference(self) -> bool:
        """Whether a sharp original exists, so PSNR/SSIM are meaningful."""
        return ORIGINAL in self.panels

    @property
    def outputs(self) -> list[str]:
        """Names of the model outputs, in display order."""
        return [name for name in self.panels if name not in (ORIGINAL, INPUT)]

    def gain_db(self, name: str) -> float | None:
        """PSNR of panel ``name`` minus the input's (dB): what the model gained; ``None`` without a reference."""
        if name not in self.scores or "psnr" not in self.scores[name]:
            return None
        return self.scores[name]["psnr"] - self.scores[INPUT]["psnr"]

    def table(self) -> list[dict[str, Any]]:
        """One row per panel (``{"image", "PSNR (dB)", "gain (dB)", "SSIM", "sharpness", "time (ms)"}``).

        The PSNR, gain and SSIM columns are present only with a reference. A cell that does not apply (no PSNR for
        the original, no time for the original and the input) holds :data:`MISSING`, never ``None``, so every
        column reads the same in a data frame; numbers are rounded.
        """
        rows = []
        for name in self.panels:
            s = self.scores[name]
            row: dict[str, Any] = {"image": name}
            if self.has_reference:
                gain = self.gain_db(name)
                row["PSNR (dB)"] = f"{s['psnr']:.2f}" if "psnr" in s else MISSING
                row["gain (dB)"] = f"{gain:+.2f}" if gain is not None and name != INPUT else MISSING
                row["SSIM"] = f"{s['ssim']:.4f}" if "ssim" in s else MISSING
            row["sharpness"] = f"{s['sharpness']:.3f}"
            ms = self.timings_ms.get(name)
            row["time (ms)"] = f"{ms:.1f}" if ms is not None else MISSING
            rows.append(row)
        return rows

    def detail_center(self, zoom: int, aspect: float | None = None) -> tuple[float, float]:
        """Centre of the most detailed :func:`zoom_region` at ``zoom`` and ``aspect`` (:func:`detail_center` on the
        original, else on the input)."""
        image = self.panels[ORIGINAL] if self.has_reference else self.panels[INPUT]
        h, w = region_size(image.shape[0], image.shape[1], zoom, aspect)
        return detail_center(image, (w, h))

    def region(self, center: tuple[float, float], zoom: int, aspect: float | None = None) -> dict[str, np.ndarray]:
        """The same region of every panel (:func:`zoom_region`), not enlarged: views on the panels, no copies."""
        return {name: zoom_region(img, center, zoom, aspect) for name, img in self.panels.items()}

    def differences(
        self, center: tuple[float, float], zoom: int, aspect: float | None = None
    ) -> tuple[dict[str, np.ndarray], int]:
        """What every model changed in the region: ``|output - input|`` amplified by one shared gain.

        Returns:
            ``({output name: (h, w) uint8}, gain)``; the gain (:func:`difference_gain`) is the same for every output,
            so brighter means a bigger change.
        """
        crops = self.region(center, zoom, aspect)
        gain = difference_gain([crops[name] for name in self.outputs], crops[INPUT])
        return {name: amplified_difference(crops[name], crops[INPUT], gain) for name in self.outputs}, gain

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


def degraded_input(image: np.ndarray, degradation: str | None, strength: float = 1.0, *, seed: int = 0) -> np.ndarray:
    """What the models see in :func:`compare`: ``image`` degraded with the preset, or ``image`` itself for ``None``.

    Deterministic, so a cached model output computed on it matches a later :func:`compare` with the same arguments.

    Raises:
        TypeError, ValueError: as :func:`compare`, for the image, the degradation and the strength.

    Shape:
        ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8.
    """
    image = _check_args(image, degradation, strength, [])
    return image if degradation is None else degrade_image(image, degradation, seed=seed, strength=strength)


def run_timed(model: Sharpener, lq: np.ndarray, calls: int = 3) -> tuple[np.ndarray, float]:
    """Sharpen ``lq`` ``calls`` times; the first output and the median wall time in milliseconds.

    One call on a shared CPU is noisy (a cold cache, another visitor's run); the median of three is not.

    Raises:
        ValueError: ``calls`` below 1.
    """
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    out, times = None, []
    for _ in range(calls):
        t = time.perf_counter()
        pred = model.sharpen(lq)
        times.append((time.perf_counter() - t) * 1000.0)
        out = pred if out is None else out
        del pred  # the repeats' outputs are dropped at once, not kept until the loop ends
    assert out is not None
    return out, statistics.median(times)


def _check_args(image: Any, degradation: str | None, strength: float, names: list[str]) -> np.ndarray:
    image = _check_rgb(image)
    H, W = image.shape[:2]
    if min(H, W) < MIN_SIDE:
        raise ValueError(f"the image is {W}x{H} px; compare needs at least {MIN_SIDE} px on each side")
    if degradation is not None and degradation not in PRESETS:
        raise ValueError(f"unknown degradation {degradation!r}; known: {', '.join(PRESETS)} or None (already blurry)")
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength}")
    reserved = sorted({ORIGINAL, INPUT} & set(names))
    if reserved:
        raise ValueError(f"model names {reserved} are reserved for the original and input panels")
    return image


def compare(
    image: np.ndarray,
    degradation: str | None,
    strength: float = 1.0,
    models: Mapping[str, Sharpener] | None = None,
    *,
    seed: int = 0,
    calls: int = 3,
    precomputed: Mapping[str, tuple[np.ndarray, float, int]] | None = None,
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
        calls: sharpen() calls per model; the timing is their median (:func:`run_timed`).
        precomputed: outputs computed elsewhere on :func:`degraded_input` of the same arguments (a cached teacher
            run), ``name -> (pixels, median ms, calls)``; they are scored too and come before ``models``.

    Returns:
        A :class:`Comparison` with panels, scores and timings.

    Raises:
        TypeError: ``image`` is not a numpy array.
        ValueError: ``image`` is not ``(H, W, 3)`` uint8 or is smaller than 16 px, the degradation is unknown, the
            strength is not positive, ``calls`` is below 1, a model is named ``"original"`` or ``"input"``, or a
            precomputed output's shape differs from the image's.
    """
    models, precomputed = dict(models or {}), dict(precomputed or {})
    image = _check_args(image, degradation, strength, [*models, *precomputed])
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    for name, (pixels, _, _) in precomputed.items():
        if pixels.shape != image.shape:
            raise ValueError(f"precomputed output {name!r} has shape {pixels.shape}, the image {image.shape}")

    panels: dict[str, np.ndarray] = {}
    if degradation is not None:
        panels[ORIGINAL] = image
    panels[INPUT] = degraded_input(image, degradation, strength, seed=seed)
    timings = {name: ms for name, (_, ms, _) in precomputed.items()}
    counts = {name: n for name, (_, _, n) in precomputed.items()}
    panels.update({name: pixels for name, (pixels, _, _) in precomputed.items()})
    for name, model in models.items():
        panels[name], timings[name] = run_timed(model, panels[INPUT], calls)
        counts[name] = calls

    gt = image if degradation is not None else None
    scores = {name: score(pixels, gt if name != ORIGINAL else None) for name, pixels in panels.items()}
    return Comparison(panels, scores, timings, degradation, 1.0 if degradation is None else float(strength), counts)


def _strips(H: int, overlap: int) -> list[tuple[int, int]]:
    """Row ranges that overlap by ``overlap`` rows and whose 'valid' rows (all but the last ``overlap``) tile
    ``[0, H - overlap)`` exactly, so a mean over a valid convolution is the row-weighted mean of the strips' means."""
    valid = H - overlap
    if H < 2 * SCORE_ROWS or valid < 2 * SCORE_ROWS:
        return [(0, H)]
    n = math.ceil(valid / SCORE_ROWS)
    cuts = [round(k * valid / n) for k in range(n + 1)]
    return [(a, b + overlap) for a, b in zip(cuts, cuts[1:])]


def score(pred: np.ndarray, gt: np.ndarray | None = None) -> dict[str, float]:
    """The scores :func:`compare` gives a panel: ``{"sharpness"}``, plus ``"psnr"`` (dB) and ``"ssim"`` against
    ``gt`` when given.

    The same numbers as :func:`sharpkd.metrics.sharpness`, :func:`~sharpkd.metrics.psnr` and
    :func:`~sharpkd.metrics.ssim` on the whole image, computed over strips of rows so only a strip is ever held as
    floats (the valid-convolution means are combined by rows; PSNR from the exact integer squared error).

    Shape:
        ``pred, gt (H, W, 3)`` uint8, the same shape.
    """
    H, W = pred.shape[:2]
    taps = gaussian_window().numel()  # ssim's default window: its strips overlap by taps - 1 rows
    sharp = [(float(sharpness(to_tensor(pred[a:b]))), max(1, b - a - 2)) for a, b in _strips(H, 2)]
    out = {"sharpness": sum(v * n for v, n in sharp) / sum(n for _, n in sharp)}
    if gt is None:
        return out
    assert gt.shape == pred.shape, f"pred and gt must match, got {pred.shape} and {gt.shape}"
    sq_err = sum(int(np.square(pred[a:b].astype(np.int32) - gt[a:b]).sum()) for a, b in _strips(H, 0))
    mse = sq_err / (pred.size * 255.0**2)
    strips = _strips(H, taps - 1) if min(H, W) >= taps else [(0, H)]  # tiny images: ssim shrinks its own window
    similarity = [(float(ssim(to_tensor(pred[a:b]), to_tensor(gt[a:b]))), max(1, b - a - taps + 1)) for a, b in strips]
    out["psnr"] = 10.0 * math.log10(1.0 / max(mse, MSE_FLOOR))
    out["ssim"] = sum(v * n for v, n in similarity) / sum(n for _, n in similarity)
    return out


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
