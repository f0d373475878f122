"""Regenerate the model cards in ``models/``: one ``<name>.json`` per checkpoint, and ``README.md``.

:func:`write_cards` describes every checkpoint (parameters, MACs, training provenance), scores it end to end with
:func:`sharpkd.reporting.evaluate.evaluate_models`, optionally times it with :mod:`sharpkd.reporting.benchmark`, and
writes a :class:`~sharpkd.reporting.card.ModelCard` per checkpoint and the README tables
(:mod:`sharpkd.reporting.tables`), stamped with the command and date that produced them, so every published number
can be regenerated.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sharpkd.checkpoint import load_checkpoint
from sharpkd.degrade import PRESETS
from sharpkd.errors import CheckpointError
from sharpkd.models import count_parameters, model_config
from sharpkd.reporting.card import CARD_RESOLUTION, Generated, ModelCard, Quality, Speed, Validation, VideoRun
from sharpkd.reporting.evaluate import BASELINES, evaluate_models, load_eval_images
from sharpkd.reporting.measure import conv_macs
from sharpkd.reporting.tables import (
    BASELINE_LABELS,
    inject_results,
    intro_section,
    quality_section,
    speed_section,
    video_section,
)

if TYPE_CHECKING:
    from sharpkd.reporting.benchmark import BenchmarkReport

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


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


def _card_order(names: Sequence[str], kinds: Mapping[str, str | None]) -> list[str]:
    """Teachers first, then students with the no-KD ablations (``*-nokd``) last, alphabetical within each group."""
    return sorted(names, key=lambda n: (kinds[n] != "teacher", n.endswith("-nokd"), n != "student", n))


def _describe(paths: Mapping[str, Path]) -> dict[str, ModelCard]:
    """What each checkpoint says about itself (config, size, cost, provenance), in card order."""
    width, height = CARD_RESOLUTION
    cards = {}
    for name, path in paths.items():
        model, meta = load_checkpoint(path)
        info = model_config(model)
        cards[name] = ModelCard(
            name=name,
            preset=meta.get("preset"),
            kind=info["kind"],
            config=info["config"],
            parameters=count_parameters(model),
            macs_1080p=conv_macs(model, height, width),
            training=meta,
        )
    order = _card_order(list(cards), {n: c.kind for n, c in cards.items()})
    return {name: cards[name] for name in order}


def _benchmark(cfg: CardsConfig, models: Sequence[str], progress: Progress | None) -> BenchmarkReport:
    """The unsharp mask and ``models`` at the card resolution, on the speed table's backends."""
    from sharpkd.reporting.benchmark import BenchmarkConfig, run_benchmark

    bench_cfg = BenchmarkConfig(
        models=("unsharp", *models),
        resolutions=(f"{CARD_RESOLUTION[0]}x{CARD_RESOLUTION[1]}",),
        backends=cfg.bench_backends,
        repeats=cfg.bench_repeats,
        warmup=cfg.bench_warmup,
        threads=cfg.threads,
        isolate=cfg.bench_isolate,
    )
    return run_benchmark(bench_cfg, progress=progress)


def _video(cfg: CardsConfig, model: str, progress: Progress | None) -> list[VideoRun]:
    """``model`` on a whole clip (decode and encode included), once per backend of the speed table."""
    from sharpkd.reporting.benchmark import benchmark_video

    runs = []
    for backend in cfg.bench_backends:
        if progress is not None:
            progress(0, 1, f"video {Path(model).stem} {backend}")
        run = benchmark_video(model, cfg.video_size, cfg.video_frames, backend=backend, threads=cfg.threads)
        runs.append(VideoRun.from_json(run))
    return runs


def write_cards(
    cfg: CardsConfig,
    *,
    date: str | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Regenerate ``<out_dir>/<name>.json`` for every ``<out_dir>/<name>.pt`` and ``<out_dir>/README.md``.

    Each card is a :class:`~sharpkd.reporting.card.ModelCard` (its module docstring shows the JSON). With
    ``cfg.bench`` the cards get ``speed`` and ``speed_by_backend``, and the default student (``student.pt``) also
    ``video_1080p``. README.md has one quality table (input, unsharp mask, teachers, students, no-KD students) and,
    with ``cfg.bench``, a speed table and a video table.

    Args:
        cfg: see :class:`CardsConfig`.
        date: ISO date written into the files; default today.
        progress: forwarded to :func:`evaluate_models` and :func:`sharpkd.reporting.benchmark.run_benchmark`.

    Returns:
        The written paths, the cards first and README.md last (then ``cfg.readme`` when given).

    Raises:
        CheckpointError: ``out_dir`` holds no ``*.pt`` file, or one of them cannot be loaded.
        DatasetError: the validation folder is missing or empty.
        ValueError: ``cfg.readme`` has no results block.
    """
    out_dir = Path(cfg.out_dir)
    paths = {p.stem: p for p in sorted(out_dir.glob("*.pt"))} if out_dir.is_dir() else {}
    if not paths:
        raise CheckpointError(f"no checkpoints (*.pt) in {out_dir}; nothing to write cards for")
    date = date or datetime.date.today().isoformat()
    cards = _describe(paths)
    sources = [str(paths[name]) for name in cards]

    images = load_eval_images(cfg.data, cfg.max_side, cfg.limit)
    evaluation = evaluate_models(sources, images, cfg.degradations, progress=progress)
    rows = {b: evaluation["rows"][b] for b in BASELINES} | {n: evaluation["rows"][s] for n, s in zip(cards, sources)}
    evaluation = {**evaluation, "rows": rows}
    bench = _benchmark(cfg, sources, progress) if cfg.bench else None
    # the default student on a whole 1080p clip, decode and encode included
    video = _video(cfg, str(paths["student"]), progress) if cfg.bench and "student" in paths else []

    shared = dict(
        baselines={b: Quality.from_json(rows[b]) for b in BASELINES},
        validation=Validation(
            data=str(cfg.data), images=evaluation["images"], max_side=cfg.max_side, degradation_seed="image index"
        ),
        generated=Generated(cfg.command, date),
    )
    written = []
    for name, source in zip(cards, sources):
        card = dataclasses.replace(cards[name], metrics=Quality.from_json(rows[name]), **shared)
        if bench is not None:
            card.speed_by_backend = {r.backend: Speed.from_result(r, bench) for r in bench.results if r.model == source}
            card.speed = next(iter(card.speed_by_backend.values()))  # the first of cfg.bench_backends
        if name == "student":
            card.video_1080p = video
        written.append(card.write(out_dir / f"{name}.json"))

    readme = intro_section(cfg.command, date)
    readme += quality_section(evaluation, list(cards.values()), cfg.data, cfg.max_side)
    if bench is not None:
        names = {source: name for name, source in zip(cards, sources)} | {"unsharp": BASELINE_LABELS["unsharp"]}
        readme += speed_section(bench, names)
    if video:
        readme += video_section(video)
    (out_dir / "README.md").write_text("\n".join(readme))
    written.append(out_dir / "README.md")
    if cfg.readme is not None:
        inject_results(cfg.readme, readme)
        written.append(Path(cfg.readme))
    log.info("wrote %d model cards and README.md to %s", len(cards), out_dir)
    return written
