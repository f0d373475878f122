"""Tests for reporting.cards: uint8 end-to-end evaluation against a hand-computed reference, and the model cards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sharpkd.checkpoint import load_checkpoint
from sharpkd.data import degrade_image, to_tensor
from sharpkd.degrade import PRESETS
from sharpkd.errors import CheckpointError, DatasetError
from sharpkd.metrics import psnr, ssim
from sharpkd.models import count_parameters
from sharpkd.reporting.benchmark import conv_macs
from sharpkd.reporting.cards import CardsConfig, evaluate_models, load_eval_images, metrics_table, write_cards
from sharpkd.runtime.sharpener import load, unsharp_mask


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


def test_metrics_table_has_one_row_per_method() -> None:
    row = {"vc": {"psnr": 25.0, "ssim": 0.81234}, "mean": {"psnr": 25.0, "ssim": 0.81234, "gain": 1.5}}
    table = metrics_table({"degradations": ["vc"], "rows": {"input": row, "m": row}}, extra={"params": {"m": "12"}})
    lines = table.splitlines()
    assert lines[0] == "| method | params | vc SSIM | vc PSNR | mean PSNR | gain (dB) |"
    assert lines[2] == "| input (degraded) |  | 0.8123 | 25.00 | 25.00 | +1.50 |"
    assert lines[3] == "| m | 12 | 0.8123 | 25.00 | 25.00 | +1.50 |"
    assert len(lines) == 4


def test_write_cards_for_tiny_models(tiny_models_dir: Path) -> None:
    cfg = CardsConfig(out_dir=tiny_models_dir, max_side=32, limit=1, command="sharpkd cards --out X --limit 1")
    written = write_cards(cfg, date="2026-01-02")
    names = ["teacher", "student", "conv4", "resattn", "sepunet", "student-nokd"]
    assert [p.name for p in written] == [f"{n}.json" for n in names] + ["README.md"]

    for name in names:
        card = json.loads((tiny_models_dir / f"{name}.json").read_text())
        model, meta = load_checkpoint(tiny_models_dir / f"{name}.pt")
        assert card["name"] == name and card["kind"] == model.kind and card["preset"] == meta["preset"]
        assert card["parameters"] == count_parameters(model)
        assert card["macs_1080p"] == conv_macs(model, 1080, 1920)
        assert card["training"] == meta == {"preset": card["training"]["preset"], "tiny": True}
        metrics = card["metrics"]
        assert set(metrics) == {*PRESETS, "mean"}
        assert all(math.isfinite(v) for scores in metrics.values() for v in scores.values())
        assert card["baselines"]["input"]["mean"]["gain"] == 0.0
        assert card["validation"]["images"] == ["astronaut"] and card["validation"]["max_side"] == 32
        assert card["generated"] == {"command": "sharpkd cards --out X --limit 1", "date": "2026-01-02"}
        assert "speed" not in card

    readme = (tiny_models_dir / "README.md").read_text()
    assert readme.startswith(
        "# sharpkd models\n\nRegenerated on 2026-01-02 by:\n\n```\nsharpkd cards --out X --limit 1\n"
    )
    table = [line for line in readme.splitlines() if line.startswith("| ")]
    assert sum(line.startswith("| method") for line in table) == 1  # one table
    assert [line.split(" | ")[0][2:] for line in table[1:]] == ["input (degraded)", "unsharp mask", *names]
    # the README's numbers are the cards' numbers
    student = json.loads((tiny_models_dir / "student.json").read_text())
    student_row = next(line for line in table if line.startswith("| student |"))
    assert f" {student['metrics']['vc']['psnr']:.2f} |" in student_row
    assert student_row.endswith(f" {student['metrics']['mean']['gain']:+.2f} |")
    assert "## Speed" not in readme


def test_write_cards_with_speed_table(tiny_models_dir: Path) -> None:
    for name in ("conv4", "resattn", "sepunet", "teacher"):  # keep the 1080p timing to two fast models
        (tiny_models_dir / f"{name}.pt").unlink()
    cfg = CardsConfig(
        out_dir=tiny_models_dir,
        max_side=24,
        limit=1,
        degradations=("vc",),
        bench=True,
        bench_repeats=1,
        bench_warmup=0,
        threads=1,
        bench_isolate=False,
        video_size=(64, 48),
        video_frames=6,
    )
    write_cards(cfg, date="2026-01-02")
    readme = (tiny_models_dir / "README.md").read_text()
    section = readme[readme.index("## Speed") : readme.index("## Video")].splitlines()
    rows = [line for line in section if line.startswith("| ") and not line.startswith("| model")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["unsharp mask", "student", "student-nokd"]
    card = json.loads((tiny_models_dir / "student.json").read_text())
    speed = card["speed"]
    assert card["speed_by_backend"] == {"torch": speed}
    assert speed["backend"] == "torch" and speed["1080p_p50_ms"] > 0 and speed["threads"] == 1
    assert speed["fps"] == pytest.approx(1000 / speed["1080p_p50_ms"])
    assert speed["ratio_to_unsharp"] == pytest.approx(speed["1080p_p50_ms"] / speed["unsharp_ms"])
    assert f"| {speed['1080p_p50_ms']:.1f} |" in rows[1]
    # the default student's whole-clip video benchmark: decode + sharpen + encode, every frame counted
    (video,) = card["video_1080p"]
    assert (video["width"], video["height"], video["frames"]) == (64, 48, 6)
    assert 0 < video["end_to_end_fps"] <= video["processing_fps"]
    assert "## Video" in readme and f"| torch | {video['processing_fps']:.1f} |" in readme


def test_write_cards_needs_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoints"):
        write_cards(CardsConfig(out_dir=tmp_path))


def test_inject_results_fills_only_the_marked_block(tmp_path) -> None:
    from sharpkd.reporting.cards import inject_results

    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nintro\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\n## After\n")
    inject_results(readme, ["# sharpkd models", "", "## Quality", "", "| a | b |"])
    text = readme.read_text()
    assert "old" not in text and "### Quality" in text and "| a | b |" in text
    assert text.startswith("# Title\n\nintro\n") and text.endswith("## After\n")
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="results:start"):
        inject_results(readme, ["# t"])
