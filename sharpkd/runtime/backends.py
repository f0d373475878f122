"""Backends: what runs a network inside a :class:`~sharpkd.runtime.sharpener.Sharpener`.

A backend wraps one ``nn.Module`` and offers the two calls the Sharpener needs:

* :meth:`Backend.run_luma` for luma students (:func:`is_luma_student`): uint8 luma in, int16 luma residual out, the
  graph :class:`LumaDelta`;
* :meth:`Backend.run_image` for everything else: a float ``(1, 3, H, W)`` image already padded to the model stride.

Backends are chosen by name from :data:`BACKENDS`: ``"torch"`` runs the module eagerly, ``"onnx"`` exports it to an
ONNX graph in memory (:func:`export_onnx_bytes`) and runs that with ONNX Runtime, ``"onnx-int8"`` runs the same
graph statically quantized to int8 (:func:`quantize_graph`: QDQ, per-channel weights, uint8 activations calibrated
on degraded sample photos; VNNI kernels on CPUs that have them). A new backend is one more :class:`Backend`
subclass added to :data:`BACKENDS`; an ONNX variant only overrides :meth:`OnnxBackend.build_graph`.

Example:
    >>> backend = BACKENDS["onnx"](model, threads=2)       # doctest: +SKIP
    >>> y = backend.run_image(torch.rand(1, 3, 64, 64))    # doctest: +SKIP
"""

from __future__ import annotations

import abc
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from sharpkd.models.blocks import reparameterize

OPSET = 17  # ONNX opset of every exported graph


class LumaDelta(nn.Module):
    """The learned part of a luma student as an export-friendly graph: uint8 luma -> int16 luma residual.

    Shape:
        ``(1, 1, H, W)`` uint8 with H, W multiples of the student stride -> ``(1, 1, H, W)`` int16 in [-255, 255].
    """

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        r = self.student.predict_residual(luma.float() * (1.0 / 255.0))
        return torch.round(r * 255.0).clamp(-255, 255).to(torch.int16)


class WorkingLumaDelta(nn.Module):
    """:class:`LumaDelta` at a luma student's working resolution, for the ONNX Runtime fast path.

    The caller moves pixels between full and working resolution on uint8/int16 with :func:`space_to_depth` and
    :func:`depth_to_space`: as a 6-D transpose inside the graph that move costs ONNX Runtime about 10 ms per 1080p
    frame, numpy about 1 ms.

    Shape:
        ``(1, f*f, H/f, W/f)`` uint8 (``f = cfg.unshuffle``) -> ``(1, f*f, H/f, W/f)`` int16 in [-255, 255].
    """

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        r, _ = self.student.working_residual(z.float() * (1.0 / 255.0))
        return torch.round(r * 255.0).clamp(-255, 255).to(torch.int16)


def space_to_depth(plane: np.ndarray, f: int) -> np.ndarray:
    """``(H, W) -> (f*f, H/f, W/f)`` with channel ``i*f + j`` holding ``plane[i::f, j::f]`` (as
    ``torch.nn.functional.pixel_unshuffle``); H and W multiples of ``f``."""
    H, W = plane.shape
    return np.ascontiguousarray(plane.reshape(H // f, f, W // f, f).transpose(1, 3, 0, 2)).reshape(
        f * f, H // f, W // f
    )


def depth_to_space(planes: np.ndarray, f: int) -> np.ndarray:
    """The inverse of :func:`space_to_depth`: ``(f*f, h, w) -> (h*f, w*f)`` (a strided view, not a copy)."""
    _, h, w = planes.shape
    return planes.reshape(f, f, h, w).transpose(2, 0, 3, 1).reshape(h * f, w * f)


def is_luma_student(model: nn.Module) -> bool:
    """Whether ``model`` is a student that predicts a luma residual (``luma=True, output="residual"``).

    Such a model runs as :class:`LumaDelta` (uint8 luma in, int16 residual out) on every backend and in exports.
    """
    return (
        getattr(model, "kind", None) == "student"
        and bool(getattr(model.cfg, "luma", False))
        and model.cfg.output == "residual"
    )


class GraphSpec(NamedTuple):
    """What to trace or export for a model: the graph, an example input, and the input's name."""

    module: nn.Module  # LumaDelta(model) for a luma student, else the model itself (eval mode)
    example: tuple[torch.Tensor, ...]  # (1, 1, 8s, 8s) uint8 luma or (1, 3, 8s, 8s) float, s = the model stride
    input_name: str  # "luma" or "image"


def graph_spec(model: nn.Module) -> GraphSpec:
    """The graph that exports of ``model`` contain (ONNX here, TorchScript in :mod:`sharpkd.runtime.export`).

    Re-parameterizable blocks are merged into plain convs first (:func:`sharpkd.models.blocks.reparameterize`).
    """
    model = reparameterize(model)
    side = 8 * max(1, getattr(model, "stride", 1))
    if is_luma_student(model):
        return GraphSpec(LumaDelta(model).eval(), (torch.zeros(1, 1, side, side, dtype=torch.uint8),), "luma")
    return GraphSpec(model.eval(), (torch.rand(1, 3, side, side),), "image")


def working_graph_spec(model: nn.Module) -> GraphSpec:
    """The graph the ONNX backend runs: :class:`WorkingLumaDelta` (input ``"luma_lr"``) for a luma student that
    works at reduced resolution, else :func:`graph_spec`'s."""
    if not (is_luma_student(model) and model.cfg.unshuffle > 1):
        return graph_spec(model)
    model = reparameterize(model)
    f = model.cfg.unshuffle
    side = 8 * max(1, model.stride // f)
    return GraphSpec(WorkingLumaDelta(model).eval(), (torch.zeros(1, f * f, side, side, dtype=torch.uint8),), "luma_lr")


def export_onnx_bytes(model: nn.Module, spec: GraphSpec | None = None) -> bytes:
    """Serialize ``model`` to an ONNX graph (opset 17, dynamic H and W) in memory and return its bytes.

    Luma students export :class:`LumaDelta` (input ``"luma"``), other models their float forward (input ``"image"``,
    to be padded to the model stride by the caller: exported graphs do not pad). ``spec`` picks another graph of
    the model (e.g. :func:`working_graph_spec`).
    """
    spec = spec or graph_spec(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            spec.module,
            spec.example,
            buf,
            input_names=[spec.input_name],
            output_names=["output"],
            dynamic_axes={spec.input_name: {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def onnx_session(graph: bytes, threads: int | None = None, spin: bool = True) -> Any:
    """An ONNX Runtime CPU session (``onnxruntime.InferenceSession``) for a serialized graph.

    Args:
        graph: the ONNX file's bytes, e.g. from :func:`export_onnx_bytes`.
        threads: intra-op threads of this session only; ``None`` uses every CPU core.
        spin: let the session's worker threads spin-wait after each run (ONNX Runtime's default). That makes
            back-to-back runs a little faster, but the spinning threads hold the cores for a while after every run,
            so whatever runs next (decoding, encoding, drawing) runs slower. Turn it off inside a pipeline; see
            :attr:`sharpkd.runtime.sharpener.Sharpener.spin`.

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
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


class Backend(abc.ABC):
    """Runs one network for a Sharpener; subclasses register in :data:`BACKENDS` under their :attr:`name`.

    Every registered class is built as ``cls(model, threads=threads, onnx_path=onnx_path, spin=spin)``:

    * ``model``: the network (eval mode);
    * ``threads``: intra-op threads of the backend's own runtime, where it has one (ONNX Runtime). A backend never
      changes process-wide settings such as ``torch.set_num_threads``: callers that want those set them;
    * ``spin``: whether that runtime's idle worker threads spin-wait between runs (:func:`onnx_session`); torch's
      process-wide pool is the caller's, so the torch backend ignores it;
    * ``onnx_path``: a previously exported graph to run instead of exporting ``model`` (ONNX backends only).

    Attributes:
        luma: ``model`` is a luma student: call :meth:`run_luma`, not :meth:`run_image`.
    """

    name: ClassVar[str]

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """Whether this backend can run ``model`` (every backend runs every network unless it says otherwise)."""
        return True

    def __init__(self, model: nn.Module, *, threads: int | None = None, spin: bool = True) -> None:
        self.model = model
        self.threads = threads
        self.spin = spin
        self.luma = is_luma_student(model)

    @abc.abstractmethod
    def run_luma(self, luma: np.ndarray) -> np.ndarray:
        """The luma residual of a luma student.

        Shape:
            ``(H, W)`` uint8, H and W multiples of the model stride -> ``(H, W)`` int16 in [-255, 255].
        """

    @abc.abstractmethod
    def run_image(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float output, unclamped.

        Shape:
            ``(1, 3, H, W)`` float in [0, 1], H and W padded to the model stride -> ``(1, 3, H, W)`` float.
        """


class TorchBackend(Backend):
    """Eager PyTorch under ``torch.inference_mode``; uses torch's process-wide thread pool as the caller set it."""

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        *,
        threads: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        spin: bool = True,
    ) -> None:
        if onnx_path is not None:
            raise ValueError(f"onnx_path is for the ONNX backend; the torch backend runs the module, got {onnx_path!r}")
        super().__init__(model, threads=threads, spin=spin)
        self._luma_graph = LumaDelta(model) if self.luma else None

    def run_luma(self, luma: np.ndarray) -> np.ndarray:
        assert self._luma_graph is not None, "run_luma needs a luma student"
        with torch.inference_mode():
            return self._luma_graph(torch.from_numpy(luma[None, None])).numpy()[0, 0]

    def run_image(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)


class OnnxBackend(Backend):
    """ONNX Runtime on the CPU, on the graph of :meth:`build_graph` (or the file at ``onnx_path``).

    A luma student's graph is :class:`LumaDelta`, not its float forward, so :meth:`run_image` runs such a model
    eagerly (only :meth:`~sharpkd.runtime.sharpener.Sharpener.sharpen_tensor` asks for that).
    """

    name = "onnx"

    def __init__(
        self,
        model: nn.Module,
        *,
        threads: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        spin: bool = True,
    ) -> None:
        super().__init__(model, threads=threads, spin=spin)
        graph = Path(onnx_path).read_bytes() if onnx_path is not None else self.build_graph(model)
        self.session = onnx_session(graph, threads, spin)
        self._eager = TorchBackend(model) if self.luma else None

    def build_graph(self, model: nn.Module) -> bytes:
        """The serialized graph this backend runs (:func:`working_graph_spec`); a quantizing variant overrides this."""
        return export_onnx_bytes(model, working_graph_spec(model))

    def run_luma(self, luma: np.ndarray) -> np.ndarray:
        assert self.luma, "run_luma needs a luma student"
        if self.session.get_inputs()[0].name == "luma_lr":  # a working-resolution graph: move pixels in numpy
            f = self.model.cfg.unshuffle
            r = self.session.run(None, {"luma_lr": space_to_depth(luma, f)[None]})[0][0]
            return depth_to_space(r, f)
        return self.session.run(None, {"luma": luma[None, None]})[0][0, 0]

    def run_image(self, x: torch.Tensor) -> torch.Tensor:
        if self._eager is not None:
            return self._eager.run_image(x)
        return torch.from_numpy(self.session.run(None, {"image": x.numpy()})[0])


CALIBRATION_CROP = 256  # px; calibration planes are centre crops of this side (histogram calibration needs one shape)
CALIBRATION_PERCENTILE = 99.99  # activation ranges clip the outermost 0.01%: on val, -0.035 dB vs -0.12 dB for min/max


def calibration_planes(model: nn.Module, images: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Inputs of the working-resolution graph for int8 calibration: each image degraded by each of the six presets
    (seed = image index), its OpenCV luma centre-cropped to :data:`CALIBRATION_CROP` and moved to working resolution.

    Args:
        model: a luma student that works at reduced resolution (``cfg.unshuffle > 1``).
        images: ``(H, W, 3)`` uint8 photos at least :data:`CALIBRATION_CROP` on each side; ``None`` takes the
            built-in sample photos (never the validation images the cards score).

    Shape:
        each plane ``(1, f*f, 256/f, 256/f)`` uint8, ``f = cfg.unshuffle``.
    """
    import cv2

    from sharpkd.data import degrade_image, sample_images
    from sharpkd.degrade import PRESETS

    f, c = model.cfg.unshuffle, CALIBRATION_CROP
    planes = []
    for i, img in enumerate(images if images is not None else sample_images().values()):
        H, W = img.shape[:2]
        if min(H, W) < c:
            raise ValueError(f"calibration images must be at least {c}x{c}, got {W}x{H}")
        crop = np.ascontiguousarray(img[(H - c) // 2 : (H - c) // 2 + c, (W - c) // 2 : (W - c) // 2 + c])
        for preset in PRESETS:
            luma = cv2.cvtColor(degrade_image(crop, preset, seed=i), cv2.COLOR_RGB2GRAY)
            planes.append(space_to_depth(luma, f)[None])
    return planes


def quantize_graph(model: nn.Module, planes: Sequence[np.ndarray] | None = None) -> bytes:
    """The working-resolution graph of a luma student (:func:`working_graph_spec`) statically quantized to int8.

    QDQ format, per-channel int8 weights, uint8 activations whose ranges come from running ``planes`` (default
    :func:`calibration_planes`) through the float graph, clipped at the :data:`CALIBRATION_PERCENTILE` percentile.

    Raises:
        ValueError: ``model`` is not a luma student working at reduced resolution.
        ImportError: onnxruntime is not installed.
    """
    import tempfile

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as err:
        raise ImportError("the int8 backend needs onnxruntime: pip install onnxruntime") from err
    if not OnnxInt8Backend.supports(model):
        raise ValueError("int8 quantization supports luma students that work at reduced resolution (unshuffle > 1)")
    planes = list(planes) if planes is not None else calibration_planes(model)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(planes)

        def get_next(self) -> dict[str, np.ndarray] | None:
            plane = next(self.items, None)
            return None if plane is None else {"luma_lr": plane}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "float.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(export_onnx_bytes(model, working_graph_spec(model)))
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
        )
        return dst.read_bytes()


class OnnxInt8Backend(OnnxBackend):
    """ONNX Runtime on the int8 graph of :func:`quantize_graph` (or a quantized file at ``onnx_path``).

    Luma students working at reduced resolution only; quantizing at load time takes a few seconds (calibration).
    """

    name = "onnx-int8"

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return is_luma_student(model) and model.cfg.unshuffle > 1

    def __init__(
        self,
        model: nn.Module,
        *,
        threads: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        spin: bool = True,
    ) -> None:
        if not self.supports(model):
            raise ValueError(
                "the onnx-int8 backend runs luma students that work at reduced resolution (unshuffle > 1); "
                f"use 'onnx' for this {getattr(model, 'kind', 'model')}"
            )
        super().__init__(model, threads=threads, onnx_path=onnx_path, spin=spin)

    def build_graph(self, model: nn.Module) -> bytes:
        return quantize_graph(model)


# name -> backend class; Sharpener(backend=name) and every --backend option choose from these keys
BACKENDS: dict[str, type[Backend]] = {cls.name: cls for cls in (TorchBackend, OnnxBackend, OnnxInt8Backend)}
