"""Regenerate the cards in ``models/``: one ``<name>.json`` per checkpoint and per classical peer, and ``README.md``.

:func:`write_cards` tunes the classical peers on the validation images (:mod:`sharpkd.reporting.tuning`), describes
every checkpoint (parameters, MACs, training provenance), scores it end to end with
:func:`sharpkd.reporting.evaluate.evaluate_models` beside the tuned peers and the best classical per preset,
optionally times models and peers with :mod:`sharpkd.reporting.benchmark`, and writes a
:class:`~sharpkd.reporting.card.ModelCard` per checkpoint and per peer and the README tables
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
from sharpkd.reporting.card import (
    CARD_RESOLUTION,
    Classical,
    Generated,
    GridPoint,
    ModelCard,
    Quality,
    Speed,
    Validation,
    VideoRun,
)
from sharpkd.reporting.evaluate import BASELINES, BEST_CLASSICAL, INPUT, evaluate_models, load_eval_images
from sharpkd.reporting.measure import conv_macs
from sharpkd.reporting.tables import (
    classical_section,
    frontier_section,
    inject_results,
    intro_section,
    peer_label,
    quality_section,
    speed_section,
    video_section,
)
from sharpkd.reporting.tuning import OBJECTIVE, Tuning, tune_classical
from sharpkd.runtime.classical import CLASSICAL
from sharpkd.runtime.sharpener import default_backend

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
    quality_backends: tuple[str, ...] = ()  # also score every model these backends run (e.g. onnx-int8), beside torch
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
            backend=default_backend(path),
            training=meta,
        )
    order = _card_order(list(cards), {n: c.kind for n, c in cards.items()})
    return {name: cards[name] for name in order}


def _benchmark(cfg: CardsConfig, models: Sequence[str], tuning: Tuning, progress: Progress | None) -> BenchmarkReport:
    """The tuned classical peers and ``models`` at the card resolution, on the speed table's backends."""
    from sharpkd.reporting.benchmark import BenchmarkConfig, run_benchmark

    bench_cfg = BenchmarkConfig(
        models=(*tuning.peers, *models),
        classical_settings=tuning.settings,
        resolutions=(f"{CARD_RESOLUTION[0]}x{CARD_RESOLUTION[1]}",),
        backends=cfg.bench_backends,
        repeats=cfg.bench_repeats,
        warmup=cfg.bench_warmup,
        threads=cfg.threads,
        isolate=cfg.bench_isolate,
    )
    return run_benchmark(bench_cfg, progress=progress)


def _quality_by_backend(
    cfg: CardsConfig,
    cards: Mapping[str, ModelCard],
    sources: Mapping[str, str],
    images: Mapping,
    progress: Progress | None,
) -> dict[str, dict[str, dict]]:
    """``{backend: {name: evaluation row}}``: the models each of ``cfg.quality_backends`` runs, scored on it unless it
    is their default backend (the Quality table has those scores already); models whose default is the int8 graph are
    also scored on float ``onnx``, the float rows of the frontier."""
    from sharpkd.runtime.sharpener import supported_backends

    int8_default = {n for n, c in cards.items() if c.backend == "onnx-int8"}
    backends = list(dict.fromkeys([*cfg.quality_backends, *(["onnx"] if int8_default else [])]))
    out = {}
    for backend in backends:
        names = [
            n
            for n, s in sources.items()
            if backend in supported_backends(s, [backend])
            and cards[n].backend != backend
            and (backend in cfg.quality_backends or n in int8_default)
        ]
        if not names:
            continue
        result = evaluate_models(
            [sources[n] for n in names], images, cfg.degradations, backend=backend, progress=progress, peers=False
        )
        out[backend] = {n: result["rows"][sources[n]] for n in names}
    return out


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


def _peer_cards(tuning: Tuning, rows: Mapping[str, Mapping], bench: BenchmarkReport | None) -> list[ModelCard]:
    """One card per tuned classical peer: its tuned setting's scores, the whole grid, and its speed."""
    cards = []
    for name, peer in tuning.peers.items():
        method = CLASSICAL[name]
        section = Classical(
            description=method.description,
            engine=method.engine,
            setting=peer.setting,
            objective=OBJECTIVE,
            best_for=tuning.best_for(name),
            grid=[GridPoint(s, Quality.from_json(row)) for s, row in zip(peer.grid, peer.rows)],
        )
        card = ModelCard(name=name, kind="classical", metrics=Quality.from_json(rows[name]), classical=section)
        if bench is not None:
            card.speed_by_backend = {r.backend: Speed.from_result(r, bench) for r in bench.results if r.model == name}
            card.speed = next(iter(card.speed_by_backend.values()), None)
        cards.append(card)
    return cards


def write_cards(
    cfg: CardsConfig,
    *,
    date: str | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Regenerate ``<out_dir>/<name>.json`` for every ``<out_dir>/<name>.pt`` and every classical peer, and
    ``<out_dir>/README.md``.

    Each card is a :class:`~sharpkd.reporting.card.ModelCard` (its module docstring shows the JSON); a peer's card
    (``kind`` ``"classical"``) has its tuned setting, which ``sharpkd.load(peer)`` then runs, and the scores of its
    whole grid. With ``cfg.bench`` the cards get ``speed`` and ``speed_by_backend``, and the default student
    (``student.pt``) also ``video_1080p``. README.md has one quality table (input, the tuned peers, the best
    classical per preset, teachers, students, no-KD students), the peers' tuning table and, with ``cfg.bench``, a
    speed table and a video table.

    Args:
        cfg: see :class:`CardsConfig`.
        date: ISO date written into the files; default today.
        progress: forwarded to :func:`evaluate_models` and :func:`sharpkd.reporting.benchmark.run_benchmark`.

    Returns:
        The written paths: the model cards, then the peer cards, then README.md (then ``cfg.readme`` when given).

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
    tuning = tune_classical(images, cfg.degradations, progress=progress)
    evaluation = evaluate_models(  # each model on the backend sharpkd.load(name) picks (card.backend)
        sources,
        images,
        cfg.degradations,
        backend="auto",
        progress=progress,
        peer_settings=tuning.settings,
        best_per_preset=tuning.best_per_preset,
    )
    baselines = [*BASELINES, BEST_CLASSICAL]
    rows = {b: evaluation["rows"][b] for b in baselines} | {n: evaluation["rows"][s] for n, s in zip(cards, sources)}
    evaluation = {**evaluation, "rows": rows}
    by_backend = _quality_by_backend(cfg, cards, dict(zip(cards, sources)), images, progress)
    bench = _benchmark(cfg, sources, tuning, progress) if cfg.bench else None
    # the default student on a whole 1080p clip, decode and encode included
    video = _video(cfg, str(paths["student"]), progress) if cfg.bench and "student" in paths else []

    validation = Validation(
        data=str(cfg.data), images=evaluation["images"], max_side=cfg.max_side, degradation_seed="image index"
    )
    generated = Generated(cfg.command, date)
    written, written_cards = [], []
    for name, source in zip(cards, sources):
        card = dataclasses.replace(
            cards[name],
            metrics=Quality.from_json(rows[name]),
            metrics_by_backend={b: Quality.from_json(r[name]) for b, r in by_backend.items() if name in r},
            baselines={b: Quality.from_json(rows[b]) for b in baselines},
            validation=validation,
            generated=generated,
        )
        if bench is not None:
            card.speed_by_backend = {r.backend: Speed.from_result(r, bench) for r in bench.results if r.model == source}
            card.speed = next(iter(card.speed_by_backend.values()))  # the first of cfg.bench_backends
        if name == "student":
            card.video_1080p = video
        written.append(card.write(out_dir / f"{name}.json"))
        written_cards.append(card)
    for card in _peer_cards(tuning, rows, bench):
        card.baselines = {INPUT: Quality.from_json(rows[INPUT])}
        card.validation, card.generated = validation, generated
        written.append(card.write(out_dir / f"{card.name}.json"))

    readme = intro_section(cfg.command, date)
    readme += quality_section(evaluation, list(cards.values()), cfg.data, cfg.max_side)
    readme += classical_section(tuning, {name: CLASSICAL[name].description for name in tuning.peers})
    readme += frontier_section(written_cards)
    if bench is not None:
        names = {source: name for name, source in zip(cards, sources)}
        names |= {peer: peer_label(peer, setting) for peer, setting in tuning.settings.items()}
        readme += speed_section(bench, names)
    if video:
        readme += video_section(video)
    (out_dir / "README.md").write_text("\n".join(readme))
    written.append(out_dir / "README.md")
    if cfg.readme is not None:
        inject_results(cfg.readme, readme)
        written.append(Path(cfg.readme))
    log.info("wrote %d model cards, %d peer cards and README.md to %s", len(cards), len(tuning.peers), out_dir)
    return written
