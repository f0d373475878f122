"""The training loop: teacher training (ground truth only) and student distillation, one :func:`fit`.

``fit(cfg, teacher, student, data)`` trains ``student``; with ``teacher=None`` it is plain supervised training (how the
teacher itself is trained). The loop reads top to bottom: learning rate, forward (teacher in ``eval()`` under
``no_grad``), named loss terms, backward, clip, step, ``zero_grad``, the EMA, then callbacks
(:mod:`sharpkd.training.callbacks`: best tracking, early stopping, the plateau schedule, ``best.pt``, ``last.pt`` and
``metrics.jsonl``). The loop's state is one :class:`~sharpkd.training.state.TrainState`. Runs on CPU or CUDA.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same call trains data-parallel (:mod:`sharpkd.training.distributed`): fit
wraps the student and the loss's trainable adapter in DistributedDataParallel, gives each rank its share of every
global batch, and lets only rank 0 validate, call the caller's callbacks and write files. Rank 0's metrics and
decisions are broadcast, so every rank stops after the same step. Checkpoints hold the unwrapped student and the global
step, so a run can resume with a different number of processes as long as ``batch_size`` (the global batch) stays.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from sharpkd.checkpoint import load_state_into
from sharpkd.data import EvalImages
from sharpkd.losses import TEACHER_LOSSES, LossMix, parse_weights
from sharpkd.models.quant import attach_fake_quant
from sharpkd.training.cache import TeacherCache
from sharpkd.training.callbacks import (
    BestCheckpoint,
    BestTracker,
    Callback,
    LastCheckpoint,
    MetricsLog,
    PlateauSchedule,
)
from sharpkd.training.distributed import World, process_group, rank_batches, resolve_device
from sharpkd.training.ema import ema_init, ema_model, ema_update
from sharpkd.training.state import TrainState, load_training_state
from sharpkd.training.validation import evaluate_tensor_fn

__all__ = ["Callback", "FitResult", "TrainConfig", "check_losses", "fit"]

log = logging.getLogger(__name__)

AMP_MODES = ("auto", "bf16", "off")


@dataclass
class TrainConfig:
    """Hyper-parameters of one :func:`fit` run; the one home of the training defaults (the CLI and the app read them).

    Raises:
        ValueError: a value out of range (named with the offending value), an unknown ``amp`` mode, or bad ``losses``.
    """

    steps: int = 2000  # optimizer steps in total
    batch_size: int = 8  # global batch (split evenly across ranks under torchrun)
    lr: float = 1e-3  # peak learning rate (AdamW), for the global batch
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    plateau: bool = False  # multiply lr by 0.5 when validation PSNR stalls for 2 validations (on top of cosine)
    grad_clip: float = 1.0  # max gradient norm (0 disables)
    ema_decay: float = 0.0  # EMA of the weights after every step (e.g. 0.999); validation, best.pt and the final
    # weights then use the EMA, which smooths long runs; 0 disables
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
    channels_last: bool = False  # NHWC memory format for the models and their input (faster convolutions on CUDA)
    num_workers: int = 0  # DataLoader processes that build the batches (the degradations run there); 0 = this one
    resume: bool = True  # continue from out_dir/last.pt when it exists
    qat: bool = False  # quantization-aware: train through the int8 graph's rounding (sharpkd.models.quant), for a
    # RepConv student shipped on onnx-int8
    meta: dict[str, Any] = field(default_factory=dict)  # provenance stored in every checkpoint

    def __post_init__(self) -> None:
        rules = (
            ("steps", self.steps >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr >= 0, ">= 0"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("grad_clip", self.grad_clip >= 0, ">= 0"),
            ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
            ("val_every", self.val_every >= 0, ">= 0"),
            ("early_stop", self.early_stop >= 0, ">= 0"),
            ("ckpt_every", self.ckpt_every >= 0, ">= 0"),
            ("max_minutes", self.max_minutes >= 0, ">= 0"),
            ("num_workers", self.num_workers >= 0, ">= 0"),
        )
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        parse_weights(self.losses)


@dataclass
class FitResult:
    """What :func:`fit` returns (the same on every rank, ``rank`` aside)."""

    steps: int
    best_psnr: float
    history: list[dict[str, Any]]
    stopped: str  # "done", "early_stop", "time_budget", "cancelled", "interrupted" (SIGINT or SIGTERM)
    wall_seconds: float
    rank: int = 0  # this process's rank (0 when not distributed): only rank 0 should write files after fit()
    world_size: int = 1  # number of training processes


def check_losses(losses: str | Mapping[str, float], *, has_teacher: bool, cached: bool = False) -> dict[str, float]:
    """Parse ``losses`` and check that a teacher is there for the terms that need one.

    Args:
        losses: ``"name=weight,..."`` or a mapping (see :func:`sharpkd.losses.parse_weights`).
        has_teacher: whether a teacher model is given.
        cached: whether the data carries the teacher's outputs (a :class:`~sharpkd.training.cache.TeacherCache`),
            which serves ``kd``/``kd_mse``/``kd_psnr`` but not ``feat``.

    Returns:
        The parsed weights.

    Raises:
        ValueError: bad weights, or distillation terms without a teacher.
    """
    weights = parse_weights(dict(losses) if isinstance(losses, Mapping) else losses)
    if "feat" in weights and not has_teacher:
        raise ValueError(f"losses {losses!r} include feature distillation but no teacher was given")
    if set(weights) & set(TEACHER_LOSSES) and not (has_teacher or cached):
        raise ValueError(f"losses {losses!r} include distillation terms but no teacher was given")
    return weights


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The scheduled learning rate of step ``step`` (from 0): linear warm-up, then cosine decay to a floor."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


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
        student: the model to train (updated in place). On return, on every rank, it holds the best validated weights
            when ``best.pt`` was written, else the EMA weights when ``cfg.ema_decay > 0``, else the last weights.
        data: a dataset of ``(lq, gt)`` pairs of ``(3, P, P)`` tensors (e.g. :class:`sharpkd.data.SyntheticPairs`), or
            a :class:`~sharpkd.training.cache.TeacherCache` of ``(lq, gt, teacher_pred)`` (no teacher forward).
        val: whole images for validation PSNR/SSIM per named degradation.
        callbacks: progress hooks (CLI bar, app page), called on rank 0 only; any may cancel (all ranks stop).

    Returns:
        A :class:`FitResult` with the validation history (the same on every rank).

    Raises:
        ValueError: inconsistent configuration (batch not divisible by world size, KD losses without a teacher).
        FileNotFoundError: resuming under torchrun when only some processes can see ``out_dir/last.pt``.
    """
    with process_group(resolve_device(cfg.device)) as world:
        trainer = _Trainer(cfg, teacher, student, data, val, callbacks, world)
        fake_quant = attach_fake_quant(student) if cfg.qat else None  # validation then scores the int8 rounding too
        try:
            stopped = trainer.run()
        finally:
            if fake_quant is not None:
                fake_quant.remove()  # the student goes back float; its weights never held the rounding
        trainer.keep_best()
        state = trainer.state
        return FitResult(state.step, state.best_psnr, state.history, stopped, trainer.seconds, world.rank, world.size)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_on_signal():
    """While training, SIGINT (Ctrl-C) and SIGTERM (a session or job manager stopping the process) set a flag instead
    of killing the process mid-step: the loop then finishes the step, validates, writes ``last.pt`` and returns
    ``"interrupted"``, so no more than one step of work is lost. Yields a zero-argument callable telling whether a
    signal came. Outside the main thread (the app's training thread) signals cannot be caught and nothing changes."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum, frame):  # noqa: ARG001 (the signal module's signature)
        if got:  # a second signal: the user insists, stop at once the way the previous handler would
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        got.append(signum)
        log.warning("got %s: stopping after this step and writing last.pt", signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield lambda: bool(got)
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)


def _stop_reason(**reasons: bool) -> str | None:
    """The first reason that holds (the keywords in priority order), or None when training goes on."""
    return next((name for name, holds in reasons.items() if holds), None)


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
        return self.loss_fn(pred.float(), gt, teacher_pred, student_feats, teacher_feats, lq=lq)


class _Trainer:
    """The objects of one fit() call, built in ``__init__``, so that :meth:`run` is just the step loop."""

    def __init__(
        self,
        cfg: TrainConfig,
        teacher: nn.Module | None,
        student: nn.Module,
        data: Dataset,
        val: EvalImages | None,
        callbacks: Sequence[Callback],
        world: World,
    ) -> None:
        if cfg.batch_size % world.size:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world.size}")
        if len(data) < cfg.batch_size:
            raise ValueError(f"the dataset has {len(data)} samples, fewer than batch_size {cfg.batch_size}")
        cached = isinstance(data, TeacherCache)
        check_losses(cfg.losses, has_teacher=teacher is not None, cached=cached)
        torch.manual_seed(cfg.seed)
        self.cfg, self.teacher, self.student, self.data, self.val, self.world = cfg, teacher, student, data, val, world
        self.loss_fn = LossMix(
            cfg.losses,
            student_channels=getattr(student, "feature_channels", None),
            teacher_channels=getattr(teacher, "feature_channels", None),
            vgg_weights=cfg.vgg_weights,
        )
        self.use_cache = cached and "feat" not in self.loss_fn.weights  # features are not cached: run the teacher
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        student.to(world.device, memory_format=self.memory_format).train()
        self.loss_fn.to(world.device)
        if teacher is not None:
            teacher.to(world.device, memory_format=self.memory_format).eval().requires_grad_(False)
        self.params = list(student.parameters()) + [p for p in self.loss_fn.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None
        self.state = self._resume_or_start()
        self.model = world.wrap(_StudentLoss(student, self.loss_fn))  # DDP: every rank now has rank 0's weights
        if cfg.ema_decay == 0:
            self.state.ema = None  # a run resumed without --ema drops the EMA it had
        elif self.state.ema is None:
            self.state.ema = ema_init(student)  # also when resuming a last.pt written without an EMA
        if world.size > 1 and world.rank == 0:
            log.info(
                "data-parallel over %d processes, %d samples per process", world.size, cfg.batch_size // world.size
            )
        self.callbacks = self._builtin_callbacks() + (list(callbacks) if world.rank == 0 else [])
        self.seconds = 0.0

    def _resume_or_start(self) -> TrainState:
        last = self.out_dir / "last.pt" if self.out_dir is not None else None
        if last is None or not self.cfg.resume or not self.world.exists_everywhere(last):
            return TrainState()
        state = load_training_state(last, self.student, self.opt, self.loss_fn, self.world.device)
        if self.world.rank == 0:
            log.info("resumed from %s at step %d", last, state.step)
        return state

    def _builtin_callbacks(self) -> list[Callback]:
        """State keepers on every rank; file writers on rank 0 (see sharpkd.training.callbacks for the order)."""
        cfg, state = self.cfg, self.state
        callbacks: list[Callback] = [BestTracker(state, cfg.early_stop)]
        if cfg.plateau:
            callbacks.append(PlateauSchedule(state))
        if self.out_dir is not None and self.world.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            train = asdict(cfg)
            callbacks += [
                BestCheckpoint(self.out_dir / "best.pt", self.kept_weights, state, train),
                MetricsLog(self.out_dir / "metrics.jsonl", state),
                LastCheckpoint(
                    self.out_dir / "last.pt", cfg.ckpt_every, self.student, self.opt, self.loss_fn, state, train
                ),
            ]
        return callbacks

    def autocast(self) -> AbstractContextManager:
        device = self.world.device
        use_bf16 = self.cfg.amp == "bf16" or (self.cfg.amp == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    def kept_weights(self) -> nn.Module:
        """What validation scores and best.pt keeps: a copy holding the EMA when the run has one, else the student."""
        return ema_model(self.student, self.state.ema) if self.state.ema is not None else self.student

    def run(self) -> str:
        """Train from ``state.step`` to ``cfg.steps``; returns why training stopped."""
        cfg, state, world, device = self.cfg, self.state, self.world, self.world.device
        loader = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
        batches = rank_batches(self.data, cfg.batch_size, cfg.seed, world.rank, world.size, state.step, **loader)
        with _stop_on_signal() as signalled:
            stopped = self._loop(batches, signalled)
        self.seconds = time.time() - self.t0
        return stopped or "done"

    def _loop(self, batches, signalled) -> str | None:
        cfg, state, world, device = self.cfg, self.state, self.world, self.world.device
        self.t0 = t0 = time.time()
        stopped = None
        while stopped is None and state.step < cfg.steps:
            lr = lr_at(state.step, cfg) * state.lr_scale
            for group in self.opt.param_groups:
                group["lr"] = lr
            lq, gt, *cached = (t.to(device, non_blocking=True) for t in next(batches))
            lq = lq.contiguous(memory_format=self.memory_format)  # the model's input layout (channels_last or not)
            with self.autocast():
                teacher_pred = teacher_feats = None
                if self.use_cache:
                    teacher_pred = cached[0]  # the teacher's output, computed once (sharpkd.training.cache)
                elif self.teacher is not None and self.loss_fn.needs_teacher:
                    with torch.no_grad():
                        teacher_pred, teacher_feats = self.teacher(lq, return_features=True)
                terms = self.model(lq, gt, teacher_pred, teacher_feats)  # student forward, then the named loss terms
                loss = sum(terms.values())
            loss.backward()  # under DDP this also averages the gradients over ranks
            grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.zeros(())
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if state.ema is not None:
                ema_update(state.ema, self.student, cfg.ema_decay)  # identical on every rank: same weights
            state.step += 1

            # Each rank's loss is the mean over its share of the batch; their mean is the global-batch loss.
            values = world.mean(torch.stack([loss.detach(), *terms.values()]).detach().float()).tolist()
            logs = {"step": state.step, "lr": lr, "loss": values[0], "grad_norm": float(grad_norm)}
            logs.update({f"loss_{k}": v for k, v in zip(terms, values[1:])})
            logs["elapsed"] = time.time() - t0
            cancel = any(bool(cb.on_step(state.step, logs)) for cb in self.callbacks)
            out_of_time = cfg.max_minutes > 0 and logs["elapsed"] > cfg.max_minutes * 60
            # Rank 0's callbacks and clock decide for everyone, so all ranks leave the loop after the same step.
            cancel, out_of_time, interrupted = world.flags_from_rank0([cancel, out_of_time, signalled()])
            last = state.step == cfg.steps
            early = False
            if cfg.val_every and (state.step % cfg.val_every == 0 or last or cancel or out_of_time or interrupted):
                early = self.validate(logs)
            stopped = _stop_reason(
                interrupted=interrupted, cancelled=cancel, time_budget=out_of_time, early_stop=early, done=last
            )
            for cb in self.callbacks:
                cb.on_step_end(state.step, stopped)
        return stopped

    def validate(self, logs: dict[str, float]) -> bool:
        """Rank 0 evaluates the kept weights and broadcasts the metrics; every rank records them and runs the
        on_validation hooks. Returns whether a hook (rank 0's decides) stops training early."""
        if self.val is None:
            return False
        metrics = None
        if self.world.rank == 0:
            model, device = self.kept_weights().eval(), self.world.device
            with self.autocast():
                metrics = evaluate_tensor_fn(lambda x: model(x.to(device)).float().cpu(), self.val)
            self.student.train()
        metrics = self.world.object_from_rank0(metrics)
        flat = {f"{preset}/{k}": v for preset, row in metrics.items() for k, v in row.items()}
        self.state.history.append({"step": self.state.step, "elapsed": logs["elapsed"], "loss": logs["loss"], **flat})
        stops = [bool(cb.on_validation(self.state.step, metrics)) for cb in self.callbacks]
        (stop,) = self.world.flags_from_rank0([any(stops)])
        return stop

    def keep_best(self) -> None:
        """Leave the student holding best.pt's weights when this run (or the one it resumed) wrote one, else the EMA.

        Rank 0 reads best.pt and broadcasts the weights, which also makes the other ranks wait until it is complete;
        they need not see out_dir at all. A finite best PSNR means best.pt was written.
        """
        if self.out_dir is not None and self.val is not None and math.isfinite(self.state.best_psnr):
            (have_best,) = self.world.flags_from_rank0([self.world.rank == 0 and (self.out_dir / "best.pt").exists()])
            if have_best:
                if self.world.rank == 0:
                    load_state_into(self.out_dir / "best.pt", self.student)
                self.world.weights_from_rank0(self.student)
                return
        if self.state.ema is not None:
            self.student.load_state_dict(self.state.ema)
