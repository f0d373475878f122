"""End-to-end evaluation on uint8 images: what a user actually gets from ``sharpkd.load(name).sharpen()``.

:func:`evaluate_models` degrades a clean uint8 image with a named preset, restores the uint8 result with each loaded
model's ``sharpen()``, and measures PSNR/SSIM against the clean image. The degraded input itself and the OpenCV unsharp
mask are always scored alongside, as the floor and the classical baseline. (The tensor evaluation that the training
loop runs on validation batches is :mod:`sharpkd.training.validation`.)

Example:
    >>> images = load_eval_images("samples", max_side=256, limit=2)
    >>> result = evaluate_models(["student"], images, ("vc",))  # doctest: +SKIP
    >>> result["rows"]["student"]["mean"]  # doctest: +SKIP
    {'psnr': 27.2, 'ssim': 0.79, 'gain': 0.13}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sharpkd.degrade import PRESETS, list_degradations

BASELINES: tuple[str, ...] = ("input", "unsharp")  # always scored first: the degraded input and the unsharp mask


def load_eval_images(
    data: str | os.PathLike = "samples", max_side: int | None = None, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Clean validation images as ``{name: (H, W, 3) uint8}``.

    Args:
        data: a folder of sharp images (recursive), or ``"samples"`` for the scikit-image photos.
        max_side: downscale (area) so the longer side is at most this; ``None`` keeps full size.
        limit: keep only the first ``limit`` images (sorted by path; sample order for ``"samples"``).

    Returns:
        ``{name: (H, W, 3) uint8}`` in that order.

    Raises:
        DatasetError: the folder is missing or holds no readable image (unreadable files are skipped with a warning).
        ValueError: ``max_side`` or ``limit`` below 1.
    """
    from sharpkd.data import EvalImages, sample_images

    for name, value in (("max_side", max_side), ("limit", limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    if str(data) == "samples":
        images = sample_images()
        images = dict(list(images.items())[:limit])
        return EvalImages(images, max_side).images
    images = EvalImages.from_folder(data, max_side).images
    return dict(list(images.items())[:limit])


def _score(pred: np.ndarray, gt: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM of an ``(H, W, 3)`` uint8 output against ``gt``, ``(1, 3, H, W)`` in ``[0, 1]``."""
    from sharpkd.data import to_tensor
    from sharpkd.metrics import psnr, ssim

    x = to_tensor(pred)  # (1, 3, H, W)
    return float(psnr(x, gt, data_range=1.0)), float(ssim(x, gt, data_range=1.0))


def _check_degradations(degradations: Sequence[str]) -> None:
    unknown = [d for d in degradations if d not in list_degradations()]
    if unknown or not degradations:
        raise ValueError(f"unknown degradations {unknown or list(degradations)}; known: {', '.join(PRESETS)}")


def _with_means(rows: dict[str, dict[str, dict[str, float]]], degradations: Sequence[str]) -> None:
    """Add ``"mean": {"psnr", "ssim", "gain"}`` to every row, the gain over the degraded input's mean PSNR."""
    input_psnr = np.mean([rows["input"][d]["psnr"] for d in degradations])
    for per_deg in rows.values():
        mean_psnr = float(np.mean([per_deg[d]["psnr"] for d in degradations]))
        mean_ssim = float(np.mean([per_deg[d]["ssim"] for d in degradations]))
        per_deg["mean"] = {"psnr": mean_psnr, "ssim": mean_ssim, "gain": float(mean_psnr - input_psnr)}


def evaluate_models(
    models: Sequence[str],
    images: Mapping[str, np.ndarray],
    degradations: Sequence[str] = PRESETS,
    *,
    backend: str = "torch",
    tile: int = 512,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """PSNR and SSIM of each model's uint8 output, beside the degraded input and the unsharp mask.

    For degradation ``d`` and image number ``i`` (in ``images`` order): ``lq = degrade_image(gt, d, seed=i)``,
    ``pred = load(model).sharpen(lq)``, and PSNR/SSIM (``data_range=1``) compare ``to_tensor(pred)`` with
    ``to_tensor(gt)``. Scores are averaged over images per degradation, then over degradations.

    Args:
        models: shipped names or checkpoint paths; ``"input"`` and ``"unsharp"`` are always included, first.
        images: clean ``(H, W, 3)`` uint8 images by name, each at least 3x3.
        degradations: names accepted by :func:`sharpkd.degrade.degrade`, by default the four presets.
        backend: ``"torch"`` or ``"onnx"`` for the neural models.
        tile: tile side of the tiled inference path.
        progress: called as ``progress(done, total, label)`` before each (method, degradation) and once at the end.

    Returns:
        A plain dict::

            {"degradations": [...], "images": [names], "sizes": [[H, W], ...],
             "rows": {method: {degradation: {"psnr", "ssim"}, ..., "mean": {"psnr", "ssim", "gain"}}}}

        with rows in the order input, unsharp, then ``models``; ``gain`` is the mean PSNR minus the input's.

    Raises:
        ValueError: no images, or an unknown degradation or backend.
        CheckpointError: a model cannot be loaded.
    """
    from sharpkd.data import degrade_image, to_tensor
    from sharpkd.runtime.sharpener import load

    if not images:
        raise ValueError("evaluate_models needs at least one image, got none")
    _check_degradations(degradations)
    methods = list(BASELINES) + [m for m in dict.fromkeys(models) if m not in BASELINES]
    sharpeners = {m: load(m, backend=backend, tile=tile) for m in methods}  # fail on a bad model before any work
    gts = {name: to_tensor(img) for name, img in images.items()}
    rows: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    total, done = len(methods) * len(degradations), 0
    for deg in degradations:
        lqs = [degrade_image(img, deg, seed=i) for i, img in enumerate(images.values())]
        for method in methods:
            if progress is not None:
                progress(done, total, f"{method} {deg}")
            scores = [_score(sharpeners[method].sharpen(lq), gt) for lq, gt in zip(lqs, gts.values())]
            rows[method][deg] = {
                "psnr": float(np.mean([s[0] for s in scores])),
                "ssim": float(np.mean([s[1] for s in scores])),
            }
            done += 1
    if progress is not None:
        progress(total, total, "done")
    _with_means(rows, degradations)
    return {
        "degradations": list(degradations),
        "images": list(images),
        "sizes": [list(img.shape[:2]) for img in images.values()],
        "rows": rows,
    }
