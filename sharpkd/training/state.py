"""The training loop's state (:class:`TrainState`) and the resumable checkpoint, ``last.pt``, that stores it.

``last.pt`` is an ordinary sharpkd checkpoint (:func:`~sharpkd.checkpoint.checkpoint_dict`, so ``load_checkpoint``
reads it like any weights file) plus what resuming needs::

    "optimizer"  optimizer.state_dict()
    "loss"       the loss module's state dict (the trainable feature-distillation adapter)
    "loop"       the plain TrainState fields: step, best_psnr, history, lr_scale, stale
    "rng"        torch's CPU generator state
    "ema"        the EMA of the weights, only when the run keeps one

Files written before the EMA existed have no ``"ema"``; they resume with ``TrainState.ema = None``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sharpkd.checkpoint import atomic_save, checkpoint_dict, load_weights, read_checkpoint
from sharpkd.errors import CheckpointError


@dataclass
class TrainState:
    """Everything the loop changes besides the weights and the optimizer; ``last.pt`` stores it."""

    step: int = 0  # optimizer steps done, counted globally (the same on every rank)
    best_psnr: float = -math.inf  # best mean validation PSNR so far; -inf before the first validation
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per validation (step, loss, metrics)
    lr_scale: float = 1.0  # multiplier on the scheduled lr, halved by the plateau schedule
    stale: int = 0  # validations since the best one (0 right after a new best)
    ema: dict[str, torch.Tensor] | None = None  # EMA of the student's state dict, None when the run keeps none

    def plain(self) -> dict[str, Any]:
        """The fields other than the EMA tensors: what ``last.pt`` stores under ``"loop"``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "ema"}


def save_training_state(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    state: TrainState,
    *,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a resumable checkpoint (see the module docstring) atomically; returns ``path``.

    Args:
        path: where to write, usually ``out_dir/last.pt``.
        model: the unwrapped student (no DistributedDataParallel ``module.`` prefix).
        optimizer: its optimizer.
        loss_fn: the loss module, whose feature adapter trains too.
        state: the loop state, EMA included.
        meta: provenance, as in :func:`~sharpkd.checkpoint.save_checkpoint`.
    """
    obj = {
        **checkpoint_dict(model, meta=meta),
        "optimizer": optimizer.state_dict(),
        "loss": loss_fn.state_dict(),
        "loop": state.plain(),
        "rng": torch.get_rng_state(),
    }
    if state.ema is not None:
        obj["ema"] = {k: v.detach().cpu() for k, v in state.ema.items()}
    return atomic_save(obj, path)


def load_training_state(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device,
) -> TrainState:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer``, ``loss_fn`` and torch's RNG.

    Args:
        path: a ``last.pt``.
        model: the student, already on ``device``.
        optimizer, loss_fn: built for ``model`` as in the run that wrote ``path``.
        device: where the optimizer state goes (the EMA goes where the model's tensors are).

    Returns:
        The loop state; ``ema`` is ``None`` when the file has none.

    Raises:
        CheckpointError: an unreadable file (see :func:`~sharpkd.checkpoint.read_checkpoint`), a weights-only file,
            or state that does not match this model, optimizer or loss.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    load_weights(path, model, ckpt["model"])
    if "optimizer" not in ckpt or "loop" not in ckpt:
        raise CheckpointError(f"{path} is a weights-only checkpoint; it cannot resume training")
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        loss_fn.load_state_dict(ckpt["loss"])
    except (ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{path}: optimizer/loss state does not match this run: {err}") from err
    for group in optimizer.state.values():
        for k, v in group.items():
            if isinstance(v, torch.Tensor):
                group[k] = v.to(device)
    if "rng" in ckpt:
        torch.set_rng_state(ckpt["rng"])
    state = _loop_state(path, ckpt["loop"])
    if "ema" in ckpt:
        state.ema = _ema_state(path, ckpt["ema"], model)
    return state


def _loop_state(path: Path, loop: Any) -> TrainState:
    known = set(TrainState().plain())
    if not isinstance(loop, dict) or set(loop) - known:
        found = sorted(loop) if isinstance(loop, dict) else type(loop).__name__
        raise CheckpointError(f"{path}: 'loop' should hold {sorted(known)}, found {found}")
    state = TrainState(**loop)  # a field missing from an older file keeps its default
    best = float(state.best_psnr)
    state.best_psnr = -math.inf if math.isnan(best) else best
    return state


def _ema_state(path: Path, ema: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    own = model.state_dict()
    ok = isinstance(ema, dict) and ema.keys() == own.keys()
    ok = ok and all(isinstance(ema[k], torch.Tensor) and ema[k].shape == v.shape for k, v in own.items())
    if not ok:
        raise CheckpointError(f"{path}: 'ema' does not match the model's state dict (names or shapes differ)")
    if not all(torch.isfinite(t).all() for t in ema.values() if t.is_floating_point()):
        raise CheckpointError(f"{path}: 'ema' contains NaN or Inf")
    return {k: ema[k].to(device=v.device, dtype=v.dtype) for k, v in own.items()}
