"""sharpkd.app.compare, .viewer and .wipe: the library behind the app's Compare and Benchmark pages."""

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
    MISSING,
    ORIGINAL,
    compare,
    degraded_input,
    measure_latency,
    model_label,
    run_timed,
    score,
)
from sharpkd.app.viewer import amplified_difference, detail_center, difference_gain, enlarge, zoom_region
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
    assert result.timing_calls == {"teacher": 3, "student": 3, "unsharp": 3}  # medians of three calls by default
    assert result.gain_db(ORIGINAL) is None
    assert result.gain_db("student") == pytest.approx(result.scores["student"]["psnr"] - result.scores[INPUT]["psnr"])


@pytest.mark.parametrize("H", [16, 95, 300])
def test_scores_in_strips_equal_the_whole_image_metrics(monkeypatch, H):
    monkeypatch.setattr(sharpkd.app.compare, "SCORE_ROWS", 20)  # several strips even for small images
    rng = np.random.default_rng(H)
    gt = rng.integers(0, 256, (H, 37, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(np.int16) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    scores = score(pred, gt)
    x, y = to_tensor(pred), to_tensor(gt)
    assert scores["sharpness"] == pytest.approx(float(sharpkd.sharpness(x)), abs=1e-5)
    assert scores["ssim"] == pytest.approx(float(sharpkd.ssim(x, y)), abs=1e-6)
    assert scores["psnr"] == pytest.approx(float(sharpkd.psnr(x, y)), abs=1e-4)
    assert score(gt, gt)["psnr"] == pytest.approx(100.0)  # the MSE floor, as in sharpkd.psnr
    assert set(score(pred)) == {"sharpness"}


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
    assert all("PSNR (dB)" not in row and "SSIM" not in row and "gain (dB)" not in row for row in table)
    assert table[0]["time (ms)"] == MISSING and table[1]["time (ms)"] != MISSING
    assert result.gain_db("student") is None


def test_comparison_table_and_png(photo, models):
    result = compare(photo, "downup2", 1.0, {"unsharp": models["unsharp"]})
    rows = {row["image"]: row for row in result.table()}
    assert rows[ORIGINAL]["PSNR (dB)"] == MISSING and rows[ORIGINAL]["time (ms)"] == MISSING
    assert rows[INPUT]["gain (dB)"] == MISSING and rows[INPUT]["PSNR (dB)"] == f"{result.scores[INPUT]['psnr']:.2f}"
    assert rows["unsharp"]["PSNR (dB)"] == f"{result.scores['unsharp']['psnr']:.2f}"
    assert rows["unsharp"]["gain (dB)"] == f"{result.gain_db('unsharp'):+.2f}"
    cells = [value for row in result.table() for value in row.values()]
    assert all(isinstance(value, str) and value not in ("None", "nan") for value in cells)  # no raw None cells
    decoded = np.asarray(Image.open(io.BytesIO(result.png("unsharp"))))
    np.testing.assert_array_equal(decoded, result.panels["unsharp"])


def test_compare_uses_precomputed_outputs_without_running_them(photo, models):
    lq = degraded_input(photo, "gauss1.5", 1.0)
    np.testing.assert_array_equal(lq, degrade_image(photo, "gauss1.5", seed=0, strength=1.0))
    teacher_pred = models["teacher"].sharpen(lq)
    result = compare(
        photo, "gauss1.5", 1.0, {"unsharp": models["unsharp"]}, precomputed={"teacher": (teacher_pred, 1234.0, 1)}
    )
    assert list(result.panels) == [ORIGINAL, INPUT, "teacher", "unsharp"]
    np.testing.assert_array_equal(result.panels["teacher"], teacher_pred)
    assert result.timings_ms["teacher"] == 1234.0 and result.timing_calls == {"teacher": 1, "unsharp": 3}
    assert set(result.scores["teacher"]) == {"psnr", "ssim", "sharpness"}
    with pytest.raises(ValueError, match="at least 16 px"):
        degraded_input(photo[:8], "vc")  # validated like compare(), so a cached teacher run fails the same way
    with pytest.raises(ValueError, match="precomputed output 'teacher'"):
        compare(photo, "vc", 1.0, precomputed={"teacher": (teacher_pred[:20], 1.0, 1)})
    with pytest.raises(ValueError, match="reserved"):
        compare(photo, "vc", 1.0, precomputed={"input": (teacher_pred, 1.0, 1)})


def test_run_timed_reports_the_median_of_its_calls(photo, monkeypatch):
    class Clocked:
        """A Sharpener stand-in whose calls take 1, 30 and 2 ms of fake time."""

        def __init__(self) -> None:
            self.calls = 0

        def sharpen(self, frame):
            self.calls += 1
            return frame + self.calls

    clocked = Clocked()
    ticks = iter([0.0, 0.001, 1.0, 1.030, 2.0, 2.002])
    with monkeypatch.context() as patched:
        patched.setattr(sharpkd.app.compare.time, "perf_counter", lambda: next(ticks))
        out, ms = run_timed(clocked, photo, calls=3)
    assert clocked.calls == 3 and ms == pytest.approx(2.0)  # the median, not the 30 ms outlier nor the first call
    np.testing.assert_array_equal(out, photo + 1)  # the first call's output
    with pytest.raises(ValueError, match="calls must be >= 1"):
        run_timed(clocked, photo, calls=0)


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


def test_zoom_region_is_the_centred_window():
    image = np.arange(20 * 30).reshape(20, 30)
    region = zoom_region(image, (0.5, 0.5), zoom=4)
    assert region.shape == (5, 8)  # ceil(20 / 4) x ceil(30 / 4)
    top, left = divmod(int(region[0, 0]), 30)
    np.testing.assert_array_equal(region, image[top : top + 5, left : left + 8])
    assert (top, left) == (8, 11)
    assert np.shares_memory(region, image)  # a view, no copy
    np.testing.assert_array_equal(zoom_region(image, (0.3, 0.9), zoom=1), image)
    strip = zoom_region(image, (0.5, 0.0), zoom=2, aspect=3.0)  # 15 wide, 5 high: a wide strip at the top
    np.testing.assert_array_equal(strip, image[0:5, 8:23])
    assert zoom_region(image, (0.5, 0.5), zoom=1, aspect=0.5).shape == (20, 30)  # clipped to the image's height


@pytest.mark.parametrize(("center", "corner"), [((0.0, 0.0), (0, 0)), ((1.0, 1.0), (10, 15))])
def test_zoom_region_stays_inside_at_the_borders(center, corner):
    image = np.arange(20 * 30).reshape(20, 30)
    region = zoom_region(image, center, zoom=2)
    assert region.shape == (10, 15) and divmod(int(region[0, 0]), 30) == corner


@pytest.mark.parametrize(
    "kwargs", [dict(zoom=0), dict(zoom=2.5), dict(center=(1.5, 0.5)), dict(center=(0.5, -0.1)), dict(aspect=0.0)]
)
def test_zoom_region_rejects_bad_arguments(kwargs):
    args = dict(center=(0.5, 0.5), zoom=2) | kwargs
    with pytest.raises(ValueError):
        zoom_region(np.zeros((10, 10, 3), np.uint8), **args)


def _flat_with_texture(H: int, W: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A flat grey (H, W, 3) image with random texture inside ``box = (top, left, height, width)`` only."""
    image = np.full((H, W, 3), 120, np.uint8)
    top, left, h, w = box
    image[top : top + h, left : left + w] = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image


@pytest.mark.parametrize(("H", "W", "box"), [(120, 200, (70, 140, 30, 40)), (1500, 1000, (100, 700, 200, 200))])
def test_detail_center_finds_the_textured_region(H, W, box):
    image = _flat_with_texture(H, W, box)
    top, left, h, w = box
    cx, cy = detail_center(image, (w, h))  # the 1500x1000 case runs on a block-averaged copy
    assert cx == pytest.approx((left + w / 2) / W, abs=0.03) and cy == pytest.approx((top + h / 2) / H, abs=0.03)
    region = zoom_region(image, (cx, cy), zoom=max(1, min(H // h, W // w)))
    assert region.std() > 40  # the zoomed region is the texture, not the flat grey around it


def test_detail_center_prefers_the_denser_texture_and_handles_flat_images():
    image = np.full((100, 100, 3), 128, np.uint8)
    image[10:40, 10:40:4] = 200  # sparse vertical lines, top left
    image[60:90, 60:90:2] = 255  # denser and stronger lines, bottom right
    cx, cy = detail_center(image, (30, 30))
    assert cx > 0.6 and cy > 0.6
    assert detail_center(np.zeros((50, 60, 3), np.uint8), (10, 10)) == (0.5, 0.5)
    assert detail_center(image[..., 0], (200, 200)) == pytest.approx((0.5, 0.5))  # window larger than the image
    with pytest.raises(ValueError):
        detail_center(image, (0, 10))


def test_comparison_detail_center_uses_the_original(photo, models):
    result = compare(photo, "gauss1.5", 1.0, {"unsharp": models["unsharp"]})
    H, W = photo.shape[:2]
    assert result.detail_center(4) == detail_center(photo, ((W + 3) // 4, (H + 3) // 4))
    blurry = compare(photo, None, 1.0, {})
    assert blurry.detail_center(2) == detail_center(photo, (W // 2, H // 2))
    assert blurry.detail_center(2, aspect=4.0) == detail_center(photo, (W // 2, W // 8))


def test_enlarge_uses_square_pixels():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    big = enlarge(image, 10)  # factor ceil(10 / 3) = 4
    assert big.shape == (8, 12)
    np.testing.assert_array_equal(big[::4, ::4], image)
    np.testing.assert_array_equal(big[:4, :4], np.zeros((4, 4)))
    assert enlarge(image, 3) is image


def test_amplified_difference_and_its_gain():
    lq = np.full((4, 4, 3), 100, np.uint8)
    pred = lq.copy()
    pred[0, 0] = (103, 99, 100)  # largest channel change: 3
    pred[1, 1, 2] = 40  # a change of 60: clipped once amplified 8x
    diff = amplified_difference(pred, lq, gain=8)
    assert diff.shape == (4, 4) and diff.dtype == np.uint8
    assert diff[0, 0] == 24 and diff[1, 1] == 255 and diff[2, 2] == 0
    changed = lq.copy()
    changed[:, :] = 105  # every pixel changed by 5, so the 99th percentile is 5
    assert difference_gain([changed, lq], lq) == 32  # 2 ** floor(log2(192 / 5)): 5 -> 160, under the target of 192
    assert difference_gain([lq], lq) == 1  # nothing changed
    big = np.full((4, 4, 3), 255, np.uint8)
    assert difference_gain([big], np.zeros((4, 4, 3), np.uint8)) == 1
    with pytest.raises(ValueError):
        amplified_difference(pred, lq, gain=0)
    with pytest.raises(ValueError):
        amplified_difference(pred[:2], lq, gain=2)


def test_comparison_differences_share_one_gain(photo, models):
    result = compare(photo, "gauss1.5", 1.0, {"unsharp": models["unsharp"], "same": sharpkd.load("input")})
    diffs, gain = result.differences((0.5, 0.5), 2)
    assert list(diffs) == ["unsharp", "same"] and 1 <= gain <= 64
    region = result.region((0.5, 0.5), 2)
    np.testing.assert_array_equal(diffs["unsharp"], amplified_difference(region["unsharp"], region[INPUT], gain))
    assert not diffs["same"].any()  # the identity peer changed nothing
    assert diffs["unsharp"].shape == region[INPUT].shape[:2]


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


def test_wipe_view_never_starts_a_native_image_drag(photo):
    page = wipe_view(photo, photo).html
    assert page.count('draggable="false"') == 2  # both images
    assert "user-select: none" in page and "touch-action: none" in page
    assert "setPointerCapture" in page and '"dragstart"' in page and "preventDefault" in page
    assert 'data-pos="50.0"' in page


def test_wipe_view_enlarges_a_small_region_with_square_pixels():
    region = np.zeros((40, 60, 3), np.uint8)
    view = wipe_view(region, region, display_width=1200)
    assert "image-rendering: pixelated" in view.html and "max-width: 960px" in view.html  # 640 px high at most
    assert view.height == 640 + 28 + 8
    assert [img.shape for img in _data_uris(view.html)] == [(40, 60, 3)] * 2  # sent at its own size
    wide = wipe_view(np.zeros((10, 100, 3), np.uint8), np.zeros((10, 100, 3), np.uint8), display_width=1000)
    assert "max-width: 1000px" in wide.html and wide.height == 100 + 28 + 8
    assert "image-rendering: auto" in wipe_view(region, region).html  # shown at its own size: no enlarging
    tall = np.zeros((1000, 800, 3), np.uint8)  # shown 512 px wide (640 px high at most): embedded at that width
    assert [img.shape for img in _data_uris(wipe_view(tall, tall, display_width=1400).html)] == [(640, 512, 3)] * 2


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
