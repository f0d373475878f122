"""Export: ONNX and TorchScript graphs agree with eager PyTorch on uint8 output, for the luma and the image paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from synthetic import wave_frame as _frame

import sharpkd
from sharpkd.data import to_tensor, to_uint8
from sharpkd.models import build_model
from sharpkd.runtime.backends import BACKENDS, LumaDelta, OnnxBackend, export_onnx_bytes, graph_spec
from sharpkd.runtime.export import PARITY_SIZES, check_parity, export_onnx, export_torchscript
from sharpkd.runtime.sharpener import Sharpener

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MODELS = {
    "rt": dict(width=8),
    "sepunet": dict(width=4),
    "conv4": dict(width=8),
    "nafnet": dict(width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, **MODELS[name]).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(("beta", "gamma")):
                p.normal_(0.0, 0.5)  # NAFNet's zero-initialised scales would make its blocks identities
        if name == "rt":
            torch.nn.init.normal_(model.tail.weight, std=0.3)  # a visible residual (zero-initialised head)
    return model


@pytest.mark.parametrize("name", ["rt", "sepunet", "conv4", "nafnet"])
def test_export_onnx_parity(tmp_path: Path, name: str) -> None:
    model = _model(name)
    report = export_onnx(model, tmp_path / "out" / f"{name}.onnx")
    assert report is not None and report.ok
    assert report.max_abs_diff <= 1 and report.mean_abs_diff < 0.05
    assert report.sizes == [(67, 93), (128, 160)] == list(PARITY_SIZES)
    graph = onnx.load(str(tmp_path / "out" / f"{name}.onnx"))
    onnx.checker.check_model(graph)
    inputs = [i.name for i in graph.graph.input]
    assert inputs == (["luma"] if name == "rt" else ["image"])
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"]  # dynamic H and W


def test_onnx_graph_matches_eager_on_raw_tensors() -> None:
    model = _model("sepunet")
    session = ort.InferenceSession(export_onnx_bytes(model), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 36, 44)  # another size than the export example: dynamic axes at work
    (y,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-4


def test_luma_graph_is_uint8_in_int16_out() -> None:
    model = _model("rt")
    session = ort.InferenceSession(export_onnx_bytes(model), providers=["CPUExecutionProvider"])
    luma = np.random.default_rng(0).integers(0, 256, (1, 1, 24, 40), dtype=np.uint8)
    (delta,) = session.run(None, {"luma": luma})
    assert delta.dtype == np.int16 and delta.shape == luma.shape
    with torch.no_grad():
        ref = LumaDelta(model)(torch.from_numpy(luma)).numpy()
    assert np.abs(delta.astype(int) - ref.astype(int)).max() <= 1
    assert np.abs(ref).max() > 0


@pytest.mark.parametrize("name", ["student", "sepunet", "teacher", "resattn"])
@pytest.mark.parametrize("size", [(1, 1), (37, 51)])
def test_onnx_backend_matches_torch_backend(tiny_models_dir: Path, name: str, size: tuple[int, int]) -> None:
    frame = _frame(*size, seed=3)
    torch_out = sharpkd.load(name).sharpen(frame)
    onnx_runner = sharpkd.load(name, backend="onnx", threads=1)
    assert onnx_runner.backend == "onnx"
    onnx_out = onnx_runner.sharpen(frame)
    assert onnx_out.shape == frame.shape and onnx_out.dtype == np.uint8
    assert np.abs(onnx_out.astype(int) - torch_out.astype(int)).max() <= 1


def test_check_parity_on_given_frames() -> None:
    model = _model("conv4")
    frames = [_frame(9, 13), _frame(40, 24, seed=1)]
    report = check_parity(model, frames=frames)
    assert report.ok and report.sizes == [(9, 13), (40, 24)]


def test_export_without_check(tmp_path: Path) -> None:
    assert export_onnx(_model("conv4"), tmp_path / "c.onnx", check=False) is None
    assert (tmp_path / "c.onnx").stat().st_size > 1000


def test_parity_failure_is_reported(tmp_path: Path) -> None:
    model = _model("conv4")
    path = tmp_path / "c.onnx"
    export_onnx(model, path, check=False)
    with torch.no_grad():
        model.tail.bias.add_(0.1)  # eager now differs from the written graph by ~25 levels
    report = check_parity(model, path)
    assert not report.ok and report.max_abs_diff > 10


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["rt", "sepunet"])
def test_torchscript_export(tmp_path: Path, name: str) -> None:
    model = _model(name)
    path = export_torchscript(model, tmp_path / f"{name}.ts")
    loaded = torch.jit.load(str(path))
    if name == "rt":
        luma = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8)
        with torch.no_grad():
            assert torch.equal(loaded(luma), LumaDelta(model)(luma))
    else:
        frame = _frame(32, 32)
        with torch.no_grad():
            out = to_uint8(loaded(to_tensor(frame)).clamp(0, 1))
            ref = to_uint8(model(to_tensor(frame)).clamp(0, 1))
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_graph_spec_picks_the_luma_graph_for_luma_students() -> None:
    rt, sepunet = _model("rt"), _model("sepunet")
    spec = graph_spec(rt)
    side = 8 * rt.stride  # the example is 8 strides wide
    assert isinstance(spec.module, LumaDelta) and spec.input_name == "luma"
    assert spec.example[0].dtype == torch.uint8 and spec.example[0].shape == (1, 1, side, side)
    spec = graph_spec(sepunet)
    side = 8 * sepunet.stride
    assert spec.module is sepunet and spec.input_name == "image" and spec.example[0].shape == (1, 3, side, side)


def test_onnx_threads_are_session_local() -> None:
    saved = torch.get_num_threads()
    backend = OnnxBackend(_model("conv4"), threads=saved + 1)
    assert backend.session.get_session_options().intra_op_num_threads == saved + 1
    assert torch.get_num_threads() == saved


def test_an_onnx_variant_only_overrides_build_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    # the shape of a later int8 backend: same session and calls, another graph
    shifted = _model("conv4")
    with torch.no_grad():
        shifted.tail.bias.add_(0.2)

    class Shifted(OnnxBackend):
        name = "shifted"

        def build_graph(self, model: nn.Module) -> bytes:
            return export_onnx_bytes(shifted)

    monkeypatch.setitem(BACKENDS, "shifted", Shifted)
    frame = _frame(20, 28)
    out = Sharpener("conv4", _model("conv4"), backend="shifted").sharpen(frame)
    ref = Sharpener("shifted", shifted).sharpen(frame)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_onnx_backend_float_path_of_a_luma_student_runs_eagerly() -> None:
    model = _model("rt")
    x = torch.rand(1, 3, 24, 32)
    y = Sharpener("rt", model, backend="onnx").sharpen_tensor(x)
    with torch.no_grad():
        ref = model(x).clamp(0, 1)
    assert torch.allclose(y, ref, atol=1e-6)


def _randomized_rep_student() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("rt", width=8, rep=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # every branch non-zero, the head included
    return model


def test_rep_student_exports_plain_convs_with_parity(tmp_path: Path) -> None:
    model = _randomized_rep_student()
    report = export_onnx(model, tmp_path / "rep.onnx")
    assert report is not None and report.ok
    graph = onnx.load(str(tmp_path / "rep.onnx"))
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    assert len(convs) == 4  # intro, two body convs, tail: one plain conv per RepConv
    assert not {"Einsum", "Pad"} & {n.op_type for n in graph.graph.node}


def test_rep_student_torchscript_matches_eager(tmp_path: Path) -> None:
    model = _randomized_rep_student()
    traced = torch.jit.load(str(export_torchscript(model, tmp_path / "rep.pt")))
    luma = torch.randint(0, 256, (1, 1, 32, 48), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(traced(luma), LumaDelta(model)(luma))


def test_space_to_depth_matches_pixel_unshuffle_and_inverts() -> None:
    from sharpkd.runtime.backends import depth_to_space, space_to_depth

    plane = np.random.default_rng(0).integers(0, 256, (12, 20), dtype=np.uint8)
    z = space_to_depth(plane, 4)
    ref = torch.nn.functional.pixel_unshuffle(torch.from_numpy(plane)[None, None], 4)[0].numpy()
    assert z.shape == (16, 3, 5) and np.array_equal(z, ref)
    assert np.array_equal(depth_to_space(z, 4), plane)


def test_onnx_backend_runs_a_luma_student_at_working_resolution() -> None:
    model = _model("rt")
    backend = BACKENDS["onnx"](model)
    assert backend.session.get_inputs()[0].name == "luma_lr"  # the pixel moves happen in numpy, not in the graph
    luma = np.random.default_rng(1).integers(0, 256, (24, 40), dtype=np.uint8)
    ref = BACKENDS["torch"](model).run_luma(luma)
    assert backend.run_luma(luma).dtype == np.int16
    assert np.abs(backend.run_luma(luma).astype(int) - ref).max() <= 1
