"""Tests for reporting.evaluate: uint8 end-to-end evaluation against a hand-computed reference (models, tuned peers,
the best classical per preset), and its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sharpkd.data import degrade_image, to_tensor
from sharpkd.errors import CheckpointError, DatasetError
from sharpkd.metrics import psnr, ssim
from sharpkd.reporting.evaluate import evaluate_models, load_eval_images
from sharpkd.runtime.classical import unsharp_mask
from sharpkd.runtime.ffmpeg import cas, ffmpeg_unsharp
from sharpkd.runtime.sharpener import load


@pytest.fixture
def images(photo: np.ndarray) -> dict[str, np.ndarray]:
    return {"left": np.ascontiguousarray(photo[:40, :56]), "right": np.ascontiguousarray(photo[50:, 60:])}


def reference_scores(images: dict[str, np.ndarray], deg: str, restore) -> tuple[float, float, list[float]]:
    """Mean PSNR and SSIM computed the long way, and each image's PSNR gain over its degraded input."""
    p, s, gains = [], [], []
    for i, gt in enumerate(images.values()):
        lq = degrade_image(gt, deg, seed=i)
        pred = restore(lq)
        p.append(float(psnr(to_tensor(pred), to_tensor(gt))))
        s.append(float(ssim(to_tensor(pred), to_tensor(gt))))
        gains.append(p[-1] - float(psnr(to_tensor(lq), to_tensor(gt))))
    return float(np.mean(p)), float(np.mean(s)), gains


def test_evaluate_models_matches_a_hand_computed_reference(tiny_models_dir: Path, images) -> None:
    result = evaluate_models(["student"], images, ("vc", "gauss1.5"), peer_settings={"cas": {"strength": 0.9}})
    assert list(result["rows"]) == ["input", "unsharp", "cas", "ffmpeg-unsharp", "student"]
    assert result["images"] == ["left", "right"] and result["sizes"] == [[40, 56], [46, 68]]
    settings = {"unsharp": {"sigma": 2.0, "amount": 1.0}, "cas": {"strength": 0.9}, "ffmpeg-unsharp": {"amount": 1.0}}
    assert result["classical"] == settings
    assert result["best_classical"] == {}  # no per-preset choice given: no best-classical row
    student = load("student")
    restorers = {
        "input": lambda x: x,
        "unsharp": unsharp_mask,
        "cas": lambda x: cas(x, 0.9),  # the given setting; the others have no card here and run their default
        "ffmpeg-unsharp": ffmpeg_unsharp,
        "student": student.sharpen,
    }
    worst = {}
    for deg in ("vc", "gauss1.5"):
        for method, restore in restorers.items():
            p, s, gains = reference_scores(images, deg, restore)
            score = result["rows"][method][deg]
            assert score["psnr"] == pytest.approx(p, abs=1e-9)
            assert score["ssim"] == pytest.approx(s, abs=1e-9)
            if method == "input":
                assert "worst_gain" not in score  # the input is the reference of the gains
                continue
            assert score["worst_gain"] == pytest.approx(min(gains), abs=1e-9)
            assert score["worst_image"] == list(images)[int(np.argmin(gains))]
            worst.setdefault(method, []).append((min(gains), f"{score['worst_image']}/{deg}"))
    rows = result["rows"]
    for method, pairs in worst.items():  # the means name the worst image over both degradations
        gain, where = min(pairs, key=lambda pair: pair[0])  # the first degradation on a tie, as evaluate does
        assert rows[method]["mean"]["worst_gain"] == pytest.approx(gain, abs=1e-9)
        assert rows[method]["mean"]["worst_image"] == where
    assert rows["input"]["mean"]["gain"] == 0.0
    mean = (rows["student"]["vc"]["psnr"] + rows["student"]["gauss1.5"]["psnr"]) / 2
    input_mean = (rows["input"]["vc"]["psnr"] + rows["input"]["gauss1.5"]["psnr"]) / 2
    assert rows["student"]["mean"]["psnr"] == pytest.approx(mean)
    assert rows["student"]["mean"]["gain"] == pytest.approx(mean - input_mean)


def test_evaluate_models_reports_progress(tiny_models_dir: Path, images) -> None:
    calls = []
    evaluate_models(
        ["student"], images, ("vc",), progress=lambda done, total, label: calls.append((done, total, label))
    )
    labels = ["input", "unsharp", "cas", "ffmpeg-unsharp", "student"]
    assert calls == [(i, 5, f"{label} vc") for i, label in enumerate(labels)] + [(5, 5, "done")]


def test_best_classical_row_scores_each_preset_with_its_own_peer(tiny_models_dir: Path, images) -> None:
    best = {"vc": ("cas", {"strength": 0.25}), "gauss1.5": ("unsharp", {"sigma": 1.0, "amount": 3.0})}
    result = evaluate_models([], images, ("vc", "gauss1.5"), best_per_preset=best)
    assert list(result["rows"]) == ["input", "unsharp", "cas", "ffmpeg-unsharp", "best-classical"]
    row = result["rows"]["best-classical"]
    assert row["vc"]["psnr"] == pytest.approx(reference_scores(images, "vc", lambda x: cas(x, 0.25))[0], abs=1e-9)
    p, s, gains = reference_scores(images, "gauss1.5", lambda x: unsharp_mask(x, 1.0, 3.0))
    assert row["gauss1.5"] == {
        "psnr": pytest.approx(p, abs=1e-9),
        "ssim": pytest.approx(s, abs=1e-9),
        "worst_gain": pytest.approx(min(gains), abs=1e-9),
        "worst_image": "left",
    }
    assert result["best_classical"] == {
        "vc": {"method": "cas", "setting": {"strength": 0.25}},
        "gauss1.5": {"method": "unsharp", "setting": {"sigma": 1.0, "amount": 3.0}},
    }
    # a choice that misses a degradation gives no row (rather than a row that is not the best on every column)
    partial = evaluate_models([], images, ("vc", "downup2"), best_per_preset=best)
    assert "best-classical" not in partial["rows"] and partial["best_classical"] == {}


def test_six_presets_by_default_with_a_synthetic_mean(tiny_models_dir: Path, photo: np.ndarray) -> None:
    result = evaluate_models([], {"crop": np.ascontiguousarray(photo[:24, :24])})
    assert result["degradations"] == ["downup2", "gauss1.5", "motion9", "vc", "h264", "vp8"]
    for row in result["rows"].values():
        assert list(row)[-2:] == ["synthetic", "mean"]
        synthetic = np.mean([row[d]["psnr"] for d in ("downup2", "gauss1.5", "motion9", "vc")])
        assert row["synthetic"]["psnr"] == pytest.approx(synthetic)
        assert row["mean"]["psnr"] == pytest.approx(np.mean([row[d]["psnr"] for d in result["degradations"]]))
    assert result["rows"]["input"]["synthetic"]["gain"] == 0.0


def test_evaluate_models_rejects_bad_arguments(tiny_models_dir: Path, images) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        evaluate_models(["student"], {})
    with pytest.raises(ValueError, match="blur7"):
        evaluate_models(["student"], images, ("blur7",))
    with pytest.raises(CheckpointError, match="nope"):
        evaluate_models(["nope"], images)


def test_load_eval_images_from_samples_and_folder(tmp_path: Path, photo: np.ndarray) -> None:
    samples = load_eval_images("samples", max_side=40, limit=2)
    assert list(samples) == ["astronaut", "coffee"]
    assert all(img.dtype == np.uint8 and max(img.shape[:2]) == 40 for img in samples.values())

    for name in ("b", "a", "c"):
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    folder = load_eval_images(tmp_path, limit=2)
    assert list(folder) == ["a", "b"]  # sorted; the unreadable file is skipped
    np.testing.assert_array_equal(folder["a"], photo)
    with pytest.raises(DatasetError):
        load_eval_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="limit"):
        load_eval_images("samples", limit=0)
