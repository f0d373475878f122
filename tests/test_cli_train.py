"""sharpkd.cli.train: train-teacher / distill flags take their defaults from TrainConfig; --ema reaches fit()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd.checkpoint import load_checkpoint
from sharpkd.cli import build_parser, main
from sharpkd.cli.train import DISTILL_LOSSES
from sharpkd.training.loop import TrainConfig


@pytest.mark.parametrize("command", ["train-teacher", "distill"])
def test_defaults_are_train_configs(command: str) -> None:
    args = build_parser().parse_args([command, "--out", "runs/x"])
    d = TrainConfig()
    got = (args.steps, args.batch_size, args.lr, args.warmup, args.val_every, args.early_stop, args.ema, args.seed)
    assert got == (d.steps, d.batch_size, d.lr, d.warmup_steps, d.val_every, d.early_stop, d.ema_decay, d.seed)
    assert (args.max_minutes, args.device, args.vgg_weights, args.plateau) == (d.max_minutes, d.device, None, False)
    assert args.losses == (d.losses if command == "train-teacher" else DISTILL_LOSSES)
    assert build_parser().parse_args([command, "--out", "x", "--ema", "0.999"]).ema == 0.999


def test_train_teacher_with_ema(tmp_path: Path, photo: np.ndarray) -> None:
    (tmp_path / "photos").mkdir()
    Image.fromarray(photo[:48, :64]).save(tmp_path / "photos" / "a.png")
    out = tmp_path / "run"
    photos = str(tmp_path / "photos")
    tiny = "--set width=8 --set enc_blocks=[1] --set dec_blocks=[1] --set middle_blocks=1".split()
    run = "--patch-size 16 --steps 2 --batch-size 2 --val-every 2 --warmup 1 --val-max-side 32 --device cpu".split()
    argv = ["train-teacher", "--data", photos, "--val", photos, *run, *tiny, "--ema", "0.5", "--out", str(out)]
    assert main(argv) == 0
    last = torch.load(out / "last.pt", weights_only=True)
    final, meta = load_checkpoint(out / "final.pt")
    assert meta["steps"] == 2 and last["meta"]["train"]["ema_decay"] == 0.5
    assert all(torch.equal(final.state_dict()[k], v) for k, v in last["ema"].items())  # final.pt holds the EMA
    assert any(not torch.equal(last["model"][k], v) for k, v in last["ema"].items())
    assert main([*argv[:-4], "--ema", "1.5", "--out", str(tmp_path / "bad")]) == 2  # rejected, not clamped


@pytest.mark.parametrize(("command", "kind"), [("train-teacher", "teacher"), ("distill", "student")])
def test_model_help_names_every_registered_preset(command: str, kind: str) -> None:
    from sharpkd.models import list_models

    sub = next(a for a in build_parser()._actions if a.dest == "command" or getattr(a, "choices", None))
    action = next(a for a in sub.choices[command]._actions if a.dest == "model")
    assert all(name in action.help for name in list_models(kind)), action.help


def _photos_and_teacher(tmp_path: Path, photo: np.ndarray) -> tuple[str, Path]:
    """A folder holding one 64x64 photo, and a tiny NAFNet teacher's checkpoint."""
    from sharpkd.checkpoint import save_checkpoint
    from sharpkd.models import build_model

    (tmp_path / "photos").mkdir()
    Image.fromarray(photo[:64, :64]).save(tmp_path / "photos" / "a.png")
    torch.manual_seed(0)
    teacher = build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)
    return str(tmp_path / "photos"), save_checkpoint(tmp_path / "teacher.pt", teacher, meta={"preset": "nafnet"})


def test_distill_with_a_teacher_pool_and_feature_kd(tmp_path: Path, photo: np.ndarray) -> None:
    """A pool holds the teacher's outputs only: with ``feat`` the teacher reruns on the pooled inputs, so feature
    distillation trains on the very crops of the pool (the same data as the pool's output-KD twin)."""
    photos, teacher_file = _photos_and_teacher(tmp_path, photo)
    run = "--model rt --set width=4 --patch-size 16 --steps 3 --batch-size 2 --val-every 3 --warmup 1".split()
    pool = ["--cache-teacher", "6", "--cache-file", str(tmp_path / "pool.pt")]
    common = ["distill", "--teacher", str(teacher_file), "--data", photos, "--val", photos, "--val-max-side", "32"]
    argv = [*common, *run, *pool, "--device", "cpu", "--losses", "l1=1,kd=1,feat=1", "--out", str(tmp_path / "f")]
    assert main(argv) == 0
    last = torch.load(tmp_path / "f" / "last.pt", weights_only=True)
    assert last["loop"]["step"] == 3
    adapter = last["loss"]["adapter.weight"]  # the feature adapter (student width 4 -> teacher width 8) was built
    assert adapter.shape == (8, 4, 1, 1)
    assert (tmp_path / "pool.pt").exists()  # the pool was built and saved as without feat


def test_init_continues_the_checkpoints_own_architecture(tmp_path: Path, photo: np.ndarray, capsys) -> None:
    """``--init`` without ``--model`` continues the checkpoint as it is (preset and config); a ``--model`` that names
    another preset, or a checkpoint of the other kind, is a one-line error instead of a state-dict dump."""
    from sharpkd.checkpoint import save_checkpoint
    from sharpkd.models import build_model

    (tmp_path / "photos").mkdir()
    Image.fromarray(photo[:64, :64]).save(tmp_path / "photos" / "a.png")
    photos = str(tmp_path / "photos")
    torch.manual_seed(0)
    start = build_model("rtrep", width=6)  # not the preset's default width: the stored config must be used
    init = save_checkpoint(tmp_path / "start.pt", start, meta={"preset": "rtrep"})
    teacher = build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)
    teacher_file = save_checkpoint(tmp_path / "teacher.pt", teacher, meta={"preset": "nafnet"})
    run = "--patch-size 16 --steps 2 --batch-size 2 --val-every 2 --warmup 1 --val-max-side 32 --device cpu".split()
    common = ["distill", "--teacher", str(teacher_file), "--data", photos, "--val", photos, *run, "--losses", "l1=1"]
    assert main([*common, "--init", str(init), "--out", str(tmp_path / "a")]) == 0
    assert "rtrep: " in capsys.readouterr().out
    final, meta = load_checkpoint(tmp_path / "a" / "final.pt")
    assert meta["preset"] == "rtrep" and final.cfg.width == 6 and meta["init"]["from"] == str(init)
    assert main([*common, "--init", str(init), "--model", "rt", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the first run's progress bar
    assert err.endswith(
        "holds a 'rtrep' student, not --model 'rt': drop --model to continue it as it is, or pass --model rtrep"
    )
    assert err.startswith("sharpkd: error: --init ") and not (tmp_path / "b" / "final.pt").exists()
    assert main([*common, "--init", str(teacher_file), "--out", str(tmp_path / "c")]) == 2
    assert "holds a teacher; distill trains a student" in capsys.readouterr().err


def test_distill_qat_runs_and_refuses_students_it_cannot_round_before_any_work(
    tmp_path: Path, photo: np.ndarray, capsys
) -> None:
    photos, teacher_file = _photos_and_teacher(tmp_path, photo)
    run = "--patch-size 16 --steps 2 --batch-size 2 --val-every 2 --warmup 1 --val-max-side 32 --device cpu".split()
    pool = ["--cache-teacher", "4", "--cache-file", str(tmp_path / "pool.pt")]
    common = ["distill", "--teacher", str(teacher_file), "--data", photos, "--val", photos, *run, *pool, "--qat"]
    assert main([*common, "--model", "rtrep", "--set", "width=4", "--out", str(tmp_path / "q")]) == 0
    last = torch.load(tmp_path / "q" / "last.pt", weights_only=True)
    assert last["meta"]["train"]["qat"] is True and last["loop"]["step"] == 2
    (tmp_path / "pool.pt").unlink()
    assert main([*common, "--model", "rt", "--out", str(tmp_path / "r")]) == 2
    assert "needs a student built of RepConv only" in capsys.readouterr().err
    assert not (tmp_path / "pool.pt").exists()  # refused before the pool was built
