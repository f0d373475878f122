"""Datasets and uint8 <-> tensor conversion: shapes, ranges, determinism, folder scanning and its failure modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd.data import (
    EvalImages,
    PairedFolder,
    SyntheticPairs,
    degrade_image,
    find_images,
    sample_images,
    to_tensor,
    to_uint8,
)
from sharpkd.degrade import CODEC_PRESETS, PRESETS, gaussian_blur
from sharpkd.errors import DatasetError
from sharpkd.images import IMAGE_SUFFIXES, is_image_path


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image (JPEG-friendly) as (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (3 + c) + c) * np.cos(yy / (4 + c)) for c in range(3)], axis=2) * 100 + 128
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _find(patch: np.ndarray, img: np.ndarray) -> tuple[int, int, bool, bool] | None:
    """Where ``patch`` occurs in ``img``, allowing horizontal/vertical flips: (top, left, hflip, vflip)."""
    P = patch.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(img, (P, P, 3))[:, :, 0]  # (H-P+1, W-P+1, P, P, 3)
    for hflip in (False, True):
        for vflip in (False, True):
            p = patch[:, ::-1] if hflip else patch
            p = p[::-1] if vflip else p
            hits = np.argwhere((windows == p).all(axis=(2, 3, 4)))
            if len(hits):
                return int(hits[0][0]), int(hits[0][1]), hflip, vflip
    return None


# -- to_tensor / to_uint8 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (16, 9, 3)])
def test_to_tensor_to_uint8_round_trip(shape: tuple[int, int, int]) -> None:
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    t = to_tensor(img)
    assert t.shape == (1, 3, shape[0], shape[1]) and t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    assert float(t[0, 1, 0, 0]) == pytest.approx(img[0, 0, 1] / 255.0)
    back = to_uint8(t)
    assert back.dtype == np.uint8 and np.array_equal(back, img)
    assert np.array_equal(to_uint8(t[0]), img)


def test_to_tensor_accepts_non_contiguous_views() -> None:
    img = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(to_tensor(img[:, ::-1])), img[:, ::-1])


def test_to_uint8_clamps_and_rounds() -> None:
    t = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.49 / 255, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert to_uint8(t)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]  # round half to even at 0.5


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((1, 4, 4, 3), np.uint8),
        [[0, 0, 0]],
    ],
    ids=["gray", "rgba", "float", "4d", "list"],
)
def test_to_tensor_rejects_non_rgb_uint8(bad: object) -> None:
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 array, got"):
        to_tensor(bad)


def test_to_uint8_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match="one image, got batch of 2"):
        to_uint8(torch.zeros(2, 3, 4, 4))


def test_degrade_image_is_uint8_and_seeded() -> None:
    img = _image(24, 30)
    a = degrade_image(img, "motion9", seed=3)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, degrade_image(img, "motion9", seed=3))
    assert not np.array_equal(a, degrade_image(img, "motion9", seed=4))


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_codec_presets_degrade_uint8_images(name: str) -> None:
    pytest.importorskip("av")
    img = _image(24, 30)
    a = degrade_image(img, name, seed=3)
    assert a.shape == img.shape and a.dtype == np.uint8 and not np.array_equal(a, img)
    assert np.array_equal(a, degrade_image(img, name, seed=3))


def test_synthetic_pairs_accept_every_preset_and_draw_codecs_in_the_presets_mix() -> None:
    pytest.importorskip("av")
    for name in (*PRESETS, "presets"):
        lq, gt = SyntheticPairs([_image(40, 40)], patch_size=16, degradation=name, repeats=1, seed=0)[0]
        assert lq.shape == gt.shape == (3, 16, 16)


# -- sample images ------------------------------------------------------------------------------------------------


def test_sample_images_are_rgb_uint8() -> None:
    pytest.importorskip("skimage")
    samples = sample_images(("astronaut", "camera"))
    assert list(samples) == ["astronaut", "camera"]
    for img in samples.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.flags.c_contiguous
    assert samples["astronaut"].shape == (512, 512, 3)
    cam = samples["camera"]  # grayscale, expanded
    assert np.array_equal(cam[..., 0], cam[..., 1]) and np.array_equal(cam[..., 1], cam[..., 2])


def test_sample_images_unknown_name() -> None:
    pytest.importorskip("skimage")
    with pytest.raises(DatasetError, match="unknown sample image 'no_such_photo'; known: astronaut"):
        sample_images(("no_such_photo",))


# -- SyntheticPairs -----------------------------------------------------------------------------------------------


@pytest.fixture
def pairs() -> SyntheticPairs:
    return SyntheticPairs([_image(60, 70, 0), _image(48, 80, 1)], patch_size=16, degradation="mix", repeats=3, seed=7)


def test_synthetic_pairs_shapes_and_ranges(pairs: SyntheticPairs) -> None:
    assert len(pairs) == 6
    for i in range(len(pairs)):
        lq, gt = pairs[i]
        assert lq.shape == gt.shape == (3, 16, 16)
        assert lq.dtype == gt.dtype == torch.float32
        assert float(lq.min()) >= 0.0 and float(lq.max()) <= 1.0
        assert float(gt.min()) >= 0.0 and float(gt.max()) <= 1.0
        assert float((lq - gt).abs().mean()) > 1e-3


def test_synthetic_pairs_index_range_and_iteration(pairs: SyntheticPairs) -> None:
    assert all(torch.equal(a, b) for a, b in zip(pairs[-1], pairs[5]))
    with pytest.raises(IndexError, match="index 6 out of range for 6 pairs"):
        pairs[6]
    assert len(list(pairs)) == 6  # plain iteration stops


def test_synthetic_pairs_are_deterministic_per_seed_epoch_index(pairs: SyntheticPairs) -> None:
    twin = SyntheticPairs(pairs.images, patch_size=16, degradation="mix", repeats=3, seed=7)
    for i in (0, 5):
        assert all(torch.equal(a, b) for a, b in zip(pairs[i], twin[i]))
    lq0, gt0 = pairs[0]
    assert not torch.equal(gt0, pairs[2][1])  # another index of the same image: another crop
    pairs.set_epoch(1)
    lq1, gt1 = pairs[0]
    assert not (torch.equal(lq0, lq1) and torch.equal(gt0, gt1))
    pairs.set_epoch(0)
    assert torch.equal(pairs[0][0], lq0)
    other_seed = SyntheticPairs(pairs.images, patch_size=16, degradation="mix", repeats=3, seed=8)
    assert not torch.equal(other_seed[0][1], gt0)


def test_synthetic_gt_is_a_crop_and_lq_is_its_blur_with_real_context() -> None:
    img = _image(64, 72, 2)
    ds = SyntheticPairs([img], patch_size=16, degradation="gauss1.5", repeats=4, seed=0)
    blurred = to_uint8(gaussian_blur(to_tensor(img), 1.5))  # whole-image blur: no padding near the crop
    for i in range(4):
        lq, gt = ds[i]
        where = _find(to_uint8(gt), img)
        assert where is not None, "gt is not a (flipped) crop of the source image"
        top, left, hflip, vflip = where
        ref = blurred[top : top + 16, left : left + 16]
        ref = ref[:, ::-1] if hflip else ref
        ref = ref[::-1] if vflip else ref
        # the degradation margin (16 px >= blur radius 5) means the crop border saw real pixels, not padding
        assert np.abs(to_uint8(lq).astype(int) - ref.astype(int)).max() <= 1


def test_synthetic_pairs_patch_equal_to_image_side() -> None:
    ds = SyntheticPairs([_image(16, 20)], patch_size=16, degradation="downup2", repeats=2)
    lq, gt = ds[1]
    assert lq.shape == gt.shape == (3, 16, 16)


def test_synthetic_pairs_drops_small_images_with_their_names() -> None:
    ds = SyntheticPairs([_image(8, 8), _image(20, 20, 1)], patch_size=16, names=["small", "big"], repeats=1)
    assert len(ds.images) == 1 and ds.names == ["big"]
    assert ds.images[0].shape == (20, 20, 3)


def test_synthetic_pairs_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown degradation 'sharp'"):
        SyntheticPairs([_image(20, 20)], patch_size=16, degradation="sharp")
    with pytest.raises(ValueError, match="patch_size must be >= 8, got 4"):
        SyntheticPairs([_image(20, 20)], patch_size=4)
    with pytest.raises(DatasetError, match="no image is at least 32 px"):
        SyntheticPairs([_image(20, 20)], patch_size=32)


def test_from_folder_recurses_and_counts_skipped(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", _image(40, 40, 0))
    _save(tmp_path / "sub" / "b.JPG", _image(40, 48, 1))
    _save(tmp_path / "sub" / "deeper" / "c.bmp", _image(36, 40, 2))
    _save(tmp_path / "d.webp", _image(40, 40, 3))
    _save(tmp_path / "tiny.png", _image(10, 40, 4))  # shorter side under the patch size
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = SyntheticPairs.from_folder(tmp_path, patch_size=32, degradation="gauss1.5", repeats=1)
    assert len(ds.images) == 4
    assert ds.skipped == 2
    assert sorted(Path(n).name for n in ds.names) == ["a.png", "b.JPG", "c.bmp", "d.webp"]
    assert ds[0][0].shape == (3, 32, 32)
    assert len(find_images(tmp_path)) == 6  # the text file is not listed


def test_find_images_takes_every_image_suffix(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for i, suffix in enumerate(IMAGE_SUFFIXES):  # every other one upper-case, in a subfolder
        path = tmp_path / "sub" / f"{i}{suffix.upper()}" if i % 2 else tmp_path / f"{i}{suffix}"
        Image.new("RGB", (40, 40), (30 * i, 0, 0)).save(path, format=Image.registered_extensions()[suffix])
    (tmp_path / "clip.mp4").write_bytes(b"not an image")
    found = find_images(tmp_path)
    assert sorted(p.suffix.lower() for p in found) == sorted(IMAGE_SUFFIXES)
    assert all(is_image_path(p) for p in found)
    ds = SyntheticPairs.from_folder(tmp_path, patch_size=32, repeats=1)  # training reads .gif and .tif(f) too
    assert len(ds.images) == len(IMAGE_SUFFIXES) and ds.skipped == 0


def test_from_folder_with_no_usable_image(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"none of the 1 images .* could be used \(1 skipped\)"):
        SyntheticPairs.from_folder(tmp_path, patch_size=16)


def test_from_folder_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no images"):
        SyntheticPairs.from_folder(tmp_path)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        SyntheticPairs.from_folder(tmp_path / "nope")


# -- PairedFolder -------------------------------------------------------------------------------------------------


def _pair(d: Path, name: str, seed: int, h: int = 24, w: int = 32) -> None:
    sharp = _image(h, w, seed)
    _save(d / "sharp" / name, sharp)
    _save(d / "blur" / name, (sharp // 2).astype(np.uint8))


def test_paired_folder_gopro_layout(tmp_path: Path) -> None:
    for seq, n in (("GOPR0001", 2), ("GOPR0002", 1)):
        for i in range(n):
            _pair(tmp_path / "train" / seq, f"{i:06d}.png", seed=10 * n + i)
    _save(tmp_path / "train" / "GOPR0002" / "sharp" / "lonely.png", _image(24, 32))
    _pair(tmp_path / "test" / "GOPR0003", "000000.png", seed=99)
    ds = PairedFolder(tmp_path, split="train", patch_size=16, seed=0)
    assert len(ds) == 3 and ds.unpaired == 1
    lq, gt = ds[0]
    assert lq.shape == gt.shape == (3, 16, 16)
    # aligned crops: blur was made as sharp // 2
    assert np.array_equal(to_uint8(lq), to_uint8(gt) // 2)
    assert all(torch.equal(a, b) for a, b in zip(ds[0], PairedFolder(tmp_path, patch_size=16, seed=0)[0]))
    assert len(PairedFolder(tmp_path, split="test")) == 1


def test_paired_folder_flat_layout_whole_images(tmp_path: Path) -> None:
    _pair(tmp_path, "x.png", 1, h=20, w=28)
    _pair(tmp_path, "y.png", 2, h=20, w=28)
    _save(tmp_path / "blur" / "extra.png", _image(20, 28))
    ds = PairedFolder(tmp_path, patch_size=None)
    assert len(ds) == 2 and ds.unpaired == 1
    assert [p[0].name for p in ds.pairs] == ["x.png", "y.png"]
    lq, gt = ds[1]
    assert lq.shape == (3, 20, 28)


def test_paired_folder_failures(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no blur/ and sharp/ folders"):
        PairedFolder(tmp_path / "missing")
    _save(tmp_path / "blur" / "a.png", _image(20, 20))
    _save(tmp_path / "sharp" / "b.png", _image(20, 20))
    with pytest.raises(DatasetError, match="no blur/sharp file pairs"):
        PairedFolder(tmp_path)
    lone = tmp_path / "lone"
    _save(lone / "blur" / "a.png", _image(20, 20))
    with pytest.raises(DatasetError, match="has no sibling sharp/ folder"):
        PairedFolder(lone)


def test_paired_folder_size_mismatch(tmp_path: Path) -> None:
    _save(tmp_path / "blur" / "a.png", _image(20, 20))
    _save(tmp_path / "sharp" / "a.png", _image(20, 24))
    with pytest.raises(DatasetError, match=r"\(20, 20, 3\) but .* is \(20, 24, 3\)"):
        PairedFolder(tmp_path)[0]


# -- EvalImages ---------------------------------------------------------------------------------------------------


def test_eval_images_max_side_and_pairs() -> None:
    images = {"wide": _image(40, 100), "small": _image(20, 30, 1)}
    ev = EvalImages(images, max_side=50)
    assert ev.images["wide"].shape == (20, 50, 3)
    assert ev.images["small"] is images["small"]  # under the limit: untouched
    # area downscale by exactly 2 averages 2x2 blocks
    ref = images["wide"].astype(float).reshape(20, 2, 50, 2, 3).mean(axis=(1, 3))
    assert np.abs(ev.images["wide"].astype(float) - ref).max() <= 0.5 + 1e-6
    pairs = ev.pairs("motion9", seed=1)
    assert [p[0] for p in pairs] == ["wide", "small"]
    name, lq, gt = pairs[0]
    assert lq.shape == gt.shape == (1, 3, 20, 50)
    assert torch.equal(lq, ev.pairs("motion9", seed=1)[0][1])


def test_eval_images_from_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no evaluation images"):
        EvalImages({})
    _save(tmp_path / "one.png", _image(30, 40))
    ev = EvalImages.from_folder(tmp_path, max_side=20)
    assert list(ev.images) == ["one"] and ev.images["one"].shape == (15, 20, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no evaluation images"):
        EvalImages.from_folder(tmp_path / "empty")


def test_codec_crops_are_degraded_inside_a_large_context(monkeypatch) -> None:
    import sharpkd.data as data_mod

    seen = []
    real = data_mod.degrade

    def spy(x, name, generator=None, strength=1.0):
        seen.append(tuple(x.shape[-2:]))
        return real(x, "gauss1.5", generator)  # stand-in: only the region size is under test

    monkeypatch.setattr(data_mod, "degrade", spy)
    img = np.random.default_rng(0).integers(0, 256, (420, 400, 3), dtype=np.uint8)
    ds = SyntheticPairs([img], patch_size=32, degradation="h264")
    lq, gt = ds[0]
    assert lq.shape == gt.shape == (3, 32, 32)
    # 32 px crop + 144 px of context each side (clamped to the image), against 16 px for a local degradation
    assert seen[-1] == (32 + 2 * 144, 32 + 2 * 144)
    SyntheticPairs([img], patch_size=32, degradation="gauss1.5")[0]
    assert seen[-1] == (64, 64)
