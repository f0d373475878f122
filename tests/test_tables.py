"""Tests for reporting.tables: the Markdown tables and sections of models/README.md, and the README block."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharpkd.degrade import PRESETS
from sharpkd.reporting.benchmark import BenchmarkReport, BenchmarkResult
from sharpkd.reporting.card import ModelCard, VideoRun
from sharpkd.reporting.tables import (
    best_classical_note,
    classical_section,
    inject_results,
    intro_section,
    metrics_table,
    quality_section,
    speed_section,
    video_section,
)
from sharpkd.reporting.tuning import PeerTuning, Tuning

ROW = {"vc": {"psnr": 25.0, "ssim": 0.81234}, "mean": {"psnr": 25.0, "ssim": 0.81234, "gain": 1.5}}


def test_metrics_table_has_one_row_per_method() -> None:
    table = metrics_table({"degradations": ["vc"], "rows": {"input": ROW, "m": ROW}}, extra={"params": {"m": "12"}})
    lines = table.splitlines()
    assert lines[0] == "| method | params | vc SSIM | vc PSNR | mean PSNR | gain (dB) |"
    assert lines[2] == "| input (degraded) |  | 0.8123 | 25.00 | 25.00 | +1.50 |"
    assert lines[3] == "| m | 12 | 0.8123 | 25.00 | 25.00 | +1.50 |"
    assert len(lines) == 4


def test_metrics_table_names_the_worst_image_when_scored() -> None:
    worst = {"vc": dict(ROW["vc"]), "mean": ROW["mean"] | {"worst_gain": -0.25, "worst_image": "face/vc"}}
    lines = metrics_table({"degradations": ["vc"], "rows": {"input": ROW, "m": worst}}).splitlines()
    assert lines[0] == "| method | vc SSIM | vc PSNR | mean PSNR | gain (dB) | worst image |"
    assert lines[2].endswith("| +1.50 |  |")  # the input has no worst gain: it is the reference
    assert lines[3].endswith("| +1.50 | -0.25 (face/vc) |")


def _six(offset: float) -> dict:
    """A row over the six presets: PSNR 20, 21, ... 25 plus ``offset``, with both means (gain over the plain one)."""
    row = {d: {"psnr": 20.0 + i + offset, "ssim": 0.5} for i, d in enumerate(PRESETS)}
    return row | {
        "synthetic": {"psnr": 21.5 + offset, "ssim": 0.5, "gain": offset},
        "mean": {"psnr": 22.5 + offset, "ssim": 0.5, "gain": offset},
    }


def test_six_preset_table_has_the_synthetic_mean_the_peers_settings_and_the_best_row() -> None:
    rows = {"input": _six(0.0), "cas": _six(0.5), "best-classical": _six(1.0), "student": _six(2.0)}
    result = {
        "degradations": list(PRESETS),
        "rows": rows,
        "classical": {"cas": {"strength": 0.75}},
        "best_classical": {d: {"method": "cas", "setting": {"strength": 0.25}} for d in PRESETS[:2]},
    }
    lines = metrics_table(result).splitlines()
    header = lines[0].split(" | ")
    assert header[1:3] == ["downup2 SSIM", "downup2 PSNR"] and header[11:13] == ["vp8 SSIM", "vp8 PSNR"]
    assert lines[0].endswith("| synthetic PSNR | synthetic gain | mean PSNR | gain (dB) |")
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| input (degraded)",
        "| cas (strength 0.75)",
        "| best classical, tuned per preset",
        "| student",
    ]
    assert lines[-1].endswith("| 0.5000 | 27.00 | 23.50 | +2.00 | 24.50 | +2.00 |")  # vp8, then the means
    assert best_classical_note(result) == (
        "best classical, tuned per preset: downup2 cas (strength 0.25); gauss1.5 cas (strength 0.25)."
    )
    assert best_classical_note({"rows": rows}) is None


def test_classical_section_lists_every_grid_setting_and_bolds_the_tuned_one() -> None:
    degs = ["vc", "h264"]
    base = {"vc": {"psnr": 27.0, "ssim": 0.8}, "h264": {"psnr": 25.0, "ssim": 0.7}}
    rows = [
        {"vc": {"psnr": 27.5, "ssim": 0.8}, "h264": {"psnr": 24.0, "ssim": 0.7}, "mean": {"gain": -0.25}},
        {"vc": {"psnr": 27.2, "ssim": 0.8}, "h264": {"psnr": 25.1, "ssim": 0.7}, "mean": {"gain": 0.15}},
    ]
    peer = PeerTuning("cas", [{"strength": 0.9}, {"strength": 0.25}], rows, best=1)
    tuning = Tuning(degs, ["a"], {**base, "mean": {"psnr": 26.0, "ssim": 0.75, "gain": 0.0}}, {"cas": peer})
    lines = classical_section(tuning, {"cas": "FFmpeg contrast adaptive sharpening"})
    assert lines[0] == "## Classical peers" and lines[-1] == ""
    assert "- `cas`: FFmpeg contrast adaptive sharpening" in lines
    table = [line for line in lines if line.startswith("| ")]
    assert table == [
        "| peer | setting | vc | h264 | mean |",
        "| cas | strength 0.9 | +0.50 | -1.00 | -0.25 |",
        "| cas | **strength 0.25** | +0.20 | +0.10 | +0.15 |",
    ]


def test_intro_and_quality_sections() -> None:
    intro = ["# sharpkd models", "", "Regenerated on 2026-01-02 by:", "", "```", "sharpkd cards", "```", ""]
    assert intro_section("", "2026-01-02")[:8] == intro  # an empty command shows as plain `sharpkd cards`
    evaluation = {"degradations": ["vc"], "images": ["a", "b"], "rows": {"input": ROW, "student": ROW}}
    card = ModelCard(name="student", parameters=9280, macs_1080p=1_194_393_600, backend="onnx-int8")
    lines = quality_section(evaluation, [card], "val", 64)
    assert lines[0] == "## Quality" and lines[-1] == ""
    assert lines[2].startswith("2 validation images from `val` (downscaled to at most 64 px).")
    table = lines[-2].splitlines()
    assert table[0].startswith("| method | backend | params | GMACs @1080p | vc SSIM |")
    assert table[3] == "| student | onnx-int8 | 9,280 | 1.19 | 0.8123 | 25.00 | 25.00 | +1.50 |"


def _result(model: str, backend: str, p50: float, peak_mb: float | None) -> BenchmarkResult:
    return BenchmarkResult(
        model=model,
        backend=backend,
        resolution="1920x1080",
        width=1920,
        height=1080,
        p50_ms=p50,
        p95_ms=p50 + 1,
        fps=1000 / p50,
        macs=0,
        parameters=0,
        peak_mb=peak_mb,
        threads=2,
        ratio_to_unsharp=p50 / 5.0,
        unsharp_ms=5.0,
    )


def test_speed_section_names_models_and_marks_missing_memory() -> None:
    results = [_result("unsharp", "opencv", 10.0, 13.2), _result("/m/student.pt", "torch", 50.0, None)]
    report = BenchmarkReport(results, {"1920x1080": 6.5}, "AMD EPYC", 2, "2.13.0", repeats=15, warmup=3)
    lines = speed_section(report, {"/m/student.pt": "student", "unsharp": "unsharp mask"})
    assert lines[0] == "## Speed" and lines[-1] == ""
    assert "of 15 runs after 3 warm-up, on AMD EPYC with 2 thread(s), torch 2.13.0." in lines[2]
    assert "took 6.5 ms)." in lines[2]
    assert lines[-3] == "| unsharp mask | opencv | 10.0 | 11.0 | 100.0 | 5.0 | 2.00 | 13 |"
    assert lines[-2] == "| student | torch | 50.0 | 51.0 | 20.0 | 5.0 | 10.00 | n/a |"


def test_video_section_has_one_row_per_backend() -> None:
    runs = [
        VideoRun("m.pt", backend, 64, 48, 6, processing_fps=fps, end_to_end_fps=fps / 2, flicker_ratio=1.25)
        for backend, fps in (("torch", 30.0), ("onnx", 40.0))
    ]
    lines = video_section(runs)
    assert lines[0] == "## Video" and "64x48 clip of 6 frames" in lines[2]
    assert lines[-3:] == ["| torch | 30.0 | 15.0 | 1.250 |", "| onnx | 40.0 | 20.0 | 1.250 |", ""]


def test_inject_results_fills_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nintro\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\n## After\n")
    inject_results(readme, ["# sharpkd models", "", "## Quality", "", "| a | b |"])
    text = readme.read_text()
    assert "old" not in text and "### Quality" in text and "| a | b |" in text
    assert text.startswith("# Title\n\nintro\n") and text.endswith("## After\n")
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="results:start"):
        inject_results(readme, ["# t"])
