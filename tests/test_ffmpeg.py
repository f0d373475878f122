"""FFmpeg sharpeners (cas, unsharp) through PyAV filter graphs: shape, odd sizes, settings, a reference, failures."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sharpkd.errors import CodecError, SharpkdError
from sharpkd.runtime.ffmpeg import cas, ffmpeg_filter, ffmpeg_unsharp

av = pytest.importorskip("av")


def _high_freq_energy(frame: np.ndarray) -> float:
    """Spectral power of the channel mean above a quarter of the sampling rate (either axis), mean removed."""
    x = frame.astype(np.float64).mean(axis=-1)
    f = np.fft.fft2(x - x.mean())
    fy = np.abs(np.fft.fftfreq(x.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(x.shape[1]))[None, :]
    return float((np.abs(f) ** 2)[(fy > 0.25) | (fx > 0.25)].sum())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def _binomial5(v: np.ndarray) -> np.ndarray:
    """FFmpeg unsharp's 5x5 blur: [1 4 6 4 1] / 16 along each axis, edge pixels repeated."""
    k = np.array([1, 4, 6, 4, 1]) / 16
    p = np.pad(v, 2, mode="edge")
    rows = sum(k[i] * p[i : i + v.shape[0], :] for i in range(5))
    return sum(k[j] * rows[:, j : j + v.shape[1]] for j in range(5))


SHARPENERS = [(cas, 0.7), (ffmpeg_unsharp, 1.5)]


@pytest.mark.parametrize("shape", [(96, 128, 3), (37, 53, 3), (1, 1, 3), (2, 3, 3), (3, 17, 3), (7, 9, 3)])
@pytest.mark.parametrize(("fn", "setting"), SHARPENERS)
def test_shape_and_dtype_are_kept_at_any_size(fn, setting: float, shape: tuple[int, ...]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = fn(frame, setting)
    assert out.shape == frame.shape and out.dtype == np.uint8
    # nothing garbled on tiny frames either: a sharpener stays near its input's range and mean
    assert abs(float(out.mean()) - float(frame.mean())) < 20.0


@pytest.mark.parametrize(("fn", "setting"), SHARPENERS)
def test_flat_frame_stays_flat(fn, setting: float) -> None:
    flat = np.full((20, 30, 3), (200, 50, 120), np.uint8)
    assert int(np.abs(fn(flat, setting).astype(int) - flat).max()) <= 1  # only the colour conversion's rounding


def test_unsharp_amount_zero_is_the_identity_up_to_yuv_rounding(photo: np.ndarray) -> None:
    out = ffmpeg_unsharp(photo, 0.0)
    assert int(np.abs(out.astype(int) - photo).max()) <= 2  # measured 2: the yuv444p round trip
    small = photo[:5, :7]  # under 8 rows, where FFmpeg's own filter would garble the frame
    assert int(np.abs(ffmpeg_unsharp(small, 0.0).astype(int) - small).max()) <= 2


def test_cas_strength_zero_is_near_identity(photo: np.ndarray) -> None:
    # CAS's weakest setting still sharpens a little: measured 46.2 dB from the input (strength 1: 23.1 dB)
    assert _psnr(cas(photo, 0.0), photo) > 42.0
    assert _psnr(cas(photo, 1.0), photo) < 30.0


def test_larger_settings_add_high_frequency_energy(photo: np.ndarray) -> None:
    e = _high_freq_energy
    assert e(photo) < e(cas(photo, 0.0)) < e(cas(photo, 0.5)) < e(cas(photo, 1.0))
    assert e(ffmpeg_unsharp(photo, -1.0)) < e(photo) < e(ffmpeg_unsharp(photo, 1.0)) < e(ffmpeg_unsharp(photo, 2.0))


@pytest.mark.parametrize("amount", [0.5, 1.0, 2.0])
def test_unsharp_matches_a_binomial_unsharp_mask_on_gray(photo: np.ndarray, amount: float) -> None:
    gray = photo.mean(axis=-1).round()
    out = ffmpeg_unsharp(np.repeat(gray[..., None], 3, axis=2).astype(np.uint8), amount).astype(np.float64)
    ref = np.clip(gray + amount * (gray - _binomial5(gray)), 0, 255)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    # measured max 2.2 / 2.1 / 3.3 levels: fixed-point filtering plus the yuv444p round trip
    assert float(np.abs(out[..., 0] - ref).max()) <= 4.0
    assert float(np.abs(out[..., 0] - ref).mean()) <= 1.0


def test_ffmpeg_filter_runs_any_size_keeping_filter(photo: np.ndarray) -> None:
    assert np.array_equal(ffmpeg_filter(photo, "null"), photo)  # gbrp is RGB reordered: lossless
    flipped = ffmpeg_filter(photo, "hflip", pix_fmt="yuv444p")
    assert int(np.abs(flipped.astype(int) - photo[:, ::-1]).max()) <= 2
    assert np.array_equal(cas(photo, 0.6, threads=1), cas(photo, 0.6, threads=2))  # slices do not change pixels


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("nosuchfilter", "", r"FFmpeg filter 'nosuchfilter' \(no options\) failed on a 16x9 frame"),
        ("cas", "bogus=1", r"FFmpeg filter 'cas' \(bogus=1\) failed on a 16x9 frame"),
        ("cas", "strength=7", r"FFmpeg filter 'cas' \(strength=7\) failed on a 16x9 frame"),
    ],
)
def test_ffmpeg_failure_is_a_codec_error(name: str, args: str, message: str) -> None:
    with pytest.raises(CodecError, match=message) as info:
        ffmpeg_filter(np.zeros((9, 16, 3), np.uint8), name, args)
    assert isinstance(info.value, SharpkdError) and info.value.__cause__ is not None


def test_a_filter_that_resizes_is_a_codec_error(photo: np.ndarray) -> None:
    with pytest.raises(CodecError, match="FFmpeg filter 'scale' changed the frame size from 128x96 to 64x48"):
        ffmpeg_filter(photo, "scale", "64:48")


def test_missing_pyav_is_a_codec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(CodecError, match=r"need PyAV \(pip install av\)"):
        cas(np.zeros((9, 16, 3), np.uint8), 0.5)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((9, 16, 3), np.float32),
        np.zeros((9, 16), np.uint8),
        np.zeros((9, 16, 4), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_bad_frames_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB frame, got dtype"):
        cas(bad, 0.5)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB frame"):
        ffmpeg_unsharp(bad, 1.0)


def test_bad_settings_are_rejected() -> None:
    frame = np.zeros((9, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="expected a numpy array, got list"):
        cas([[0]], 0.5)
    for strength in (-0.1, 1.5, float("nan"), "strong"):
        with pytest.raises(ValueError, match=r"strength must be a number in \[0.0, 1.0\]"):
            cas(frame, strength)
    with pytest.raises(ValueError, match=r"amount must be a number in \[-2.0, 5.0\], got 6"):
        ffmpeg_unsharp(frame, 6)
    with pytest.raises(ValueError, match="pix_fmt must be one of gbrp, yuv444p, got 'rgb24'"):
        ffmpeg_filter(frame, "null", pix_fmt="rgb24")
    with pytest.raises(ValueError, match="name must be an FFmpeg filter name, got ''"):
        ffmpeg_filter(frame, "")
    with pytest.raises(ValueError, match="threads must be an int >= 0, got -1"):
        ffmpeg_filter(frame, "null", threads=-1)
