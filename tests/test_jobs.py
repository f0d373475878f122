"""sharpkd.app.jobs: background distillation runs that the app's Train page starts, polls, cancels and reads."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
import torch.nn as nn

import sharpkd.app.jobs
from sharpkd.app.jobs import JobConfig, JobRegistry, TrainingJob, loss_spec
from sharpkd.checkpoint import load_checkpoint, save_checkpoint
from sharpkd.errors import CheckpointError, DatasetError
from sharpkd.models import build_model
from sharpkd.training.loop import TrainConfig

WAIT_S = 300  # generous: the machine may be busy; a healthy tiny run takes a few seconds


def tiny_config(**overrides) -> JobConfig:
    cfg = dict(
        init=None,
        student="rt",
        steps=4,
        batch_size=2,
        patch_size=16,
        val_every=2,
        val_images=("astronaut",),
        val_max_side=32,
        overrides={"width": 4},
        losses="l1=1,kd=0.5",
    )
    return JobConfig(**(cfg | overrides))


@pytest.fixture
def teacher() -> nn.Module:
    return build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1).eval()


@pytest.fixture(autouse=True)
def temporary_folders(monkeypatch, tmp_path):
    """Jobs given no checkpoint_dir write to a fresh temporary folder: keep those inside pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture(autouse=True)
def small_samples(monkeypatch, photo):
    """Built-in photos replaced by small crops, so validation takes milliseconds."""
    monkeypatch.setattr(sharpkd.app.jobs, "sample_images", lambda names=("a", "b"): {n: photo for n in names})


@pytest.mark.parametrize(
    ("weights", "spec"),
    [
        ({"l1": 1.0, "kd": 0.5, "feat": 0.0}, "l1=1,kd=0.5"),
        ({"ssim": 0.25, "edge": 1e-3}, "ssim=0.25,edge=0.001"),
    ],
)
def test_loss_spec(weights, spec):
    assert loss_spec(weights) == spec


@pytest.mark.parametrize(
    ("weights", "match"),
    [({"l1": 0.0, "kd": 0.0}, "at least one"), ({"l1": -1.0}, ">= 0"), ({"l2": 1.0}, "unknown loss")],
)
def test_loss_spec_rejects(weights, match):
    with pytest.raises(ValueError, match=match):
        loss_spec(weights)


def test_job_trains_and_reports(teacher, photo, tmp_path):
    initial = build_model("rt", width=4).state_dict()
    job = TrainingJob(tiny_config(), teacher, [photo], name="mine", checkpoint_dir=tmp_path / "out")
    assert job.status == "pending" and job.checkpoint_path is None

    assert job.start() is job
    assert job.wait(WAIT_S), "the tiny run did not finish"
    snap = job.snapshot()
    assert snap.status == "done" and snap.error is None
    assert job.progress == (4, 4) and snap.fraction == 1.0
    assert [s for s, _ in snap.losses] == [1, 2, 3, 4]
    assert all(np.isfinite(loss) for _, loss in snap.losses)
    assert [v["step"] for v in snap.val] == [0, 2, 4]  # step 0 is the untrained student
    assert set(snap.val[0]) == {"step", "psnr", "ssim", "input_psnr", "input_ssim"}

    assert job.checkpoint_path == tmp_path / "out" / "mine.pt"
    model, meta = load_checkpoint(job.checkpoint_path)
    assert model.kind == "student" and model.cfg.width == 4 and model.cfg.luma
    assert meta["steps"] == 4 and meta["losses"] == "l1=1,kd=0.5"
    assert job.checkpoint_bytes == job.checkpoint_path.read_bytes()
    trained = model.state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial), "training changed no weight"

    sharpener = job.sharpener()
    assert sharpener.name == "mine" and sharpener.meta["checkpoint"] == str(job.checkpoint_path)
    out = sharpener.sharpen(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    with pytest.raises(RuntimeError, match="already started"):
        job.start()


def test_job_without_teacher_trains_on_ground_truth(photo):
    job = TrainingJob(tiny_config(losses="l1=1", student="conv4", overrides={"width": 4}), None, [photo]).start()
    assert job.wait(WAIT_S)
    assert job.status == "done" and job.sharpener().kind == "student"


def test_job_can_be_cancelled(teacher, photo):
    job = TrainingJob(tiny_config(steps=100_000, val_every=0), teacher, [photo]).start()
    job.cancel()
    assert job.wait(WAIT_S)
    snap = job.snapshot()
    assert snap.status == "cancelled" and 1 <= snap.step < 100_000
    assert job.checkpoint_path is not None  # what was trained so far is kept


class BrokenTeacher(nn.Module):
    feature_channels = 8

    def forward(self, x, return_features=False):
        raise RuntimeError("teacher exploded")


def test_job_failure_is_a_message_not_a_crash(photo):
    job = TrainingJob(tiny_config(), BrokenTeacher(), [photo]).start()
    assert job.wait(WAIT_S)
    assert job.status == "failed"
    assert job.error == "RuntimeError: teacher exploded"
    assert job.checkpoint_path is None and job.checkpoint_bytes is None
    with pytest.raises(RuntimeError, match="no trained student"):
        job.sharpener()


@pytest.mark.parametrize(
    ("cfg", "teacher", "images", "error", "match"),
    [
        (tiny_config(), None, None, ValueError, "no teacher"),
        (tiny_config(student="nafnet"), None, None, ValueError, "unknown student"),
        (tiny_config(losses="l1=0"), None, None, ValueError, "positive"),
        (tiny_config(degradation="smudge"), "teacher", None, ValueError, "unknown degradation"),
        (tiny_config(steps=0), "teacher", None, ValueError, "steps"),
        (tiny_config(patch_size=64), "teacher", [np.zeros((32, 32, 3), np.uint8)], DatasetError, "at least 64"),
    ],
)
def test_job_rejects_bad_settings_up_front(request, cfg, teacher, images, error, match):
    teacher = request.getfixturevalue("teacher") if teacher == "teacher" else None
    with pytest.raises(error, match=match):
        TrainingJob(cfg, teacher, images)


def test_job_uses_the_built_in_photos_by_default(teacher):
    job = TrainingJob(tiny_config(), teacher)
    assert job.data.names == ["a", "b"]  # the (patched) built-in sample photos
    assert job.name == "my-rt"


def test_job_leaves_the_global_rng_alone(teacher, photo):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    job = TrainingJob(tiny_config(seed=3), teacher, [photo])
    assert torch.equal(torch.get_rng_state(), before)
    # the student's init comes from the job's seed, whatever the caller's RNG is doing
    torch.manual_seed(999)
    again = TrainingJob(tiny_config(seed=3), teacher, [photo])
    other = TrainingJob(tiny_config(seed=4), teacher, [photo])
    weights, same, different = (j.student.state_dict() for j in (job, again, other))
    assert all(torch.equal(weights[k], same[k]) for k in weights)
    assert any(not torch.equal(weights[k], different[k]) for k in weights)


def test_job_training_settings_come_from_its_config(teacher, photo):
    job = TrainingJob(tiny_config(), teacher, [photo], name="mine")
    train = job.train_cfg
    assert (train.steps, train.batch_size, train.val_every, train.losses) == (4, 2, 2, "l1=1,kd=0.5")
    assert train.warmup_steps == 1  # warm-up capped at a fifth of the steps (at least 1)
    assert (train.out_dir, train.device, train.resume) == (None, "cpu", False)
    assert train.meta == {"job": "mine", "preset": "rt", "degradation": "presets"}
    # what a job does not set is TrainConfig's default
    assert (train.grad_clip, train.ema_decay, train.weight_decay) == (
        TrainConfig().grad_clip,
        TrainConfig().ema_decay,
        TrainConfig().weight_decay,
    )
    assert JobConfig().seed == TrainConfig().seed


def test_job_fine_tunes_from_init_weights(teacher, photo, tmp_path):
    torch.manual_seed(5)
    start = build_model("rt", width=4)
    path = save_checkpoint(tmp_path / "start.pt", start, meta={"preset": "rt"})
    # student and overrides are ignored: the architecture comes from the checkpoint
    job = TrainingJob(tiny_config(init=str(path), student="conv4", overrides={}), teacher, [photo])
    assert job.name == "my-start" and job.train_cfg.meta["init"] == str(path) and job.train_cfg.meta["preset"] == "rt"
    initial = start.state_dict()
    assert all(torch.equal(job.student.state_dict()[k], initial[k]) for k in initial)
    assert job.start().wait(WAIT_S) and job.status == "done", job.error
    trained = load_checkpoint(job.checkpoint_path)[0].state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial), "fine-tuning changed no weight"
    assert job.data is None and job.teacher is None  # a finished job keeps only its result


def test_job_init_must_be_a_student_checkpoint(teacher, tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", teacher)
    with pytest.raises(ValueError, match="student checkpoint"):
        TrainingJob(tiny_config(init=str(path)), teacher)
    with pytest.raises(CheckpointError, match="not found"):
        TrainingJob(tiny_config(init=str(tmp_path / "missing.pt")), teacher)


def test_default_config_fine_tunes_the_shipped_student():
    assert JobConfig().init == "student"


def test_registry_starts_finds_and_bounds_jobs(teacher, photo):
    registry = JobRegistry(max_jobs=2, max_running=1)
    first = registry.start(TrainingJob(tiny_config(steps=100_000, val_every=0), teacher, [photo], name="a"))
    assert first.status == "running" and registry.get(first.id) is first
    assert registry.get("nope") is None and registry.get(None) is None
    waiting = TrainingJob(tiny_config(), teacher, [photo], name="b")
    with pytest.raises(RuntimeError, match="already going"):
        registry.start(waiting)
    assert waiting.status == "pending" and registry.get(waiting.id) is None
    first.cancel()
    assert first.wait(WAIT_S)

    second = registry.start(waiting)
    assert second.wait(WAIT_S)
    third = registry.start(TrainingJob(tiny_config(), teacher, [photo], name="c"))
    assert third.wait(WAIT_S)
    assert registry.jobs() == [third, second] and len(registry) == 2  # the oldest finished job is forgotten
    assert registry.started == 3
    assert first.checkpoint_path.exists()  # ... but its checkpoint file stays
    assert len({first.id, second.id, third.id}) == 3


def test_registry_rejects_bad_limits():
    with pytest.raises(ValueError, match=">= 1"):
        JobRegistry(max_jobs=0)
