"""Tests for reporting.tuning: the argmax picks on hand-made scores, and a real (tiny) tuning run against evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sharpkd.degrade import SYNTHETIC_PRESETS
from sharpkd.reporting.evaluate import evaluate_models, with_means
from sharpkd.reporting.tuning import best_per_preset_from_cards, pick_per_preset, pick_setting, tune_classical
from sharpkd.runtime.classical import CLASSICAL, list_peers


def _row(**psnr: float) -> dict:
    """A scored row with the given PSNR per degradation (SSIM = PSNR / 100, to tell them apart)."""
    return {d: {"psnr": p, "ssim": p / 100} for d, p in psnr.items()}


INPUT = _row(a=20.0, b=30.0)


def test_pick_setting_is_the_argmax_of_the_mean_gain() -> None:
    rows = [with_means(r, INPUT) for r in (_row(a=21.0, b=30.0), _row(a=24.0, b=29.0), _row(a=19.0, b=33.0))]
    assert [r["mean"]["gain"] for r in rows] == [0.5, 1.5, 1.0]
    assert pick_setting(rows) == 1
    # on a tie the earlier setting of the grid wins
    assert pick_setting([with_means(_row(a=22.0, b=30.0), INPUT), with_means(_row(a=20.0, b=32.0), INPUT)]) == 0
    with pytest.raises(ValueError, match="at least one scored setting"):
        pick_setting([])


def test_pick_per_preset_takes_the_best_peer_and_setting_for_each_degradation() -> None:
    candidates = [
        ("unsharp", {"amount": 0.5}, _row(a=21.0, b=29.0)),
        ("unsharp", {"amount": 2.0}, _row(a=25.0, b=27.0)),
        ("cas", {"strength": 0.9}, _row(a=24.0, b=31.0)),
        ("cas", {"strength": 0.5}, _row(a=25.0, b=30.5)),  # ties unsharp 2.0 on a: the first one listed wins
    ]
    winners = pick_per_preset(candidates, ["a", "b"])
    assert winners == {
        "a": ("unsharp", {"amount": 2.0}, {"psnr": 25.0, "ssim": 0.25}),
        "b": ("cas", {"strength": 0.9}, {"psnr": 31.0, "ssim": 0.31}),
    }
    # the best-classical row beats every single candidate's mean: 28 dB against at most 27.75
    best = with_means({d: score for d, (_, _, score) in winners.items()}, INPUT)
    assert best["mean"] == {"psnr": 28.0, "ssim": pytest.approx(0.28), "gain": 3.0}
    with pytest.raises(ValueError, match="at least one candidate"):
        pick_per_preset([], ["a"])


def test_with_means_adds_the_synthetic_mean_only_with_all_four_synthetic_presets() -> None:
    psnr = dict(zip(SYNTHETIC_PRESETS, (20.0, 22.0, 24.0, 26.0))) | {"h264": 30.0}
    row = {d: {"psnr": p, "ssim": 0.5} for d, p in psnr.items()}
    means = with_means(row, {d: {"psnr": p - 1.0, "ssim": 0.4} for d, p in psnr.items()})
    assert list(means)[-2:] == ["synthetic", "mean"]
    assert means["synthetic"] == {"psnr": 23.0, "ssim": 0.5, "gain": 1.0}
    assert means["mean"] == {"psnr": 24.4, "ssim": 0.5, "gain": pytest.approx(1.0)}
    assert "synthetic" not in with_means({"vc": row["vc"]}, row)


@pytest.fixture
def images(photo: np.ndarray) -> dict[str, np.ndarray]:
    return {"left": np.ascontiguousarray(photo[:24, :32]), "right": np.ascontiguousarray(photo[40:64, 60:92])}


def test_tune_classical_scores_every_grid_setting_like_evaluate(images, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))  # no cards: evaluate's peers run their defaults
    degradations = ("gauss1.5", "h264")
    calls = []
    tuning = tune_classical(images, degradations, progress=lambda *a: calls.append(a))
    assert list(tuning.peers) == list_peers() and tuning.images == ["left", "right"]
    total = sum(len(CLASSICAL[p].grid) for p in list_peers())
    assert calls[0] == (0, total, "tune OpenCV unsharp mask (sigma 0.5, amount 0.25)")
    assert calls[-1] == (total, total, "done")
    for peer in tuning.peers.values():
        assert len(peer.rows) == len(peer.grid) == len(CLASSICAL[peer.name].grid)
        assert peer.best == pick_setting(peer.rows) and peer.setting == peer.grid[peer.best]
    # a grid setting's scores are evaluate_models's scores of the same peer at the same setting
    peer = tuning.peers["cas"]
    result = evaluate_models([], images, degradations, peer_settings={"cas": peer.grid[2]})
    scores = result["rows"]["cas"]  # plus the per-image worst gains, which tuning does not keep
    assert {d: {k: v for k, v in s.items() if not k.startswith("worst_")} for d, s in scores.items()} == peer.rows[2]
    assert result["rows"]["input"] == tuning.input
    # the per-preset best is the maximum over every peer and setting, degradation by degradation
    for d in degradations:
        best = max(row[d]["psnr"] for p in tuning.peers.values() for row in p.rows)
        name, setting = tuning.best_per_preset[d]
        assert tuning.best_row[d]["psnr"] == best
        assert tuning.peers[name].rows[tuning.peers[name].grid.index(setting)][d]["psnr"] == best
    assert tuning.best_row["mean"]["gain"] >= max(p.rows[p.best]["mean"]["gain"] for p in tuning.peers.values())
    assert tuning.best_for(tuning.best_per_preset["h264"][0])["h264"] == tuning.best_per_preset["h264"][1]


def test_tune_classical_rejects_bad_arguments(images) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        tune_classical({})
    with pytest.raises(ValueError, match="no classical peers with a grid named \\['input'\\]"):
        tune_classical(images, ("vc",), peers=["input"])
    with pytest.raises(ValueError, match="blur7"):
        tune_classical(images, ("blur7",))


def test_best_per_preset_from_cards(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))
    assert best_per_preset_from_cards() == {}
    card = {"name": "cas", "kind": "classical", "classical": {"setting": {"strength": 0.5}, "best_for": {}}}
    card["classical"]["best_for"] = {"vc": {"strength": 0.9}, "h264": {"strength": 0.25}}
    (tmp_path / "cas.json").write_text(json.dumps(card))
    (tmp_path / "student.json").write_text(json.dumps({"name": "student", "kind": "student"}))
    assert best_per_preset_from_cards() == {"vc": ("cas", {"strength": 0.9}), "h264": ("cas", {"strength": 0.25})}
