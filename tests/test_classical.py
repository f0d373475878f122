"""Classical peers (runtime.classical): the registry and its grids, settings, shape and dtype, FFmpeg failures."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import wave_frame

from sharpkd.errors import CodecError, SharpkdError
from sharpkd.runtime import ffmpeg
from sharpkd.runtime.classical import CLASSICAL, format_setting, list_peers, setting_grid, unsharp_mask
from sharpkd.runtime.sharpener import Sharpener, load

av = pytest.importorskip("av")


@pytest.fixture(autouse=True)
def no_cards(tmp_path, monkeypatch):
    """An empty models folder: every peer runs its registered default unless a test writes a card."""
    monkeypatch.setenv("SHARPKD_MODELS", str(tmp_path))


def test_the_peers_and_their_engines() -> None:
    assert list_peers() == ["unsharp", "cas", "ffmpeg-unsharp"]
    assert [CLASSICAL[p].engine for p in list_peers()] == ["opencv", "ffmpeg", "ffmpeg"]
    assert CLASSICAL["cas"].fn is ffmpeg.cas and CLASSICAL["ffmpeg-unsharp"].fn is ffmpeg.ffmpeg_unsharp
    assert "input" in CLASSICAL and "input" not in list_peers()  # no grid: not tuned, not a peer


def test_each_peer_has_one_setting_and_a_grid_of_it() -> None:
    assert CLASSICAL["unsharp"].settings == {"sigma": 2.0, "amount": 1.0}
    assert CLASSICAL["cas"].settings == {"strength": 0.5}  # the FFmpeg filters' `threads` is no setting
    assert CLASSICAL["ffmpeg-unsharp"].settings == {"amount": 1.0}
    for name in list_peers():
        method = CLASSICAL[name]
        assert len(method.grid) >= 5 and all(set(s) == set(method.settings) for s in method.grid)
        assert len({tuple(sorted(s.items())) for s in method.grid}) == len(method.grid)  # no repeats
    unsharp = CLASSICAL["unsharp"].grid
    assert len(unsharp) == len({s["sigma"] for s in unsharp}) * len({s["amount"] for s in unsharp})  # every pair


def test_setting_grid_and_format_setting() -> None:
    assert setting_grid(a=(1, 2), b=(3.0,)) == ({"a": 1, "b": 3.0}, {"a": 2, "b": 3.0})
    assert format_setting({"sigma": 2.0, "amount": 0.25}) == "sigma 2, amount 0.25"
    assert CLASSICAL["cas"].describe({"strength": 0.9}) == "FFmpeg contrast adaptive sharpening (strength 0.9)"


@pytest.mark.parametrize("shape", [(37, 53, 3), (1, 1, 3), (3, 17, 3), (7, 9, 3), (16, 16, 3)])
@pytest.mark.parametrize("name", ["unsharp", "cas", "ffmpeg-unsharp"])
def test_peers_keep_shape_and_dtype_on_odd_sizes(name: str, shape: tuple[int, int, int]) -> None:
    frame = wave_frame(*shape[:2])
    for setting in (None, CLASSICAL[name].grid[0], CLASSICAL[name].grid[-1]):
        out = load(name, setting=setting).sharpen(frame)
        assert out.shape == frame.shape and out.dtype == np.uint8


def test_a_setting_changes_the_output_as_the_function_says() -> None:
    frame = wave_frame(24, 32)
    out = load("cas", setting={"strength": 0.9}).sharpen(frame)
    np.testing.assert_array_equal(out, ffmpeg.cas(frame, 0.9))
    assert not np.array_equal(out, ffmpeg.cas(frame, 0.0))
    np.testing.assert_array_equal(
        load("unsharp", setting={"amount": 0.5}).sharpen(frame), unsharp_mask(frame, 2.0, 0.5)
    )


def test_the_ffmpeg_peers_get_the_thread_count() -> None:
    bound = CLASSICAL["cas"].bind({"strength": 0.3}, threads=1)
    assert bound.keywords == {"strength": 0.3, "threads": 1}
    assert CLASSICAL["unsharp"].bind(threads=1).keywords == {"sigma": 2.0, "amount": 1.0}  # OpenCV takes none
    assert Sharpener("cas", None, threads=2)._classical.keywords["threads"] == 2


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"sigma": 1.0}, "cas has no setting sigma; its settings: strength"),
        ({"strength": "high"}, "cas setting strength must be a finite number, got 'high'"),
        ({"strength": float("nan")}, "must be a finite number"),
        ({"strength": True}, "must be a finite number"),
    ],
)
def test_bad_settings_are_value_errors(setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load("cas", setting=setting)


def test_ffmpeg_out_of_range_setting_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"strength must be a number in \[0.0, 1.0\], got 2.0"):
        load("cas", setting={"strength": 2.0}).sharpen(wave_frame(8, 8))


class _BrokenGraph:
    def __init__(self) -> None:
        raise av.error.FFmpegError(-22, "Invalid argument")


@pytest.mark.parametrize("name", ["cas", "ffmpeg-unsharp"])
def test_an_ffmpeg_failure_is_a_codec_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(av.filter, "Graph", _BrokenGraph)
    with pytest.raises(CodecError, match=r"FFmpeg filter '(cas|unsharp)' \(.*\) failed on a 20x12 frame") as info:
        load(name).sharpen(wave_frame(12, 20))
    assert isinstance(info.value, SharpkdError) and isinstance(info.value.__cause__, av.error.FFmpegError)


def test_missing_pyav_is_a_codec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(CodecError, match=r"need PyAV \(pip install av\)"):
        load("cas").sharpen(wave_frame(8, 8))
