"""Callbacks: what :func:`~sharpkd.training.loop.fit` does around the optimizer step, one concern per class.

After every optimizer step fit() calls, on every callback in order, ``on_step`` (with the step's logs), then
``on_validation`` if it validated at this step, then ``on_step_end`` (with the reason training stops after this step,
or ``None``). The built-in callbacks below keep :class:`~sharpkd.training.state.TrainState` up to date and write the
files of ``out_dir``; fit() puts them first, in this order, and the caller's callbacks after them:

=================== ============================================================== ===============
``BestTracker``     ``best_psnr`` / ``stale``, and early stopping                    every rank
``PlateauSchedule`` halves ``lr_scale`` when validation PSNR stalls                  every rank
``BestCheckpoint``  ``best.pt`` at each new best (reads ``stale``, so after the two) rank 0
``MetricsLog``      one JSON line per validation in ``metrics.jsonl``                rank 0
``LastCheckpoint``  the resumable ``last.pt``, periodically and when training stops  rank 0
=================== ============================================================== ===============
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sharpkd.checkpoint import save_checkpoint
from sharpkd.training.state import TrainState, save_training_state


class Callback:
    """Hooks called by :func:`~sharpkd.training.loop.fit`; the ones passed to fit() run on rank 0 only.

    Return ``True`` from ``on_step`` to cancel training, or from ``on_validation`` to stop it early; under torchrun
    rank 0's answer stops every rank after the same step.
    """

    def on_step(self, step: int, logs: dict[str, float]) -> bool | None:
        """After optimizer step ``step`` (counted from 1): ``logs`` has step, lr, loss, loss_<term>, grad_norm,
        elapsed. ``True`` cancels training (``stopped="cancelled"``)."""
        return None

    def on_validation(self, step: int, metrics: dict[str, Any]) -> bool | None:
        """After validating at ``step``: ``metrics`` as from ``evaluate_tensor_fn``. ``True`` stops training
        (``stopped="early_stop"``)."""
        return None

    def on_step_end(self, step: int, stopped: str | None) -> None:
        """Last hook of each step; ``stopped`` is why training ends after it ("done", "early_stop", "time_budget",
        "cancelled", "interrupted"), or ``None`` when it goes on."""
        return None


def checkpoint_meta(
    train: dict[str, Any], step: int, elapsed: float, metrics: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``meta`` of a checkpoint written during training.

    Args:
        train: ``dataclasses.asdict`` of the run's ``TrainConfig``; its ``"meta"`` entry (provenance) is merged in.
        step: the global step.
        elapsed: seconds since training (this process) started.
        metrics: validation metrics to store under ``"val"`` (``best.pt``).
    """
    meta = {"train": train, "step": step, "elapsed_s": round(elapsed, 1), **train.get("meta", {})}
    if metrics is not None:
        meta["val"] = metrics
    return meta


class BestTracker(Callback):
    """Keeps ``state.best_psnr`` (mean validation PSNR) and ``state.stale`` (validations since the best), and stops
    training after ``patience`` validations without a new best (0 never stops)."""

    def __init__(self, state: TrainState, patience: int = 0) -> None:
        self.state, self.patience = state, patience

    def on_validation(self, step: int, metrics: dict[str, Any]) -> bool:
        psnr = metrics["mean"]["psnr"]
        if psnr > self.state.best_psnr:
            self.state.best_psnr, self.state.stale = psnr, 0
        else:
            self.state.stale += 1
        return self.patience > 0 and self.state.stale >= self.patience


class PlateauSchedule(Callback):
    """Multiplies ``state.lr_scale`` by ``factor`` after every ``patience`` validations without a new best (on top of
    the warm-up + cosine schedule). Reads ``state.stale``, so it runs after :class:`BestTracker`."""

    def __init__(self, state: TrainState, patience: int = 2, factor: float = 0.5) -> None:
        self.state, self.patience, self.factor = state, patience, factor

    def on_validation(self, step: int, metrics: dict[str, Any]) -> None:
        if self.state.stale > 0 and self.state.stale % self.patience == 0:
            self.state.lr_scale *= self.factor


class BestCheckpoint(Callback):
    """Writes ``weights()`` (the weights fit() keeps: the EMA when on, else the student) to ``path`` whenever a
    validation sets a new best, with the metrics in its meta. Runs after :class:`BestTracker`."""

    def __init__(self, path: Path, weights: Callable[[], nn.Module], state: TrainState, train: dict[str, Any]) -> None:
        self.path, self.weights, self.state, self.train = path, weights, state, train
        self.elapsed = 0.0

    def on_step(self, step: int, logs: dict[str, float]) -> None:
        self.elapsed = logs["elapsed"]

    def on_validation(self, step: int, metrics: dict[str, Any]) -> None:
        if self.state.stale == 0:  # BestTracker has just recorded a new best
            save_checkpoint(self.path, self.weights(), meta=checkpoint_meta(self.train, step, self.elapsed, metrics))


class MetricsLog(Callback):
    """Appends each validation record (the newest ``state.history`` entry) to ``path`` as one JSON line."""

    def __init__(self, path: Path, state: TrainState) -> None:
        self.path, self.state = path, state

    def on_validation(self, step: int, metrics: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(self.state.history[-1]) + "\n")


class LastCheckpoint(Callback):
    """Writes the resumable ``last.pt`` (:func:`~sharpkd.training.state.save_training_state`) every ``every`` steps
    (0: only at the end) and whenever training stops, after the step's validation has updated the state."""

    def __init__(
        self,
        path: Path,
        every: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        state: TrainState,
        train: dict[str, Any],
    ) -> None:
        self.path, self.every, self.train = path, every, train
        self.model, self.optimizer, self.loss_fn, self.state = model, optimizer, loss_fn, state
        self.elapsed = 0.0

    def on_step(self, step: int, logs: dict[str, float]) -> None:
        self.elapsed = logs["elapsed"]

    def on_step_end(self, step: int, stopped: str | None) -> None:
        if stopped is not None or (self.every > 0 and step % self.every == 0):
            meta = checkpoint_meta(self.train, step, self.elapsed)
            save_training_state(self.path, self.model, self.optimizer, self.loss_fn, self.state, meta=meta)
