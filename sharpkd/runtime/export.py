"""Export to ONNX (and TorchScript) with a parity check against eager PyTorch on uint8 output.

Luma students export their learned part only (``LumaDelta``: uint8 luma in, int16 residual out),
which is what the real-time path runs; other models export as float ``(1, 3, H, W) -> (1, 3, H, W)`` graphs with
dynamic height and width (inputs padded to the model stride by the caller).
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

OPSET = 17


def _export_module(model: nn.Module) -> tuple[nn.Module, tuple[torch.Tensor, ...], str]:
    from sharpkd.runtime.sharpener import LumaDelta, _is_luma_student

    s = max(1, getattr(model, "stride", 1))
    side = 8 * s
    if _is_luma_student(model):
        return LumaDelta(model).eval(), (torch.zeros(1, 1, side, side, dtype=torch.uint8),), "luma"
    return model.eval(), (torch.rand(1, 3, side, side),), "image"


def export_onnx_bytes(model: nn.Module) -> bytes:
    """Serialize ``model`` to an ONNX graph (opset 17, dynamic H and W) and return its bytes."""
    module, example, input_name = _export_module(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            module,
            example,
            buf,
            input_names=[input_name],
            output_names=["output"],
            dynamic_axes={input_name: {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def onnx_session(model: nn.Module, onnx_path: str | os.PathLike | None = None, threads: int | None = None):
    """An ONNX Runtime CPU session for ``model`` (from ``onnx_path`` if given, else exported in memory).

    Raises:
        ImportError: onnxruntime is not installed (``pip install onnxruntime``).
    """
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("the ONNX backend needs onnxruntime: pip install onnxruntime") from err
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    data = Path(onnx_path).read_bytes() if onnx_path is not None else export_onnx_bytes(model)
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


@dataclass
class ParityReport:
    max_abs_diff: int  # on uint8 output, eager PyTorch vs the exported graph
    mean_abs_diff: float
    sizes: list[tuple[int, int]]

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= 1


def check_parity(model: nn.Module, onnx_path: str | os.PathLike | None = None, frames=None) -> ParityReport:
    """Compare uint8 outputs of the eager model (``model(x)`` on float input, clamped and rounded) with the ONNX
    Runtime path that :func:`sharpkd.load` uses with ``backend="onnx"``, on ``frames`` (default: two synthetic
    frames of odd sizes)."""
    from sharpkd.data import to_tensor, to_uint8
    from sharpkd.runtime.sharpener import Sharpener

    if frames is None:
        rng = np.random.default_rng(0)
        frames = []
        for h, w in ((67, 93), (128, 160)):
            yy, xx = np.mgrid[0:h, 0:w]
            base = (np.sin(xx / 5.0) * np.cos(yy / 7.0) * 100 + 128)[..., None] + rng.normal(0, 8, (h, w, 3))
            frames.append(np.clip(base, 0, 255).astype(np.uint8))
    runner = Sharpener("export", model, backend="onnx", onnx_path=onnx_path, tile=4096)
    diffs, means, sizes = [], [], []
    for frame in frames:
        with torch.inference_mode():
            ref = to_uint8(model(to_tensor(frame)).clamp(0, 1))
        out = runner.sharpen(frame)
        d = np.abs(ref.astype(np.int16) - out.astype(np.int16))
        diffs.append(int(d.max()))
        means.append(float(d.mean()))
        sizes.append(frame.shape[:2])
    return ParityReport(max(diffs), float(np.mean(means)), sizes)


def export_onnx(model: nn.Module, path: str | os.PathLike, check: bool = True) -> ParityReport | None:
    """Write ``model`` as ONNX to ``path`` and (by default) verify parity with eager PyTorch.

    Raises:
        RuntimeError: parity check failed (max abs difference over 1/255).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export_onnx_bytes(model))
    if not check:
        return None
    report = check_parity(model, path)
    if not report.ok:
        raise RuntimeError(f"ONNX parity check failed: max abs difference {report.max_abs_diff}/255 (limit 1)")
    return report


def export_torchscript(model: nn.Module, path: str | os.PathLike) -> Path:
    """Trace ``model`` (float ``(1, 3, H, W)`` in/out) to TorchScript and check it against eager on a test input."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module, example, _ = _export_module(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example)
    with torch.inference_mode():
        if not torch.allclose(traced(*example).float(), module(*example).float(), atol=1e-4):
            raise RuntimeError("TorchScript trace does not match eager output")
    traced.save(str(path))
    return path
