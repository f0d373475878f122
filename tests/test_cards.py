"""Tests for reporting.cards: write_cards on tiny checkpoints writes cards and README tables that agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sharpkd.checkpoint import load_checkpoint
from sharpkd.degrade import PRESETS
from sharpkd.errors import CheckpointError
from sharpkd.models import count_parameters
from sharpkd.reporting.card import ModelCard
from sharpkd.reporting.cards import CardsConfig, write_cards
from sharpkd.reporting.measure import conv_macs


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
        assert ModelCard.read(tiny_models_dir / f"{name}.json").to_json() == card  # the schema reads what it wrote

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
        readme=tiny_models_dir / "PROJECT.md",
    )
    (tiny_models_dir / "PROJECT.md").write_text("# P\n\n<!-- results:start -->\nold\n<!-- results:end -->\n")
    written = write_cards(cfg, date="2026-01-02")
    assert [p.name for p in written] == ["student.json", "student-nokd.json", "README.md", "PROJECT.md"]
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
    assert ModelCard.read(tiny_models_dir / "student.json").to_json() == card
    project = (tiny_models_dir / "PROJECT.md").read_text()  # the project README carries the same tables
    assert "old" not in project and "### Speed" in project and f"| {speed['1080p_p50_ms']:.1f} |" in project


def test_write_cards_needs_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoints"):
        write_cards(CardsConfig(out_dir=tmp_path))
