"""Tests for reporting.benchmark on tiny frames: resolutions, the synthetic frame, conv MAC counting, and the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from sharpkd.errors import CheckpointError
from sharpkd.models import build_model, count_parameters
from sharpkd.reporting.benchmark import (
    BenchmarkConfig,
    _PeakMemory,
    conv_macs,
    parse_resolution,
    run_benchmark,
    synthetic_frame,
)
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


@pytest.mark.parametrize(("width", "height"), [(64, 48), (1, 1), (333, 17), (1300, 700)])
def test_synthetic_frame_is_a_deterministic_textured_photo(width: int, height: int) -> None:
    frame = synthetic_frame(width, height)
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    np.testing.assert_array_equal(frame, synthetic_frame(width, height))
    if width * height > 100:
        assert frame.std() > 20  # real content, not a constant frame a codec or cache could shortcut


def test_synthetic_frame_rejects_empty_size() -> None:
    with pytest.raises(ValueError, match="0x5"):
        synthetic_frame(0, 5)


def test_conv_macs_counts_each_conv_by_formula() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),  # 10*12 * 6 outputs * 3 inputs * 9 taps
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),  # depthwise: 1 input channel per output
        nn.Conv2d(6, 4, 1, stride=2),  # 5*6 * 4 outputs * 6 inputs
    )
    expected = 10 * 12 * 6 * 3 * 9 + 10 * 12 * 6 * 1 * 9 + 5 * 6 * 4 * 6
    assert conv_macs(model, 10, 12) == expected
    assert next(model.parameters()).device.type == "cpu"  # counted on a meta copy; the model itself is untouched


def test_conv_macs_of_realtime_student_is_576_per_pixel() -> None:
    # the rt preset's docstring promises ~576 MAC/pixel: 4 convs of width 16 on the x4-unshuffled luma
    assert conv_macs(build_model("rt"), 48, 64) == 576 * 48 * 64


def test_peak_memory_sees_torch_allocations() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to reset the RSS high-water mark")
    memory = _PeakMemory()
    memory.start()
    x = torch.ones(64 * 2**20 // 4)  # 64 MB through torch's CPU allocator
    peak = memory.peak_mb()
    del x
    assert 60 <= peak < 200


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
