"""Tests for reporting.card: the ModelCard schema reads every shipped card (models and classical peers) and writes it
back unchanged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sharpkd.errors import CardError, SharpkdError
from sharpkd.reporting.benchmark import BenchmarkReport, BenchmarkResult
from sharpkd.reporting.card import Classical, GridPoint, MeanScore, ModelCard, Quality, Score, Speed, read_cards
from sharpkd.runtime.classical import list_peers

SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "models"
SHIPPED_CARDS = sorted(SHIPPED_MODELS.glob("*.json"))


def test_every_checkpoint_has_a_shipped_card() -> None:
    # the other cards are the classical peers' (written by the same `sharpkd cards`), which have no checkpoint
    checkpoints = {p.stem for p in SHIPPED_MODELS.glob("*.pt")}
    assert checkpoints <= {p.stem for p in SHIPPED_CARDS}
    for path in SHIPPED_CARDS:
        if path.stem not in checkpoints:
            card = ModelCard.read(path)
            assert path.stem in list_peers() and card.kind == "classical" and card.classical is not None


@pytest.mark.parametrize("path", SHIPPED_CARDS, ids=lambda p: p.stem)
def test_shipped_card_round_trips(path: Path, tmp_path: Path) -> None:
    card = ModelCard.read(path)
    assert card.name == path.stem and card.speed is not None and card.metrics.mean is not None
    copy = card.write(tmp_path / path.name)
    assert json.loads(copy.read_text()) == json.loads(path.read_text())
    assert copy.read_text() == path.read_text()  # same keys, same order, same numbers, same formatting
    assert ModelCard.read(copy) == card


def test_shipped_student_card_reads_into_the_dataclass() -> None:
    card = ModelCard.read(SHIPPED_MODELS / "student.json")
    raw = json.loads((SHIPPED_MODELS / "student.json").read_text())
    assert card.kind == "student" and card.parameters == raw["parameters"]
    assert card.metrics.score("mean").psnr == raw["metrics"]["mean"]["psnr"]
    assert card.metrics.score("vc").ssim == raw["metrics"]["vc"]["ssim"]
    assert card.baselines["input"].score("mean").gain == 0.0
    backends = ["torch", "onnx", "onnx-int8"]  # the cards command's --bench-backends
    assert card.speed.p50_ms == raw["speed"]["1080p_p50_ms"] and list(card.speed_by_backend) == backends
    assert [v.backend for v in card.video_1080p] == backends
    int8 = card.metrics_by_backend["onnx-int8"]  # --quality-backends: the quantized graph's own scores
    assert int8.score("mean").psnr == raw["metrics_by_backend"]["onnx-int8"]["mean"]["psnr"]
    assert card.metrics.score("mean").worst_image == raw["metrics"]["mean"]["worst_image"]
    assert card.training["steps"] == raw["training"]["steps"] and card.generated.date == raw["generated"]["date"]


def test_partial_card_reads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "teacher.json"
    path.write_text(json.dumps({"kind": "teacher", "metrics": {"mean": {"psnr": 31.0}}, "extra": 1}))
    card = ModelCard.read(path)
    assert card.name == "teacher" and card.kind == "teacher" and card.preset is None and card.parameters is None
    assert card.metrics.score("mean") == MeanScore(psnr=31.0) and card.metrics.score("vc") == Score()
    assert card.speed is None and card.speed_by_backend == {} and card.video_1080p == []
    written = card.to_json()
    # the sections write_cards always writes are there; the benchmark ones only when present; unknown keys dropped
    assert list(written) == [
        "name",
        "preset",
        "kind",
        "config",
        "parameters",
        "macs_1080p",
        "metrics",
        "baselines",
        "validation",
        "training",
        "generated",
    ]
    assert written["metrics"] == {"mean": {"psnr": 31.0, "ssim": None, "gain": None}}
    assert ModelCard.from_json(written) == card


def test_a_classical_peer_card_round_trips_with_its_grid_and_synthetic_means(tmp_path: Path) -> None:
    metrics = {
        "vc": {"psnr": 27.0, "ssim": 0.8},
        "synthetic": {"psnr": 27.0, "ssim": 0.8, "gain": 0.1},
        "mean": {"psnr": 26.0, "ssim": 0.7, "gain": 0.05},
    }
    raw = {
        "name": "cas",
        "kind": "classical",
        "metrics": metrics,
        "classical": {
            "description": "FFmpeg contrast adaptive sharpening",
            "engine": "ffmpeg",
            "setting": {"strength": 0.75},
            "objective": "best mean PSNR gain",
            "best_for": {"vc": {"strength": 0.25}},
            "grid": [{"setting": {"strength": s}, "metrics": metrics} for s in (0.25, 0.75)],
        },
    }
    (tmp_path / "cas.json").write_text(json.dumps(raw))
    card = ModelCard.read(tmp_path / "cas.json")
    assert card.metrics.score("synthetic") == MeanScore(27.0, 0.8, gain=0.1)
    assert list(card.metrics.degradations) == ["vc"]
    assert card.metrics.score("mean").gain == 0.05
    assert card.classical == Classical(
        "FFmpeg contrast adaptive sharpening",
        "ffmpeg",
        {"strength": 0.75},
        "best mean PSNR gain",
        {"vc": {"strength": 0.25}},
        [GridPoint({"strength": s}, Quality.from_json(metrics)) for s in (0.25, 0.75)],
    )
    written = card.to_json()
    assert written["classical"] == raw["classical"] and written["metrics"] == metrics
    assert list(written).index("classical") == list(written).index("validation") + 1
    assert "classical" not in ModelCard(name="student").to_json()  # model cards have no such section


def test_non_finite_numbers_and_tuples_are_written_as_strict_json() -> None:
    metrics = Quality({"vc": Score(float("inf"), 0.5)}, MeanScore(float("nan"), 0.5, gain=0.0))
    card = ModelCard(name="x", config={"enc_blocks": (1, 2)}, metrics=metrics)
    written = card.to_json()
    assert written["metrics"] == {"vc": {"psnr": None, "ssim": 0.5}, "mean": {"psnr": None, "ssim": 0.5, "gain": 0.0}}
    assert written["config"] == {"enc_blocks": [1, 2]}
    json.dumps(written, allow_nan=False)  # raises on NaN or Infinity


def test_speed_from_a_benchmark_result_uses_the_card_keys() -> None:
    result = BenchmarkResult("m.pt", "onnx", "1920x1080", 1920, 1080, 20.0, 25.0, 50.0, 0, 0, None, 2, 4.0, 5.0)
    report = BenchmarkReport([result], {"1920x1080": 5.0}, "AMD EPYC", 2, "2.13.0", repeats=15, warmup=3)
    assert Speed.from_result(result, report).to_json() == {
        "backend": "onnx",
        "1080p_p50_ms": 20.0,
        "1080p_p95_ms": 25.0,
        "fps": 50.0,
        "ratio_to_unsharp": 4.0,
        "unsharp_ms": 5.0,
        "peak_mb": None,
        "threads": 2,
        "cpu": "AMD EPYC",
        "repeats": 15,
    }


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "cannot read model card"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"speed": {"fps": "fast"}}', "speed.fps must be a number, got 'fast'"),
        ('{"parameters": true}', "parameters must be an integer, got True"),
        ('{"metrics": {"vc": 3}}', "metrics.vc must be a JSON object"),
        ('{"validation": {"images": ["a", 2]}}', r"validation.images\[1\] must be a string"),
        ('{"video_1080p": [{"width": 1.5}]}', r"video_1080p\[0\].width must be an integer"),
        ('{"classical": {"setting": [1]}}', "classical.setting must be a JSON object"),
        ('{"classical": {"grid": [{"metrics": {"vc": 1}}]}}', r"classical.grid\[0\].metrics.vc must be a JSON object"),
        ('{"metrics": {"synthetic": {"gain": "big"}}}', "metrics.synthetic.gain must be a number"),
    ],
)
def test_bad_cards_raise_card_error_naming_the_file_and_field(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CardError, match=match) as info:
        ModelCard.read(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, SharpkdError) and isinstance(info.value, ValueError)


def test_from_json_needs_a_name() -> None:
    with pytest.raises(CardError, match="no name"):
        ModelCard.from_json({"kind": "student"})
    assert ModelCard.from_json({"kind": "student"}, default_name="s").name == "s"


def test_read_cards_skips_unreadable_files_with_a_warning(tmp_path: Path, caplog) -> None:
    ModelCard(name="b").write(tmp_path / "b.json")
    (tmp_path / "a.json").write_text('{"name": "a"}')
    (tmp_path / "c.json").write_text('{"parameters": "many"}')
    with caplog.at_level(logging.WARNING, logger="sharpkd.reporting.card"):
        cards = read_cards(tmp_path)
    assert [c.name for c in cards] == ["a", "b"]
    assert any("skipping model card" in r.message and "c.json" in r.message for r in caplog.records)
    assert read_cards(tmp_path / "missing") == []
