"""The GPU teacher recipe (docs/gpu.md) at a tiny size on CPU: ``sharpkd pack-data`` (sharpkd.training.pack), the
DataLoader workers and channels_last in fit(), and train-teacher with --amp bf16 --channels-last --workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.JpegImagePlugin import get_sampling
from synthetic import wave_frame

from sharpkd.checkpoint import load_checkpoint
from sharpkd.cli import main
from sharpkd.data import EvalImages, SyntheticPairs, find_images
from sharpkd.errors import DatasetError
from sharpkd.models import build_model
from sharpkd.training.distributed import rank_batches
from sharpkd.training.loop import TrainConfig, fit
from sharpkd.training.pack import PackConfig, pack_images

SIZES = {"a/wide.png": (60, 150), "a/square.png": (100, 100), "b/tall.png": (130, 70), "b/tiny.png": (20, 20)}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Four synthetic photos in two sub-folders; tiny.png is below every min_side used here."""
    root = tmp_path / "photos"
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(wave_frame(h, w, seed=i)).save(root / name)
    return root


def _all_tiles_bytes(photos: Path, tmp_path: Path) -> int:
    return pack_images(photos, tmp_path / "all", PackConfig(max_bytes=10**9, crop=48, min_side=32)).bytes


def test_pack_tiles_stay_in_budget_and_cover_every_image_first(photos: Path, tmp_path: Path) -> None:
    total = _all_tiles_bytes(photos, tmp_path)  # 3 + 4 + 2 = 9 tiles of 48 px (tall: 70 px wide -> one column)
    cfg = PackConfig(max_bytes=total // 2, crop=48, min_side=32)
    report = pack_images(photos, tmp_path / "half", cfg)
    assert 3 <= len(report.files) < 9 and report.bytes <= cfg.max_bytes
    assert report.bytes == sum(f.stat().st_size for f in report.files)
    assert report.sources == 3 and report.skipped == 1 and report.left_out == 9 - len(report.files)
    stems = {f.name.split("_y")[0] for f in report.files[:3]}
    assert stems == {"wide", "square", "tall"}  # round-robin: one tile of every image before any second one
    assert set(report.per_folder) == {"a", "b"} and (tmp_path / "half" / "pack.json").is_file()
    for f in report.files:
        with Image.open(f) as im:
            assert 32 <= min(im.size) and max(im.size) <= 48
            assert get_sampling(im) == 0  # 4:4:4: the targets keep full-resolution chroma
    ds = SyntheticPairs.from_folder(tmp_path / "half", 32, degradation="gauss1.5")
    assert len(ds.images) == len(report.files) and ds.skipped == 0
    again = pack_images(photos, tmp_path / "again", cfg)
    assert [f.name for f in again.files] == [f.name for f in report.files]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again.files, report.files))


def test_pack_whole_images_at_max_side_validate_identically(photos: Path, tmp_path: Path) -> None:
    cfg = PackConfig(max_bytes=10**8, crop=None, max_side=40, min_side=8, fmt="png")
    report = pack_images(photos, tmp_path / "val", cfg)
    assert len(report.files) == 4
    packed, original = EvalImages.from_folder(tmp_path / "val", 40), EvalImages.from_folder(photos, 40)
    assert packed.images.keys() == original.images.keys()
    assert all(np.array_equal(packed.images[k], original.images[k]) for k in original.images)


def test_pack_errors(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no tile fits in 10 bytes"):
        pack_images(photos, tmp_path / "small", PackConfig(max_bytes=10, crop=48, min_side=32))
    with pytest.raises(DatasetError, match="at least 500 px"):
        pack_images(photos, tmp_path / "big", PackConfig(max_bytes=10**6, crop=None, min_side=500))
    pack_images(photos, tmp_path / "once", PackConfig(max_bytes=10**6, crop=48, min_side=32))
    with pytest.raises(DatasetError, match="already holds images"):
        pack_images(photos, tmp_path / "once", PackConfig(max_bytes=10**6, crop=48, min_side=32))
    with pytest.raises(DatasetError, match="not found"):
        pack_images(tmp_path / "missing", tmp_path / "x", PackConfig(max_bytes=10**6))
    for bad in (
        dict(max_bytes=0),
        dict(max_bytes=1, crop=4),
        dict(max_bytes=1, fmt="gif"),
        dict(max_bytes=1, quality=0),
    ):
        with pytest.raises(ValueError, match="PackConfig"):
            PackConfig(**bad)


def test_pack_data_cli(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "packed"
    assert main(["pack-data", str(photos), str(out), "--max-mb", "1", "--crop", "48", "--min-side", "32"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 9 files" in printed and "from 3 images" in printed and "1 images skipped" in printed
    assert len(find_images(out)) == 9
    assert main(["pack-data", str(photos), str(out), "--max-mb", "1"]) == 2  # a second pack into the same folder
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sharpkd: error: ") and "already holds images" in err


def test_workers_give_the_same_batches(photos: Path) -> None:
    data = SyntheticPairs.from_folder(photos, 32, degradation="mix", repeats=3)  # 9 samples: several epochs below

    def expected(step: int) -> list[torch.Tensor]:  # rank_batches' documented stream, written out
        epoch, k = divmod(step, len(data) // 4)
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(7 + epoch))
        data.set_epoch(epoch)
        return [torch.stack(part) for part in zip(*(data[int(i)] for i in perm[k * 4 : (k + 1) * 4]))]

    for start in (0, 5):
        workers = rank_batches(data, 4, 7, 0, 1, start, num_workers=2)
        plain = rank_batches(data, 4, 7, 0, 1, start)
        for step in range(start, start + 6):
            got, same, want = next(workers), next(plain), expected(step)
            assert len(got) == 2 and all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(got, same, want))
        workers.close()  # shuts the worker processes down


def test_fit_channels_last_feeds_nhwc_and_keeps_it(photos: Path) -> None:
    data = SyntheticPairs.from_folder(photos, 32, degradation="gauss1.5")
    model = build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)
    seen = []
    model.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=1, val_every=0, device="cpu", amp="bf16", channels_last=True)
    result = fit(cfg, None, model, data)
    assert result.steps == 2 and seen == [True, True]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig(num_workers=-1)


def test_gpu_recipe_end_to_end_on_cpu(photos: Path, tmp_path: Path) -> None:
    """docs/gpu_teacher.sh's flags at a tiny size: packed data and val, width 32, bf16, channels_last, one worker."""
    train, val, out = tmp_path / "gpu_data" / "train", tmp_path / "gpu_data" / "val", tmp_path / "run"
    assert main(["pack-data", str(photos), str(train), "--max-mb", "1", "--crop", "48", "--min-side", "32"]) == 0
    argv = ["pack-data", str(photos), str(val), "--max-mb", "1", "--crop", "0", "--max-side", "32", "--min-side", "8"]
    assert main([*argv, "--format", "png"]) == 0
    tiny = "--set width=32 --set enc_blocks=[1] --set dec_blocks=[1] --set middle_blocks=1".split()
    run = "--patch-size 32 --steps 2 --batch-size 2 --val-every 1 --warmup 1 --val-max-side 32 --device cpu".split()
    gpu = "--amp bf16 --channels-last --workers 1 --losses psnr=1 --ema 0.9 --max-minutes 8".split()
    argv = ["train-teacher", "--data", str(train), "--val", str(val), *run, *tiny, *gpu, "--out", str(out)]
    assert main(argv) == 0
    last = torch.load(out / "last.pt", weights_only=True)
    train_cfg = last["meta"]["train"]
    assert (train_cfg["amp"], train_cfg["channels_last"], train_cfg["num_workers"]) == ("bf16", True, 1)
    assert last["loop"]["step"] == 2 and last["config"]["width"] == 32
    for name in ("best.pt", "final.pt"):
        model, meta = load_checkpoint(out / name)
        assert model.cfg.width == 32 and all(torch.isfinite(p).all() for p in model.parameters())
        x = torch.rand(1, 3, 32, 32)
        assert model(x).shape == x.shape
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_pack_refuses_colliding_names_small_crops_and_a_file_as_output(tmp_path: Path) -> None:
    from sharpkd.errors import DatasetError
    from sharpkd.training.pack import PackConfig, pack_images

    src = tmp_path / "src"
    src.mkdir()
    img = (np.random.default_rng(0).random((300, 300, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(src / "a.png")
    Image.fromarray(img).save(src / "a.jpg")
    with pytest.raises(DatasetError, match="would pack to the same file names"):
        pack_images(src, tmp_path / "out", PackConfig(max_bytes=10**7))
    (src / "a.jpg").unlink()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        pack_images(src, tmp_path / "file", PackConfig(max_bytes=10**7))
    with pytest.raises(ValueError, match="min_side"):
        PackConfig(max_bytes=10**7, crop=128, min_side=256)
