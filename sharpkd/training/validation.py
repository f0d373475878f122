"""Validation: PSNR/SSIM of a restorer on whole images for each named degradation, beside the degraded input.

Works on tensors (used by the training loop) via :func:`evaluate_tensor_fn`; ``reporting.evaluate.evaluate_models``
builds the uint8 end-to-end table that the CLI and model cards print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from sharpkd.data import EvalImages
from sharpkd.degrade import PRESETS
from sharpkd.metrics import psnr, ssim


@torch.no_grad()
def evaluate_tensor_fn(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: EvalImages,
    presets: Iterable[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM of ``fn(lq).clamp(0, 1)`` and of ``lq`` itself against ``gt``, per preset.

    ``presets`` defaults to the images' own ``presets`` when they have one (footage scored against its teacher
    labels, :class:`sharpkd.training.unlabeled.TeacherTargets`), else :data:`~sharpkd.degrade.PRESETS`.

    Returns:
        ``{preset: {"psnr", "ssim", "input_psnr", "input_ssim"}}`` plus ``"mean"`` with the averages and
        ``"gain"`` (mean PSNR minus mean input PSNR).
    """
    if presets is None:
        presets = getattr(images, "presets", PRESETS)
    out: dict[str, dict[str, float]] = {}
    for preset in presets:
        rows = []
        for _, lq, gt in images.pairs(preset):
            pred = fn(lq).clamp(0, 1)
            rows.append((psnr(pred, gt), ssim(pred, gt), psnr(lq, gt), ssim(lq, gt)))
        cols = [float(torch.stack(c).mean()) for c in zip(*rows)]
        out[preset] = dict(zip(("psnr", "ssim", "input_psnr", "input_ssim"), cols))
    keys = ("psnr", "ssim", "input_psnr", "input_ssim")
    mean = {k: sum(v[k] for v in out.values()) / len(out) for k in keys}
    mean["gain"] = mean["psnr"] - mean["input_psnr"]
    out["mean"] = mean
    return out
