"""sharpkd.training.callbacks: best tracking and early stopping, the plateau schedule, the metrics log, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sharpkd.checkpoint import load_checkpoint
from sharpkd.losses import LossMix
from sharpkd.models import build_model
from sharpkd.training.callbacks import (
    BestCheckpoint,
    BestTracker,
    Callback,
    LastCheckpoint,
    MetricsLog,
    PlateauSchedule,
    checkpoint_meta,
)
from sharpkd.training.state import TrainState


def _metrics(psnr: float) -> dict:
    return {"mean": {"psnr": psnr, "ssim": 0.5, "input_psnr": 20.0, "input_ssim": 0.4, "gain": psnr - 20.0}}


def test_best_tracker_plateau_and_early_stop() -> None:
    state = TrainState()
    tracker, plateau = BestTracker(state, patience=3), PlateauSchedule(state)
    seen = []
    for step, psnr in enumerate([25.0, 26.0, 25.5, 25.9, 26.0, 24.0], start=1):
        stop = tracker.on_validation(step, _metrics(psnr))
        plateau.on_validation(step, _metrics(psnr))
        seen.append((state.best_psnr, state.stale, state.lr_scale, stop))
    assert seen == [
        (25.0, 0, 1.0, False),
        (26.0, 0, 1.0, False),
        (26.0, 1, 1.0, False),
        (26.0, 2, 0.5, False),  # two validations without a new best halve the lr
        (26.0, 3, 0.5, True),  # equal is not better; the third stale validation stops
        (26.0, 4, 0.25, True),
    ]


def test_best_tracker_without_patience_never_stops() -> None:
    state = TrainState(best_psnr=30.0, stale=7)  # as resumed
    assert BestTracker(state).on_validation(1, _metrics(29.0)) is False
    assert state.stale == 8 and state.best_psnr == 30.0
    assert BestTracker(state).on_validation(2, _metrics(float("nan"))) is False and state.stale == 9


def test_metrics_log_writes_the_newest_record(tmp_path: Path) -> None:
    state = TrainState(history=[{"step": 2, "mean/psnr": 25.0}])
    log = MetricsLog(tmp_path / "metrics.jsonl", state)
    log.on_validation(2, _metrics(25.0))
    state.history.append({"step": 4, "mean/psnr": 26.0})
    log.on_validation(4, _metrics(26.0))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == state.history


def test_best_checkpoint_only_on_a_new_best(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, state = build_model("conv4", width=4), TrainState()
    train = {"steps": 9, "meta": {"preset": "conv4"}}
    tracker, best = BestTracker(state), BestCheckpoint(tmp_path / "best.pt", lambda: model, state, train)
    for cb in (tracker, best):
        cb.on_step(3, {"elapsed": 1.26})
        cb.on_validation(3, _metrics(25.0))
    _, meta = load_checkpoint(tmp_path / "best.pt")
    assert meta == {"train": train, "step": 3, "elapsed_s": 1.3, "preset": "conv4", "val": _metrics(25.0)}
    (tmp_path / "best.pt").unlink()
    for cb in (tracker, best):
        cb.on_validation(4, _metrics(24.0))
    assert not (tmp_path / "best.pt").exists()


@pytest.mark.parametrize(("every", "written"), [(3, [3, 6, 7]), (0, [7])])
def test_last_checkpoint_periodic_and_at_the_end(tmp_path: Path, every: int, written: list[int]) -> None:
    torch.manual_seed(0)
    model, state = build_model("conv4", width=4), TrainState()
    opt = torch.optim.AdamW(model.parameters())
    last = LastCheckpoint(tmp_path / "last.pt", every, model, opt, LossMix("l1=1"), state, {"meta": {}})
    steps = []
    for step in range(1, 8):
        state.step = step
        last.on_step(step, {"elapsed": 0.5})
        last.on_step_end(step, "done" if step == 7 else None)
        if (tmp_path / "last.pt").exists():
            steps.append(torch.load(tmp_path / "last.pt", weights_only=True)["loop"]["step"])
            (tmp_path / "last.pt").unlink()
    assert steps == written


def test_base_callback_hooks_do_nothing() -> None:
    cb = Callback()
    assert cb.on_step(1, {}) is None and cb.on_validation(1, _metrics(1.0)) is None and cb.on_step_end(1, None) is None
    meta = checkpoint_meta({"meta": {"step": "mine"}}, 5, math.pi)
    assert meta["elapsed_s"] == 3.1 and meta["step"] == "mine"  # provenance overrides, as before the refactor
