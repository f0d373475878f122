"""Inference: ``sharpkd.load(name).sharpen(frame)``, uint8 in and uint8 out, any size, bounded memory.

Example:
    >>> import sharpkd
    >>> model = sharpkd.load("student")                # shipped name, checkpoint path, or a peer ("cas")
    >>> out = model.sharpen(frame)                      # (H, W, 3) uint8 RGB -> same shape and dtype

Two paths:

* **luma fast path** (students with ``luma=True``, e.g. the real-time ``rt``): OpenCV computes luma on uint8, the
  network (on a backend of :mod:`sharpkd.runtime.backends`: torch or ONNX Runtime) turns it into an int16 luma
  residual at full resolution, and OpenCV adds that residual to R, G and B with saturation. No float RGB image is ever
  made. This is bit-exact with the eager model up to float rounding (see :func:`sharpkd.models.blocks.rgb_to_luma`).
* **tiled path** (everything else): the frame is cut into tiles with an overlap margin, each tile is reflect-padded to
  the network stride, restored, and its centre written back, so memory is bounded whatever the image size.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sharpkd.checkpoint import load_checkpoint
from sharpkd.errors import CardError, CheckpointError
from sharpkd.images import to_rgb_uint8
from sharpkd.models.blocks import pad_to_multiple
from sharpkd.runtime.backends import BACKENDS
from sharpkd.runtime.classical import CARD_SECTION, CLASSICAL, Setting

# Overlap around each tile. It must cover the receptive field, or tile seams show: measured (gradient support of one
# output pixel) at the default configs, nafnet reaches 59 px, unet 47, sepunet 63, resattn 33, rescnn 18, conv4 4.
TILE_MARGIN = 64


def models_dir() -> Path:
    """Folder of shipped weights: ``$SHARPKD_MODELS`` or ``models/`` next to the package."""
    env = os.environ.get("SHARPKD_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def list_pretrained() -> list[str]:
    """Names of the shipped models (``models/<name>.pt``)."""
    d = models_dir()
    return sorted(p.stem for p in d.glob("*.pt")) if d.is_dir() else []


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A shipped model name or a path -> the checkpoint path.

    Raises:
        CheckpointError: neither a shipped name nor an existing file (the message lists the shipped names).
    """
    p = Path(name_or_path)
    # a folder that happens to share a model's name (./teacher/ holding a run) must not shadow the shipped model
    if p.suffix in (".pt", ".pth") or p.is_file() or os.sep in str(name_or_path):
        if not p.exists():
            raise CheckpointError(f"checkpoint not found: {p}")
        return p
    shipped = models_dir() / f"{name_or_path}.pt"
    if shipped.exists():
        return shipped
    known = ", ".join(list_pretrained() + list(CLASSICAL)) or "none (models/ is empty)"
    raise CheckpointError(f"unknown model {str(name_or_path)!r}; shipped models: {known}")


def load_model(name_or_path: str | os.PathLike) -> nn.Module:
    """The ``nn.Module`` (eval mode, CPU) behind a shipped name or checkpoint path."""
    model, _ = load_checkpoint(resolve_checkpoint(name_or_path))
    return model


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"sharpen expects an (H, W, 3) uint8 numpy array, got {type(frame).__name__}")
    if (
        frame.ndim not in (2, 3)
        or frame.dtype not in (np.uint8, np.uint16)
        and not np.issubdtype(frame.dtype, np.floating)
    ):
        raise ValueError(f"sharpen expects an (H, W, 3) uint8 array, got dtype {frame.dtype} and shape {frame.shape}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        if frame.dtype != np.uint8:
            raise ValueError(
                f"sharpen expects uint8 pixels, got dtype {frame.dtype} and shape {frame.shape}; "
                "convert with sharpkd.images.to_rgb_uint8 first"
            )
        frame = to_rgb_uint8(frame)  # gray (H, W) / (H, W, 1) and RGBA become RGB
    if min(frame.shape[:2]) < 1:
        raise ValueError(f"sharpen got an empty image of shape {frame.shape}")
    return np.ascontiguousarray(frame)


class _LumaBuffers(threading.local):
    """Per-thread scratch arrays for the luma path, reused across frames of the same size.

    At 1080p, allocating the four 6 MB temporaries afresh on every frame costs more (page faults) than the arithmetic
    itself: about 10 ms against 1.3 ms measured. Thread-local, because a Sharpener is shared across app sessions.
    """

    shape: tuple[int, int] | None = None

    def get(self, H: int, W: int) -> _LumaBuffers:
        if self.shape != (H, W):
            self.shape = (H, W)
            self.tmp = np.empty((H, W), np.int16)
            self.pos, self.neg = np.empty((H, W), np.uint8), np.empty((H, W), np.uint8)
            self.pos3, self.neg3 = np.empty((H, W, 3), np.uint8), np.empty((H, W, 3), np.uint8)
        return self


def _add_luma_delta(frame: np.ndarray, delta: np.ndarray, buffers: _LumaBuffers | None = None) -> np.ndarray:
    """``clip(frame + delta[..., None], 0, 255)`` in uint8 arithmetic with OpenCV (frame (H, W, 3), delta int16).

    The positive and negative parts are applied as two saturating uint8 operations: exact, because at each pixel one
    of them is zero.
    """
    import cv2

    H, W = delta.shape
    b = (buffers or _LumaBuffers()).get(H, W)
    np.clip(delta, 0, 255, out=b.tmp)
    np.copyto(b.pos, b.tmp, casting="unsafe")
    np.negative(delta, out=b.tmp)
    np.clip(b.tmp, 0, 255, out=b.tmp)
    np.copyto(b.neg, b.tmp, casting="unsafe")
    cv2.merge((b.pos, b.pos, b.pos), dst=b.pos3)
    cv2.merge((b.neg, b.neg, b.neg), dst=b.neg3)
    out = cv2.add(frame, b.pos3)
    return cv2.subtract(out, b.neg3, dst=out)


class Sharpener:
    """A loaded restorer. Call :meth:`sharpen` on uint8 RGB frames.

    Args:
        name: what it was loaded from; with ``model=None`` it names the classical method (a key of
            :data:`~sharpkd.runtime.classical.CLASSICAL`).
        model: the network, or ``None`` for a classical method.
        meta: provenance and metrics stored with the weights.
        backend: a key of :data:`~sharpkd.runtime.backends.BACKENDS` (``"torch"``, ``"onnx"``, ``"onnx-int8"``);
            unused by classical methods.
        tile: tile side of the tiled path, at least 64 px.
        threads: intra-op threads of the backend's own runtime (the ONNX Runtime session); the torch backend uses
            torch's process-wide thread count, which the caller sets with ``torch.set_num_threads``.
        onnx_path: run this exported graph instead of exporting ``model`` (ONNX backends only).
        spin: let the ONNX Runtime session's worker threads spin-wait between frames (its default). A lone
            :meth:`sharpen` call is a few ms faster with it, but the spinning threads keep the cores busy after
            each frame, so decoding and encoding in other threads slow down: a video pipeline runs faster with
            ``spin=False`` (``sharpkd video`` and the Live page use that).
        setting: a classical method's setting (keyword -> value); missing keywords keep their defaults. Classical
            methods that take ``threads`` (the FFmpeg filters) get ``threads`` too.

    Raises:
        ValueError: an unknown backend or classical method, ``tile < 64``, a setting the classical method does not
            take, or a setting given with a network.

    Attributes:
        name, model, meta, tile, threads, spin: as given.
        setting: the classical method's full setting (defaults filled in); ``None`` for a network.
        backend: the backend's name, ``"torch"`` or ``"onnx"``.
        luma: the model is a luma student and runs on the luma fast path.
        tileable: the tiled path may cut the image into tiles (not for instance-norm models).
    """

    def __init__(
        self,
        name: str,
        model: nn.Module | None,
        meta: dict[str, Any] | None = None,
        backend: str = "torch",
        tile: int = 512,
        threads: int | None = None,
        onnx_path: str | os.PathLike | None = None,
        setting: Mapping[str, Any] | None = None,
        spin: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if tile < 64:
            raise ValueError(f"tile must be >= 64 px, got {tile}")
        if model is None and name not in CLASSICAL:
            raise ValueError(f"no model given and {name!r} is no classical method; known: {', '.join(CLASSICAL)}")
        if model is not None and setting is not None:
            raise ValueError(f"a setting is for classical methods; {name!r} is a network, got setting {dict(setting)}")
        self.name, self.model, self.meta, self.backend = name, model, meta or {}, backend
        self.tile = tile
        self.threads, self.spin = threads, spin
        self.setting = CLASSICAL[name].resolve(setting) if model is None else None
        self._classical = CLASSICAL[name].bind(self.setting, threads) if model is None else None
        runner = BACKENDS[backend]
        self._runner = runner(model, threads=threads, onnx_path=onnx_path, spin=spin) if model is not None else None
        self._luma_buffers = _LumaBuffers()
        self.luma = self._runner is not None and self._runner.luma
        self.stride = getattr(model, "stride", 1) if model is not None else 1
        # instance norm normalizes with whole-input statistics, so a tile would not see the image's: never tile it
        self.tileable = not (
            isinstance(model, nn.Module)
            and any(isinstance(m, nn.modules.instancenorm._InstanceNorm) for m in model.modules())
        )

    @property
    def kind(self) -> str:
        return getattr(self.model, "kind", "classical") if self.model is not None else "classical"

    def __repr__(self) -> str:
        return f"Sharpener({self.name!r}, kind={self.kind!r}, backend={self.backend!r})"

    def sharpen(self, frame: np.ndarray) -> np.ndarray:
        """Sharpen one frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB (grayscale ``(H, W)`` and RGBA are converted).

        Returns:
            ``(H, W, 3)`` uint8 RGB.

        Raises:
            TypeError: not a numpy array.
            ValueError: wrong dtype or rank (the message names what was received).
        """
        frame = _check_frame(frame)
        if self._classical is not None:
            return self._classical(frame)
        if self.luma:
            return self._sharpen_luma(frame)
        return self._sharpen_tiled(frame)

    def timed_sharpen(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """:meth:`sharpen` and its wall time in milliseconds."""
        t = time.perf_counter()
        out = self.sharpen(frame)
        return out, (time.perf_counter() - t) * 1000.0

    # -- luma fast path ------------------------------------------------------------------------------------------
    def luma_delta(self, luma: np.ndarray) -> np.ndarray:
        """The luma student's residual (:meth:`~sharpkd.runtime.backends.Backend.run_luma` of the backend).

        Shape:
            ``(H, W)`` uint8 with H, W multiples of the stride -> ``(H, W)`` int16.
        """
        if self._runner is None or not self.luma:
            raise ValueError(f"luma_delta needs a luma student; {self.name!r} is a {self.kind} model")
        return self._runner.run_luma(luma)

    def _sharpen_luma(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        H, W = frame.shape[:2]
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        ph, pw = (-H) % self.stride, (-W) % self.stride
        if ph or pw:
            border = cv2.BORDER_REFLECT_101 if ph < H and pw < W else cv2.BORDER_REPLICATE
            luma = cv2.copyMakeBorder(luma, 0, ph, 0, pw, border)
        delta = self.luma_delta(luma)[:H, :W]
        return _add_luma_delta(frame, np.ascontiguousarray(delta), self._luma_buffers)

    # -- tiled path ----------------------------------------------------------------------------------------------
    def _run_float(self, x: torch.Tensor) -> torch.Tensor:
        assert self._runner is not None, "the float path needs a model"
        z, (H, W) = pad_to_multiple(x, self.stride, getattr(self.model, "min_size", 1))  # exported graphs don't pad
        return self._runner.run_image(z)[..., :H, :W]

    def sharpen_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Float path on a ``(1, 3, H, W)`` tensor in [0, 1] (tiled like :meth:`sharpen`), clamped to [0, 1]."""
        _, _, H, W = x.shape
        margin = TILE_MARGIN
        t = self.tile
        if not self.tileable or (H <= t + 2 * margin and W <= t + 2 * margin):
            return self._run_float(x).clamp(0, 1)
        out = torch.empty_like(x)
        s = self.stride
        for top in range(0, H, t):
            for left in range(0, W, t):
                # tile origins on the stride grid, so every tile down-samples on the same grid as the whole image
                y0, x0 = max(0, top - margin) // s * s, max(0, left - margin) // s * s
                y1, x1 = min(H, top + t + margin), min(W, left + t + margin)
                y = self._run_float(x[..., y0:y1, x0:x1])
                h, w = min(t, H - top), min(t, W - left)
                out[..., top : top + h, left : left + w] = y[..., top - y0 : top - y0 + h, left - x0 : left - x0 + w]
        return out.clamp(0, 1)

    def _sharpen_tiled(self, frame: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div_(255.0)
        y = self.sharpen_tensor(x)
        return y[0].mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def tuned_setting(name: str) -> tuple[Setting | None, Path]:
    """The setting of classical method ``name`` tuned on the validation images: the ``"classical"`` section's
    ``"setting"`` of its card ``<models_dir>/<name>.json`` (written by ``sharpkd cards``), and the card's path.

    Returns:
        ``(setting, path)``; ``setting`` is ``None`` when there is no card or it has no tuned setting.

    Raises:
        CardError: the card exists but cannot be read, is not JSON, or its setting is not one ``name`` takes.
    """
    path = models_dir() / f"{name}.json"
    if not path.is_file():
        return None, path
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CardError(f"cannot read the card of {name!r}, {path}: {err}") from err
    section = card.get(CARD_SECTION) if isinstance(card, dict) else None
    setting = section.get("setting") if isinstance(section, dict) else None
    if setting is None:
        return None, path
    if not isinstance(setting, dict):
        raise CardError(f"{path}: {CARD_SECTION}.setting must be a JSON object, got {setting!r}")
    try:
        return CLASSICAL[name].resolve(setting), path
    except ValueError as err:
        raise CardError(f"{path}: {err}") from err


def _load_classical(name: str, setting: Mapping[str, Any] | None, tile: int, threads: int | None) -> Sharpener:
    method = CLASSICAL[name]
    if setting is not None:
        source = "given"
    else:
        setting, path = tuned_setting(name)
        source = str(path) if setting is not None else "default"
    resolved = method.resolve(setting)
    meta = {"description": method.describe(resolved), "setting": resolved, "setting_source": source}
    return Sharpener(name, None, meta, "torch", tile, threads, setting=resolved)


def supported_backends(name_or_path: str | os.PathLike, backends: Sequence[str] | None = None) -> tuple[str, ...]:
    """The backends of ``backends`` (default: all of :data:`~sharpkd.runtime.backends.BACKENDS`) that can run the
    network ``name_or_path``, in the given order (``onnx-int8`` only runs luma students at reduced resolution).

    Raises:
        CheckpointError: unknown name or unusable checkpoint.
        ValueError: an unknown backend name.
    """
    names = tuple(backends) if backends is not None else tuple(BACKENDS)
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; known: {', '.join(BACKENDS)}")
    model = load_model(name_or_path)
    return tuple(b for b in names if BACKENDS[b].supports(model))


def fastest_backend() -> str:
    """The backend :func:`load` picks when none is given: ONNX Runtime when it is installed (1.7-2x faster than eager
    torch for every shipped network on the development CPU, see models/README.md), else torch. The ONNX backend
    exports the network in memory, which needs the ``onnx`` package as well: without it, torch."""
    import importlib.util

    have = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    return "onnx" if have else "torch"


def load(
    name_or_path: str | os.PathLike = "student",
    *,
    backend: str | None = None,
    tile: int = 512,
    threads: int | None = None,
    setting: Mapping[str, Any] | None = None,
    spin: bool = True,
) -> Sharpener:
    """Load a shipped model by name (``"student"``, ``"teacher"``, ...), a checkpoint path, or a classical method
    (``"unsharp"``, ``"cas"``, ``"ffmpeg-unsharp"``, ``"input"``).

    A classical peer runs the setting tuned on the validation images when its card ``models/<name>.json`` exists
    (:func:`tuned_setting`), else its registered default; ``meta["setting"]`` is the setting in use and
    ``meta["setting_source"]`` where it came from (the card's path, ``"default"`` or ``"given"``).

    Args:
        name_or_path: what to load.
        backend: ``"torch"``, ``"onnx"`` (ONNX Runtime; the model is exported to ONNX in memory when loaded) or
            ``"onnx-int8"`` (that graph quantized to int8: the shipped int8 graph when there is one, else quantized
            at load time; luma students only); ``None`` or ``"auto"``
            runs the model's shipped int8 graph (:func:`shipped_int8_graph`) when it has one and onnxruntime is
            installed, else :func:`fastest_backend`. :attr:`Sharpener.backend` says which runs.
        tile: tile side for large images on the tiled path.
        threads: intra-op threads of the ONNX Runtime session, or of a classical FFmpeg filter (``None``: every
            core). It never changes torch's process-wide thread count: call ``torch.set_num_threads`` for the torch
            backend.
        setting: classical methods only: run this setting (keyword -> value) instead of the tuned one.
        spin: whether the ONNX Runtime session's idle threads spin-wait between runs (see :class:`Sharpener`);
            pass ``False`` when other work shares the cores, as in a video pipeline.

    Raises:
        CheckpointError: unknown name, or a corrupt / unsafe / mismatched checkpoint.
        CardError: a classical peer's card exists but its tuned setting cannot be read.
        ValueError: unknown backend, a setting the classical method does not take, or a setting for a network.

    Example:
        >>> sharpkd.load("cas").meta["setting"]  # doctest: +SKIP
        {'strength': 0.6}
    """
    if str(name_or_path) in CLASSICAL:
        return _load_classical(str(name_or_path), setting, tile, threads)
    if setting is not None:
        raise ValueError(f"a setting is for classical methods ({', '.join(CLASSICAL)}), got one for {name_or_path!r}")
    path = resolve_checkpoint(name_or_path)
    model, meta = load_checkpoint(path)
    onnx_path = None
    if backend is None or backend == "auto":
        backend = default_backend(path)
    if backend == "onnx-int8":
        onnx_path = shipped_int8_graph(path)  # the shipped quantized graph, else quantized at load time
    return Sharpener(str(name_or_path), model, meta, backend, tile, threads, onnx_path=onnx_path, spin=spin)


def shipped_int8_graph(checkpoint: str | os.PathLike) -> Path | None:
    """The quantized graph shipped beside a checkpoint (``<name>.int8.onnx`` next to ``<name>.pt``, written by
    ``sharpkd export --int8``), or ``None``. :func:`load` runs it on ``onnx-int8`` when no backend is asked for."""
    path = Path(checkpoint)
    graph = path.with_name(f"{path.stem}.int8.onnx")
    return graph if graph.is_file() else None


def default_backend(checkpoint: str | os.PathLike) -> str:
    """The backend :func:`load` runs a checkpoint on when none is asked for: ``"onnx-int8"`` when its int8 graph
    ships beside it (:func:`shipped_int8_graph`) and onnxruntime is installed, else :func:`fastest_backend`."""
    fastest = fastest_backend()
    return "onnx-int8" if fastest == "onnx" and shipped_int8_graph(checkpoint) is not None else fastest


load_pretrained = load


def restore(model: nn.Module | Callable, x: torch.Tensor, tile: int = 512) -> torch.Tensor:
    """Restore a ``(1, 3, H, W)`` float tensor with any model, padded to its stride and tiled; clamped to [0, 1]."""
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"restore expects a (1, 3, H, W) tensor, got {tuple(x.shape)}")
    return Sharpener("model", model, tile=tile).sharpen_tensor(x)
