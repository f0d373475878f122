"""Tune the classical peers on the validation images, so the learned models face the strongest fair opponent.

Every peer (:func:`sharpkd.runtime.classical.list_peers`) declares a search grid in the registry. :func:`tune_classical`
scores each peer at each grid setting on the validation images, uint8 end to end and exactly as
:func:`sharpkd.reporting.evaluate.evaluate_models` scores the models (same degraded inputs, same seeds, same metrics).
Then:

* a peer's **setting** is the grid setting with the best mean gain over the degradations (:func:`pick_setting`):
  the one setting a user would pick not knowing which degradation a frame has;
* the row **best classical, tuned per preset** takes, for each degradation separately, the best (peer, setting) on
  it by PSNR (:func:`pick_per_preset`): an oracle that knows the degradation, the strongest classical opponent.

:func:`sharpkd.reporting.cards.write_cards` writes both into the peers' cards (``models/<peer>.json``), which
``sharpkd.load(peer)`` and :func:`best_per_preset_from_cards` read back.

Example:
    >>> tuning = tune_classical(load_eval_images("samples", max_side=128, limit=2))  # doctest: +SKIP
    >>> tuning.settings["cas"], tuning.best_per_preset["gauss1.5"]  # doctest: +SKIP
    ({'strength': 1.0}, ('unsharp', {'sigma': 1.5, 'amount': 1.5}))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sharpkd.degrade import PRESETS
from sharpkd.reporting.card import MEAN, read_cards
from sharpkd.reporting.evaluate import (
    INPUT,
    Row,
    check_degradations,
    degraded_inputs,
    score_outputs,
    with_means,
)
from sharpkd.runtime.classical import CLASSICAL, Setting, list_peers

log = logging.getLogger(__name__)

OBJECTIVE = "best mean PSNR gain over the degradations on the validation images"  # how a peer's setting is picked


@dataclass
class PeerTuning:
    """One peer's grid, the scores of each grid setting, and which setting won."""

    name: str  # the peer's registry name
    grid: list[Setting]  # the settings tried, in grid order
    rows: list[Row]  # their scores, evaluate_models's row layout (with "mean" and, when scored, "synthetic")
    best: int  # index into grid of the tuned setting

    @property
    def setting(self) -> Setting:
        """The tuned setting: the best mean gain over the degradations."""
        return self.grid[self.best]


@dataclass
class Tuning:
    """What :func:`tune_classical` found."""

    degradations: list[str]
    images: list[str]  # image names, in evaluation order
    input: Row  # the degraded input's scores (the floor every gain is measured from)
    peers: dict[str, PeerTuning] = field(default_factory=dict)  # in list_peers() order
    best_per_preset: dict[str, tuple[str, Setting]] = field(default_factory=dict)  # degradation -> (peer, setting)
    best_row: Row = field(default_factory=dict)  # the "best classical, tuned per preset" row, with means

    @property
    def settings(self) -> dict[str, Setting]:
        """``{peer: tuned setting}``."""
        return {name: peer.setting for name, peer in self.peers.items()}

    def best_for(self, peer: str) -> dict[str, Setting]:
        """``{degradation: setting}`` where ``peer`` at that setting is the best classical."""
        return {d: setting for d, (name, setting) in self.best_per_preset.items() if name == peer}


def pick_setting(rows: Sequence[Mapping[str, Mapping[str, float]]]) -> int:
    """Index of the row with the best mean gain (``row["mean"]["gain"]``); the first one on a tie.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("pick_setting needs at least one scored setting, got none")
    gains = [row[MEAN]["gain"] for row in rows]
    return int(np.argmax(gains))  # argmax returns the first maximum: ties go to the earlier (grid order) setting


def pick_per_preset(
    candidates: Sequence[tuple[str, Setting, Mapping[str, Mapping[str, float]]]], degradations: Sequence[str]
) -> dict[str, tuple[str, Setting, dict[str, float]]]:
    """For each degradation, the candidate ``(peer, setting, row)`` with the highest PSNR on it (the first on a tie).

    Returns:
        ``{degradation: (peer, setting, row[degradation])}``.

    Raises:
        ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("pick_per_preset needs at least one candidate, got none")
    out = {}
    for d in degradations:
        peer, setting, row = max(candidates, key=lambda c: c[2][d]["psnr"])  # max keeps the first maximum
        out[d] = (peer, dict(setting), dict(row[d]))
    return out


def tune_classical(
    images: Mapping[str, np.ndarray],
    degradations: Sequence[str] = PRESETS,
    *,
    peers: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Tuning:
    """Score every peer at every setting of its grid, pick each peer's setting and the per-preset best.

    Args:
        images: clean ``(H, W, 3)`` uint8 validation images by name.
        degradations: what to tune for, by default the six presets.
        peers: registry names of the peers to tune; default :func:`~sharpkd.runtime.classical.list_peers`.
        progress: called as ``progress(done, total, label)`` before each (peer, setting) and once at the end.

    Returns:
        A :class:`Tuning`.

    Raises:
        ValueError: no images, an unknown degradation, or a name that is no classical method with a grid.
    """
    from sharpkd.data import to_tensor
    from sharpkd.runtime.sharpener import load

    if not images:
        raise ValueError("tune_classical needs at least one image, got none")
    check_degradations(degradations)
    peers = list(peers) if peers is not None else list_peers()
    bad = [p for p in peers if p not in CLASSICAL or not CLASSICAL[p].grid]
    if bad or not peers:
        raise ValueError(f"no classical peers with a grid named {bad or peers}; known: {', '.join(list_peers())}")

    lqs = degraded_inputs(images, degradations)
    gts = [to_tensor(img) for img in images.values()]

    def score(name: str, setting: Setting | None) -> Row:
        restore = load(name, setting=setting).sharpen
        return {d: score_outputs(restore, lqs[d], gts) for d in degradations}

    input_row = score(INPUT, None)
    tuning = Tuning(list(degradations), list(images), with_means(input_row, input_row))
    total = sum(len(CLASSICAL[p].grid) for p in peers)
    done = 0
    for name in peers:
        grid = [CLASSICAL[name].resolve(s) for s in CLASSICAL[name].grid]
        rows = []
        for setting in grid:
            if progress is not None:
                progress(done, total, f"tune {CLASSICAL[name].describe(setting)}")
            rows.append(with_means(score(name, setting), input_row))
            done += 1
        tuning.peers[name] = PeerTuning(name, grid, rows, pick_setting(rows))
        log.info("tuned %s: %s", name, CLASSICAL[name].describe(tuning.peers[name].setting))
    if progress is not None:
        progress(total, total, "done")

    candidates = [(p.name, s, row) for p in tuning.peers.values() for s, row in zip(p.grid, p.rows)]
    winners = pick_per_preset(candidates, degradations)
    tuning.best_per_preset = {d: (peer, setting) for d, (peer, setting, _) in winners.items()}
    tuning.best_row = with_means({d: score for d, (_, _, score) in winners.items()}, input_row)
    return tuning


def best_per_preset_from_cards(directory: str | os.PathLike | None = None) -> dict[str, tuple[str, Setting]]:
    """The per-preset best (peer, setting) recorded in the peers' cards (their ``classical.best_for``).

    Args:
        directory: the folder of cards; default the shipped ``models/`` (or ``$SHARPKD_MODELS``).

    Returns:
        ``{degradation: (peer, setting)}``; ``{}`` when no peer card records one.
    """
    out: dict[str, tuple[str, Setting]] = {}
    for card in read_cards(directory):
        if card.kind == "classical" and card.classical is not None and card.name in CLASSICAL:
            for degradation, setting in card.classical.best_for.items():
                out[degradation] = (card.name, dict(setting))
    return out
