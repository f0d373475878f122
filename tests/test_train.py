"""The training loop on tiny data: finite losses, determinism, exact resume, cancel, validation, distillation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from sharpkd.checkpoint import load_checkpoint
from sharpkd.data import EvalImages, SyntheticPairs, sample_images
from sharpkd.models import build_model
from sharpkd.training.loop import Callback, TrainConfig, fit


@pytest.fixture(scope="module")
def data() -> SyntheticPairs:
    pytest.importorskip("skimage")
    return SyntheticPairs(
        list(sample_images(("astronaut",)).values()), patch_size=32, degradation="gauss1.5", repeats=8
    )


@pytest.fixture
def val() -> EvalImages:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:32]
    img = np.clip((np.sin(xx / 3.0) * np.cos(yy / 4.0) * 90 + 128)[..., None] + rng.normal(0, 5, (24, 32, 3)), 0, 255)
    return EvalImages({"waves": img.astype(np.uint8)})


def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("conv4", width=8)


def _cfg(**kw) -> TrainConfig:
    defaults = dict(steps=4, batch_size=2, lr=3e-3, warmup_steps=1, val_every=0, device="cpu", amp="off")
    return TrainConfig(**{**defaults, **kw})


class Recorder(Callback):
    """Keeps every step's logs and validation metrics; cancels after ``cancel_at`` steps when given."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.steps: list[dict[str, float]] = []
        self.validations: list[tuple[int, dict]] = []
        self.cancel_at = cancel_at

    def on_step(self, step: int, logs: dict[str, float]) -> bool:
        self.steps.append(dict(logs))
        return self.cancel_at is not None and step >= self.cancel_at

    def on_validation(self, step: int, metrics: dict) -> None:
        self.validations.append((step, metrics))


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fit_runs_and_losses_are_finite(data: SyntheticPairs) -> None:
    student, rec = _student(), Recorder()
    before = _weights(student)
    result = fit(_cfg(), None, student, data, callbacks=[rec])
    assert result.steps == 4 and result.stopped == "done"
    assert [s["step"] for s in rec.steps] == [1, 2, 3, 4]
    for logs in rec.steps:
        assert np.isfinite(logs["loss"]) and logs["loss"] > 0
        assert logs["loss"] == pytest.approx(logs["loss_l1"])
        assert np.isfinite(logs["grad_norm"]) and logs["lr"] > 0
    assert rec.steps[0]["lr"] == pytest.approx(3e-3)  # one warm-up step reaches the peak
    assert rec.steps[-1]["lr"] < rec.steps[1]["lr"]  # cosine decay
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_same_seed_same_first_loss_and_weights(data: SyntheticPairs) -> None:
    runs = []
    for _ in range(2):
        student, rec = _student(), Recorder()
        fit(_cfg(steps=3), None, student, data, callbacks=[rec])
        runs.append((rec.steps[0]["loss"], _weights(student)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    student, rec = _student(), Recorder()
    fit(_cfg(steps=1, seed=1), None, student, data, callbacks=[rec])
    assert rec.steps[0]["loss"] != runs[0][0]  # another seed draws other batches


def test_resume_is_exact(tmp_path: Path, data: SyntheticPairs) -> None:
    straight = _student()
    fit(_cfg(steps=6, out_dir=str(tmp_path / "a")), None, straight, data)

    first = _student()
    result = fit(_cfg(steps=6, out_dir=str(tmp_path / "b")), None, first, data, callbacks=[Recorder(cancel_at=3)])
    assert result.stopped == "cancelled" and result.steps == 3
    assert (tmp_path / "b" / "last.pt").exists()

    resumed, rec = _student(seed=123), Recorder()  # different init: everything must come from last.pt
    result = fit(_cfg(steps=6, out_dir=str(tmp_path / "b")), None, resumed, data, callbacks=[rec])
    assert result.steps == 6 and [s["step"] for s in rec.steps] == [4, 5, 6]
    for k, v in straight.state_dict().items():
        assert torch.allclose(resumed.state_dict()[k], v, atol=1e-6), k

    model, meta = load_checkpoint(tmp_path / "b" / "last.pt")
    assert meta["step"] == 6 and meta["train"]["steps"] == 6
    assert all(torch.equal(model.state_dict()[k], v) for k, v in resumed.state_dict().items())


def test_resume_false_starts_over(tmp_path: Path, data: SyntheticPairs) -> None:
    fit(_cfg(steps=2, out_dir=str(tmp_path)), None, _student(), data)
    rec = Recorder()
    fit(_cfg(steps=2, out_dir=str(tmp_path), resume=False), None, _student(), data, callbacks=[rec])
    assert [s["step"] for s in rec.steps] == [1, 2]


def test_callback_cancels(data: SyntheticPairs) -> None:
    rec = Recorder(cancel_at=2)
    result = fit(_cfg(steps=50), None, _student(), data, callbacks=[rec])
    assert result.stopped == "cancelled" and result.steps == 2 and len(rec.steps) == 2


def test_validation_history_and_best(tmp_path: Path, data: SyntheticPairs, val: EvalImages) -> None:
    rec = Recorder()
    cfg = _cfg(steps=4, val_every=2, out_dir=str(tmp_path))
    result = fit(cfg, None, _student(), data, val=val, callbacks=[rec])
    assert [r["step"] for r in result.history] == [2, 4]
    assert [s for s, _ in rec.validations] == [2, 4]
    for record in result.history:
        assert np.isfinite(record["mean/psnr"]) and 0 < record["mean/ssim"] <= 1
        assert {"downup2/psnr", "gauss1.5/input_psnr", "vc/ssim", "mean/gain"} <= set(record)
    assert result.best_psnr == pytest.approx(max(r["mean/psnr"] for r in result.history))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]
    _, meta = load_checkpoint(tmp_path / "best.pt")
    assert meta["val"]["mean"]["psnr"] == pytest.approx(result.best_psnr)


def test_early_stop_when_psnr_stalls(data: SyntheticPairs, val: EvalImages) -> None:
    # lr 0 never changes the weights, so validation PSNR never improves after the first
    result = fit(_cfg(steps=20, lr=0.0, val_every=1, early_stop=2), None, _student(), data, val=val)
    assert result.stopped == "early_stop" and result.steps == 3
    assert len(result.history) == 3


def test_distillation_with_teacher(data: SyntheticPairs) -> None:
    torch.manual_seed(0)
    teacher = build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)
    teacher_before = _weights(teacher)
    rec = Recorder()
    student = build_model("rt", width=8)
    result = fit(_cfg(steps=3, losses="l1=1,kd=1,feat=0.1"), teacher, student, data, callbacks=[rec])
    assert result.steps == 3
    for logs in rec.steps:
        assert {"loss_l1", "loss_kd", "loss_feat"} <= set(logs)
        assert all(np.isfinite(logs[k]) and logs[k] > 0 for k in ("loss_l1", "loss_kd", "loss_feat"))
        assert logs["loss"] == pytest.approx(logs["loss_l1"] + logs["loss_kd"] + logs["loss_feat"], rel=1e-5)
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())  # frozen
    assert not teacher.training


def test_kd_losses_without_teacher_raise(data: SyntheticPairs) -> None:
    with pytest.raises(ValueError, match="include distillation terms but no teacher was given"):
        fit(_cfg(losses="l1=1,kd=0.5"), None, _student(), data)


def test_batch_larger_than_dataset_raises() -> None:
    tiny = SyntheticPairs([np.full((16, 16, 3), 128, np.uint8)], patch_size=16, degradation="gauss1.5", repeats=1)
    with pytest.raises(ValueError, match="the dataset has 1 samples, fewer than batch_size 2"):
        fit(_cfg(), None, _student(), tiny)
