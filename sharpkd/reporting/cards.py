"""End-to-end evaluation on uint8 images and the model cards in ``models/`` (``<name>.json`` + ``README.md``).

:func:`evaluate_models` scores what a user actually gets: a clean uint8 image is degraded with a named preset, the
loaded model's ``sharpen()`` restores the uint8 result, and PSNR/SSIM are measured against the clean image. The
degraded input itself and the OpenCV unsharp mask are always scored alongside, as the floor and the classical
baseline. :func:`write_cards` turns that (and, optionally, benchmark timings) into one JSON card per
checkpoint and a README table, stamped with the command and date that produced them, so every published number can be
regenerated.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sharpkd.degrade import PRESETS, list_degradations

if TYPE_CHECKING:
    from sharpkd.reporting.benchmark import BenchmarkReport, BenchmarkResult

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("input", "unsharp")  # always scored first: the degraded input and the unsharp mask
BASELINE_LABELS = {"input": "input (degraded)", "unsharp": "unsharp mask"}
CARD_RESOLUTION = (1920, 1080)  # (width, height) at which cards report MACs and speed


def load_eval_images(
    data: str | os.PathLike = "samples", max_side: int | None = None, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Clean validation images as ``{name: (H, W, 3) uint8}``.

    Args:
        data: a folder of sharp images (recursive), or ``"samples"`` for the scikit-image photos.
        max_side: downscale (area) so the longer side is at most this; ``None`` keeps full size.
        limit: keep only the first ``limit`` images (sorted by path; sample order for ``"samples"``).

    Raises:
        DatasetError: the folder is missing or holds no readable image (unreadable files are skipped with a warning).
        ValueError: ``max_side`` or ``limit`` below 1.
    """
    from sharpkd.data import EvalImages, sample_images

    for name, value in (("max_side", max_side), ("limit", limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    if str(data) == "samples":
        images = sample_images()
        images = dict(list(images.items())[:limit])
        return EvalImages(images, max_side).images
    images = EvalImages.from_folder(data, max_side).images
    return dict(list(images.items())[:limit])


def _score(pred: np.ndarray, gt: torch.Tensor) -> tuple[float, float]:
    from sharpkd.data import to_tensor
    from sharpkd.metrics import psnr, ssim

    x = to_tensor(pred)
    return float(psnr(x, gt, data_range=1.0)), float(ssim(x, gt, data_range=1.0))


def evaluate_models(
    models: Sequence[str],
    images: Mapping[str, np.ndarray],
    degradations: Sequence[str] = PRESETS,
    *,
    backend: str = "torch",
    tile: int = 512,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """PSNR and SSIM of each model's uint8 output, beside the degraded input and the unsharp mask.

    For degradation ``d`` and image number ``i`` (in ``images`` order): ``lq = degrade_image(gt, d, seed=i)``,
    ``pred = load(model).sharpen(lq)``, and PSNR/SSIM (``data_range=1``) compare ``to_tensor(pred)`` with
    ``to_tensor(gt)``. Scores are averaged over images per degradation, then over degradations.

    Args:
        models: shipped names or checkpoint paths; ``"input"`` and ``"unsharp"`` are always included, first.
        images: clean ``(H, W, 3)`` uint8 images by name, each at least 3x3.
        degradations: names accepted by :func:`sharpkd.degrade.degrade`, by default the four presets.
        backend: ``"torch"`` or ``"onnx"`` for the neural models.
        tile: tile side of the tiled inference path.
        progress: called as ``progress(done, total, label)`` before each (method, degradation) and once at the end.

    Returns:
        A plain dict::

            {"degradations": [...], "images": [names], "sizes": [[H, W], ...],
             "rows": {method: {degradation: {"psnr", "ssim"}, ..., "mean": {"psnr", "ssim", "gain"}}}}

        with rows in the order input, unsharp, then ``models``; ``gain`` is the mean PSNR minus the input's.

    Raises:
        ValueError: no images, or an unknown degradation or backend.
        CheckpointError: a model cannot be loaded.
    """
    from sharpkd.data import degrade_image, to_tensor
    from sharpkd.runtime.sharpener import load

    if not images:
        raise ValueError("evaluate_models needs at least one image, got none")
    unknown = [d for d in degradations if d not in list_degradations()]
    if unknown or not degradations:
        raise ValueError(f"unknown degradations {unknown or list(degradations)}; known: {', '.join(PRESETS)}")
    methods = list(BASELINES) + [m for m in dict.fromkeys(models) if m not in BASELINES]
    sharpeners = {m: load(m, backend=backend, tile=tile) for m in methods}  # fail on a bad model before any work
    gts = {name: to_tensor(img) for name, img in images.items()}
    rows: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    total, done = len(methods) * len(degradations), 0
    for deg in degradations:
        lqs = [degrade_image(img, deg, seed=i) for i, img in enumerate(images.values())]
        for method in methods:
            if progress is not None:
                progress(done, total, f"{method} {deg}")
            scores = [_score(sharpeners[method].sharpen(lq), gt) for lq, gt in zip(lqs, gts.values())]
            rows[method][deg] = {
                "psnr": float(np.mean([s[0] for s in scores])),
                "ssim": float(np.mean([s[1] for s in scores])),
            }
            done += 1
    if progress is not None:
        progress(total, total, "done")
    input_psnr = np.mean([rows["input"][d]["psnr"] for d in degradations])
    for per_deg in rows.values():
        mean_psnr = float(np.mean([per_deg[d]["psnr"] for d in degradations]))
        mean_ssim = float(np.mean([per_deg[d]["ssim"] for d in degradations]))
        per_deg["mean"] = {"psnr": mean_psnr, "ssim": mean_ssim, "gain": float(mean_psnr - input_psnr)}
    return {
        "degradations": list(degradations),
        "images": list(images),
        "sizes": [list(img.shape[:2]) for img in images.values()],
        "rows": rows,
    }


def metrics_table(
    result: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """A Markdown table of :func:`evaluate_models`'s result: one row per method, SSIM and PSNR per degradation, then
    the mean PSNR and the mean gain over the input in dB.

    Args:
        result: what :func:`evaluate_models` returned.
        labels: display names by method (default: the baselines' labels, else the method itself).
        extra: additional leading columns, ``{column: {method: text}}`` (e.g. parameters).
    """
    labels = {**BASELINE_LABELS, **(labels or {})}
    extra = extra or {}
    degs = result["degradations"]
    header = ["method", *extra, *[f"{d} {m}" for d in degs for m in ("SSIM", "PSNR")], "mean PSNR", "gain (dB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for method, row in result["rows"].items():
        cells = [labels.get(method, method), *[col.get(method, "") for col in extra.values()]]
        for d in degs:
            cells += [f"{row[d]['ssim']:.4f}", f"{row[d]['psnr']:.2f}"]
        cells += [f"{row['mean']['psnr']:.2f}", f"{row['mean']['gain']:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class CardsConfig:
    """What :func:`write_cards` evaluates and where it writes."""

    out_dir: str | os.PathLike = "models"  # folder of <name>.pt checkpoints; cards are written next to them
    data: str = "samples"  # validation images: a folder of sharp images, or "samples" (scikit-image photos)
    max_side: int | None = None  # downscale validation images to this longer side; None keeps full size
    limit: int | None = None  # use only the first N validation images
    degradations: tuple[str, ...] = PRESETS  # columns of the quality table
    bench: bool = False  # also time every model at 1080p (sharpkd.reporting.benchmark) and add a speed table
    bench_backends: tuple[str, ...] = ("torch",)  # backends of the speed table
    bench_repeats: int = 5  # timed calls per speed measurement
    bench_warmup: int = 3  # untimed calls before them
    threads: int | None = None  # intra-op threads for the speed table; None = torch's default
    bench_isolate: bool = True  # time each model in a fresh process (see BenchmarkConfig.isolate)
    command: str = ""  # the exact command line that regenerated the cards, written at the top of README.md
    video_size: tuple[int, int] = (1920, 1080)  # with bench: clip size of the default student's video benchmark
    video_frames: int = 60  # with bench: clip length
    readme: str | os.PathLike | None = None  # also replace the results block of this file (the project README)


def _card_order(names: Sequence[str], kinds: Mapping[str, str]) -> list[str]:
    """Teachers first, then students with the no-KD ablations (``*-nokd``) last, alphabetical within each group."""
    return sorted(names, key=lambda n: (kinds[n] != "teacher", n.endswith("-nokd"), n != "student", n))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN or Infinity
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_cards(
    cfg: CardsConfig,
    *,
    date: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Path]:
    """Regenerate ``<out_dir>/<name>.json`` for every ``<out_dir>/<name>.pt`` and ``<out_dir>/README.md``.

    A card is a JSON object::

        {"name", "preset", "kind", "config", "parameters", "macs_1080p",
         "metrics": {degradation: {"psnr", "ssim"}, ..., "mean": {"psnr", "ssim", "gain"}},
         "baselines": {"input": {...}, "unsharp": {...}},       # same layout, same images
         "validation": {"data", "images", "max_side", "degradation_seed"},
         "speed": {"backend", "1080p_p50_ms", "1080p_p95_ms", "fps", "ratio_to_unsharp", ...},  # with cfg.bench
         "speed_by_backend": {backend: {...}},                   # with cfg.bench
         "training": checkpoint meta (data, degradation, steps, wall_seconds, hardware, command, ...),
         "generated": {"command", "date"}}

    README.md has one quality table (input, unsharp mask, teachers, students, no-KD students) and, with
    ``cfg.bench``, a speed table.

    Args:
        cfg: see :class:`CardsConfig`.
        date: ISO date written into the files; default today.
        progress: forwarded to :func:`evaluate_models` and :func:`sharpkd.reporting.benchmark.run_benchmark`.

    Returns:
        The written paths, the cards first and README.md last.

    Raises:
        CheckpointError: ``out_dir`` holds no ``*.pt`` file, or one of them cannot be loaded.
        DatasetError: the validation folder is missing or empty.
    """
    from sharpkd.checkpoint import load_checkpoint
    from sharpkd.errors import CheckpointError
    from sharpkd.models import count_parameters, model_config
    from sharpkd.reporting.benchmark import BenchmarkConfig, conv_macs, run_benchmark

    out_dir = Path(cfg.out_dir)
    paths = {p.stem: p for p in sorted(out_dir.glob("*.pt"))} if out_dir.is_dir() else {}
    if not paths:
        raise CheckpointError(f"no checkpoints (*.pt) in {out_dir}; nothing to write cards for")
    date = date or datetime.date.today().isoformat()
    cards: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        model, meta = load_checkpoint(path)
        width, height = CARD_RESOLUTION
        cards[name] = {
            "name": name,
            "preset": meta.get("preset"),
            **model_config(model),  # "kind" and "config"
            "parameters": count_parameters(model),
            "macs_1080p": conv_macs(model, height, width),
            "training": meta,
        }
    order = _card_order(list(cards), {n: c["kind"] for n, c in cards.items()})

    images = load_eval_images(cfg.data, cfg.max_side, cfg.limit)
    evaluation = evaluate_models([str(paths[n]) for n in order], images, cfg.degradations, progress=progress)
    rows = evaluation["rows"]
    rows = {**{b: rows[b] for b in BASELINES}, **{n: rows[str(paths[n])] for n in order}}
    evaluation = {**evaluation, "rows": rows}
    validation = {
        "data": str(cfg.data),
        "images": evaluation["images"],
        "max_side": cfg.max_side,
        "degradation_seed": "image index",
    }

    bench = None
    if cfg.bench:
        bench_cfg = BenchmarkConfig(
            models=("unsharp", *[str(paths[n]) for n in order]),
            resolutions=(f"{CARD_RESOLUTION[0]}x{CARD_RESOLUTION[1]}",),
            backends=cfg.bench_backends,
            repeats=cfg.bench_repeats,
            warmup=cfg.bench_warmup,
            threads=cfg.threads,
            isolate=cfg.bench_isolate,
        )
        bench = run_benchmark(bench_cfg, progress=progress)

    video = []
    if cfg.bench and "student" in paths:  # the default student on a whole 1080p clip, decode and encode included
        from sharpkd.reporting.benchmark import benchmark_video

        for backend in cfg.bench_backends:
            if progress is not None:
                progress(0, 1, f"video student {backend}")
            video.append(
                benchmark_video(
                    str(paths["student"]), cfg.video_size, cfg.video_frames, backend=backend, threads=cfg.threads
                )
            )

    generated = {"command": cfg.command, "date": date}
    written = []
    for name in order:
        card = {
            **cards[name],
            "metrics": rows[name],
            "baselines": {b: rows[b] for b in BASELINES},
            "validation": validation,
        }
        if bench is not None:
            speeds = {r.backend: _speed(r, bench) for r in bench.results if r.model == str(paths[name])}
            card["speed"] = next(iter(speeds.values()))  # the first of cfg.bench_backends
            card["speed_by_backend"] = speeds
        if name == "student" and video:
            card["video_1080p"] = video
        card["training"] = card.pop("training")  # provenance last, after the numbers
        card["generated"] = generated
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(_jsonable(card), indent=2) + "\n")
        written.append(path)

    names = {str(p): n for n, p in paths.items()} | {"unsharp": BASELINE_LABELS["unsharp"]}
    readme = _readme(cfg, date, evaluation, {n: cards[n] for n in order})
    if bench is not None:
        readme += _speed_section(bench, names)
    if video:
        readme += _video_section(video)
    (out_dir / "README.md").write_text("\n".join(readme))
    written.append(out_dir / "README.md")
    if cfg.readme is not None:
        inject_results(cfg.readme, readme)
        written.append(Path(cfg.readme))
    log.info("wrote %d model cards and README.md to %s", len(order), out_dir)
    return written


RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def inject_results(path: str | os.PathLike, models_readme: Sequence[str]) -> None:
    """Replace the block between ``<!-- results:start -->`` and ``<!-- results:end -->`` in ``path`` with the
    models README (title dropped, headings demoted one level), so the project README carries the same numbers.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    path = Path(path)
    text = path.read_text()
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {RESULTS_START} ... {RESULTS_END} block to fill")
    body = [
        "## Results",
        "",
        "Copied from [`models/README.md`](models/README.md) by the command in "
        "[Reproducing the numbers](#reproducing-the-numbers); do not edit by hand.",
        "",
    ]
    sections = [i for i, line in enumerate(models_readme) if line.startswith("## ")]
    for line in models_readme[sections[0] if sections else 1 :]:
        body.append("#" + line if line.startswith("#") else line)
    block = RESULTS_START + "\n" + "\n".join(body).strip() + "\n" + RESULTS_END
    path.write_text(text[:start] + block + text[end + len(RESULTS_END) :])


def _video_section(video: Sequence[Mapping[str, Any]]) -> list[str]:
    v0 = video[0]
    lines = [
        "## Video",
        "",
        f"The default student on a synthesized {v0['width']}x{v0['height']} clip of {v0['frames']} frames (moving test "
        "pattern, mp4v): OpenCV decode, `sharpen()`, OpenCV encode. `flicker` is the mean absolute change between "
        "consecutive output frames over that of the input frames (1.0 = no added temporal shimmer).",
        "",
        "| backend | sharpen FPS | end-to-end FPS | flicker |",
        "|---|---:|---:|---:|",
    ]
    for v in video:
        lines.append(
            f"| {v['backend']} | {v['processing_fps']:.1f} | {v['end_to_end_fps']:.1f} | {v['flicker_ratio']:.3f} |"
        )
    return [*lines, ""]


def _speed(r: BenchmarkResult, bench: BenchmarkReport) -> dict[str, Any]:
    return {
        "backend": r.backend,
        "1080p_p50_ms": r.p50_ms,
        "1080p_p95_ms": r.p95_ms,
        "fps": r.fps,
        "ratio_to_unsharp": r.ratio_to_unsharp,
        "unsharp_ms": r.unsharp_ms,
        "peak_mb": r.peak_mb,
        "threads": r.threads,
        "cpu": bench.cpu,
        "repeats": bench.repeats,
    }


def _readme(
    cfg: CardsConfig,
    date: str,
    evaluation: dict[str, Any],
    cards: Mapping[str, dict[str, Any]],
) -> list[str]:
    """Title, provenance and the quality table, as lines; ``cards`` in table order."""
    size = f"downscaled to at most {cfg.max_side} px" if cfg.max_side else "full size"
    order = list(cards)
    return [
        "# sharpkd models",
        "",
        f"Regenerated on {date} by:",
        "",
        "```",
        cfg.command or "sharpkd cards",
        "```",
        "",
        "Every number in this file and in the `<name>.json` cards next to it comes from that command; do not edit them",
        "by hand. Training provenance (data, degradation, steps, wall time, hardware, command) is in each card.",
        "",
        "## Quality",
        "",
        f"{len(evaluation['images'])} validation images from `{cfg.data}` ({size}). Each is degraded with each named",
        "preset (seed = image index), restored with `sharpkd.load(name).sharpen()` on uint8, and scored against the",
        "clean image: PSNR in dB and SSIM (Gaussian window) on [0, 1]. `gain` is the mean PSNR minus the input's.",
        "",
        metrics_table(
            evaluation,
            extra={
                "params": {n: f"{cards[n]['parameters']:,}" for n in order},
                "GMACs @1080p": {n: f"{cards[n]['macs_1080p'] / 1e9:.2f}" for n in order},
            },
        ),
        "",
    ]


def _speed_section(bench: BenchmarkReport, names: Mapping[str, str]) -> list[str]:
    """The speed table. ``names`` maps benchmarked model keys (paths) to card names."""
    width, height = CARD_RESOLUTION
    reference = next(iter(bench.unsharp_ms.values()))
    lines = [
        "## Speed",
        "",
        f"One {width}x{height} frame, full `sharpen()` call (uint8 in and out), median (p50) and p95 of "
        f"{bench.repeats} runs after {bench.warmup} warm-up, on {bench.cpu} with {bench.threads} thread(s), torch "
        f"{bench.torch_version}. Each model runs in a fresh process, which then also times the OpenCV unsharp mask "
        "(GaussianBlur sigma 2 + addWeighted) on the same frame: `x unsharp` is the model's p50 over that p50, shown "
        f"in `unsharp ms` (the unsharp mask's own run in the parent process took {reference:.1f} ms).",
        "",
        "| model | backend | p50 ms | p95 ms | FPS | unsharp ms | x unsharp | peak extra MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in bench.results:
        lines.append(
            f"| {names.get(r.model, r.model)} | {r.backend} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.fps:.1f} | "
            f"{r.unsharp_ms:.1f} | {r.ratio_to_unsharp:.2f} | {'n/a' if r.peak_mb is None else f'{r.peak_mb:.0f}'} |"
        )
    return [*lines, ""]
