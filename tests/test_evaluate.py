"""Tests for reporting.evaluate: uint8 end-to-end evaluation against a hand-computed reference, and its images."""

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
from sharpkd.runtime.sharpener import load


@pytest.fixture
def images(photo: np.ndarray) -> dict[str, np.ndarray]:
    return {"left": np.ascontiguousarray(photo[:40, :56]), "right": np.ascontiguousarray(photo[50:, 60:])}


def reference_scores(images: dict[str, np.ndarray], deg: str, restore) -> tuple[float, float]:
    """Mean PSNR and SSIM computed the long way, to check evaluate_models against."""
    p, s = [], []
    for i, gt in enumerate(images.values()):
        pred = restore(degrade_image(gt, deg, seed=i))
        p.append(float(psnr(to_tensor(pred), to_tensor(gt))))
        s.append(float(ssim(to_tensor(pred), to_tensor(gt))))
    return float(np.mean(p)), float(np.mean(s))


def test_evaluate_models_matches_a_hand_computed_reference(tiny_models_dir: Path, images) -> None:
    result = evaluate_models(["student"], images, ("vc", "gauss1.5"))
    assert list(result["rows"]) == ["input", "unsharp", "student"]
    assert result["images"] == ["left", "right"] and result["sizes"] == [[40, 56], [46, 68]]
    student = load("student")
    for deg in ("vc", "gauss1.5"):
        for method, restore in (("input", lambda x: x), ("unsharp", unsharp_mask), ("student", student.sharpen)):
            p, s = reference_scores(images, deg, restore)
            assert result["rows"][method][deg]["psnr"] == pytest.approx(p, abs=1e-9)
            assert result["rows"][method][deg]["ssim"] == pytest.approx(s, abs=1e-9)
    rows = result["rows"]
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
    assert calls == [(0, 3, "input vc"), (1, 3, "unsharp vc"), (2, 3, "student vc"), (3, 3, "done")]


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
