"""Tests for quantization-aware training (sharpkd.models.quant): the int8 rounding it simulates, the hooks it
attaches and removes, the models it refuses, and fit(qat=True)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sharpkd.data import SyntheticPairs, sample_images
from sharpkd.models import build_model
from sharpkd.models.blocks import RepConv
from sharpkd.models.quant import attach_fake_quant, fake_quant_act, fake_quant_weight
from sharpkd.training.loop import TrainConfig, fit


def _student() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("rtrep", width=8)
    with torch.no_grad():  # a trained-looking tail: the zero-initialized head would hide every rounding
        for p in model.tail.parameters():
            p.normal_(0, 0.05)
    return model


def test_fake_quant_weight_lands_on_a_per_channel_int8_grid_with_straight_through_gradient() -> None:
    torch.manual_seed(0)
    w = (torch.randn(4, 3, 3, 3) * torch.tensor([0.01, 0.1, 1.0, 5.0]).view(4, 1, 1, 1)).requires_grad_()
    q = fake_quant_weight(w)
    scale = w.detach().abs().flatten(1).amax(1).view(4, 1, 1, 1) / 127
    steps = q.detach() / scale
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 127 + 1e-3
    assert torch.allclose(q.detach().abs().flatten(1).amax(1), w.detach().abs().flatten(1).amax(1))  # extremes kept
    err = (q - w).detach().abs()
    assert (err <= scale / 2 + 1e-7).all() and err.sum() > 0  # each channel rounds on its own scale
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_fake_quant_act_has_256_levels_keeps_zero_and_clips() -> None:
    x = torch.linspace(-1.5, 3.0, 10_001, requires_grad=True)
    q = fake_quant_act(x, -1.0, 2.0)
    levels = torch.unique(q.detach())
    assert len(levels) == 256
    assert levels.min() >= -1.0 - 1e-6 and levels.max() <= 2.0 + 1e-6  # clipped to the range
    assert fake_quant_act(torch.zeros(3), -1.0, 2.0).eq(0).all()  # zero is exact (a uint8 zero point)
    assert fake_quant_act(torch.tensor([0.0, 0.5]), 0.2, 1.0)[0] == 0  # the range always spans 0
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_attach_rounds_in_training_freezes_ranges_in_eval_and_remove_restores_float() -> None:
    model = _student().train()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        qat = attach_fake_quant(model)
        assert all(c.quant_weights for c in model.modules() if isinstance(c, RepConv))
        rounded = model(x)
        assert 0 < (rounded - ref).abs().mean() < 0.01  # rounded, not another network
        model.eval()
        ranges = [(h.lo, h.hi) for m in model.modules() for h in m._forward_hooks.values()]
        model(torch.rand(2, 3, 32, 32) * 0.1)  # eval: a darker batch does not move the ranges
        assert ranges == [(h.lo, h.hi) for m in model.modules() for h in m._forward_hooks.values()]
        qat.remove()
        assert torch.equal(model.train()(x), ref)
        assert not any(m._forward_hooks for m in model.modules())


def test_attach_refuses_students_with_plain_convs() -> None:
    with pytest.raises(ValueError, match="RepConv only.*plain convs: intro"):
        attach_fake_quant(build_model("rt", width=8))
    with pytest.raises(ValueError, match="RepConv only"):
        attach_fake_quant(torch.nn.Sequential(torch.nn.ReLU()))


def test_fit_with_qat_trains_through_the_rounding_and_returns_a_float_student() -> None:
    pytest.importorskip("skimage")
    data = SyntheticPairs(
        list(sample_images(("astronaut",)).values()), patch_size=32, degradation="gauss1.5", repeats=4
    )
    model, x = _student(), torch.rand(1, 3, 32, 32)
    cfg = dict(steps=3, batch_size=2, lr=1e-3, warmup_steps=1, val_every=0, device="cpu", amp="off", seed=1)
    result = fit(TrainConfig(qat=True, **cfg), None, model, data)
    assert result.steps == 3 and not any(m._forward_hooks for m in model.modules())
    assert not any(c.quant_weights for c in model.modules() if isinstance(c, RepConv))
    float_twin = _student()
    fit(TrainConfig(**cfg), None, float_twin, data)
    with torch.no_grad():  # same seed and data: only the rounding in the forward pass differs
        assert not np.allclose(model(x).numpy(), float_twin(x).numpy())
