"""Data-parallel plumbing for :func:`~sharpkd.training.loop.fit`: the process group, this process's place in it, the
few collectives that keep the ranks in agreement, and the per-rank batch stream.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`process_group` creates the group if the caller has not (gloo on CPU,
NCCL on CUDA with one GPU per process, ``cuda:LOCAL_RANK``). Rank 0 alone runs validation, callbacks and file writes;
its decisions (cancel, time budget, early stop) and metrics reach the other ranks through :class:`World`, so every
rank leaves the loop after the same step. Outside torchrun :class:`World` is one process and every helper is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler


@dataclass(frozen=True)
class World:
    """This process's place in training: ``rank`` of ``size`` processes, computing on ``device``."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when there are several ranks (which also copies rank 0's weights to
        every rank), else ``module`` itself."""
        if self.size == 1:
            return module
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over ranks (a copy; ``values`` itself when there is one rank)."""
        if self.size > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.size
        return values

    def flags_from_rank0(self, flags: list[bool]) -> list[bool]:
        """Rank 0's ``flags`` on every rank."""
        if self.size == 1:
            return flags
        t = torch.tensor(flags, dtype=torch.float32, device=self.device)
        dist.broadcast(t, src=0)
        return [bool(v) for v in t.tolist()]

    def object_from_rank0(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (anything picklable) on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def weights_from_rank0(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters and buffers with rank 0's, in place."""
        if self.size > 1:
            for t in module.state_dict().values():
                dist.broadcast(t, src=0)

    def exists_everywhere(self, path: Path) -> bool:
        """Whether ``path`` exists, agreed by all ranks.

        Raises:
            FileNotFoundError: only some ranks see ``path`` (a node-local ``out_dir`` on a multi-node run).
        """
        seen = torch.tensor([float(path.exists())], device=self.device)
        if self.size > 1:
            dist.all_reduce(seen)
        if 0 < seen.item() < self.size:
            raise FileNotFoundError(
                f"{path} exists for {int(seen.item())} of {self.size} processes; resuming a multi-node run needs "
                "out_dir on storage that every node sees (or resume=False / --no-resume)"
            )
        return seen.item() > 0


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a bare ``"cuda"`` -> this process's GPU (``LOCAL_RANK``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda" and device.index is None:
        # One GPU per process under torchrun (LOCAL_RANK); otherwise the current device.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Yield this process's :class:`World`. Under torchrun with no process group yet, create one (NCCL for CUDA, gloo
    for CPU) and destroy it on exit; a group the caller created is used as is and left alone."""
    created = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # env:// from torchrun's variables
        created = True
    try:
        if dist.is_available() and dist.is_initialized():
            yield World(dist.get_rank(), dist.get_world_size(), device)
        else:
            yield World(0, 1, device)
    finally:
        if created:
            dist.destroy_process_group()


def rank_batches(
    data: Dataset,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    start_step: int,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless per-rank batches of a global batch of ``batch_size`` samples split over ``world_size`` ranks.

    Each epoch draws a fresh permutation seeded by ``seed + epoch`` and rank r takes every world_size-th sample of each
    global batch: exactly what ``DistributedSampler(data, world_size, rank, shuffle=True, seed=seed, drop_last=True)``
    with ``set_epoch(epoch)`` and ``batch_size // world_size`` per loader batch yields. Written out instead of using the
    sampler because (a) starting at ``start_step`` skips indices only, so a resumed run sees the same batches without
    replaying the epoch, and (b) the ranks' batches together are the same global batch whatever ``world_size`` is, so
    a run resumed with a different number of processes continues the same data stream.

    With ``num_workers > 0`` a :class:`~torch.utils.data.DataLoader` builds the same batches in that many worker
    processes (where the CPU-bound degradations then run) and keeps a few ready ahead of the training step. Each item
    carries its epoch to the worker, so the batches are identical to ``num_workers=0``'s.

    Shape:
        each batch: one ``(batch_size // world_size, ...)`` tensor per part of a sample (``(lq, gt)`` or
        ``(lq, gt, teacher_pred)``).
    """
    batches, items = _batch_indices(len(data), batch_size, seed, rank, world_size, start_step), _EpochItems(data)
    if num_workers == 0:
        for epoch, idx in batches:
            yield _collate([items[(epoch, i)] for i in idx])
    else:
        kw = dict(num_workers=num_workers, collate_fn=_collate, pin_memory=pin_memory)
        yield from DataLoader(items, batch_sampler=_Batches(batches), **kw)


def _batch_indices(
    n: int, batch_size: int, seed: int, rank: int, world_size: int, start_step: int
) -> Iterator[tuple[int, list[int]]]:
    """``(epoch, this rank's sample indices)`` of every step from ``start_step`` on (see :func:`rank_batches`)."""
    per_rank = batch_size // world_size
    per_epoch = max(1, n // batch_size)
    step = start_step
    while True:
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        idx = perm[k * batch_size : (k + 1) * batch_size][rank::world_size][:per_rank]
        yield epoch, [int(i) for i in idx]
        step += 1


def _collate(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack(parts) for parts in zip(*items))


class _EpochItems(Dataset):
    """``data`` indexed by ``(epoch, index)``: sets the epoch (on this process's copy, a worker's too), then reads."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, index = key
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        return self.data[index]


class _Batches(Sampler):
    """One pass over an endless stream of ``(epoch, indices)``, as the DataLoader's batch sampler."""

    def __init__(self, batches: Iterator[tuple[int, list[int]]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return ([(epoch, i) for i in idx] for epoch, idx in self.batches)
