"""The shipped models and classical peers at a glance, read from their cards: table rows, quality-against-speed
points, the peers' tuned settings, the README.

The app's Home and Benchmark pages show these; notebooks can use them too. Every function takes the folder of cards
(default: the shipped ``models/``, or ``$SHARPKD_MODELS``) and reads it with
:func:`sharpkd.reporting.card.read_cards`, so unreadable cards are skipped with a warning and missing fields show as
``None``.

Example:
    >>> rows = model_cards_table()  # doctest: +SKIP
    >>> rows[0]["model"], rows[0]["PSNR (mean)"], rows[0]["FPS"]  # doctest: +SKIP
    ('conv4', 27.05, 1.1)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sharpkd.degrade import PRESETS
from sharpkd.reporting.card import MEAN, SYNTHETIC, Speed, read_cards
from sharpkd.runtime.classical import format_setting


def model_cards_table(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per card (models and classical peers), for a table: name, kind, preset, size, cost, mean and
    per-preset quality, speed.

    Args:
        directory: the folder of ``<name>.json`` cards; default the shipped ``models/``.

    Returns:
        Rows sorted by card file name, with the columns ``model``, ``kind``, ``preset``, ``parameters``,
        ``GMAC/frame (1080p)``, ``PSNR (mean)``, ``SSIM (mean)``, ``gain (mean)``, ``gain (synthetic)``,
        ``PSNR <preset>`` for each preset, ``ms/frame (1080p, p50)`` and ``FPS``. Missing fields are ``None``, so
        partial cards still show.
    """
    rows = []
    for card in read_cards(directory):
        mean = card.metrics.score(MEAN)
        speed = card.speed if card.speed is not None else Speed()
        row: dict[str, Any] = {
            "model": card.name,
            "kind": card.kind,
            "preset": card.preset,
            "parameters": card.parameters,
            "GMAC/frame (1080p)": round(card.macs_1080p / 1e9, 2) if card.macs_1080p is not None else None,
            "PSNR (mean)": mean.psnr,
            "SSIM (mean)": mean.ssim,
            "gain (mean)": mean.gain,
            "gain (synthetic)": card.metrics.score(SYNTHETIC).gain,
        }
        for preset in PRESETS:
            row[f"PSNR {preset}"] = card.metrics.score(preset).psnr
        row["ms/frame (1080p, p50)"] = speed.p50_ms
        row["FPS"] = speed.fps
        rows.append(row)
    return rows


def classical_peers_table(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per classical peer card (``kind`` ``"classical"``): what it is, its tuned setting, quality, speed.

    Args:
        directory: the folder of ``<name>.json`` cards; default the shipped ``models/``.

    Returns:
        Rows sorted by card file name, with the columns ``peer``, ``what it is``, ``engine``, ``tuned setting``,
        ``settings tried``, ``gain (mean)``, ``gain (synthetic)``, ``best classical on`` (the presets where this
        peer is the per-preset best, comma-separated) and ``FPS``; missing fields are ``None``.
    """
    rows = []
    for card in read_cards(directory):
        if card.kind != "classical" or card.classical is None:
            continue
        section = card.classical
        rows.append(
            {
                "peer": card.name,
                "what it is": section.description,
                "engine": section.engine,
                "tuned setting": format_setting(section.setting) or None,
                "settings tried": len(section.grid),
                "gain (mean)": card.metrics.score(MEAN).gain,
                "gain (synthetic)": card.metrics.score(SYNTHETIC).gain,
                "best classical on": ", ".join(section.best_for) or None,
                "FPS": card.speed.fps if card.speed is not None else None,
            }
        )
    return rows


def quality_speed_points(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Models whose card has both a mean PSNR and a speed, for a quality-against-speed scatter.

    Args:
        directory: the folder of ``<name>.json`` cards; default the shipped ``models/``.

    Returns:
        ``{"model", "kind", "psnr", "ssim", "fps", "ms", "parameters"}`` per model, in card file order. FPS falls
        back to ``1000 / ms`` when only ms is given, and ms to ``1000 / fps``.
    """
    points = []
    for card in read_cards(directory):
        mean = card.metrics.score(MEAN)
        speed = card.speed if card.speed is not None else Speed()
        ms, fps = speed.p50_ms, speed.fps
        if fps is None and ms:
            fps = 1000.0 / ms
        if mean.psnr is None or fps is None:
            continue
        points.append(
            {
                "model": card.name,
                "kind": card.kind,
                "psnr": mean.psnr,
                "ssim": mean.ssim,
                "fps": fps,
                "ms": ms if ms is not None else 1000.0 / fps,
                "parameters": card.parameters,
            }
        )
    return points


def frontier_points(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The quality-against-latency frontier from the cards: one point per network and benchmarked backend, and one
    per classical peer (its engine as the backend); see :func:`sharpkd.reporting.tables.frontier_rows` for the keys.
    Points without a latency (cards written without ``--bench``) are left out."""
    from sharpkd.reporting.tables import frontier_rows

    return [p for p in frontier_rows(read_cards(directory)) if p["p50_ms"] is not None and p["mean"] is not None]


def models_readme(directory: str | os.PathLike | None = None) -> str | None:
    """The text of ``models/README.md`` (how the shipped models were trained), or ``None`` when absent."""
    from sharpkd.runtime.sharpener import models_dir

    path = (Path(directory) if directory is not None else models_dir()) / "README.md"
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
