"""Tests for reporting.benchmark on tiny frames: resolutions, the report, and bad configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharpkd.errors import CheckpointError
from sharpkd.models import count_parameters
from sharpkd.reporting.benchmark import BenchmarkConfig, parse_resolution, run_benchmark
from sharpkd.reporting.measure import conv_macs
from sharpkd.runtime.sharpener import load


@pytest.mark.parametrize(
    ("text", "size"), [("1080p", (1920, 1080)), ("4K", (3840, 2160)), ("720p", (1280, 720)), ("64x48", (64, 48))]
)
def test_parse_resolution(text: str, size: tuple[int, int]) -> None:
    assert parse_resolution(text) == size


@pytest.mark.parametrize("text", ["1080", "0x48", "64x", "big"])
def test_parse_resolution_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="unknown resolution"):
        parse_resolution(text)


def test_run_benchmark_in_process(tiny_models_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    cfg = BenchmarkConfig(
        models=("student", "unsharp", "input"),
        resolutions=("64x48", "32x24"),
        backends=("torch", "onnx"),
        repeats=3,
        warmup=1,
        threads=1,
        isolate=False,
    )
    calls = []
    report = run_benchmark(cfg, progress=lambda done, total, label: calls.append((done, total, label)))

    # student: 2 resolutions x 2 backends; classical methods once per resolution
    keys = [(r.model, r.resolution, r.backend) for r in report.results]
    assert keys == [
        ("student", "64x48", "torch"),
        ("student", "64x48", "onnx"),
        ("student", "32x24", "torch"),
        ("student", "32x24", "onnx"),
        ("unsharp", "64x48", "opencv"),
        ("unsharp", "32x24", "opencv"),
        ("input", "64x48", "none"),
        ("input", "32x24", "none"),
    ]
    assert set(report.unsharp_ms) == {"64x48", "32x24"} and min(report.unsharp_ms.values()) > 0
    student = load("student").model
    for r in report.results:
        assert 0 < r.p50_ms <= r.p95_ms
        assert r.fps == pytest.approx(1000.0 / r.p50_ms)
        assert r.unsharp_ms > 0 and r.ratio_to_unsharp == pytest.approx(
            r.p50_ms / r.unsharp_ms
        )  # same-process reference
        assert r.threads == 1 and (r.width, r.height) == parse_resolution(r.resolution)
        if r.model == "student":
            assert r.parameters == count_parameters(student)
            assert r.macs == conv_macs(student, r.height, r.width) > 0
        else:
            assert r.parameters == 0 and r.macs == 0
    assert calls[0] == (0, 10, "opencv-unsharp 64x48") and calls[-1] == (10, 10, "done")  # 2 references + 8 rows
    assert report.to_dict()["results"][0]["model"] == "student" and report.cpu


def test_run_benchmark_rejects_bad_config(tiny_models_dir: Path) -> None:
    with pytest.raises(ValueError, match="repeats"):
        run_benchmark(BenchmarkConfig(repeats=0))
    with pytest.raises(ValueError, match="cuda"):
        run_benchmark(BenchmarkConfig(backends=("cuda",)))
    with pytest.raises(ValueError, match="8k"):
        run_benchmark(BenchmarkConfig(resolutions=("8k",)))
    with pytest.raises(CheckpointError, match="nope"):
        run_benchmark(BenchmarkConfig(models=("nope",), resolutions=("32x24",), backends=("torch",), isolate=False))


def test_the_ffmpeg_peers_are_timed_with_their_engine_and_setting(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("av")
    import sharpkd.runtime.sharpener as sharpener

    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))
    loaded = []

    def spy(name, **kw):
        loaded.append((name, kw["setting"], kw["threads"]))
        return load(name, **kw)

    monkeypatch.setattr(sharpener, "load", spy)
    cfg = BenchmarkConfig(
        models=("cas", "ffmpeg-unsharp", "unsharp"),
        resolutions=("32x24",),
        backends=("torch", "onnx"),  # classical methods ignore the backends: one row each, named by engine
        repeats=2,
        warmup=1,
        threads=1,
        isolate=False,
        classical_settings={"cas": {"strength": 0.9}},
    )
    report = run_benchmark(cfg)
    assert [(r.model, r.backend) for r in report.results] == [
        ("cas", "ffmpeg"),
        ("ffmpeg-unsharp", "ffmpeg"),
        ("unsharp", "opencv"),
    ]
    assert all(r.p50_ms > 0 and r.parameters == 0 and r.macs == 0 for r in report.results)
    # the given setting, else what load() picks (the card, here none); the FFmpeg filters run on the thread count
    assert loaded == [("cas", {"strength": 0.9}, 1), ("ffmpeg-unsharp", None, 1), ("unsharp", None, 1)]


def test_the_default_benchmark_times_the_peers() -> None:
    assert BenchmarkConfig().models == ("student", "teacher", "unsharp", "cas", "ffmpeg-unsharp")
