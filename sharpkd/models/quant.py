"""Quantization-aware training: a student computes, in training, what its int8 graph will compute.

The int8 backend (:func:`sharpkd.runtime.backends.quantize_graph`) runs each conv with per-output-channel symmetric
int8 weights and uint8 activations whose per-tensor ranges are calibrated on sample photos (percentiles). A student
trained in float loses much of its gain there (the shipped rtrep4 student: gauss1.5 +2.97 dB in float, +1.65 in
int8): its merged kernels hold large taps that cancel one another, and rounding them leaks low frequencies into the
residual. :func:`attach_fake_quant` makes the student round the same tensors while it trains, with straight-through
gradients, so that it learns weights that survive the rounding. The weights stay float (the checkpoint format does
not change); export quantizes them as before.

Example:
    >>> qat = attach_fake_quant(student)   # doctest: +SKIP
    >>> ...train...; qat.remove()          # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn as nn

from sharpkd.models.blocks import RepConv, fake_quant_weight

__all__ = ["attach_fake_quant", "fake_quant_act", "fake_quant_weight", "FakeQuant"]

ACT_PERCENTILE = 0.9999  # activation range per batch: the 0.01% / 99.99% quantiles, as the int8 calibration clips
RANGE_MOMENTUM = 0.05  # exponential moving average of the per-batch ranges (training mode only)


def fake_quant_act(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x`` rounded to 256 levels spanning ``[min(lo, 0), max(hi, 0)]`` (uint8 with a zero point, as the int8
    graph's activations) and clipped to it; the gradient passes straight through.

    Shape:
        any -> the same.
    """
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255
    zero = round(-lo / scale)
    q = ((x / scale).round() + zero).clamp(0, 255)
    return x + ((q - zero) * scale - x).detach()


class _RangeObserver:
    """The activation range of one tensor: a moving average of per-batch quantiles while the module trains, frozen
    in eval mode; the forward hook that then fake-quantizes that tensor."""

    def __init__(self) -> None:
        self.lo: float | None = None
        self.hi: float | None = None

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if module.training or self.lo is None:
            flat = output.detach().flatten().float()
            k = int(flat.numel() * (1 - ACT_PERCENTILE)) + 1  # the quantiles by top-k: far cheaper than a full sort
            hi, lo = flat.topk(k).values[-1].item(), -(-flat).topk(k).values[-1].item()
            if self.lo is None:
                self.lo, self.hi = lo, hi
            else:
                m = RANGE_MOMENTUM
                self.lo, self.hi = (1 - m) * self.lo + m * lo, (1 - m) * self.hi + m * hi
        return fake_quant_act(output, self.lo, self.hi)


class FakeQuant:
    """What :func:`attach_fake_quant` attached; :meth:`remove` makes the student float again."""

    def __init__(self, convs: list[RepConv], handles: list) -> None:
        self.convs, self.handles = convs, handles

    def remove(self) -> None:
        for conv in self.convs:
            conv.quant_weights = False
        for h in self.handles:
            h.remove()
        self.handles = []


def attach_fake_quant(model: nn.Module) -> FakeQuant:
    """Make ``model`` simulate its int8 graph: every :class:`~sharpkd.models.blocks.RepConv` rounds its merged
    kernel (:func:`fake_quant_weight`), and each conv's and activation's output is rounded to its own uint8 range
    (:func:`fake_quant_act`, ranges tracked while training).

    Raises:
        ValueError: ``model`` has no RepConv, or has a plain ``nn.Conv2d`` (whose weight this cannot round): QAT is
            for the re-parameterizable students (``rep=True``) that ship on ``onnx-int8``.
    """
    convs = [m for m in model.modules() if isinstance(m, RepConv)]
    plain = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs or plain:
        raise ValueError(
            "quantization-aware training needs a student built of RepConv only (rep=True, e.g. rtrep4)"
            + (f"; this one has plain convs: {', '.join(plain[:3])}" if plain else "")
        )
    acts = (nn.ReLU, nn.LeakyReLU, nn.GELU)
    handles = []
    for conv in convs:
        conv.quant_weights = True
    for m in model.modules():
        if isinstance(m, (RepConv, *acts)):
            handles.append(m.register_forward_hook(_RangeObserver()))
    return FakeQuant(convs, handles)
