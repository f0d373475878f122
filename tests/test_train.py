"""The training loop on tiny data: finite losses, determinism, exact resume, cancel, validation, distillation."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from sharpkd.checkpoint import load_checkpoint
from sharpkd.data import EvalImages, SyntheticPairs, sample_images
from sharpkd.models import build_model
from sharpkd.training.callbacks import Callback
from sharpkd.training.loop import TrainConfig, fit
from sharpkd.training.validation import evaluate_tensor_fn


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


def test_fit_feeds_the_input_to_the_noharm_term(data: SyntheticPairs) -> None:
    # a fresh student is the identity (zero-initialised head), so on the first step it does no harm at all
    rec = Recorder()
    fit(_cfg(steps=2, losses="psnr=1,noharm=3"), None, _student(), data, callbacks=[rec])
    assert rec.steps[0]["loss_noharm"] == 0.0
    assert all(np.isfinite(s["loss_noharm"]) and s["loss_noharm"] >= 0 for s in rec.steps)


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


class Signaller(Callback):
    """Sends this process ``sig`` during step ``at``, as Ctrl-C or a job manager's SIGTERM would."""

    def __init__(self, sig: int, at: int) -> None:
        self.sig, self.at = sig, at

    def on_step(self, step: int, logs: dict[str, float]) -> None:
        if step == self.at:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_training_after_the_step_with_last_pt_written(
    tmp_path: Path, data: SyntheticPairs, val: EvalImages, sig: int
) -> None:
    before = signal.getsignal(sig)
    cfg = _cfg(steps=50, val_every=1000, out_dir=str(tmp_path))
    result = fit(cfg, None, _student(), data, val=val, callbacks=[Signaller(sig, at=3)])
    assert result.stopped == "interrupted" and result.steps == 3
    assert [r["step"] for r in result.history] == [3]  # validated at the step it stopped, not 1000 steps later
    _, meta = load_checkpoint(tmp_path / "last.pt")
    assert meta["step"] == 3
    assert signal.getsignal(sig) == before  # the handler is gone once fit returns
    rec = Recorder()
    assert fit(_cfg(steps=5, out_dir=str(tmp_path)), None, _student(seed=9), data, callbacks=[rec]).steps == 5
    assert [s["step"] for s in rec.steps] == [4, 5]  # the next run resumes where the signal stopped this one


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


def _ema_by_hand(weights: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """``e_0 = w_0``, then ``e_k = decay * e_(k-1) + (1 - decay) * w_k`` for every later entry of ``weights``."""
    ema = {k: v.clone() for k, v in weights[0].items()}
    for w in weights[1:]:
        ema = {k: decay * ema[k] + (1 - decay) * w[k] for k in ema}
    return ema


class WeightRecorder(Callback):
    """The student's weights after every step (with the initial ones first)."""

    def __init__(self, student: nn.Module) -> None:
        self.student, self.weights = student, [_weights(student)]

    def on_step(self, step: int, logs: dict[str, float]) -> None:
        self.weights.append(_weights(self.student))


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ema_weights_are_validated_and_saved(tmp_path: Path, data: SyntheticPairs, val: EvalImages) -> None:
    student = _student()
    rec = WeightRecorder(student)
    cfg = _cfg(steps=3, val_every=3, ema_decay=0.5, out_dir=str(tmp_path))
    result = fit(cfg, None, student, data, val=val, callbacks=[rec])
    expected = _ema_by_hand(rec.weights, 0.5)
    best, meta = load_checkpoint(tmp_path / "best.pt")
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert _close(best.state_dict(), expected) and _close(last["ema"], expected)
    assert _close(last["model"], rec.weights[-1])  # last.pt resumes from the raw weights
    assert not _close(best.state_dict(), rec.weights[-1])  # and they differ from the EMA
    assert _close(student.state_dict(), expected)  # fit() leaves the student holding best.pt
    # validation scored the EMA weights
    psnr = evaluate_tensor_fn(best, val)["mean"]["psnr"]
    assert result.history[0]["mean/psnr"] == pytest.approx(psnr, abs=1e-4)
    assert meta["val"]["mean"]["psnr"] == result.best_psnr == result.history[0]["mean/psnr"]


def test_ema_without_validation_ends_on_the_ema(data: SyntheticPairs) -> None:
    student = _student()
    rec = WeightRecorder(student)
    fit(_cfg(steps=3, ema_decay=0.9), None, student, data, callbacks=[rec])
    assert _close(student.state_dict(), _ema_by_hand(rec.weights, 0.9))


def test_resume_keeps_the_ema(tmp_path: Path, data: SyntheticPairs) -> None:
    straight = _student()
    fit(_cfg(steps=5, ema_decay=0.7, out_dir=str(tmp_path / "a")), None, straight, data)
    cfg = _cfg(steps=5, ema_decay=0.7, out_dir=str(tmp_path / "b"))
    fit(cfg, None, _student(), data, callbacks=[Recorder(cancel_at=2)])
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["loop"]["step"] == 2
    resumed = _student(seed=7)
    fit(cfg, None, resumed, data)
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("a", "b"))
    assert _close(a["ema"], b["ema"]) and _close(a["model"], b["model"])
    assert _close(resumed.state_dict(), a["ema"])


def test_resume_without_an_ema_starts_it_from_the_resumed_weights(tmp_path: Path, data: SyntheticPairs) -> None:
    fit(_cfg(steps=2, out_dir=str(tmp_path)), None, _student(), data)
    w2 = torch.load(tmp_path / "last.pt", weights_only=True)
    assert "ema" not in w2
    student = _student()
    rec = WeightRecorder(student)
    fit(_cfg(steps=4, ema_decay=0.5, out_dir=str(tmp_path)), None, student, data, callbacks=[rec])
    expected = _ema_by_hand([w2["model"], *rec.weights[1:]], 0.5)  # rec.weights[0] is the unused fresh init
    assert _close(torch.load(tmp_path / "last.pt", weights_only=True)["ema"], expected)


def test_resume_from_a_last_pt_written_the_old_way(tmp_path: Path, data: SyntheticPairs) -> None:
    """A last.pt as the code before sharpkd.training.state wrote it (the dict built literally), resumed exactly."""
    straight = _student()
    fit(_cfg(steps=5, out_dir=str(tmp_path / "a")), None, straight, data)
    fit(_cfg(steps=5, out_dir=str(tmp_path / "b")), None, _student(), data, callbacks=[Recorder(cancel_at=3)])
    new = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    old = {
        "format": "sharpkd-1",
        "kind": new["kind"],
        "config": new["config"],
        "model": new["model"],
        "meta": new["meta"],
        "optimizer": new["optimizer"],
        "loss": new["loss"],
        "loop": {"step": 3, "best_psnr": -float("inf"), "history": [], "lr_scale": 1.0, "stale": 0},
        "rng": new["rng"],
    }
    assert set(old) == set(new)  # the new writer has not grown keys this test would miss
    torch.save(old, tmp_path / "b" / "last.pt")
    resumed, rec = _student(seed=5), Recorder()
    result = fit(_cfg(steps=5, out_dir=str(tmp_path / "b")), None, resumed, data, callbacks=[rec])
    assert result.steps == 5 and [s["step"] for s in rec.steps] == [4, 5]
    assert _close(resumed.state_dict(), straight.state_dict())


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(steps=0), r"TrainConfig.steps must be >= 1, got 0"),
        (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
        (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\), got 1.0"),
        (dict(ema_decay=-0.1), r"ema_decay must be in \[0, 1\)"),
        (dict(lr=-1e-3), r"lr must be >= 0"),
        (dict(amp="fp16"), r"amp must be one of \('auto', 'bf16', 'off'\), got 'fp16'"),
        (dict(losses="l1=1,l9=2"), r"unknown loss terms \['l9'\]"),
    ],
)
def test_train_config_rejects_bad_values(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_feature_distillation_without_teacher_raises(data: SyntheticPairs) -> None:
    with pytest.raises(ValueError, match="include feature distillation but no teacher was given"):
        fit(_cfg(losses="l1=1,feat=0.1"), None, build_model("rt", width=8), data)
