"""Tests for reporting.catalog: the shipped models' table rows, quality-against-speed points and README, from cards."""

from __future__ import annotations

import json

import pytest

from sharpkd.reporting.card import read_cards
from sharpkd.reporting.catalog import classical_peers_table, model_cards_table, models_readme, quality_speed_points

CARD = {
    "name": "student",
    "kind": "student",
    "preset": "rt",
    "parameters": 5000,
    "macs_1080p": 1.2e9,
    "metrics": {"vc": {"psnr": 28.5, "ssim": 0.8}, "mean": {"psnr": 29.0, "ssim": 0.85}},
    "speed": {"1080p_p50_ms": 20.0, "fps": 50.0},
}


def test_model_cards_table_reads_cards_and_skips_broken_ones(tmp_path):
    (tmp_path / "student.json").write_text(json.dumps(CARD))
    (tmp_path / "teacher.json").write_text(json.dumps({"kind": "teacher", "metrics": {"mean": {"psnr": 31.0}}}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")

    assert [c.name for c in read_cards(tmp_path)] == ["student", "teacher"]
    rows = {row["model"]: row for row in model_cards_table(tmp_path)}
    assert set(rows) == {"student", "teacher"}
    student = rows["student"]
    assert student["GMAC/frame (1080p)"] == 1.2 and student["PSNR (mean)"] == 29.0 and student["FPS"] == 50.0
    assert student["PSNR vc"] == 28.5 and student["PSNR downup2"] is None
    assert rows["teacher"]["ms/frame (1080p, p50)"] is None and rows["teacher"]["PSNR (mean)"] == 31.0

    points = quality_speed_points(tmp_path)  # the teacher has no speed, so it is not plotted
    assert [(p["model"], p["psnr"], p["fps"]) for p in points] == [("student", 29.0, 50.0)]


PEER = {
    "name": "cas",
    "kind": "classical",
    "metrics": {"mean": {"psnr": 26.0, "gain": 0.09}, "synthetic": {"psnr": 27.0, "gain": 0.14}},
    "classical": {
        "description": "FFmpeg contrast adaptive sharpening",
        "engine": "ffmpeg",
        "setting": {"strength": 0.75},
        "best_for": {"vc": {"strength": 0.25}, "h264": {"strength": 0.0}},
        "grid": [{"setting": {"strength": s}} for s in (0.0, 0.25, 0.75)],
    },
    "speed": {"1080p_p50_ms": 10.0, "fps": 100.0},
}


def test_classical_peers_table_lists_only_peer_cards(tmp_path):
    (tmp_path / "student.json").write_text(json.dumps(CARD))
    (tmp_path / "cas.json").write_text(json.dumps(PEER))
    (tmp_path / "unsharp.json").write_text(json.dumps({"name": "unsharp", "kind": "classical"}))  # no section yet
    assert classical_peers_table(tmp_path) == [
        {
            "peer": "cas",
            "what it is": "FFmpeg contrast adaptive sharpening",
            "engine": "ffmpeg",
            "tuned setting": "strength 0.75",
            "settings tried": 3,
            "gain (mean)": 0.09,
            "gain (synthetic)": 0.14,
            "best classical on": "vc, h264",
            "FPS": 100.0,
        }
    ]
    rows = {row["model"]: row for row in model_cards_table(tmp_path)}  # the peers are in the cards table too
    assert rows["cas"]["kind"] == "classical" and rows["cas"]["gain (synthetic)"] == 0.14
    assert rows["student"]["gain (synthetic)"] is None


def test_quality_speed_points_derive_fps_from_ms(tmp_path):
    card = dict(CARD, speed={"1080p_p50_ms": 40.0})
    (tmp_path / "student.json").write_text(json.dumps(card))
    assert quality_speed_points(tmp_path)[0]["fps"] == pytest.approx(25.0)


def test_model_cards_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path / "missing"))
    assert read_cards() == [] and model_cards_table() == [] and quality_speed_points() == []
    assert classical_peers_table() == []
    assert models_readme() is None
    (tmp_path / "README.md").write_text("# Models\n")
    assert models_readme(tmp_path) == "# Models\n"


def test_frontier_points_one_per_network_backend_and_peer(tmp_path):
    from sharpkd.reporting.catalog import frontier_points

    base = {"input": {"vc": {"psnr": 30.0, "ssim": 0.8}, "mean": {"psnr": 30.0, "ssim": 0.8, "gain": 0.0}}}

    def metrics(psnr, worst):
        return {
            "vc": {"psnr": psnr, "ssim": 0.9, "worst_gain": worst, "worst_image": "face"},
            "mean": {"psnr": psnr, "ssim": 0.9, "gain": psnr - 30.0, "worst_gain": worst, "worst_image": "face/vc"},
        }

    student = {
        "name": "student",
        "kind": "student",
        "parameters": 100,
        "macs_1080p": 2 * 1920 * 1080,
        "metrics": metrics(31.0, 0.2),
        "metrics_by_backend": {"onnx-int8": metrics(30.9, 0.1)},
        "baselines": base,
        "speed_by_backend": {
            "onnx": {"1080p_p50_ms": 10.0, "1080p_p95_ms": 12.0},
            "onnx-int8": {"1080p_p50_ms": 7.0, "1080p_p95_ms": 8.0},
        },
    }
    peer = {
        "name": "cas",
        "kind": "classical",
        "metrics": metrics(30.5, -0.1),
        "baselines": base,
        "speed_by_backend": {"ffmpeg": {"1080p_p50_ms": 3.0, "1080p_p95_ms": 4.0}},
    }
    teacher = {"name": "teacher", "kind": "teacher", "metrics": metrics(32.0, 1.0), "baselines": base}  # no speed
    for card in (student, peer, teacher):
        (tmp_path / f"{card['name']}.json").write_text(json.dumps(card))
    points = {(p["model"], p["backend"]): p for p in frontier_points(tmp_path)}
    assert list(points) == [("cas", "ffmpeg"), ("student", "onnx"), ("student", "onnx-int8")]  # file order
    assert points[("student", "onnx")]["mean"] == pytest.approx(1.0)
    assert points[("student", "onnx-int8")]["mean"] == pytest.approx(0.9)  # the quantized graph's own scores
    assert points[("student", "onnx-int8")]["worst_gain"] == 0.1 and points[("student", "onnx")]["mac_per_px"] == 2
    assert points[("cas", "ffmpeg")]["gains"] == {"vc": pytest.approx(0.5)} and points[("cas", "ffmpeg")]["p95_ms"] == 4
