"""CPU speed of the full ``sharpen()`` call (uint8 in, uint8 out) per model, resolution and backend.

:func:`run_benchmark` times each ``model x resolution x backend`` on a realistic synthetic frame after a warm-up and
reports the median (p50) and 95th percentile latency, FPS, conv MACs per frame, parameters and the peak extra memory.
In the same run it times the classical reference, an OpenCV unsharp mask (``GaussianBlur`` sigma 2 + ``addWeighted``)
on the same frame, and reports each model's latency as a multiple of it: absolute milliseconds drift between
machines, the ratio to a fixed OpenCV filter much less. Classical methods (the peers: OpenCV unsharp, FFmpeg CAS and
unsharp) are timed the same way, once each, with their engine (``"opencv"``, ``"ffmpeg"``) as the backend column and
the setting ``sharpkd.load`` gives them (their tuned card) or :attr:`BenchmarkConfig.classical_settings`.

Each model is measured in a fresh process (``multiprocessing`` ``spawn``) by default, so one model's allocations and
thread pools do not leak into the next. Peak memory is the growth of the process's resident-set high-water mark during
the warm-up and timed calls (see :class:`sharpkd.reporting.measure.PeakMemory`); the test frame, MAC counting and the
timer live in :mod:`sharpkd.reporting.measure` too.

Example:
    >>> report = run_benchmark(BenchmarkConfig(models=("student",), resolutions=("1080p",), backends=("torch",)))
    >>> row = report.results[0]
    >>> row.p50_ms, row.fps, row.ratio_to_unsharp  # doctest: +SKIP
    (21.4, 46.7, 1.6)
"""

from __future__ import annotations

import logging
import multiprocessing
import platform
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sharpkd.reporting.measure import PeakMemory, conv_macs, synthetic_frame, thread_count, time_calls
from sharpkd.runtime.classical import list_peers

log = logging.getLogger(__name__)

# Named frame sizes, (width, height); any "WxH" string works too.
RESOLUTIONS: dict[str, tuple[int, int]] = {
    "360p": (640, 360),
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
}
REFERENCE = "opencv-unsharp"  # name of the OpenCV reference measurement
DEFAULT_MODELS: tuple[str, ...] = ("student", "teacher", *list_peers())  # the shipped models and the classical peers


@dataclass
class BenchmarkConfig:
    """What :func:`run_benchmark` measures and how."""

    models: tuple[str, ...] = DEFAULT_MODELS  # shipped names, checkpoint paths, classical methods (peers, "input")
    resolutions: tuple[str, ...] = ("720p", "1080p", "4k")  # names in RESOLUTIONS or "WxH" such as "64x48"
    backends: tuple[str, ...] = ("torch", "onnx")  # neural models run on each; classical methods once
    repeats: int = 20  # timed calls per measurement (the teacher at 4k may need a small number)
    warmup: int = 3  # untimed calls first: lazy init, allocator and thread-pool warm-up
    threads: int | None = None  # intra-op threads for torch, ONNX Runtime and OpenCV; None = torch's default
    tile: int = 512  # tile side of the tiled inference path
    isolate: bool = True  # a fresh spawned process per model measurement; False runs all in this process (faster)
    # classical method -> the setting to time it with; one not here runs what sharpkd.load gives (tuned card, default)
    classical_settings: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class BenchmarkResult:
    """One ``model x resolution x backend`` measurement."""

    model: str
    backend: str  # "torch", "onnx", or a classical method's engine ("opencv", "ffmpeg", "none"; runtime.classical)
    resolution: str
    width: int
    height: int
    p50_ms: float  # median latency of one sharpen() call, uint8 in and out
    p95_ms: float
    fps: float  # 1000 / p50_ms
    macs: int  # conv MACs of one forward pass over the whole frame (see conv_macs); 0 for classical methods
    parameters: int
    peak_mb: float | None  # peak resident MB added by the sharpen() calls; None when it cannot be measured
    threads: int
    ratio_to_unsharp: float  # p50_ms / unsharp_ms
    unsharp_ms: float = float("nan")  # p50 of the OpenCV unsharp mask timed in the same process right after the model


@dataclass
class BenchmarkReport:
    """All measurements of one :func:`run_benchmark` call and the machine they ran on."""

    results: list[BenchmarkResult]
    unsharp_ms: dict[str, float]  # resolution -> p50 ms of the OpenCV unsharp mask reference
    cpu: str
    threads: int
    torch_version: str
    repeats: int
    warmup: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of everything in the report."""
        return asdict(self)


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1080p"`` or ``"1920x1080"`` -> ``(width, height)``.

    Raises:
        ValueError: neither a name in :data:`RESOLUTIONS` nor ``WxH`` with positive integers.
    """
    key = text.strip().lower()
    if key in RESOLUTIONS:
        return RESOLUTIONS[key]
    match = re.fullmatch(r"(\d+)x(\d+)", key)
    if match is None or min(int(match.group(1)), int(match.group(2))) < 1:
        raise ValueError(f"unknown resolution {text!r}; use one of {', '.join(RESOLUTIONS)} or WxH such as 640x360")
    return int(match.group(1)), int(match.group(2))


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """Time one model (or the OpenCV reference when ``job["model"]`` is None) on one frame size.

    Runs inside the worker process; restores the torch and OpenCV thread counts it changes.
    """
    from sharpkd.models import count_parameters
    from sharpkd.runtime.backends import BACKENDS
    from sharpkd.runtime.classical import unsharp_mask
    from sharpkd.runtime.sharpener import load

    with thread_count(job["threads"]) as threads:
        frame = synthetic_frame(job["width"], job["height"])
        if job["model"] is None:
            fn, model = unsharp_mask, None
        else:
            backend = job["backend"] if job["backend"] in BACKENDS else "torch"  # a classical method's engine
            sharpener = load(job["model"], backend=backend, tile=job["tile"], threads=threads, setting=job["setting"])
            fn, model = sharpener.sharpen, sharpener.model
        memory = PeakMemory()
        memory.start()
        times = time_calls(fn, frame, job["repeats"], job["warmup"])
        peak_mb = memory.peak_mb() if memory.exact or job["isolated"] else None
        # The OpenCV reference again, in this process, right after the model: its time swings by 2-3x with the
        # process's allocator and cache state, so a ratio is only fair against a reference measured in the same state.
        local_unsharp = float(np.percentile(time_calls(unsharp_mask, frame, max(job["repeats"], 20), 3), 50))
    macs = conv_macs(model, job["height"], job["width"]) if model is not None else 0
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "macs": macs,
        "parameters": count_parameters(model) if model is not None else 0,
        "peak_mb": peak_mb,
        "threads": threads,
        "unsharp_ms": local_unsharp,
    }


def _run_job(job: dict[str, Any], isolate: bool) -> dict[str, Any]:
    if not isolate or job["model"] is None:  # the OpenCV reference needs no fresh process: it is only timed
        return _measure({**job, "isolated": False})
    # A fresh interpreter per job: clean ru_maxrss, clean thread pools. Exceptions are re-raised here; a worker that
    # dies (killed for memory, or a __main__ that cannot be re-imported, such as a script read from stdin) raises
    # BrokenProcessPool instead of hanging, as a multiprocessing.Pool would.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(_measure, {**job, "isolated": True}).result()
        except BrokenProcessPool as err:
            raise RuntimeError(
                f"the benchmark worker process for {job['model'] or REFERENCE} at {job['resolution']} died "
                f"(out of memory?); rerun with fewer repeats, a smaller resolution or isolate=False: {err}"
            ) from err


def _check_config(cfg: BenchmarkConfig) -> list[tuple[str, int, int]]:
    from sharpkd.runtime.backends import BACKENDS

    if cfg.repeats < 1 or cfg.warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={cfg.repeats}, warmup={cfg.warmup}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {cfg.threads}")
    if not cfg.models or not cfg.resolutions or not cfg.backends:
        raise ValueError(
            f"need at least one model, resolution and backend, got {cfg.models}, {cfg.resolutions}, {cfg.backends}"
        )
    unknown = [b for b in cfg.backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; known: {', '.join(BACKENDS)}")
    return [(name, *parse_resolution(name)) for name in cfg.resolutions]


def run_benchmark(
    cfg: BenchmarkConfig | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> BenchmarkReport:
    """Time every ``model x resolution x backend`` of ``cfg`` and the OpenCV unsharp mask reference.

    Args:
        cfg: what to measure, see :class:`BenchmarkConfig`; ``None`` measures its defaults.
        progress: called as ``progress(done, total, label)`` before each measurement (``label`` names it) and once
            more as ``progress(total, total, "done")``; drives e.g. a tqdm bar.

    Returns:
        A :class:`BenchmarkReport`; results are ordered model, then resolution, then backend.

    Raises:
        ValueError: an unknown resolution or backend, or a non-positive ``repeats`` or ``threads``.
        CheckpointError: an unknown model name or an unusable checkpoint.
        CodecError: an FFmpeg peer cannot run (PyAV missing, FFmpeg lacks the filter).
        RuntimeError: a worker process died (``isolate=True``), e.g. killed for running out of memory.
    """
    from sharpkd.runtime.classical import CLASSICAL
    from sharpkd.runtime.sharpener import supported_backends

    cfg = cfg if cfg is not None else BenchmarkConfig()
    sizes = _check_config(cfg)
    jobs: list[tuple[str, dict[str, Any]]] = []
    common = {"repeats": cfg.repeats, "warmup": cfg.warmup, "threads": cfg.threads, "tile": cfg.tile}
    for res, width, height in sizes:
        # The reference costs milliseconds: give it at least 20 runs, so the ratios do not inherit its noise.
        ref = {**common, "repeats": max(cfg.repeats, 20), "warmup": max(cfg.warmup, 3), "setting": None}
        job = {**ref, "model": None, "backend": "opencv", "width": width, "height": height, "resolution": res}
        jobs.append((f"{REFERENCE} {res}", job))
    for model in cfg.models:
        # Classical methods never touch torch or ONNX Runtime: one measurement whatever the backends.
        backends = (CLASSICAL[model].engine,) if model in CLASSICAL else supported_backends(model, cfg.backends)
        for res, width, height in sizes:
            for backend in backends:
                job = {
                    **common,
                    "model": model,
                    "backend": backend,
                    "setting": cfg.classical_settings.get(model) if model in CLASSICAL else None,
                    "width": width,
                    "height": height,
                    "resolution": res,
                }
                jobs.append((f"{model} {res} {backend}", job))

    reference: dict[str, float] = {}
    results: list[BenchmarkResult] = []
    threads = cfg.threads or torch.get_num_threads()
    for done, (label, job) in enumerate(jobs):
        if progress is not None:
            progress(done, len(jobs), label)
        log.info("benchmark: %s", label)
        out = _run_job(job, cfg.isolate)
        threads = out["threads"]
        if job["model"] is None:
            reference[job["resolution"]] = out["p50_ms"]
            continue
        results.append(
            BenchmarkResult(
                model=job["model"],
                backend=job["backend"],
                resolution=job["resolution"],
                width=job["width"],
                height=job["height"],
                p50_ms=out["p50_ms"],
                p95_ms=out["p95_ms"],
                fps=1000.0 / out["p50_ms"] if out["p50_ms"] > 0 else float("inf"),
                macs=out["macs"],
                parameters=out["parameters"],
                peak_mb=out["peak_mb"],
                threads=out["threads"],
                ratio_to_unsharp=out["p50_ms"] / out["unsharp_ms"],
                unsharp_ms=out["unsharp_ms"],
            )
        )
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    notes = [
        "latency: wall time of one Sharpener.sharpen() call, uint8 RGB in and out, after warm-up",
        "macs: Conv2d multiply-accumulates of one forward pass over the whole frame (no tile overlap)",
        "peak_mb: growth of the resident-set high-water mark during the warm-up and timed calls",
    ]
    return BenchmarkReport(
        results=results,
        unsharp_ms=reference,
        cpu=cpu_name(),
        threads=threads,
        torch_version=torch.__version__,
        repeats=cfg.repeats,
        warmup=cfg.warmup,
        notes=notes,
    )


def benchmark_video(
    model: str,
    size: tuple[int, int] = (1920, 1080),
    frames: int = 60,
    backend: str = "torch",
    threads: int | None = None,
    spin: bool = False,
) -> dict[str, Any]:
    """Frames per second over a whole clip, decode and encode included: a synthesized ``size`` clip (moving test
    pattern, H.264) goes through :func:`~sharpkd.runtime.video.sharpen_video` (PyAV decode, ``model``'s
    ``sharpen()``, H.264 encode, pipelined in threads). ``spin``: as in :func:`sharpkd.load`; off by default, as
    ``sharpkd video`` runs the model.

    Returns:
        ``{"model", "backend", "width", "height", "frames", "processing_fps", "end_to_end_fps", "flicker_ratio"}``.
    """
    import tempfile

    from sharpkd.runtime.sharpener import load
    from sharpkd.runtime.video import VideoConfig, sharpen_video, synthesize_clip

    with thread_count(threads) as threads, tempfile.TemporaryDirectory() as tmp:
        sharpener = load(model, backend=backend, threads=threads, spin=spin)
        clip = synthesize_clip(Path(tmp) / "clip.mp4", frames=frames, size=size, fps=30.0)
        report = sharpen_video(clip, Path(tmp) / "out.mp4", sharpener.sharpen, VideoConfig())
    return {
        "model": model,
        "backend": backend,
        "width": report.width,
        "height": report.height,
        "frames": report.frames,
        "processing_fps": report.processing_fps,
        "end_to_end_fps": report.end_to_end_fps,
        "flicker_ratio": report.flicker_ratio,
    }
