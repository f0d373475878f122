"""The training loop: teacher training (ground truth only) and student distillation, one :func:`fit`.

``fit(cfg, teacher, student, data)`` trains ``student``; with ``teacher=None`` it is plain supervised training (how the
teacher itself is trained). The loop reads top to bottom: learning rate, forward (teacher in ``eval()`` under
``no_grad``), named loss terms, backward, clip, step, ``zero_grad``, then callbacks. Runs on CPU or CUDA.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same call trains data-parallel: :func:`fit` creates the process group if
the caller has not (gloo on CPU, NCCL on CUDA with one GPU per process, ``cuda:LOCAL_RANK``), wraps the student and
the loss's trainable adapter in DistributedDataParallel, gives each rank its share of every global batch, and lets only
rank 0 log, call callbacks and write files. Validation runs on rank 0 and its metrics are broadcast, so early-stopping
and plateau decisions agree on every rank. Checkpoints hold the unwrapped student and the global step, so a run can
resume with a different number of processes as long as ``batch_size`` (the global batch) stays the same.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset

from sharpkd.checkpoint import load_state_into, load_training_state, save_checkpoint, save_training_state
from sharpkd.data import EvalImages
from sharpkd.losses import LossMix
from sharpkd.training.validation import evaluate_tensor_fn

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 2000  # optimizer steps in total
    batch_size: int = 8  # global batch (split evenly across ranks under torchrun)
    lr: float = 1e-3  # peak learning rate (AdamW), for the global batch
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    plateau: bool = False  # multiply lr by 0.5 when validation PSNR stalls for 2 validations (on top of cosine)
    grad_clip: float = 1.0  # max gradient norm (0 disables)
    losses: str = "l1=1"  # "name=weight,..." (see sharpkd.losses); distillation e.g. "l1=1,kd=1,feat=0.1"
    vgg_weights: str | None = None  # torchvision VGG19 weights for the "vgg" loss
    val_every: int = 250  # validate every N steps (and at the end); 0 disables
    early_stop: int = 0  # stop after N validations without a new best PSNR (0 disables)
    ckpt_every: int = 250  # write last.pt every N steps (and at the end); 0 writes it only at the end
    out_dir: str | None = None  # where last.pt, best.pt and metrics.jsonl go; None writes nothing
    seed: int = 0  # seeds the model init, the data order and the degradations
    amp: str = "auto"  # "auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "off"
    device: str = "auto"  # "auto", "cpu", "cuda" (under torchrun "cuda" means cuda:LOCAL_RANK)
    max_minutes: float = 0.0  # wall-clock budget; stop cleanly (with checkpoints) when reached, 0 = none
    resume: bool = True  # continue from out_dir/last.pt when it exists
    meta: dict[str, Any] = field(default_factory=dict)  # provenance stored in every checkpoint


@dataclass
class FitResult:
    steps: int
    best_psnr: float
    history: list[dict[str, Any]]
    stopped: str  # "done", "early_stop", "time_budget", "cancelled"
    wall_seconds: float
    rank: int = 0  # this process's rank (0 when not distributed): only rank 0 should write files after fit()
    world_size: int = 1  # number of training processes


class Callback:
    """Hooks called by :func:`fit` on rank 0; return ``True`` from ``on_step`` to cancel training."""

    def on_step(self, step: int, logs: dict[str, float]) -> bool | None:
        return None

    def on_validation(self, step: int, metrics: dict[str, Any]) -> None:
        return None


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _resolve_device(name: str) -> torch.device:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda" and device.index is None:
        # One GPU per process under torchrun (LOCAL_RANK); otherwise the current device.
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


@contextmanager
def _process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """Yield ``(rank, world_size)``. Under torchrun with no process group yet, create one (NCCL for CUDA, gloo for
    CPU) and destroy it on exit; a group the caller created is used as is and left alone."""
    created = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # env:// from torchrun's variables
        created = True
    try:
        yield _world()
    finally:
        if created:
            dist.destroy_process_group()


def _batches(data: Dataset, batch: int, seed: int, rank: int, world: int, start_step: int):
    """Endless per-rank batches of a global batch of ``batch`` samples split over ``world`` ranks.

    Each epoch draws a fresh permutation seeded by ``seed + epoch`` and rank r takes every world-th sample of each
    global batch: exactly what ``DistributedSampler(data, world, rank, shuffle=True, seed=seed, drop_last=True)`` with
    ``set_epoch(epoch)`` and ``batch // world`` per loader batch yields. Written out instead of using the sampler
    because (a) starting at ``start_step`` skips indices only, so a resumed run sees the same batches without
    replaying the epoch, and (b) the ranks' batches together are the same global batch whatever ``world`` is, so a
    run resumed with a different number of processes continues the same data stream.
    """
    n = len(data)
    per_rank = batch // world
    per_epoch = max(1, n // batch)
    step = start_step
    while True:
        epoch, k = divmod(step, per_epoch)
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        idx = perm[k * batch : (k + 1) * batch][rank::world][:per_rank]
        items = [data[int(i)] for i in idx]
        yield tuple(torch.stack(parts) for parts in zip(*items))  # (lq, gt) or (lq, gt, teacher_pred)
        step += 1


class _StudentLoss(nn.Module):
    """Student forward plus the named loss terms as one module, so that DistributedDataParallel averages the gradients
    of the student and of the loss's trainable feature adapter together."""

    def __init__(self, student: nn.Module, loss_fn: LossMix) -> None:
        super().__init__()
        self.student, self.loss_fn = student, loss_fn
        self.want_feats = "feat" in loss_fn.weights

    def forward(
        self,
        lq: torch.Tensor,
        gt: torch.Tensor,
        teacher_pred: torch.Tensor | None = None,
        teacher_feats: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if self.want_feats:
            pred, student_feats = self.student(lq, return_features=True)
        else:
            pred, student_feats = self.student(lq), None
        return self.loss_fn(pred.float(), gt, teacher_pred, student_feats, teacher_feats)


def _mean_over_ranks(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


def _flags_from_rank0(flags: list[bool], device: torch.device, world: int) -> list[bool]:
    if world == 1:
        return flags
    t = torch.tensor(flags, dtype=torch.float32, device=device)
    dist.broadcast(t, src=0)
    return [bool(v) for v in t.tolist()]


def _object_from_rank0(obj: Any, device: torch.device, world: int) -> Any:
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]


def _exists_on_all_ranks(path: Path, device: torch.device, world: int) -> bool:
    """Whether ``path`` exists, agreed by all ranks; raises when only some ranks see it (node-local out_dir)."""
    seen = torch.tensor([float(path.exists())], device=device)
    if world > 1:
        dist.all_reduce(seen)
    if 0 < seen.item() < world:
        raise FileNotFoundError(
            f"{path} exists for {int(seen.item())} of {world} processes; resuming a multi-node run needs out_dir on "
            "storage that every node sees (or resume=False / --no-resume)"
        )
    return seen.item() > 0


def fit(
    cfg: TrainConfig,
    teacher: nn.Module | None,
    student: nn.Module,
    data: Dataset,
    *,
    val: EvalImages | None = None,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``student`` on ``(lq, gt)`` pairs from ``data``, distilling from ``teacher`` when one is given.

    Launched by ``torchrun`` with more than one process, every process calls this with the same arguments; see the
    module docstring and ``docs/distributed.md``.

    Args:
        cfg: hyper-parameters, output folder and seed. ``cfg.batch_size`` is the global batch.
        teacher: a trained model used in eval mode, or ``None`` for training on ground truth alone.
        student: the model to train (updated in place; on return it holds the best weights if validated, on every
            rank).
        data: a dataset of ``(lq, gt)`` pairs of ``(3, P, P)`` tensors (e.g. :class:`sharpkd.data.SyntheticPairs`), or
            ``(lq, gt, teacher_pred)`` triples from ``cache_teacher_outputs`` (no teacher forward).
        val: whole images for validation PSNR/SSIM per named degradation.
        callbacks: progress hooks (CLI bar, app page), called on rank 0 only; any may cancel (all ranks stop).

    Returns:
        A :class:`FitResult` with the validation history (the same on every rank).

    Raises:
        ValueError: inconsistent configuration (batch not divisible by world size, KD losses without a teacher).
        FileNotFoundError: resuming under torchrun when only some processes can see ``out_dir/last.pt``.
    """
    device = _resolve_device(cfg.device)
    with _process_group(device) as (rank, world):
        return _fit(cfg, teacher, student, data, val, callbacks, device, rank, world)


def _fit(
    cfg: TrainConfig,
    teacher: nn.Module | None,
    student: nn.Module,
    data: Dataset,
    val: EvalImages | None,
    callbacks: Sequence[Callback],
    device: torch.device,
    rank: int,
    world: int,
) -> FitResult:
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    if len(data) < cfg.batch_size:
        raise ValueError(f"the dataset has {len(data)} samples, fewer than batch_size {cfg.batch_size}")
    torch.manual_seed(cfg.seed)
    loss_fn = LossMix(
        cfg.losses,
        student_channels=getattr(student, "feature_channels", None),
        teacher_channels=getattr(teacher, "feature_channels", None),
        vgg_weights=cfg.vgg_weights,
    )
    cached = len(data[0]) == 3  # a TeacherCache yields (lq, gt, teacher_pred): no teacher forward needed
    if "feat" in loss_fn.weights and teacher is None:
        raise ValueError(f"losses {cfg.losses!r} include feature distillation but no teacher was given")
    if loss_fn.needs_teacher and teacher is None and not cached:
        raise ValueError(f"losses {cfg.losses!r} include distillation terms but no teacher was given")
    student.to(device).train()
    loss_fn.to(device)
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
    params = list(student.parameters()) + [p for p in loss_fn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    state = {"step": 0, "best_psnr": -math.inf, "history": [], "lr_scale": 1.0, "stale": 0}
    if out_dir is not None and cfg.resume and _exists_on_all_ranks(out_dir / "last.pt", device, world):
        state = load_training_state(out_dir / "last.pt", student, opt, loss_fn, device)
        if rank == 0:
            log.info("resumed from %s at step %d", out_dir / "last.pt", state["step"])
    model: nn.Module = _StudentLoss(student, loss_fn)
    if world > 1:
        # Also broadcasts rank 0's weights, so every rank starts from the same student and adapter.
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if rank == 0:
            log.info(
                "data-parallel over %d processes (%s), %d samples per process",
                world,
                dist.get_backend(),
                cfg.batch_size // world,
            )
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    batches = _batches(data, cfg.batch_size, cfg.seed, rank, world, state["step"])
    metrics_file = out_dir / "metrics.jsonl" if out_dir is not None and rank == 0 else None
    if metrics_file is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    t0, stopped = time.time(), "done"
    step = state["step"]

    def validate() -> dict[str, Any] | None:
        """Rank 0 evaluates and broadcasts, so every rank takes the same best / plateau / early-stop decisions."""
        if val is None:
            return None
        metrics = None
        if rank == 0:
            student.eval()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                metrics = evaluate_tensor_fn(lambda x: student(x.to(device)).float().cpu(), val)
            student.train()
        return _object_from_rank0(metrics, device, world)

    while step < cfg.steps:
        lr = _lr_at(step, cfg) * state["lr_scale"]
        for group in opt.param_groups:
            group["lr"] = lr
        batch = [t.to(device, non_blocking=True) for t in next(batches)]
        lq, gt = batch[0], batch[1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            teacher_pred = teacher_feats = None
            if cached and "feat" not in loss_fn.weights:
                teacher_pred = batch[2]  # cached teacher output (sharpkd.training.cache)
            elif teacher is not None and loss_fn.needs_teacher:
                with torch.no_grad():
                    teacher_pred, teacher_feats = teacher(lq, return_features=True)
            terms = model(lq, gt, teacher_pred, teacher_feats)  # student forward, then the named loss terms
            loss = sum(terms.values())
        loss.backward()  # under DDP this also averages the gradients over ranks
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1

        # Each rank's loss is the mean over its share of the batch; their mean is the global-batch loss.
        values = _mean_over_ranks(torch.stack([loss.detach(), *terms.values()]).detach().float(), world).tolist()
        logs = {"step": step, "lr": lr, "loss": values[0], "grad_norm": float(grad_norm)}
        logs.update({f"loss_{k}": v for k, v in zip(terms, values[1:])})
        logs["elapsed"] = time.time() - t0
        cancel = rank == 0 and any(bool(cb.on_step(step, logs)) for cb in callbacks)
        out_of_time = cfg.max_minutes > 0 and logs["elapsed"] > cfg.max_minutes * 60
        # Rank 0's callbacks and clock decide for everyone, so all ranks leave the loop after the same step.
        cancel, out_of_time = _flags_from_rank0([cancel, out_of_time], device, world)
        last = step == cfg.steps
        if cfg.val_every and (step % cfg.val_every == 0 or last or out_of_time or cancel):
            metrics = validate()
            if metrics is not None:
                record = {"step": step, "elapsed": logs["elapsed"], "loss": logs["loss"], **_flat(metrics)}
                state["history"].append(record)
                if metrics["mean"]["psnr"] > state["best_psnr"]:
                    state["best_psnr"], state["stale"] = metrics["mean"]["psnr"], 0
                    if out_dir is not None and rank == 0:
                        save_checkpoint(out_dir / "best.pt", student, meta=_meta(cfg, step, logs, metrics))
                else:
                    state["stale"] += 1
                    if cfg.plateau and state["stale"] % 2 == 0:
                        state["lr_scale"] *= 0.5
                if rank == 0:
                    if metrics_file is not None:
                        with metrics_file.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                    for cb in callbacks:
                        cb.on_validation(step, metrics)
                if cfg.early_stop and state["stale"] >= cfg.early_stop:
                    stopped = "early_stop"
        if cancel:
            stopped = "cancelled"
        elif out_of_time:
            stopped = "time_budget"
        periodic = cfg.ckpt_every > 0 and step % cfg.ckpt_every == 0
        if out_dir is not None and rank == 0 and (periodic or last or stopped != "done"):
            state["step"] = step
            save_training_state(out_dir / "last.pt", student, opt, loss_fn, state, meta=_meta(cfg, step, logs))
        if stopped != "done":
            break

    # A finite best means best.pt was written (this run or the one resumed). Rank 0 reads it and broadcasts the
    # weights, which also makes the other ranks wait until it is complete; they need not see out_dir at all.
    if out_dir is not None and val is not None and math.isfinite(state["best_psnr"]):
        (have_best,) = _flags_from_rank0([rank == 0 and (out_dir / "best.pt").exists()], device, world)
        if have_best:
            if rank == 0:
                load_state_into(out_dir / "best.pt", student)
            if world > 1:
                for t in student.state_dict().values():
                    dist.broadcast(t, src=0)
    return FitResult(step, state["best_psnr"], state["history"], stopped, time.time() - t0, rank, world)


def _flat(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{preset}/{k}": v for preset, row in metrics.items() for k, v in row.items()}


def _meta(cfg: TrainConfig, step: int, logs: dict[str, float], metrics: dict | None = None) -> dict[str, Any]:
    meta = {"train": asdict(cfg), "step": step, "elapsed_s": round(logs["elapsed"], 1), **cfg.meta}
    if metrics is not None:
        meta["val"] = metrics
    return meta


ProgressFn = Callable[[int, dict[str, float]], None]
