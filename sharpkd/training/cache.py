"""Teacher-output caching for distillation: degrade a fixed pool of crops once, run the teacher on it once, and let
every student train on ``(lq, gt, teacher_pred)`` triples without paying for the teacher's forward pass again.

On a CPU the teacher's forward pass costs several times a small student's whole training step, so caching turns a
set of distillation runs from hours into minutes; every student (and the no-KD baseline) then sees exactly the same
data. The price is a fixed pool instead of fresh random crops each step. Features are too large to cache: with
``feat`` the teacher reruns on the pool's inputs every step, so a feature-KD run sees the same crops as its twins.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from sharpkd.checkpoint import atomic_save
from sharpkd.errors import CheckpointError

log = logging.getLogger(__name__)


class TeacherCache(Dataset):
    """A pool of ``(lq, gt, teacher_pred)`` triples of ``(3, P, P)`` tensors stored as float16 (half the memory).

    :func:`~sharpkd.training.loop.fit` recognises this type and takes ``teacher_pred`` from it instead of running the
    teacher (unless the losses include ``feat``: features are not cached).

    Shape:
        each item: three ``(3, P, P)`` float32 tensors in [0, 1] (``teacher_pred`` clamped).
    """

    def __init__(self, lq: torch.Tensor, gt: torch.Tensor, teacher_pred: torch.Tensor) -> None:
        if not (lq.shape == gt.shape == teacher_pred.shape):
            raise ValueError(f"shapes differ: {tuple(lq.shape)}, {tuple(gt.shape)}, {tuple(teacher_pred.shape)}")
        self.lq, self.gt, self.teacher_pred = lq.half(), gt.half(), teacher_pred.half()

    def __len__(self) -> int:
        return self.lq.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.lq[index].float(), self.gt[index].float(), self.teacher_pred[index].float()


@torch.no_grad()
def cache_teacher_outputs(
    teacher: nn.Module,
    data: Dataset,
    size: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> TeacherCache:
    """Take the first ``size`` items of ``data`` (cycling through epochs via ``set_epoch`` if needed) and run the
    teacher on them in eval mode.

    Raises:
        ValueError: ``size`` < 1 or an empty dataset.
    """
    if size < 1 or len(data) == 0:
        raise ValueError(f"need size >= 1 and a non-empty dataset, got size={size}, len(data)={len(data)}")
    teacher = teacher.to(device).eval()
    lqs, gts, preds = [], [], []
    n = len(data)
    for start in range(0, size, batch_size):
        items = []
        for i in range(start, min(size, start + batch_size)):
            if hasattr(data, "set_epoch"):
                data.set_epoch(i // n)
            items.append(data[i % n])
        lq = torch.stack([a for a, _ in items])
        gt = torch.stack([b for _, b in items])
        pred = teacher(lq.to(device)).float().clamp(0, 1).cpu()
        lqs.append(lq.half())
        gts.append(gt.half())
        preds.append(pred.half())
        if progress is not None:
            progress(min(size, start + batch_size), size)
    if hasattr(data, "set_epoch"):
        data.set_epoch(0)
    log.info("cached %d teacher outputs", size)
    return TeacherCache(torch.cat(lqs), torch.cat(gts), torch.cat(preds))


def save_cache(path: str | os.PathLike, cache: TeacherCache, meta: dict[str, Any]) -> Path:
    """Write a cache (float16 tensors) with ``meta`` describing how it was made; atomic rename."""
    return atomic_save({"lq": cache.lq, "gt": cache.gt, "teacher_pred": cache.teacher_pred, "meta": meta}, path)


def load_cache(path: str | os.PathLike, meta: dict[str, Any]) -> TeacherCache | None:
    """The cache in ``path`` if it exists and was made with exactly ``meta``; ``None`` otherwise (make a new one).

    Raises:
        CheckpointError: the file exists but is unreadable.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"teacher cache {path} is unreadable: {err}") from err
    if not isinstance(obj, dict) or obj.get("meta") != meta:
        log.warning("teacher cache %s was made with other settings; rebuilding it", path)
        return None
    return TeacherCache(obj["lq"], obj["gt"], obj["teacher_pred"])
