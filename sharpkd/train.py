"""The training loop: teacher training (ground truth only) and student distillation, one :func:`fit`.

``fit(cfg, teacher, student, data)`` trains ``student``; with ``teacher=None`` it is plain supervised training (how the
teacher itself is trained). The loop reads top to bottom: learning rate, forward (teacher in ``eval()`` under
``no_grad``), named loss terms, backward, clip, step, ``zero_grad``, then callbacks. Runs on CPU or CUDA; with
``torch.distributed`` initialised (``torchrun``) it wraps the student in DistributedDataParallel, shards the data per
rank and lets only rank 0 log and checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset

from sharpkd.checkpoint import load_training_state, save_checkpoint, save_training_state
from sharpkd.data import EvalImages
from sharpkd.evaluate import evaluate_tensor_fn
from sharpkd.losses import LossMix

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 2000  # optimizer steps in total
    batch_size: int = 8  # global batch (split across ranks under torchrun)
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    plateau: bool = False  # multiply lr by 0.5 when validation PSNR stalls for 2 validations (on top of cosine)
    grad_clip: float = 1.0  # max gradient norm (0 disables)
    losses: str = "l1=1"  # "name=weight,..." (see sharpkd.losses); distillation e.g. "l1=1,kd=1,feat=0.1"
    vgg_weights: str | None = None  # torchvision VGG19 weights for the "vgg" loss
    val_every: int = 250  # validate every N steps (and at the end); 0 disables
    early_stop: int = 0  # stop after N validations without a new best PSNR (0 disables)
    ckpt_every: int = 250  # write last.pt every N steps
    out_dir: str | None = None  # where last.pt, best.pt and metrics.jsonl go; None writes nothing
    seed: int = 0  # seeds the model init, the data order and the degradations
    amp: str = "auto"  # "auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "off"
    device: str = "auto"  # "auto", "cpu", "cuda"
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


def _batches(data: Dataset, batch: int, seed: int, rank: int, world: int, start_step: int):
    """Endless per-rank batches: a fresh permutation per epoch (seeded by ``seed + epoch``), rank r takes every
    world-th sample. Starting at ``start_step`` skips indices only, so a resumed run sees the same batches."""
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
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        step += 1


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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

    Args:
        cfg: hyper-parameters, output folder and seed.
        teacher: a trained model used in eval mode, or ``None`` for training on ground truth alone.
        student: the model to train (updated in place; on return it holds the best weights if validated).
        data: a dataset of ``(lq, gt)`` pairs of ``(3, P, P)`` tensors (e.g. :class:`sharpkd.data.SyntheticPairs`).
        val: whole images for validation PSNR/SSIM per named degradation.
        callbacks: progress hooks (CLI bar, app page); any may cancel.

    Returns:
        A :class:`FitResult` with the validation history.

    Raises:
        ValueError: inconsistent configuration (batch not divisible by world size, KD losses without a teacher).
    """
    rank, world = _world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    if len(data) < cfg.batch_size:
        raise ValueError(f"the dataset has {len(data)} samples, fewer than batch_size {cfg.batch_size}")
    device = _resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.manual_seed(cfg.seed)
    loss_fn = LossMix(
        cfg.losses,
        student_channels=getattr(student, "feature_channels", None),
        teacher_channels=getattr(teacher, "feature_channels", None),
        vgg_weights=cfg.vgg_weights,
    )
    if loss_fn.needs_teacher and teacher is None:
        raise ValueError(f"losses {cfg.losses!r} include distillation terms but no teacher was given")
    student.to(device)
    loss_fn.to(device)
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
    params = list(student.parameters()) + [p for p in loss_fn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    state = {"step": 0, "best_psnr": -math.inf, "history": [], "lr_scale": 1.0, "stale": 0}
    if out_dir is not None and cfg.resume and (out_dir / "last.pt").exists():
        state = load_training_state(out_dir / "last.pt", student, opt, loss_fn, device)
        log.info("resumed from %s at step %d", out_dir / "last.pt", state["step"])
    model: nn.Module = student
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None
        )
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    want_feats = "feat" in loss_fn.weights
    batches = _batches(data, cfg.batch_size, cfg.seed, rank, world, state["step"])
    metrics_file = out_dir / "metrics.jsonl" if out_dir is not None and rank == 0 else None
    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    t0, stopped = time.time(), "done"
    step = state["step"]

    def validate() -> dict[str, Any] | None:
        if val is None:
            return None
        student.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            metrics = evaluate_tensor_fn(lambda x: student(x.to(device)).float().cpu(), val)
        student.train()
        return metrics

    while step < cfg.steps:
        lr = _lr_at(step, cfg) * state["lr_scale"]
        for group in opt.param_groups:
            group["lr"] = lr
        lq, gt = next(batches)
        lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            teacher_pred = teacher_feats = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_pred, teacher_feats = teacher(lq, return_features=True)
            if want_feats:
                pred, student_feats = model(lq, return_features=True)
            else:
                pred, student_feats = model(lq), None
            terms = loss_fn(pred.float(), gt, teacher_pred, student_feats, teacher_feats)
            loss = sum(terms.values())
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1

        logs = {"step": step, "lr": lr, "loss": float(loss), "grad_norm": float(grad_norm)}
        logs.update({f"loss_{k}": float(v) for k, v in terms.items()})
        logs["elapsed"] = time.time() - t0
        cancel = False
        if rank == 0:
            cancel = any(bool(cb.on_step(step, logs)) for cb in callbacks)
        last = step == cfg.steps
        out_of_time = cfg.max_minutes > 0 and (time.time() - t0) > cfg.max_minutes * 60
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
        if out_dir is not None and rank == 0 and (step % cfg.ckpt_every == 0 or last or out_of_time or cancel):
            state["step"] = step
            save_training_state(out_dir / "last.pt", student, opt, loss_fn, state, meta=_meta(cfg, step, logs))
        if cancel:
            stopped = "cancelled"
        elif out_of_time:
            stopped = "time_budget"
        if stopped != "done":
            break

    if out_dir is not None and (out_dir / "best.pt").exists() and val is not None:
        from sharpkd.checkpoint import load_state_into

        load_state_into(out_dir / "best.pt", student)
    return FitResult(step, state["best_psnr"], state["history"], stopped, time.time() - t0)


def _flat(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{preset}/{k}": v for preset, row in metrics.items() for k, v in row.items()}


def _meta(cfg: TrainConfig, step: int, logs: dict[str, float], metrics: dict | None = None) -> dict[str, Any]:
    meta = {"train": asdict(cfg), "step": step, "elapsed_s": round(logs["elapsed"], 1), **cfg.meta}
    if metrics is not None:
        meta["val"] = metrics
    return meta


ProgressFn = Callable[[int, dict[str, float]], None]
