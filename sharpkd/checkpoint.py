"""Checkpoints that describe themselves: ``{"format", "kind", "config", "model", "meta"}`` in one ``torch.save`` file.

Loading never runs pickled code: files are read with ``torch.load(weights_only=True)``, which refuses anything but
tensors and plain containers, and every failure becomes a :class:`~sharpkd.errors.CheckpointError` that names the
problem (unreadable, unsafe payload, wrong architecture, NaN/Inf weights). Writes go to a temporary file first and are
renamed into place, so an interrupted save never destroys the previous checkpoint.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from sharpkd.errors import CheckpointError
from sharpkd.models import model_config, model_from_config

FORMAT = "sharpkd-1"


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to a temporary file beside ``path``, then rename it into place (creating the folder).

    A failed or interrupted write leaves the previous file at ``path`` intact; the rename is atomic on POSIX and
    Windows. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
    except BaseException:  # also KeyboardInterrupt: never leave a half-written temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def checkpoint_dict(model: nn.Module, *, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict a checkpoint file holds: ``{"format", "kind", "config", "model", "meta"}``, weights on the CPU.

    Files that carry more (the resumable ``last.pt`` of :mod:`sharpkd.training.state`) start from this dict, so every
    sharpkd file loads with :func:`load_checkpoint`.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": FORMAT, **model_config(model), "model": state, "meta": meta or {}}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s config and weights (plus ``meta`` provenance) to ``path`` atomically."""
    return atomic_save(checkpoint_dict(model, meta=meta), path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint dict without building the model.

    Raises:
        CheckpointError: missing, empty, corrupt, not a sharpkd checkpoint, or carrying a pickle payload.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    _check_zip_crc(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # the weights-only unpickler names the blocked import ("... unsupported GLOBAL posix.system ...");
        # any other unpickling failure is garbage, not a payload
        lines = [ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln]
        if lines:
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors (a pickle payload?); refusing to load it: "
                f"{lines[0]}"
            ) from err
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file (unreadable pickle data)") from err
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        KeyError,
        IndexError,
        TypeError,
        AssertionError,  # torch's own asserts on malformed persistent ids
    ) as err:
        # a non-zip file goes to the legacy reader, whose errors on garbage are KeyError/IndexError/...
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file ({reason})") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt or "kind" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a sharpkd checkpoint (expected kind/config/model, found {keys})")
    return ckpt


def _check_zip_crc(path: Path) -> None:
    # torch.load does not verify the zip's CRC-32s, so flipped bytes inside a tensor would load as wrong weights
    try:
        if not zipfile.is_zipfile(path):
            return  # legacy (pre-1.6) format or garbage: torch.load decides
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt (damaged zip structure: {err})") from err
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt (checksum mismatch in {bad!r})")


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{path}: entry {name!r} is a {type(t).__name__}, not a tensor")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: weight {name!r} contains NaN or Inf; the checkpoint is unusable")


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (eval mode) and return it with its ``meta`` dict.

    Raises:
        CheckpointError: see :func:`read_checkpoint`, plus an unknown architecture, weights that do not match the
            stored architecture, or NaN/Inf weights.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    try:
        model = model_from_config(ckpt["kind"], dict(ckpt["config"]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: cannot build the stored architecture: {err}") from err
    load_weights(path, model, ckpt["model"])
    return model.eval(), dict(ckpt.get("meta") or {})


def load_weights(path: str | os.PathLike, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state``, the ``"model"`` entry read from ``path``, into ``model`` strictly.

    Raises:
        CheckpointError: ``state`` is not a dict of finite tensors, or does not match ``model``'s architecture (the
            message names ``path``).
    """
    path = Path(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'model' is a {type(state).__name__}, not a state dict")
    _check_finite(path, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise CheckpointError(
            f"{path}: weights do not match the architecture: {' '.join(s.strip() for s in first[:3])[:300]}"
        ) from err


def load_state_into(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load the weights in ``path`` into an existing ``model`` of the same architecture; returns ``meta``."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    load_weights(path, model, ckpt["model"])
    return dict(ckpt.get("meta") or {})
