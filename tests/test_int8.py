"""Tests for the int8 backend: static QDQ quantization of a luma student's working graph, its calibration data, the
shipped-graph pick in load(), the export, and the models it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sharpkd.cli import main
from sharpkd.data import sample_images
from sharpkd.models import build_model
from sharpkd.runtime.backends import (
    BACKENDS,
    CALIBRATION_CROP,
    OnnxInt8Backend,
    calibration_planes,
    quantize_graph,
)
from sharpkd.runtime.export import check_parity, export_int8
from sharpkd.runtime.sharpener import load, shipped_int8_graph, supported_backends


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("rtrep", width=8).eval()


@pytest.fixture(scope="module")
def planes(student) -> list[np.ndarray]:
    """Calibration planes from two sample photos (every preset each), shared by the tests of this module."""
    photos = list(sample_images().values())[:2]
    return calibration_planes(student, photos)


def test_calibration_planes_cover_every_preset_at_working_resolution(student, planes) -> None:
    f = student.cfg.unshuffle
    assert len(planes) == 2 * 6  # two photos x six presets
    assert all(
        p.shape == (1, f * f, CALIBRATION_CROP // f, CALIBRATION_CROP // f) and p.dtype == np.uint8 for p in planes
    )
    assert len({p.tobytes() for p in planes}) == len(planes)  # each preset degrades differently
    with pytest.raises(ValueError, match="at least 256x256"):
        calibration_planes(student, [np.zeros((100, 300, 3), np.uint8)])


def test_quantized_graph_is_int8_and_close_to_eager(student, planes) -> None:
    graph = quantize_graph(student, planes)
    ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
    assert ops.count("QuantizeLinear") >= 4 and "DequantizeLinear" in ops  # QDQ around every conv
    luma = np.ascontiguousarray(sample_images()["astronaut"][:128, :192, 1])  # a uint8 plane, stride multiple
    ref = BACKENDS["onnx"](student).run_luma(luma)
    out = OnnxInt8Backend(student).run_luma(luma)
    assert out.dtype == ref.dtype == np.int16 and out.shape == ref.shape
    assert np.abs(out.astype(int) - ref).mean() < 1.0  # quantized: a little off, never a different image


def test_parity_of_an_exported_int8_graph_is_measured_not_required(tmp_path: Path, student) -> None:
    path = tmp_path / "student.int8.onnx"
    report = export_int8(student, path)
    assert path.stat().st_size > 0
    assert report.mean_abs_diff < 1.0 and report.max_abs_diff <= 255
    again = check_parity(student, path, backend="onnx-int8")
    assert again == report  # the file on disk is what was measured


def test_load_runs_a_shipped_int8_graph_when_no_backend_is_asked(tiny_models_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_model("rtrep", width=8)
    from sharpkd.checkpoint import save_checkpoint

    save_checkpoint(tiny_models_dir / "q.pt", model, meta={"preset": "rtrep"})
    assert shipped_int8_graph(tiny_models_dir / "q.pt") is None
    assert load("q").backend == "onnx"
    export_int8(model, tiny_models_dir / "q.int8.onnx")
    assert shipped_int8_graph(tiny_models_dir / "q.pt") == tiny_models_dir / "q.int8.onnx"
    auto = load("q")
    assert auto.backend == "onnx-int8"
    assert load("q", backend="onnx").backend == "onnx" and load("q", backend="torch").backend == "torch"
    frame = sample_images()["astronaut"][:100, :150]
    diff = np.abs(auto.sharpen(frame).astype(int) - load("q", backend="torch").sharpen(frame).astype(int))
    assert diff.mean() < 1.0


def test_asking_for_onnx_int8_runs_the_shipped_graph_too(tiny_models_dir: Path) -> None:
    from sharpkd.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tiny_models_dir / "s.pt", build_model("rtrep", width=8), meta={"preset": "rtrep"})
    other = build_model("rtrep", width=8)  # other weights: tells the shipped graph from one quantized at load time
    with torch.no_grad():
        for p in other.tail.parameters():
            p.normal_(0, 0.1)
    frame = sample_images()["astronaut"][:64, :96]
    fresh = load("s", backend="onnx-int8").sharpen(frame)  # nothing shipped: quantized from s.pt at load time
    export_int8(other, tiny_models_dir / "s.int8.onnx")
    asked = load("s", backend="onnx-int8")
    assert asked.backend == "onnx-int8"
    assert np.array_equal(asked.sharpen(frame), load("s").sharpen(frame))  # the file auto-selection runs
    assert not np.array_equal(asked.sharpen(frame), fresh)


def test_int8_refuses_models_it_cannot_run(tiny_models_dir: Path) -> None:
    assert supported_backends("student") == ("torch", "onnx", "onnx-int8")  # rt works at 1/4 resolution
    assert supported_backends("teacher", ["onnx-int8", "torch"]) == ("torch",)
    with pytest.raises(ValueError, match="luma students that work at reduced resolution"):
        load("teacher", backend="onnx-int8")
    with pytest.raises(ValueError, match="unknown backend"):
        supported_backends("student", ["gpu"])


def test_cli_export_int8(tmp_path: Path, tiny_models_dir: Path, student, capsys) -> None:
    from sharpkd.checkpoint import save_checkpoint

    save_checkpoint(tiny_models_dir / "rep.pt", student, meta={"preset": "rtrep"})
    out = tmp_path / "rep.int8.onnx"
    assert main(["export", "rep", "-o", str(tmp_path / "rep.onnx"), "--int8", str(out)]) == 0
    assert out.is_file() and f"wrote {out} (int8, static QDQ)" in capsys.readouterr().out
    assert main(["export", "teacher", "-o", str(tmp_path / "t.onnx"), "--int8", str(tmp_path / "t.int8.onnx")]) != 0
    assert "reduced resolution" in capsys.readouterr().err
