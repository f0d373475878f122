"""sharpkd.training.ema: the EMA update against the formula, integer buffers, and the EMA model copy."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from sharpkd.training.ema import ema_init, ema_model, ema_update


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_update_follows_the_formula_and_copies_integer_buffers() -> None:
    net = _net()
    ema = ema_init(net)
    start = {k: v.clone() for k, v in ema.items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net.train()(torch.rand(2, 3, 8, 8))  # moves the BatchNorm statistics and num_batches_tracked
    ema_update(ema, net, 0.9)
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(ema[k], 0.9 * start[k] + 0.1 * v, atol=1e-7), k
        else:
            assert torch.equal(ema[k], v), k  # num_batches_tracked is copied, not averaged
    assert int(ema["1.num_batches_tracked"]) == 1


@pytest.mark.parametrize(("decay", "weight"), [(0.0, 1.0), (1.0, 0.0)])
def test_decay_limits(decay: float, weight: float) -> None:
    net = _net()
    ema = ema_init(net)
    before = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(2.0)
    ema_update(ema, net, decay)
    assert torch.allclose(ema["0.weight"], before + 2.0 * weight)


def test_init_copies_and_rejects_bad_decay() -> None:
    net = _net()
    ema = ema_init(net)
    with torch.no_grad():
        net[0].weight.zero_()
    assert ema["0.weight"].abs().sum() > 0  # a copy, not a view of the live weights
    with pytest.raises(ValueError, match=r"EMA decay must be in \[0, 1\], got 1.5"):
        ema_update(ema, net, 1.5)


def test_ema_model_is_a_copy_holding_the_ema() -> None:
    net = _net().train()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in ema_init(net).items()}
    averaged = ema_model(net, ema)
    assert averaged is not net and not averaged.training and net.training
    assert torch.equal(averaged[0].weight, ema["0.weight"])
    assert not torch.equal(net[0].weight, ema["0.weight"])
