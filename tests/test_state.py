"""sharpkd.training.state: TrainState and the resumable last.pt (round trip, EMA, old files, bad files)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from sharpkd.checkpoint import load_checkpoint, save_checkpoint
from sharpkd.errors import CheckpointError
from sharpkd.losses import LossMix
from sharpkd.models import build_model
from sharpkd.training.ema import ema_init
from sharpkd.training.state import TrainState, load_training_state, save_training_state


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "model.pt", build_model("conv4", width=4), meta={"note": "test"})


def _trained(seed: int = 0):
    """An rt student, its feature-loss adapter and an AdamW that has taken one step."""
    torch.manual_seed(seed)
    model = build_model("rt", width=8)
    loss_fn = LossMix("l1=1,feat=1", student_channels=8, teacher_channels=4)
    opt = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-3)
    x = torch.rand(1, 3, 8, 8)
    pred, feats = model(x, return_features=True)
    sum(loss_fn(pred, x, x, feats, torch.rand(1, 4, 8, 8)).values()).backward()
    opt.step()
    return model, loss_fn, opt


def _fresh():
    model = build_model("rt", width=8)
    loss_fn = LossMix("l1=1,feat=1", student_channels=8, teacher_channels=4)
    return model, loss_fn, torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-3)


def test_training_state_round_trip(tmp_path: Path) -> None:
    model, loss_fn, opt = _trained()
    loop = {"step": 7, "best_psnr": float("-inf"), "history": [{"step": 5}], "lr_scale": 0.5, "stale": 1}
    path = save_training_state(tmp_path / "last.pt", model, opt, loss_fn, TrainState(**loop), meta={"step": 7})
    expected_rng = torch.get_rng_state()
    torch.manual_seed(99)

    model2, loss2, opt2 = _fresh()
    state = load_training_state(path, model2, opt2, loss2, torch.device("cpu"))
    assert state == TrainState(**{**loop, "best_psnr": float("-inf")})
    assert state.ema is None
    assert torch.equal(torch.get_rng_state(), expected_rng)
    assert torch.equal(loss2.adapter.weight, loss_fn.adapter.weight)
    assert all(torch.equal(model2.state_dict()[k], v) for k, v in model.state_dict().items())
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    # a resumable file is also an ordinary checkpoint
    loaded, meta = load_checkpoint(path)
    assert meta == {"step": 7}
    # the loop state sits under "loop", as in files written before TrainState existed
    assert torch.load(path, weights_only=True)["loop"] == loop


def test_ema_round_trip(tmp_path: Path) -> None:
    model, loss_fn, opt = _trained()
    ema = {k: v + 0.25 if v.is_floating_point() else v for k, v in ema_init(model).items()}
    path = save_training_state(tmp_path / "last.pt", model, opt, loss_fn, TrainState(step=3, ema=ema))
    raw = torch.load(path, weights_only=True)
    assert set(raw["ema"]) == set(model.state_dict()) and "ema" not in raw["loop"]
    model2, loss2, opt2 = _fresh()
    state = load_training_state(path, model2, opt2, loss2, torch.device("cpu"))
    assert state.step == 3 and state.ema is not None
    assert all(torch.equal(state.ema[k], v) for k, v in ema.items())
    assert not any(state.ema[k].data_ptr() == v.data_ptr() for k, v in model2.state_dict().items())  # a copy


def test_old_last_pt_without_ema_loads(tmp_path: Path) -> None:
    """A last.pt as written before this package existed: the dict built literally, saved with torch.save."""
    model, loss_fn, opt = _trained()
    old = {
        "format": "sharpkd-1",
        "kind": model.kind,
        "config": asdict(model.cfg),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {"step": 12},
        "optimizer": opt.state_dict(),
        "loss": loss_fn.state_dict(),
        "loop": {"step": 12, "best_psnr": float("nan"), "history": [], "lr_scale": 0.25, "stale": 3},
        "rng": torch.get_rng_state(),
    }
    torch.save(old, tmp_path / "last.pt")
    model2, loss2, opt2 = _fresh()
    state = load_training_state(tmp_path / "last.pt", model2, opt2, loss2, torch.device("cpu"))
    assert state == TrainState(step=12, best_psnr=float("-inf"), history=[], lr_scale=0.25, stale=3, ema=None)


def test_weights_only_checkpoint_cannot_resume(saved: Path) -> None:
    model = build_model("conv4", width=4)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(CheckpointError, match="weights-only checkpoint; it cannot resume training"):
        load_training_state(saved, model, opt, LossMix("l1=1"), torch.device("cpu"))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c["loop"].update(epoch=2), r"'loop' should hold \[.*\], found \[.*'epoch'"),
        (lambda c: c.update(loop=[1, 2]), "'loop' should hold .* found list"),
        (lambda c: c["ema"].pop("intro.0.weight"), "'ema' does not match the model's state dict"),
        (lambda c: c["ema"].update({"intro.0.weight": torch.zeros(1)}), "'ema' does not match"),
        (lambda c: c["ema"]["intro.0.weight"].fill_(float("nan")), "'ema' contains NaN or Inf"),
    ],
)
def test_bad_loop_or_ema_state(tmp_path: Path, edit, match: str) -> None:
    torch.manual_seed(0)
    model = build_model("conv4", width=4)
    opt = torch.optim.AdamW(model.parameters())
    path = save_training_state(tmp_path / "last.pt", model, opt, LossMix("l1=1"), TrainState(ema=ema_init(model)))
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=match):
        load_training_state(path, model, torch.optim.AdamW(model.parameters()), LossMix("l1=1"), torch.device("cpu"))
