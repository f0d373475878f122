"""Markdown rendering of the reports: the quality table, ``models/README.md``'s sections, and the project README block.

:func:`metrics_table` renders :func:`sharpkd.reporting.evaluate.evaluate_models`'s result (``sharpkd evaluate``
prints it, with :func:`best_classical_note` under it). The ``*_section`` functions return ``models/README.md`` as
lists of lines, which :func:`sharpkd.reporting.cards.write_cards` joins, and :func:`inject_results` copies into the
project README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharpkd.degrade import SYNTHETIC_PRESETS
from sharpkd.reporting.card import CARD_RESOLUTION, MEAN, SYNTHETIC, ModelCard, VideoRun
from sharpkd.reporting.evaluate import BEST_CLASSICAL, INPUT
from sharpkd.runtime.classical import format_setting

if TYPE_CHECKING:
    from sharpkd.reporting.benchmark import BenchmarkReport
    from sharpkd.reporting.tuning import Tuning

# display names of the rows that are not a model or a peer
BASELINE_LABELS = {INPUT: "input (degraded)", BEST_CLASSICAL: "best classical, tuned per preset"}
FLOAT_BACKENDS = ("torch", "onnx")  # their outputs agree within 1/255: one quality serves both
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"  # the project README's results block


def peer_label(name: str, setting: Mapping[str, Any]) -> str:
    """A classical peer's row name with its setting: ``"cas (strength 0.6)"``."""
    return f"{name} ({format_setting(setting)})" if setting else name


def _labels(result: Mapping[str, Any], labels: Mapping[str, str] | None) -> dict[str, str]:
    peers = {name: peer_label(name, setting) for name, setting in result.get("classical", {}).items()}
    return {**BASELINE_LABELS, **peers, **(labels or {})}


def metrics_table(
    result: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """A Markdown table of :func:`evaluate_models`'s result: one row per method, SSIM and PSNR per degradation, then
    the mean PSNR and gain over the four synthetic presets (when all four were scored) and over every degradation,
    and (when scored) the worst per-image gain over all of them: the image and degradation a method harms most.

    Args:
        result: what :func:`~sharpkd.reporting.evaluate.evaluate_models` returned.
        labels: display names by method (default: the baselines' labels, the peers with their settings, else the
            method itself).
        extra: additional leading columns, ``{column: {method: text}}`` (e.g. parameters).

    Returns:
        The table, one line per row, without a trailing newline.
    """
    labels = _labels(result, labels)
    extra = extra or {}
    degs = result["degradations"]
    means = [m for m in (SYNTHETIC, MEAN) if all(m in row for row in result["rows"].values())]
    names = {SYNTHETIC: ("synthetic PSNR", "synthetic gain"), MEAN: ("mean PSNR", "gain (dB)")}
    header = ["method", *extra, *[f"{d} {m}" for d in degs for m in ("SSIM", "PSNR")]]
    header += [name for m in means for name in names[m]]
    worst = MEAN in means and any("worst_gain" in row[MEAN] for row in result["rows"].values())
    header += ["worst image"] if worst else []
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for method, row in result["rows"].items():
        cells = [labels.get(method, method), *[col.get(method, "") for col in extra.values()]]
        for d in degs:
            cells += [f"{row[d]['ssim']:.4f}", f"{row[d]['psnr']:.2f}"]
        for m in means:
            cells += [f"{row[m]['psnr']:.2f}", f"{row[m]['gain']:+.2f}"]
        if worst:
            cells.append(_worst_cell(row[MEAN]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _worst_cell(score: Mapping[str, Any]) -> str:
    """``"-1.23 (face/vc)"``: the lowest per-image gain and where; empty for the input row, which has none."""
    if score.get("worst_gain") is None:
        return ""
    return f"{score['worst_gain']:+.2f} ({score.get('worst_image') or '?'})"


def best_classical_note(result: Mapping[str, Any]) -> str | None:
    """One line naming the (peer, setting) behind each degradation of the best-classical row, or ``None`` without it:
    ``"best classical, tuned per preset: vc cas (strength 0.2); ..."``."""
    best = result.get("best_classical") or {}
    if not best:
        return None
    parts = [f"{d} {peer_label(choice['method'], choice['setting'])}" for d, choice in best.items()]
    return f"{BASELINE_LABELS[BEST_CLASSICAL]}: " + "; ".join(parts) + "."


def intro_section(command: str, date: str) -> list[str]:
    """``models/README.md``'s title and provenance: the command that regenerated it and when."""
    return [
        "# sharpkd models",
        "",
        f"Regenerated on {date} by:",
        "",
        "```",
        command or "sharpkd cards",
        "```",
        "",
        "Every number in this file and in the `<name>.json` cards next to it comes from that command; do not edit them",
        "by hand. Training provenance (data, degradation, steps, wall time, hardware, command) is in each card.",
        "",
    ]


def quality_section(
    evaluation: Mapping[str, Any], cards: Sequence[ModelCard], data: str, max_side: int | None
) -> list[str]:
    """The quality table with the cards' parameters and MACs, rows in ``evaluation`` order.

    Args:
        evaluation: :func:`~sharpkd.reporting.evaluate.evaluate_models`'s result with its rows keyed by card name.
        cards: the models' cards (``parameters`` and ``macs_1080p`` set), in table order.
        data: the validation folder, as given.
        max_side: the longer side the images were downscaled to, ``None`` for full size.
    """
    size = f"downscaled to at most {max_side} px" if max_side else "full size"
    note = best_classical_note(evaluation)
    return [
        "## Quality",
        "",
        f"{len(evaluation['images'])} validation images from `{data}` ({size}). Each is degraded with each named",
        "preset (seed = image index), restored with `sharpkd.load(name).sharpen()` on uint8, and scored against the",
        "clean image: PSNR in dB and SSIM (Gaussian window) on [0, 1]. `gain` is the mean PSNR minus the input's;",
        f"`synthetic` is the mean over the four synthetic presets ({', '.join(SYNTHETIC_PRESETS)}). The classical",
        "peers run their setting tuned on these images (see Classical peers); the best-classical row takes, for each",
        "preset separately, the best peer and setting on that preset. `backend` is what `sharpkd.load(name)` runs",
        "and what the row scores: float ONNX Runtime (`onnx`), or the int8 graph shipped beside the weights",
        "(`onnx-int8`; see Frontier for the same model in float).",
        "",
        metrics_table(
            evaluation,
            extra={
                "backend": {c.name: c.backend or "" for c in cards},
                "params": {c.name: f"{c.parameters:,}" for c in cards},
                "GMACs @1080p": {c.name: f"{c.macs_1080p / 1e9:.2f}" for c in cards},
            },
        ),
        "",
        *([note, ""] if note else []),
    ]


def classical_section(tuning: Tuning, descriptions: Mapping[str, str]) -> list[str]:
    """The tuning of the classical peers: per peer and grid setting, the PSNR gain over the input per degradation,
    over the synthetic presets and over all; the tuned setting of each peer in bold.

    Args:
        tuning: what :func:`~sharpkd.reporting.tuning.tune_classical` returned.
        descriptions: ``{peer: what it is}``, e.g. ``"FFmpeg contrast adaptive sharpening"``.
    """
    degs = tuning.degradations
    means = [m for m in (SYNTHETIC, MEAN) if m in tuning.input]
    header = ["peer", "setting", *degs, *[{SYNTHETIC: "synthetic", MEAN: "mean"}[m] for m in means]]
    lines = [
        "## Classical peers",
        "",
        "Each classical peer is scored at every setting of its search grid on the validation images, as the models",
        "are. Its setting (bold) is the one with the best mean gain over all presets: the one setting a user would",
        "pick not knowing the degradation; `sharpkd.load(peer)` runs it. Cells are PSNR gains over the degraded",
        "input in dB.",
        "",
        *[f"- `{name}`: {descriptions.get(name, name)}" for name in tuning.peers],
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    for name, peer in tuning.peers.items():
        for i, (setting, row) in enumerate(zip(peer.grid, peer.rows)):
            gains = [row[d]["psnr"] - tuning.input[d]["psnr"] for d in degs] + [row[m]["gain"] for m in means]
            text = format_setting(setting)
            cells = [name, f"**{text}**" if i == peer.best else text, *[f"{g:+.2f}" for g in gains]]
            lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def frontier_rows(cards: Sequence[ModelCard]) -> list[dict[str, Any]]:
    """One point per (network, backend) of the quality-against-latency frontier, from finished model cards.

    Quality on a backend is the card's ``metrics_by_backend`` entry when it has one (a quantized graph changes the
    outputs), else its ``metrics`` (scored on ``card.backend``); torch and float ONNX agree within 1/255, so for a
    card whose default is the int8 graph the float backends share its float entry. Cards without speed give one point
    with no latency.

    Returns:
        ``[{"model", "kind", "backend", "parameters", "mac_per_px", "p50_ms", "p95_ms", "gains": {preset: dB},
        "synthetic", "mean", "worst_gain", "worst_image"}]`` in card order, then backend order.
    """
    width, height = CARD_RESOLUTION
    points = []
    for card in cards:
        speeds = card.speed_by_backend or {"torch": None}
        base = card.baselines.get(INPUT)
        for backend, speed in speeds.items():
            quality = card.metrics_by_backend.get(backend)
            if quality is None and backend in FLOAT_BACKENDS and card.backend not in (None, *FLOAT_BACKENDS):
                quality = next(
                    (card.metrics_by_backend[b] for b in FLOAT_BACKENDS if b in card.metrics_by_backend), None
                )
            if quality is None:
                quality = card.metrics
            gains = {
                d: s.psnr - base.score(d).psnr
                for d, s in quality.degradations.items()
                if base is not None and s.psnr is not None and base.score(d).psnr is not None
            }
            mean, synthetic = quality.score(MEAN), quality.score(SYNTHETIC)
            points.append(
                {
                    "model": card.name,
                    "kind": card.kind,
                    "backend": backend,
                    "parameters": card.parameters,
                    "mac_per_px": card.macs_1080p / (width * height) if card.macs_1080p else None,
                    "p50_ms": speed.p50_ms if speed is not None else None,
                    "p95_ms": speed.p95_ms if speed is not None else None,
                    "gains": gains,
                    "synthetic": synthetic.gain,
                    "mean": mean.gain,
                    "worst_gain": mean.worst_gain,
                    "worst_image": mean.worst_image,
                }
            )
    return points


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def frontier_section(cards: Sequence[ModelCard]) -> list[str]:
    """The frontier table: every network on every benchmarked backend, its cost (parameters, MAC per output pixel,
    1080p p50/p95) beside its gain per preset, its synthetic and overall mean gain and its worst image."""
    points = frontier_rows([c for c in cards if c.kind != "classical"])
    if not points:
        return []
    presets = list(points[0]["gains"])
    header = ["model", "backend", "params", "MAC/px", "p50 ms", "p95 ms", *presets, "synthetic", "mean", "worst image"]
    lines = [
        "## Frontier",
        "",
        "Quality against 1080p latency: each network on each benchmarked backend (the Speed table's p50/p95, 2",
        "threads), its PSNR gain over the degraded input per preset and in the means (the Quality table's numbers; on",
        "`onnx-int8` those of the quantized graph), and the image it harms most. MAC/px counts the convolutions per",
        "output pixel (re-parameterizable blocks merged).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    for p in points:
        worst = "-" if p["worst_gain"] is None else f"{p['worst_gain']:+.2f} ({p['worst_image']})"
        cells = [p["model"], p["backend"], _num(p["parameters"], ","), _num(p["mac_per_px"], ".0f")]
        cells += [_num(p["p50_ms"], ".1f"), _num(p["p95_ms"], ".1f")]
        cells += [_num(p["gains"].get(d), "+.2f") for d in presets]
        cells += [_num(p["synthetic"], "+.2f"), _num(p["mean"], "+.2f"), worst]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def speed_section(bench: BenchmarkReport, names: Mapping[str, str]) -> list[str]:
    """The speed table of a 1080p benchmark. ``names`` maps benchmarked model keys (paths) to display names."""
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


def video_section(video: Sequence[VideoRun]) -> list[str]:
    """The whole-clip table of the default student, one row per backend (``video`` not empty, all fields set)."""
    v0 = video[0]
    lines = [
        "## Video",
        "",
        f"The default student on a synthesized {v0.width}x{v0.height} clip of {v0.frames} frames (moving test "
        "pattern, H.264): `sharpkd video`'s pipeline, PyAV decode, `sharpen()` and H.264 encode (libx264 veryfast, "
        "CRF 20, yuv420p) running in their own threads; as in `sharpkd video`, ONNX Runtime's idle threads do not "
        "spin-wait between frames, which would starve the decoder and encoder. `sharpen FPS` counts `sharpen()` "
        "alone, `end-to-end FPS` the whole run. `flicker` is the mean absolute change between consecutive output "
        "frames over that of the input frames (1.0 = no added temporal shimmer).",
        "",
        "| backend | sharpen FPS | end-to-end FPS | flicker |",
        "|---|---:|---:|---:|",
    ]
    for v in video:
        lines.append(f"| {v.backend} | {v.processing_fps:.1f} | {v.end_to_end_fps:.1f} | {v.flicker_ratio:.3f} |")
    return [*lines, ""]


def inject_results(path: str | os.PathLike, models_readme: Sequence[str]) -> None:
    """Replace the block between ``<!-- results:start -->`` and ``<!-- results:end -->`` in ``path`` with the
    models README (title dropped, headings demoted one level), so the project README carries the same numbers.

    Args:
        path: the project README.
        models_readme: ``models/README.md`` as lines.

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
