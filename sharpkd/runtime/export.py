"""Export to ONNX (and TorchScript) files with a parity check against eager PyTorch on uint8 output.

Luma students export their learned part only (:class:`~sharpkd.runtime.backends.LumaDelta`: uint8 luma in, int16
residual out), which is what the real-time path runs; other models export as float ``(1, 3, H, W) -> (1, 3, H, W)``
graphs with dynamic height and width (inputs padded to the model stride by the caller). The graph itself is built in
:mod:`sharpkd.runtime.backends`, the same one the ``"onnx"`` backend runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sharpkd.data import to_tensor, to_uint8
from sharpkd.runtime.backends import export_onnx_bytes, graph_spec, quantize_graph
from sharpkd.runtime.sharpener import Sharpener

PARITY_LIMIT = 1  # max abs difference on uint8 output (out of 255) that still counts as parity
PARITY_SIZES = ((67, 93), (128, 160))  # (H, W) of the default parity frames: odd, off the stride grid, and larger


@dataclass
class ParityReport:
    """How far the exported graph's uint8 output is from eager PyTorch's, over the checked frames."""

    max_abs_diff: int  # on uint8 output, eager PyTorch vs the exported graph
    mean_abs_diff: float
    sizes: list[tuple[int, int]]  # (H, W) of the checked frames

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_LIMIT


def _parity_frames() -> list[np.ndarray]:
    """Smooth waves plus noise at :data:`PARITY_SIZES`, deterministic."""
    rng = np.random.default_rng(0)
    frames = []
    for h, w in PARITY_SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        base = (np.sin(xx / 5.0) * np.cos(yy / 7.0) * 100 + 128)[..., None] + rng.normal(0, 8, (h, w, 3))
        frames.append(np.clip(base, 0, 255).astype(np.uint8))
    return frames


def check_parity(
    model: nn.Module,
    onnx_path: str | os.PathLike | None = None,
    frames: Sequence[np.ndarray] | None = None,
    backend: str = "onnx",
) -> ParityReport:
    """Compare uint8 outputs of the eager model with the ONNX Runtime path ``sharpkd.load(..., backend="onnx")`` uses.

    Args:
        model: the network; its eager reference is ``model(x)`` on float input, clamped and rounded.
        onnx_path: the graph to check; ``None`` exports ``model`` in memory.
        frames: ``(H, W, 3)`` uint8 frames; default: two synthetic frames of odd sizes (:data:`PARITY_SIZES`).
        backend: the ONNX backend to check, ``"onnx"`` or ``"onnx-int8"`` (whose graph is quantized: expect a few
            levels of difference, not :data:`PARITY_LIMIT`).

    Returns:
        The differences over all frames.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    frames = _parity_frames() if frames is None else list(frames)
    runner = Sharpener("export", model, backend=backend, onnx_path=onnx_path, tile=4096)
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

    Returns:
        The :class:`ParityReport`, or ``None`` with ``check=False``.

    Raises:
        RuntimeError: parity check failed (max abs difference over 1/255).
        ImportError: ``check=True`` and onnxruntime is not installed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export_onnx_bytes(model))
    if not check:
        return None
    report = check_parity(model, path)
    if not report.ok:
        raise RuntimeError(
            f"ONNX parity check failed: max abs difference {report.max_abs_diff}/255 (limit {PARITY_LIMIT})"
        )
    return report


def export_int8(model: nn.Module, path: str | os.PathLike) -> ParityReport:
    """Write the int8 graph of a luma student (:func:`~sharpkd.runtime.backends.quantize_graph`) to ``path`` and
    measure its uint8 difference from eager PyTorch. Shipped beside ``<name>.pt`` as ``<name>.int8.onnx``,
    :func:`~sharpkd.runtime.sharpener.load` runs it when no backend is asked for.

    Quantization changes outputs by design, so the report is returned, never turned into an error; what it costs
    in dB is measured by ``sharpkd evaluate --backend onnx-int8``.

    Raises:
        ValueError: ``model`` is not a luma student working at reduced resolution.
        ImportError: onnxruntime is not installed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(quantize_graph(model))
    return check_parity(model, path, backend="onnx-int8")


def export_torchscript(model: nn.Module, path: str | os.PathLike) -> Path:
    """Trace ``model``'s export graph (see :func:`~sharpkd.runtime.backends.graph_spec`) to TorchScript at ``path``.

    Raises:
        RuntimeError: the trace does not match eager output within 1e-4 on the example input.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = graph_spec(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(spec.module, spec.example)
    with torch.inference_mode():
        if not torch.allclose(traced(*spec.example).float(), spec.module(*spec.example).float(), atol=1e-4):
            raise RuntimeError("TorchScript trace does not match eager output")
    traced.save(str(path))
    return path
