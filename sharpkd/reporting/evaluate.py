"""End-to-end evaluation on uint8 images: what a user actually gets from ``sharpkd.load(name).sharpen()``.

:func:`evaluate_models` degrades a clean uint8 image with each named preset, restores the uint8 result with each loaded
model's ``sharpen()``, and measures PSNR/SSIM against the clean image. The degraded input itself and the classical
peers (:func:`sharpkd.runtime.classical.list_peers`: OpenCV unsharp mask, FFmpeg CAS, FFmpeg unsharp, each at its
tuned setting) are always scored alongside, as the floor and the classical baselines, and with the per-preset choice
of :mod:`sharpkd.reporting.tuning` also the row "best classical, tuned per preset". The scoring itself,
:func:`degraded_inputs` and :func:`score_outputs`, is shared with that tuning. (The tensor evaluation that the
training loop runs on validation batches is :mod:`sharpkd.training.validation`.)

Example:
    >>> images = load_eval_images("samples", max_side=256, limit=2)
    >>> result = evaluate_models(["student"], images, ("vc",))  # doctest: +SKIP
    >>> result["rows"]["student"]["mean"]  # doctest: +SKIP
    {'psnr': 27.2, 'ssim': 0.79, 'gain': 0.13}
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sharpkd.degrade import PRESETS, SYNTHETIC_PRESETS, list_degradations
from sharpkd.reporting.card import MEAN, SYNTHETIC
from sharpkd.runtime.classical import list_peers

log = logging.getLogger(__name__)

INPUT = "input"  # row of the degraded input itself
BASELINES: tuple[str, ...] = (INPUT, *list_peers())  # always scored first: the input, then the classical peers
BEST_CLASSICAL = "best-classical"  # row: for each preset, the best (peer, setting) on that preset

Restore = Callable[[np.ndarray], np.ndarray]  # (H, W, 3) uint8 -> (H, W, 3) uint8
Row = dict[str, dict[str, Any]]  # {degradation: {"psnr", "ssim", ...}, ..., "synthetic": {...}, "mean": {...}}


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


def check_degradations(degradations: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the unknown ones when ``degradations`` is empty or has a name ``degrade`` lacks."""
    unknown = [d for d in degradations if d not in list_degradations()]
    if unknown or not degradations:
        raise ValueError(f"unknown degradations {unknown or list(degradations)}; known: {', '.join(PRESETS)}")


def degraded_inputs(images: Mapping[str, np.ndarray], degradations: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """``{degradation: [lq per image]}``: image number ``i`` degraded with ``degrade_image(gt, d, seed=i)``.

    Shape:
        every ``lq`` is ``(H, W, 3)`` uint8, the size of its clean image.
    """
    from sharpkd.data import degrade_image

    return {d: [degrade_image(img, d, seed=i) for i, img in enumerate(images.values())] for d in degradations}


def score_outputs(
    restore: Restore, lqs: Sequence[np.ndarray], gts: Sequence[torch.Tensor], *, per_image: bool = False
) -> dict[str, Any]:
    """``{"psnr", "ssim"}`` of ``restore(lq)`` against each ``gt`` (``(1, 3, H, W)`` in [0, 1]), mean over images;
    with ``per_image`` also ``"image_psnr"``, the list of each image's PSNR in ``lqs`` order."""
    scores = [_score(restore(lq), gt) for lq, gt in zip(lqs, gts)]
    out: dict[str, Any] = {"psnr": float(np.mean([s[0] for s in scores]))}
    out["ssim"] = float(np.mean([s[1] for s in scores]))
    if per_image:
        out["image_psnr"] = [s[0] for s in scores]
    return out


def worst_gain(image_psnr: Sequence[float], input_psnr: Sequence[float], names: Sequence[str]) -> dict[str, Any]:
    """``{"worst_gain", "worst_image"}``: the lowest per-image PSNR gain over the degraded input (dB) and its image.

    This is the shipping rule: a sharpener that makes any validation image worse (a negative worst gain) is not
    shippable, whatever its mean.

    Raises:
        ValueError: the three sequences differ in length or are empty.
    """
    if not (len(image_psnr) == len(input_psnr) == len(names)) or not names:
        raise ValueError(f"need as many PSNRs as names, got {len(image_psnr)}, {len(input_psnr)}, {len(names)}")
    gains = np.asarray(image_psnr, dtype=np.float64) - np.asarray(input_psnr, dtype=np.float64)
    i = int(np.argmin(gains))
    return {"worst_gain": float(gains[i]), "worst_image": str(names[i])}


def _mean(row: Mapping[str, Mapping[str, float]], degradations: Sequence[str], input_psnr: float) -> dict[str, float]:
    psnr = float(np.mean([row[d]["psnr"] for d in degradations]))
    out = {"psnr": psnr, "ssim": float(np.mean([row[d]["ssim"] for d in degradations])), "gain": psnr - input_psnr}
    if all("worst_gain" in row[d] for d in degradations):  # the worst image over these degradations, "name/degradation"
        worst = min(degradations, key=lambda d: row[d]["worst_gain"])
        out.update(worst_gain=row[worst]["worst_gain"], worst_image=f"{row[worst]['worst_image']}/{worst}")
    return out


def with_means(row: Mapping[str, Mapping[str, float]], input_row: Mapping[str, Mapping[str, float]]) -> Row:
    """``row`` (``{degradation: {"psnr", "ssim"}}``) with its means: ``"mean"`` over every degradation in it, and
    ``"synthetic"`` over the four synthetic presets when all four are in it. ``gain`` is the mean PSNR minus that of
    ``input_row`` over the same degradations."""
    degradations = [d for d in row if d not in (MEAN, SYNTHETIC)]
    out: Row = {d: dict(row[d]) for d in degradations}
    if set(SYNTHETIC_PRESETS) <= set(degradations):
        input_psnr = float(np.mean([input_row[d]["psnr"] for d in SYNTHETIC_PRESETS]))
        out[SYNTHETIC] = _mean(row, SYNTHETIC_PRESETS, input_psnr)
    out[MEAN] = _mean(row, degradations, float(np.mean([input_row[d]["psnr"] for d in degradations])))
    return out


def evaluate_models(
    models: Sequence[str],
    images: Mapping[str, np.ndarray],
    degradations: Sequence[str] = PRESETS,
    *,
    backend: str = "torch",
    tile: int = 512,
    progress: Callable[[int, int, str], None] | None = None,
    peer_settings: Mapping[str, Mapping[str, float]] | None = None,
    best_per_preset: Mapping[str, tuple[str, Mapping[str, float]]] | None = None,
    peers: bool = True,
) -> dict[str, Any]:
    """PSNR and SSIM of each model's uint8 output, beside the degraded input and the classical peers.

    For degradation ``d`` and image number ``i`` (in ``images`` order): ``lq = degrade_image(gt, d, seed=i)``,
    ``pred = load(model).sharpen(lq)``, and PSNR/SSIM (``data_range=1``) compare ``to_tensor(pred)`` with
    ``to_tensor(gt)``. Scores are averaged over images per degradation, then over degradations.

    Args:
        models: shipped names or checkpoint paths; the :data:`BASELINES` are always included, first.
        images: clean ``(H, W, 3)`` uint8 images by name, each at least 3x3.
        degradations: names accepted by :func:`sharpkd.degrade.degrade`, by default the six presets.
        backend: the neural models' backend (``"torch"``, ``"onnx"``, ``"onnx-int8"``), or ``"auto"``: each on the one
            :func:`sharpkd.load` picks for it.
        tile: tile side of the tiled inference path.
        progress: called as ``progress(done, total, label)`` before each (method, degradation) and once at the end.
        peer_settings: ``{peer: setting}`` to score the classical peers with; a peer not in it runs what
            ``sharpkd.load(peer)`` runs (its tuned card, else its default).
        best_per_preset: ``{degradation: (peer, setting)}`` (:attr:`~sharpkd.reporting.tuning.Tuning.best_per_preset`);
            when it covers every degradation, the row :data:`BEST_CLASSICAL` scores each degradation with its peer.
        peers: score the classical peers; ``False`` keeps only the input row beside ``models`` (e.g. to score the
            same models again on another backend).

    Returns:
        A plain dict::

            {"degradations": [...], "images": [names], "sizes": [[H, W], ...],
             "rows": {method: {degradation: {"psnr", "ssim"}, ..., "synthetic": {...}, "mean": {...}}},
             "classical": {peer: setting}, "best_classical": {degradation: {"method", "setting"}}}

        with rows in the order input, the peers, best-classical (only with ``best_per_preset``), then ``models``;
        every row but the input's also holds, per degradation and in its means, ``worst_gain`` and ``worst_image``
        (:func:`worst_gain`; in the means the image is named ``"image/degradation"``);
        ``mean`` and ``synthetic`` (see :func:`with_means`) hold ``psnr``, ``ssim`` and ``gain`` (their PSNR minus
        the input's). ``best_classical`` is ``{}`` without the row.

    Raises:
        ValueError: no images, or an unknown degradation, backend or peer setting.
        CheckpointError: a model cannot be loaded.
        CardError: a peer's card exists but cannot be read.
    """
    from sharpkd.data import to_tensor
    from sharpkd.runtime.sharpener import load

    if not images:
        raise ValueError("evaluate_models needs at least one image, got none")
    check_degradations(degradations)
    peer_settings = peer_settings or {}
    baselines = list(BASELINES) if peers else [INPUT]
    methods = baselines + [m for m in dict.fromkeys(models) if m not in baselines]
    # fail on a bad model before any work
    sharpeners = {m: load(m, backend=backend, tile=tile, setting=peer_settings.get(m)) for m in methods}
    winners = dict(best_per_preset or {})
    if winners and not set(degradations) <= set(winners):
        log.info("no best-classical row: the per-preset choice lacks %s", sorted(set(degradations) - set(winners)))
        winners = {}
    best = {d: load(winners[d][0], setting=winners[d][1]) for d in degradations} if winners else {}
    gts = [to_tensor(img) for img in images.values()]
    rows: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    total, done = (len(methods) + bool(best)) * len(degradations), 0
    for deg, lqs in degraded_inputs(images, degradations).items():
        for method, sharpener in [*sharpeners.items(), *([(BEST_CLASSICAL, best[deg])] if best else [])]:
            if progress is not None:
                progress(done, total, f"{method} {deg}")
            score = score_outputs(sharpener.sharpen, lqs, gts, per_image=True)
            image_psnr = score.pop("image_psnr")
            if method == INPUT:
                input_psnr = image_psnr  # INPUT is scored first under every degradation
            else:
                score.update(worst_gain(image_psnr, input_psnr, list(images)))
            rows.setdefault(method, {})[deg] = score
            done += 1
    if progress is not None:
        progress(total, total, "done")
    order = [*baselines, *([BEST_CLASSICAL] if best else []), *methods[len(baselines) :]]
    return {
        "degradations": list(degradations),
        "images": list(images),
        "sizes": [list(img.shape[:2]) for img in images.values()],
        "rows": {m: with_means(rows[m], rows[INPUT]) for m in order},
        "classical": {p: sharpeners[p].setting for p in baselines if p != INPUT},
        "best_classical": {d: {"method": winners[d][0], "setting": best[d].setting} for d in degradations if best},
    }
