"""Background training jobs: one short distillation run in a thread, with progress that a UI can poll.

The app's Train page starts a :class:`TrainingJob` and reruns while it trains; each rerun reads
:meth:`TrainingJob.snapshot` and draws it. The job wraps :func:`~sharpkd.training.loop.fit` with a callback that records
the loss and validation history and checks a cancel flag, so nothing here depends on the UI (no Streamlit import).

Jobs outlive the browser tab that started them: :data:`JOBS`, a :class:`JobRegistry` shared by the whole server
process, keeps them under a short id, so a reloaded page (which gets a fresh Streamlit session) finds its run again.

Example:
    >>> job = TrainingJob(JobConfig(steps=300), teacher=sharpkd.load("teacher").model).start()  # doctest: +SKIP
    >>> job.wait(); job.status, job.snapshot().val[-1]["psnr"]  # doctest: +SKIP
    ('done', 27.9)
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from sharpkd.checkpoint import load_checkpoint, save_checkpoint
from sharpkd.data import EvalImages, SyntheticPairs, sample_images
from sharpkd.losses import parse_weights
from sharpkd.models import build_model, list_models
from sharpkd.runtime.sharpener import Sharpener, resolve_checkpoint
from sharpkd.training.callbacks import Callback
from sharpkd.training.loop import TrainConfig, check_losses, fit
from sharpkd.training.validation import evaluate_tensor_fn

log = logging.getLogger(__name__)

JOB_STATES: tuple[str, ...] = ("pending", "running", "done", "failed", "cancelled")


SCRATCH_LR = 2e-3  # from scratch: higher than TrainConfig's lr, there are only a few hundred steps
# Fine-tuning: small, because the shipped student is converged (40k steps, batch 16) and a few hundred noisy steps of
# batch 4 at SCRATCH_LR cost it 0.1-0.5 dB on validation before they win anything back (measured on 2 CPU cores).
FINE_TUNE_LR = 1e-4


@dataclass
class JobConfig:
    """A short distillation run. The defaults fine-tune the shipped student in under a minute on one CPU core.

    The training fields whose defaults differ from :class:`~sharpkd.training.loop.TrainConfig`'s (a long run's) say
    why; the rest are read from it.
    """

    # Start from these weights (a shipped model name or a checkpoint path); the student is then rebuilt from the
    # checkpoint's own config, so `student` and `overrides` are ignored. None trains `student` from a random init.
    # Fine-tuning is the default because a minute from scratch barely lifts PSNR over the degraded input.
    init: str | None = "student"
    student: str = "conv4"  # student preset from sharpkd.models.list_models("student"), when init is None
    steps: int = 300  # optimizer steps: a minute's worth, not a long run's TrainConfig.steps
    batch_size: int = 4  # patches per step: smaller than TrainConfig's, so each step (and its teacher forward) is quick
    patch_size: int = 48  # training crop side in pixels
    losses: str = "l1=1,kd=0.5"  # "name=weight,..." (see sharpkd.losses); kd/feat need a teacher
    degradation: str = "presets"  # training degradation; "presets" matches the validation suite
    # Peak learning rate; None picks FINE_TUNE_LR with an init, else SCRATCH_LR.
    lr: float | None = None
    warmup_steps: int = 20  # linear warm-up before the cosine decay (capped at a fifth of the steps)
    val_every: int = 50  # validate every N steps (and at step 0 and at the end): often, for a live curve
    val_images: tuple[str, ...] = ("astronaut", "coffee", "chelsea")  # built-in photos used for validation
    val_max_side: int = 128  # validation images are downscaled to this side, so a validation takes ~1 s
    seed: int = TrainConfig.seed  # model init, data order and degradations
    overrides: dict[str, Any] = field(default_factory=dict)  # student config overrides, e.g. {"width": 8}

    @property
    def peak_lr(self) -> float:
        """``lr``, or its default for this kind of run (fine-tuning or from scratch)."""
        if self.lr is not None:
            return self.lr
        return FINE_TUNE_LR if self.init is not None else SCRATCH_LR

    def train_config(self, meta: dict[str, Any]) -> TrainConfig:
        """The :func:`~sharpkd.training.loop.fit` settings of this job: in memory only (no out_dir), on the CPU."""
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.peak_lr,
            warmup_steps=min(self.warmup_steps, max(1, self.steps // 5)),
            losses=self.losses,
            val_every=self.val_every,
            out_dir=None,
            seed=self.seed,
            device="cpu",
            resume=False,
            meta=meta,
        )


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's progress, safe to read while the job trains.

    Attributes:
        status: one of :data:`JOB_STATES`.
        step: optimizer steps done.
        total: steps planned.
        losses: ``[(step, loss)]`` for every step.
        val: ``[{"step", "psnr", "ssim", "input_psnr", "input_ssim"}]``, mean over the validation presets; the first
            entry is the untrained student at step 0.
        error: what went wrong when ``status == "failed"``, else ``None``.
        elapsed_s: wall time since the job started.
    """

    status: str
    step: int
    total: int
    losses: list[tuple[int, float]]
    val: list[dict[str, float]]
    error: str | None
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


def loss_spec(weights: Mapping[str, float]) -> str:
    """Slider values -> the ``"name=weight,..."`` string ``TrainConfig`` takes; zeros dropped.

    Raises:
        ValueError: an unknown loss name, a negative weight, or no positive weight at all.

    Example:
        >>> loss_spec({"l1": 1.0, "kd": 0.5, "feat": 0.0})
        'l1=1,kd=0.5'
    """
    return ",".join(f"{name}={w:g}" for name, w in parse_weights(dict(weights)).items())


def _initial_student(cfg: JobConfig) -> tuple[nn.Module, str | None]:
    """The student before training and its preset name: the ``cfg.init`` checkpoint (architecture and weights), or
    ``cfg.student`` initialised from ``cfg.seed``. The seed applies inside ``fork_rng``, so the caller's global random
    stream is the same afterwards (building a job has no side effect on it)."""
    if cfg.init is not None:
        model, meta = load_checkpoint(resolve_checkpoint(cfg.init))
        kind = getattr(model, "kind", None)
        if kind != "student":
            raise ValueError(f"init must be a student checkpoint, got {cfg.init!r} (kind {kind!r})")
        return model.train(), meta.get("preset")
    if cfg.student not in list_models("student"):
        raise ValueError(f"unknown student {cfg.student!r}; known: {', '.join(list_models('student'))}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg.student, **cfg.overrides), cfg.student


class _Recorder(Callback):
    """Feeds fit()'s progress into the job; returning True from on_step cancels the run."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job

    def on_step(self, step: int, logs: dict[str, float]) -> bool:
        with self.job._lock:
            self.job._step = step
            self.job._losses.append((step, float(logs["loss"])))
        return self.job._cancel.is_set()

    def on_validation(self, step: int, metrics: dict[str, Any]) -> None:
        self.job._record_validation(step, metrics)


class TrainingJob:
    """One distillation run in a background thread: start, poll, cancel, then take the trained student.

    Args:
        cfg: what to train and for how long.
        teacher: a trained model (eval mode) to distil from, or ``None`` to train on ground truth alone. It is only
            read, so the app can pass the same cached model it sharpens with.
        images: sharp ``(H, W, 3)`` uint8 training photos; ``None`` uses the built-in samples.
        name: what the trained model is called (on the Compare page and in the checkpoint file name).
        checkpoint_dir: where the trained student's checkpoint is written; ``None`` makes a fresh temporary folder,
            which outlives the job (the app benchmarks and serves the student from that file).

    Raises:
        ValueError: unknown student preset or degradation, an ``init`` that is not a student, bad loss weights,
            distillation terms without a teacher, steps or batch size below 1 (as ``TrainConfig`` checks them), or no
            training photo at least ``patch_size`` on its shorter side.
        CheckpointError: ``cfg.init`` cannot be found or loaded.
    """

    def __init__(
        self,
        cfg: JobConfig,
        teacher: nn.Module | None,
        images: Sequence[np.ndarray] | None = None,
        *,
        name: str | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        self.student, preset = _initial_student(cfg)
        self.name = name or f"my-{cfg.student if cfg.init is None else Path(str(cfg.init)).stem}"
        meta = {"job": self.name, "preset": preset, "degradation": cfg.degradation}
        self.train_cfg = cfg.train_config(meta if cfg.init is None else {**meta, "init": str(cfg.init)})
        check_losses(cfg.losses, has_teacher=teacher is not None)
        self.data, self.val = self._datasets(cfg, images)
        self.cfg = cfg
        self.teacher = teacher
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.id = secrets.token_urlsafe(6)  # the job's key in a JobRegistry and in the Train page's URL
        self.created = time.time()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "pending"
        self._step = 0
        self._losses: list[tuple[int, float]] = []
        self._val: list[dict[str, float]] = []
        self._error: str | None = None
        self._t0: float | None = None
        self._t1: float | None = None
        self._checkpoint: Path | None = None

    def __repr__(self) -> str:
        return f"TrainingJob({self.name!r}, status={self.status!r}, step={self._step}/{self.cfg.steps})"

    # -- control -------------------------------------------------------------------------------------------------
    def start(self) -> TrainingJob:
        """Start training in a daemon thread; returns ``self`` so ``job = TrainingJob(...).start()`` reads well.

        Raises:
            RuntimeError: the job was already started.
        """
        with self._lock:
            if self._status != "pending":
                raise RuntimeError(f"job {self.name!r} was already started (status {self._status!r})")
            self._status, self._t0 = "running", time.time()
        self._thread = threading.Thread(target=self._run, name=f"sharpkd-train-{self.name}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop after the current step; the student trained so far is kept."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished; ``False`` when ``timeout`` seconds passed first."""
        if self._thread is None:
            return self._status != "pending"
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- progress ------------------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._status

    @property
    def progress(self) -> tuple[int, int]:
        """``(steps done, steps planned)``."""
        return self._step, self.cfg.steps

    @property
    def error(self) -> str | None:
        return self._error

    def snapshot(self) -> JobSnapshot:
        """A copy of the progress so far, taken under the job's lock."""
        with self._lock:
            end = self._t1 if self._t1 is not None else time.time()
            return JobSnapshot(
                status=self._status,
                step=self._step,
                total=self.cfg.steps,
                losses=list(self._losses),
                val=[dict(v) for v in self._val],
                error=self._error,
                elapsed_s=end - self._t0 if self._t0 is not None else 0.0,
            )

    # -- result --------------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        """The trained student as a sharpkd checkpoint (``None`` until the run ends with at least one step done)."""
        return self._checkpoint

    @property
    def checkpoint_bytes(self) -> bytes | None:
        """The checkpoint file's bytes, for a download button."""
        return self._checkpoint.read_bytes() if self._checkpoint is not None else None

    def sharpener(self) -> Sharpener:
        """The trained student, ready for :meth:`~sharpkd.runtime.sharpener.Sharpener.sharpen`.

        Raises:
            RuntimeError: the run has not produced a student yet (still running, failed, or cancelled at step 0).
        """
        if self._checkpoint is None:
            raise RuntimeError(f"job {self.name!r} has no trained student (status {self._status!r})")
        meta = {"job": self.name, "steps": self._step, "losses": self.cfg.losses, "checkpoint": str(self._checkpoint)}
        return Sharpener(self.name, copy.deepcopy(self.student).eval(), meta)

    # -- internals -----------------------------------------------------------------------------------------------
    def _datasets(self, cfg: JobConfig, images: Sequence[np.ndarray] | None) -> tuple[Dataset | None, Any]:
        """The training pairs and validation images, built up front (so bad settings raise in the constructor).
        A subclass whose data take long to build (sharpkd.app.finetune labels frames with the teacher) checks its
        input here, returns ``(None, None)`` and builds them in :meth:`_prepare`, in the job's thread."""
        if images is None:
            samples = sample_images()
            images, names = list(samples.values()), list(samples)
        else:
            images, names = list(images), None
        repeats = max(8, -(-cfg.batch_size // max(1, len(images))))  # enough crops for one batch per epoch
        data = SyntheticPairs(images, cfg.patch_size, cfg.degradation, repeats=repeats, seed=cfg.seed, names=names)
        return data, EvalImages(sample_images(cfg.val_images), max_side=cfg.val_max_side)

    def _prepare(self) -> None:
        """Runs first in the job's thread (its failures become the job's error); see :meth:`_datasets`."""

    def _record_validation(self, step: int, metrics: dict[str, Any]) -> None:
        mean = metrics["mean"]
        row = {"step": step, **{k: float(mean[k]) for k in ("psnr", "ssim", "input_psnr", "input_ssim")}}
        with self._lock:
            self._val.append(row)

    def _run(self) -> None:
        cfg, train_cfg = self.cfg, self.train_cfg
        try:
            self._prepare()
            if self._cancel.is_set():
                raise JobCancelled
            # fit() validates only after training steps; score the untrained student so the curve has a start.
            self.student.eval()
            self._record_validation(0, evaluate_tensor_fn(self.student, self.val))
            self.student.train()
            result = fit(train_cfg, self.teacher, self.student, self.data, val=self.val, callbacks=[_Recorder(self)])
            if result.steps > 0:
                meta = {**train_cfg.meta, "steps": result.steps, "losses": cfg.losses, "val": self._val[-1]}
                out_dir = self.checkpoint_dir or Path(mkdtemp(prefix="sharpkd-job-"))
                self._checkpoint = save_checkpoint(out_dir / f"{self.name}.pt", self.student, meta=meta)
            status, error = ("cancelled" if result.stopped == "cancelled" else "done"), None
        # The thread is the boundary between training and the UI: any failure (bad data, out of memory, a bug) must
        # become a message on the page, not a dead thread and a job stuck at "running".
        except JobCancelled:  # cancelled before the first training step: no student to keep
            status, error = "cancelled", None
        except Exception as err:  # noqa: BLE001
            log.exception("training job %s failed", self.name)
            status, error = "failed", f"{type(err).__name__}: {err}"
        self.student.eval()
        # A finished job stays in the registry for reloads: keep its result, drop the training photos and the
        # reference to the (shared) teacher, so a list of finished jobs holds only small students.
        self.data = self.val = self.teacher = None
        with self._lock:
            self._status, self._error, self._t1 = status, error, time.time()


class JobCancelled(Exception):
    """Raised inside a job's thread by a preparation step (e.g. the teacher labelling footage) that saw Cancel."""


class JobRegistry:
    """Training jobs by id, shared by every session of a server process, so a reloaded page finds its run again.

    A Streamlit session ends with its browser tab, but the job's thread does not: the page stores the job here and
    its id in the URL. The registry holds at most ``max_running`` runs training at once (each takes a CPU core) and
    forgets the oldest finished jobs beyond ``max_jobs`` (their checkpoint files stay on disk).

    Args:
        max_jobs: jobs kept in all, running ones never dropped.
        max_running: runs allowed to train at the same time.
    """

    def __init__(self, max_jobs: int = 12, max_running: int = 2) -> None:
        if max_jobs < 1 or max_running < 1:
            raise ValueError(f"max_jobs and max_running must be >= 1, got {max_jobs} and {max_running}")
        self.max_jobs, self.max_running = max_jobs, max_running
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()
        self.started = 0  # jobs started through this registry so far (forgotten ones included)

    def __len__(self) -> int:
        return len(self._jobs)

    def start(self, job: TrainingJob) -> TrainingJob:
        """Register ``job`` and start it; returns it.

        Raises:
            RuntimeError: ``max_running`` jobs are already training (the job is neither registered nor started),
                or the job was already started.
        """
        with self._lock:
            running = sum(j.status == "running" for j in self._jobs.values())
            if running >= self.max_running:
                raise RuntimeError(
                    f"{running} training runs are already going on this server; try again when one has finished"
                )
            job.start()
            self.started += 1
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.status != "running"]  # insertion order: oldest first
            for key in finished[: max(0, len(self._jobs) - self.max_jobs)]:
                del self._jobs[key]
        return job

    def get(self, job_id: str | None) -> TrainingJob | None:
        """The job with this id, or ``None`` (unknown id, forgotten, or the server restarted since)."""
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def jobs(self) -> list[TrainingJob]:
        """Every job held, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))


JOBS = JobRegistry()  # the server process's jobs: the Train page starts and finds runs through it
