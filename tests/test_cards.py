"""Tests for reporting.cards: write_cards on tiny checkpoints writes model cards, tuned peer cards and README tables
that agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sharpkd.checkpoint import load_checkpoint
from sharpkd.data import degrade_image, to_tensor
from sharpkd.degrade import PRESETS
from sharpkd.errors import CheckpointError
from sharpkd.metrics import psnr
from sharpkd.models import count_parameters
from sharpkd.reporting.card import ModelCard
from sharpkd.reporting.cards import CardsConfig, write_cards
from sharpkd.reporting.evaluate import load_eval_images
from sharpkd.reporting.measure import conv_macs
from sharpkd.reporting.tuning import best_per_preset_from_cards
from sharpkd.runtime.classical import CLASSICAL, format_setting, list_peers
from sharpkd.runtime.export import export_int8
from sharpkd.runtime.sharpener import load

PEERS = ["unsharp", "cas", "ffmpeg-unsharp"]


def test_write_cards_for_tiny_models(tiny_models_dir: Path) -> None:
    cfg = CardsConfig(out_dir=tiny_models_dir, max_side=32, limit=1, command="sharpkd cards --out X --limit 1")
    written = write_cards(cfg, date="2026-01-02")
    names = ["teacher", "student", "conv4", "resattn", "sepunet", "student-nokd"]
    assert list_peers() == PEERS
    assert [p.name for p in written] == [f"{n}.json" for n in names + PEERS] + ["README.md"]

    for name in names:
        card = json.loads((tiny_models_dir / f"{name}.json").read_text())
        model, meta = load_checkpoint(tiny_models_dir / f"{name}.pt")
        assert card["name"] == name and card["kind"] == model.kind and card["preset"] == meta["preset"]
        assert card["parameters"] == count_parameters(model)
        assert card["macs_1080p"] == conv_macs(model, 1080, 1920)
        assert card["training"] == meta == {"preset": card["training"]["preset"], "tiny": True}
        metrics = card["metrics"]
        assert list(metrics) == [*PRESETS, "synthetic", "mean"]  # six presets, the synthetic mean, the mean
        assert all(math.isfinite(v) for scores in metrics.values() for k, v in scores.items() if k != "worst_image")
        assert metrics["mean"]["worst_image"].startswith("astronaut/")  # the worst image of the worst preset
        assert metrics["mean"]["worst_gain"] == min(metrics[d]["worst_gain"] for d in PRESETS)
        assert list(card["baselines"]) == ["input", *PEERS, "best-classical"]
        assert card["baselines"]["input"]["mean"]["gain"] == 0.0
        assert card["validation"]["images"] == ["astronaut"] and card["validation"]["max_side"] == 32
        assert card["generated"] == {"command": "sharpkd cards --out X --limit 1", "date": "2026-01-02"}
        assert "speed" not in card
        assert card["backend"] == "onnx" and "metrics_by_backend" not in card  # what load(name) runs: float ONNX
        assert ModelCard.read(tiny_models_dir / f"{name}.json").to_json() == card  # the schema reads what it wrote

    # one card per classical peer: its tuned setting (which load() now runs), its whole grid, where it is the best
    best, labels = {}, []
    for peer in PEERS:
        card = json.loads((tiny_models_dir / f"{peer}.json").read_text())
        section = card["classical"]
        assert card["kind"] == "classical" and card["parameters"] is None and "speed" not in card
        assert section["engine"] == CLASSICAL[peer].engine and section["description"] == CLASSICAL[peer].description
        grid = section["grid"]
        assert [g["setting"] for g in grid] == [CLASSICAL[peer].resolve(s) for s in CLASSICAL[peer].grid]
        gains = [g["metrics"]["mean"]["gain"] for g in grid]
        tuned = grid[gains.index(max(gains))]
        assert section["setting"] == tuned["setting"]
        # the card's metrics are the tuned grid point's, plus the per-image worst gains the grid does not keep
        no_worst = {d: {k: v for k, v in s.items() if not k.startswith("worst_")} for d, s in card["metrics"].items()}
        assert no_worst == tuned["metrics"] and card["metrics"]["mean"]["worst_gain"] is not None
        labels.append(f"{peer} ({format_setting(section['setting'])})")
        assert load(peer).setting == section["setting"]  # $SHARPKD_MODELS points at these cards
        assert ModelCard.read(tiny_models_dir / f"{peer}.json").to_json() == card
        for preset, setting in section["best_for"].items():
            row = next(g["metrics"] for g in grid if g["setting"] == setting)
            best[preset] = (peer, setting, row[preset])
    assert best_per_preset_from_cards() == {preset: (peer, setting) for preset, (peer, setting, _) in best.items()}
    assert sorted(best) == sorted(PRESETS)  # every preset has exactly one best peer and setting
    student = json.loads((tiny_models_dir / "student.json").read_text())
    for preset, (_, _, score) in best.items():
        assert {k: student["baselines"]["best-classical"][preset][k] for k in ("psnr", "ssim")} == score
        assert score["psnr"] >= max(student["baselines"][p][preset]["psnr"] for p in PEERS)

    readme = (tiny_models_dir / "README.md").read_text()
    assert readme.startswith(
        "# sharpkd models\n\nRegenerated on 2026-01-02 by:\n\n```\nsharpkd cards --out X --limit 1\n"
    )
    quality = readme[readme.index("## Quality") : readme.index("## Classical peers")]
    table = [line for line in quality.splitlines() if line.startswith("| ")]
    assert sum(line.startswith("| method") for line in table) == 1  # one table
    assert table[0].startswith("| method | backend | params | GMACs @1080p | downup2 SSIM | downup2 PSNR |")
    assert table[0].endswith(
        "| vp8 SSIM | vp8 PSNR | synthetic PSNR | synthetic gain | mean PSNR | gain (dB) | worst image |"
    )
    assert [line.split(" | ")[0][2:] for line in table[1:]] == [
        "input (degraded)",
        *labels,  # each peer with its tuned setting
        "best classical, tuned per preset",
        *names,
    ]
    assert "best classical, tuned per preset: downup2 " in quality  # the note naming each preset's choice
    tuning = readme[readme.index("## Classical peers") : readme.index("## Frontier")].splitlines()
    grid_rows = [line for line in tuning if line.startswith("| ") and not line.startswith("| peer")]
    assert len(grid_rows) == sum(len(CLASSICAL[p].grid) for p in PEERS)
    assert sum("**" in line for line in grid_rows) == len(PEERS)  # one tuned setting per peer
    # the README's numbers are the cards' numbers
    student_row = next(line for line in table if line.startswith("| student |"))
    assert f" {student['metrics']['vc']['psnr']:.2f} |" in student_row
    mean = student["metrics"]["mean"]
    assert student_row.endswith(f" {mean['gain']:+.2f} | {mean['worst_gain']:+.2f} ({mean['worst_image']}) |")
    assert "## Speed" not in readme
    # the frontier: one point per network (no benchmark: torch, no latency), its gains from the card
    frontier = [line for line in readme[readme.index("## Frontier") :].splitlines() if line.startswith("| ")]
    assert frontier[0].startswith("| model | backend | params | MAC/px | p50 ms | p95 ms | downup2 |")
    assert [line.split(" | ")[0][2:] for line in frontier[1:]] == names
    gain = student["metrics"]["vc"]["psnr"] - student["baselines"]["input"]["vc"]["psnr"]
    row = next(line for line in frontier if line.startswith("| student |")).split(" | ")
    assert row[1:6] == ["torch", f"{student['parameters']:,}", f"{student['macs_1080p'] / 1920 / 1080:.0f}", "-", "-"]
    assert row[9] == f"{gain:+.2f}"  # downup2, gauss1.5, motion9, then vc


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
    (tiny_models_dir / "PROJECT.md").write_text("# P\n\n<!-- results:start -->\nOLD BLOCK\n<!-- results:end -->\n")
    written = write_cards(cfg, date="2026-01-02")
    assert [p.name for p in written] == ["student.json", "student-nokd.json", *[f"{p}.json" for p in PEERS]] + [
        "README.md",
        "PROJECT.md",
    ]
    readme = (tiny_models_dir / "README.md").read_text()
    section = readme[readme.index("## Speed") : readme.index("## Video")].splitlines()
    rows = [line for line in section if line.startswith("| ") and not line.startswith("| model")]
    assert [r.split(" | ")[:2] for r in rows][3:] == [["| student", "torch"], ["| student-nokd", "torch"]]
    # the tuned peers are timed like the models, once each, with their engine in the backend column
    peer_cards = {p: json.loads((tiny_models_dir / f"{p}.json").read_text()) for p in PEERS}
    for row, (peer, card) in zip(rows, peer_cards.items()):
        label = f"{peer} ({format_setting(card['classical']['setting'])})"
        assert row.startswith(f"| {label} | {CLASSICAL[peer].engine} | {card['speed']['1080p_p50_ms']:.1f} |")
        assert list(card["speed_by_backend"]) == [CLASSICAL[peer].engine]
    card = json.loads((tiny_models_dir / "student.json").read_text())
    speed = card["speed"]
    assert card["speed_by_backend"] == {"torch": speed}
    assert speed["backend"] == "torch" and speed["1080p_p50_ms"] > 0 and speed["threads"] == 1
    assert speed["fps"] == pytest.approx(1000 / speed["1080p_p50_ms"])
    assert speed["ratio_to_unsharp"] == pytest.approx(speed["1080p_p50_ms"] / speed["unsharp_ms"])
    assert f"| {speed['1080p_p50_ms']:.1f} |" in rows[3]
    # the default student's whole-clip video benchmark: decode + sharpen + encode, every frame counted
    (video,) = card["video_1080p"]
    assert (video["width"], video["height"], video["frames"]) == (64, 48, 6)
    assert 0 < video["end_to_end_fps"] <= video["processing_fps"]
    assert "## Video" in readme and f"| torch | {video['processing_fps']:.1f} |" in readme
    assert ModelCard.read(tiny_models_dir / "student.json").to_json() == card
    project = (tiny_models_dir / "PROJECT.md").read_text()  # the project README carries the same tables
    assert "OLD BLOCK" not in project and "### Speed" in project and f"| {speed['1080p_p50_ms']:.1f} |" in project


def test_write_cards_needs_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoints"):
        write_cards(CardsConfig(out_dir=tmp_path))


def test_quality_backends_score_the_int8_graph_of_models_that_have_one(tiny_models_dir: Path) -> None:
    for name in ("conv4", "resattn", "sepunet", "student-nokd"):
        (tiny_models_dir / f"{name}.pt").unlink()
    cfg = CardsConfig(
        out_dir=tiny_models_dir, max_side=32, limit=1, degradations=("vc",), quality_backends=("onnx-int8",)
    )
    write_cards(cfg, date="2026-01-02")
    student = json.loads((tiny_models_dir / "student.json").read_text())
    int8 = student["metrics_by_backend"]["onnx-int8"]
    assert list(int8) == ["vc", "mean"] and int8["mean"]["worst_image"] == "astronaut/vc"
    assert abs(int8["vc"]["psnr"] - student["metrics"]["vc"]["psnr"]) < 1.0  # quantized: close, not equal
    assert int8["mean"]["gain"] == pytest.approx(int8["vc"]["psnr"] - student["baselines"]["input"]["vc"]["psnr"])
    teacher = json.loads((tiny_models_dir / "teacher.json").read_text())
    assert "metrics_by_backend" not in teacher  # the int8 backend runs luma students only
    assert ModelCard.read(tiny_models_dir / "student.json").to_json() == student


def test_a_model_shipped_with_its_int8_graph_is_scored_on_it_with_its_float_scores_beside(tiny_models_dir) -> None:
    """load(name) runs a shipped int8 graph by default, so the Quality table scores that graph; the float model's
    scores go to metrics_by_backend["onnx"], which the frontier's torch and onnx points then show."""
    for name in ("conv4", "resattn", "sepunet", "student-nokd", "teacher"):
        (tiny_models_dir / f"{name}.pt").unlink()
    student_pt = tiny_models_dir / "student.pt"
    model, _ = load_checkpoint(student_pt)
    export_int8(model, tiny_models_dir / "student.int8.onnx")
    cfg = CardsConfig(
        out_dir=tiny_models_dir, max_side=32, limit=1, degradations=("vc",), quality_backends=("onnx-int8",)
    )
    write_cards(cfg, date="2026-01-02")
    card = ModelCard.read(tiny_models_dir / "student.json")
    assert card.backend == "onnx-int8" == load("student").backend
    assert list(card.metrics_by_backend) == ["onnx"]  # int8 is the default, so only float is scored apart
    (gt,) = load_eval_images(cfg.data, cfg.max_side, cfg.limit).values()
    restored = load("student").sharpen(degrade_image(gt, "vc", seed=0))  # the shipped graph, as the table says
    assert card.metrics.score("vc").psnr == pytest.approx(psnr(to_tensor(restored), to_tensor(gt)).item(), abs=1e-4)
    readme = (tiny_models_dir / "README.md").read_text()
    quality = readme[readme.index("## Quality") : readme.index("## Classical peers")]
    assert "| student | onnx-int8 |" in quality
    frontier = [line.split(" | ") for line in readme[readme.index("## Frontier") :].splitlines()]
    rows = {r[1]: r for r in frontier if r[0] == "| student"}
    float_gain = card.metrics_by_backend["onnx"].score("vc").psnr - card.baselines["input"].score("vc").psnr
    assert list(rows) == ["torch"] and rows["torch"][6] == f"{float_gain:+.2f}"  # no benchmark: one float point
