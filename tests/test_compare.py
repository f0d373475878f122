"""sharpkd.app.compare and sharpkd.app.wipe: the library behind the app's Compare and Benchmark pages."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

import sharpkd
from sharpkd.app.compare import (
    INPUT,
    ORIGINAL,
    compare,
    measure_latency,
    model_label,
    zoom_crop,
)
from sharpkd.app.wipe import wipe_view
from sharpkd.data import degrade_image, to_tensor
from sharpkd.runtime.classical import unsharp_mask


@pytest.fixture
def models(tiny_models_dir) -> dict[str, sharpkd.Sharpener]:
    return {"teacher": sharpkd.load("teacher"), "student": sharpkd.load("student"), "unsharp": sharpkd.load("unsharp")}


def test_compare_with_reference_scores_against_the_original(photo, models):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    result = compare(photo, "gauss1.5", 1.0, models)

    assert list(result.panels) == [ORIGINAL, INPUT, "teacher", "student", "unsharp"]
    assert result.has_reference and result.outputs == ["teacher", "student", "unsharp"]
    for pixels in result.panels.values():
        assert pixels.shape == photo.shape and pixels.dtype == np.uint8
    np.testing.assert_array_equal(result.panels[ORIGINAL], photo)
    np.testing.assert_array_equal(result.panels[INPUT], degrade_image(photo, "gauss1.5", seed=0, strength=1.0))
    np.testing.assert_array_equal(result.panels["unsharp"], unsharp_mask(result.panels[INPUT]))

    assert set(result.scores[ORIGINAL]) == {"sharpness"}
    for name in (INPUT, *result.outputs):
        assert set(result.scores[name]) == {"psnr", "ssim", "sharpness"}
    # PSNR of the degraded input, against scikit-image on the same uint8 pixels.
    expected = skimage_metrics.peak_signal_noise_ratio(photo, result.panels[INPUT], data_range=255)
    assert result.scores[INPUT]["psnr"] == pytest.approx(expected, abs=1e-3)
    ssim_expected = float(sharpkd.ssim(to_tensor(result.panels["student"]), to_tensor(photo)))
    assert result.scores["student"]["ssim"] == pytest.approx(ssim_expected, abs=1e-6)
    # Blur lowers the no-reference sharpness score.
    assert result.scores[INPUT]["sharpness"] < result.scores[ORIGINAL]["sharpness"]

    assert set(result.timings_ms) == {"teacher", "student", "unsharp"}
    assert all(np.isfinite(ms) and ms >= 0 for ms in result.timings_ms.values())


def test_compare_strength_scales_the_degradation(photo, models):
    mild = compare(photo, "gauss1.5", 0.5, {})
    strong = compare(photo, "gauss1.5", 2.0, {})
    assert mild.scores[INPUT]["psnr"] > strong.scores[INPUT]["psnr"]
    assert strong.strength == 2.0 and strong.degradation == "gauss1.5"


def test_compare_already_blurry_has_no_reference(photo, models):
    result = compare(photo, None, 1.7, models)

    assert list(result.panels) == [INPUT, "teacher", "student", "unsharp"]
    assert not result.has_reference
    np.testing.assert_array_equal(result.panels[INPUT], photo)
    assert all(set(s) == {"sharpness"} for s in result.scores.values())
    assert result.strength == 1.0 and result.degradation is None
    table = result.table()
    assert [row["image"] for row in table] == list(result.panels)
    assert all("PSNR (dB)" not in row and "SSIM" not in row for row in table)
    assert table[0]["time (ms)"] is None and table[1]["time (ms)"] is not None


def test_comparison_table_and_png(photo, models):
    result = compare(photo, "downup2", 1.0, {"unsharp": models["unsharp"]})
    rows = {row["image"]: row for row in result.table()}
    assert rows[ORIGINAL]["PSNR (dB)"] is None
    assert rows["unsharp"]["PSNR (dB)"] == round(result.scores["unsharp"]["psnr"], 2)
    decoded = np.asarray(Image.open(io.BytesIO(result.png("unsharp"))))
    np.testing.assert_array_equal(decoded, result.panels["unsharp"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(degradation="blurry"), "unknown degradation"),
        (dict(strength=0.0), "strength must be positive"),
        (dict(image=np.zeros((8, 40, 3), np.uint8)), "at least 16 px"),
        (dict(image=np.zeros((32, 32), np.uint8)), r"\(H, W, 3\) uint8"),
        (dict(image=np.zeros((32, 32, 3), np.float32)), r"\(H, W, 3\) uint8"),
        (dict(models={"input": None}), "reserved"),
    ],
)
def test_compare_rejects_bad_arguments(photo, kwargs, match):
    args = dict(image=photo, degradation="vc", strength=1.0, models={})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        compare(args["image"], args["degradation"], args["strength"], args["models"])


def test_compare_rejects_non_arrays():
    with pytest.raises(TypeError, match="numpy array"):
        compare(torch.zeros(32, 32, 3), "vc")


def test_zoom_crop_is_nearest_neighbour():
    image = np.arange(20 * 30, dtype=np.int64).reshape(20, 30)
    big = zoom_crop(image, (0.5, 0.5), zoom=4, size=16)
    assert big.shape == (16, 16)
    source = big[::4, ::4]
    # Each source pixel becomes a constant 4x4 block, and the source is a contiguous 4x4 window around the centre.
    np.testing.assert_array_equal(big, np.repeat(np.repeat(source, 4, axis=0), 4, axis=1))
    top, left = divmod(int(source[0, 0]), 30)
    np.testing.assert_array_equal(source, image[top : top + 4, left : left + 4])
    assert (top, left) == (8, 13)


@pytest.mark.parametrize(("center", "corner"), [((0.0, 0.0), (0, 0)), ((1.0, 1.0), (16, 26))])
def test_zoom_crop_stays_inside_at_the_borders(center, corner):
    image = np.arange(20 * 30).reshape(20, 30)
    big = zoom_crop(image, center, zoom=2, size=8)
    assert divmod(int(big[0, 0]), 30) == corner


def test_zoom_crop_of_a_small_image_is_the_whole_image_enlarged():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    big = zoom_crop(image, (0.3, 0.9), zoom=3, size=240)
    assert big.shape == (15, 21, 3) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::3, ::3], image)


@pytest.mark.parametrize("kwargs", [dict(zoom=0), dict(zoom=2.5), dict(center=(1.5, 0.5)), dict(size=0)])
def test_zoom_crop_rejects_bad_arguments(kwargs):
    args = dict(center=(0.5, 0.5), zoom=2, size=16) | kwargs
    with pytest.raises(ValueError):
        zoom_crop(np.zeros((10, 10, 3), np.uint8), **args)


def _data_uris(page: str) -> list[np.ndarray]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in found]


def test_wipe_view_is_self_contained(photo):
    before, after = photo, 255 - photo
    view = wipe_view(before, after, before_label="in <put>", after_label="student")

    images = _data_uris(view.html)
    assert len(images) == 2
    np.testing.assert_array_equal(images[0], after)  # underneath: the right-hand image
    np.testing.assert_array_equal(images[1], before)  # on top, clipped to the left of the divider
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", view.html), "nothing may load from the network"
    assert "<link" not in view.html and "@import" not in view.html
    assert "<script>" in view.html and 'type="range"' in view.html
    assert "in &lt;put&gt;" in view.html and "<put>" not in view.html
    assert view.height > photo.shape[0]


def test_wipe_view_downscales_wide_images():
    wide = np.zeros((100, 1000, 3), np.uint8)
    view = wipe_view(wide, wide, max_width=250)
    assert [img.shape for img in _data_uris(view.html)] == [(25, 250, 3), (25, 250, 3)]


@pytest.mark.parametrize(
    ("before", "after", "start"),
    [
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), 0.5),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), 0.5),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), 1.5),
    ],
)
def test_wipe_view_rejects_bad_arguments(before, after, start):
    with pytest.raises(ValueError):
        wipe_view(before, after, start=start)


def test_measure_latency_rows(tiny_models_dir):
    rows = measure_latency({"my student": "student", "unsharp": "unsharp"}, ["32x24", "48x32"], repeats=1)
    assert [(r["model"], r["width"], r["height"]) for r in rows] == [
        ("my student", 32, 24),
        ("my student", 48, 32),
        ("unsharp", 32, 24),
        ("unsharp", 48, 32),
    ]
    for r in rows:
        assert r["ms"] > 0 and r["fps"] == pytest.approx(1000.0 / r["ms"], rel=0.02)
        assert r["megapixels"] == round(r["width"] * r["height"] / 1e6, 3)


def test_compare_runs_the_tuned_ffmpeg_peers_and_labels_them(photo, tiny_models_dir):
    pytest.importorskip("av")
    (tiny_models_dir / "cas.json").write_text('{"name": "cas", "classical": {"setting": {"strength": 0.9}}}')
    peers = {name: sharpkd.load(name) for name in ("cas", "ffmpeg-unsharp")}
    result = compare(photo, "h264", 1.0, peers)
    assert result.outputs == ["cas", "ffmpeg-unsharp"]
    assert all(result.panels[n].shape == photo.shape and result.panels[n].dtype == np.uint8 for n in result.outputs)
    assert np.array_equal(
        result.panels["cas"], sharpkd.load("cas", setting={"strength": 0.9}).sharpen(result.panels[INPUT])
    )
    assert model_label("cas", peers["cas"]) == "cas (strength 0.9)"
    assert model_label("ffmpeg-unsharp", peers["ffmpeg-unsharp"]) == "ffmpeg-unsharp (amount 1)"  # no card: default
    assert model_label("student", sharpkd.load("student")) == "student"
    assert model_label("input", sharpkd.load("input")) == "input"  # no setting to show


def test_compare_accepts_every_preset(photo, models):
    for preset in sharpkd.PRESETS:
        assert compare(photo[:32, :32], preset, 1.0, {}).degradation == preset


def test_measure_latency_accepts_checkpoint_paths(tiny_models_dir):
    rows = measure_latency({"mine": tiny_models_dir / "conv4.pt"}, ["32x24"], repeats=1)
    assert [(r["model"], r["resolution"]) for r in rows] == [("mine", "32x24")]


@pytest.mark.parametrize(("models", "sizes"), [({}, ["360p"]), ({"unsharp": "unsharp"}, ["huge"])])
def test_measure_latency_rejects_bad_arguments(models, sizes):
    with pytest.raises(ValueError):
        measure_latency(models, sizes, repeats=1)
