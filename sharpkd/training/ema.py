"""An exponential moving average (EMA) of a model's weights, for smoother and usually better final weights.

After every optimizer step ``ema <- decay * ema + (1 - decay) * weights``, so the average spans roughly the last
``1 / (1 - decay)`` steps (1000 for ``decay=0.999``). Every floating-point entry of the state dict is averaged
(parameters and buffers such as BatchNorm statistics); integer buffers (``num_batches_tracked``) are copied. The EMA is
a plain ``{name: tensor}`` dict, which is what :class:`~sharpkd.training.state.TrainState` stores in ``last.pt``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def ema_init(model: nn.Module) -> dict[str, torch.Tensor]:
    """A fresh EMA: a copy of ``model``'s current state dict (same devices and dtypes)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    """Move ``ema`` towards ``model``'s weights in place: ``ema <- decay * ema + (1 - decay) * weights``.

    Raises:
        ValueError: ``decay`` outside [0, 1].
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    for name, value in model.state_dict().items():
        avg = ema[name]
        if avg.is_floating_point():
            avg.lerp_(value, 1.0 - decay)  # avg + (1 - decay) * (value - avg)
        else:
            avg.copy_(value)


def ema_model(model: nn.Module, ema: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` that holds the EMA weights, in eval mode (``model`` itself is left as it is)."""
    averaged = copy.deepcopy(model)
    averaged.load_state_dict(ema)
    return averaged.eval()
