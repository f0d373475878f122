"""Codec presets (h264, vp8 through PyAV): determinism, measured damage, alignment, odd sizes, FFmpeg failures."""

from __future__ import annotations

import sys

import pytest
import torch

from sharpkd.degrade import (
    BPP,
    CODEC_PRESETS,
    PRESETS,
    degrade,
    downup,
    list_degradations,
    video_call,
)
from sharpkd.degrade import codec as codec_module
from sharpkd.errors import CodecError, SharpkdError
from sharpkd.metrics import psnr

av = pytest.importorskip("av")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """scikit-image's astronaut resized to 256x256, (1, 3, 256, 256) float in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    transform = pytest.importorskip("skimage.transform")
    img = transform.resize(data.astronaut(), (256, 256), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float().contiguous()


@pytest.fixture
def small(astronaut: torch.Tensor) -> torch.Tensor:
    return astronaut[..., 64:128, 96:160].contiguous()  # (1, 3, 64, 64): the face


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_same_seed_gives_bit_identical_output(small: torch.Tensor, name: str) -> None:
    x = small.repeat(2, 1, 1, 1)
    a = degrade(x, name, _gen(3))
    degrade(torch.rand(1, 3, 40, 40, generator=_gen(9)), name, _gen(4))  # another clip between: no state carried
    b = degrade(x, name, _gen(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert float((a - x).abs().mean()) > 1e-3


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_different_seeds_pan_differently(small: torch.Tensor, name: str) -> None:
    assert not torch.equal(degrade(small, name, _gen(0)), degrade(small, name, _gen(1)))


# Measured on this machine (PyAV 18.1.0), seed 0, PSNR against the clean 256 px astronaut: h264 24.07 dB at strength 1
# and 20.72 at 2, vp8 22.35 and 20.97 (seeds 0-5 span h264 22.9-24.1 / 19.4-20.9, vp8 22.1-22.4 / 21.0-21.2).
# For scale, downup2 alone is 28.79 dB and vc 26.94.
@pytest.mark.parametrize(
    ("name", "strength", "low", "high"),
    [("h264", 1.0, 22.5, 25.5), ("h264", 2.0, 19.0, 22.5), ("vp8", 1.0, 21.0, 23.5), ("vp8", 2.0, 20.0, 22.0)],
)
def test_psnr_drop_on_the_astronaut_is_in_the_measured_range(
    astronaut: torch.Tensor, name: str, strength: float, low: float, high: float
) -> None:
    y = degrade(astronaut, name, _gen(0), strength=strength)
    assert low < float(psnr(y, astronaut)) < high
    # the codec damages well beyond the 2x resize it starts with
    assert float(psnr(y, astronaut)) < float(psnr(downup(astronaut, 2.0), astronaut)) - 3.0


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_strength_two_halves_the_bits_and_degrades_more(astronaut: torch.Tensor, name: str) -> None:
    p1 = float(psnr(degrade(astronaut, name, _gen(0), strength=1.0), astronaut))
    p2 = float(psnr(degrade(astronaut, name, _gen(0), strength=2.0), astronaut))
    assert p2 < p1 - 0.5  # measured: h264 -3.4 dB, vp8 -1.4 dB
    assert torch.equal(degrade(astronaut, name, _gen(0), strength=2.0), video_call(astronaut, name, BPP / 2, _gen(0)))


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_output_is_aligned_with_the_clean_image(small: torch.Tensor, name: str) -> None:
    # at a generous bitrate the detail survives, so a misaligned middle frame would show
    y = video_call(small, name, bpp=2.0, generator=_gen(0))
    shifted = small.roll(2, dims=-1)
    assert float(psnr(y, small)) > float(psnr(y, shifted)) + 3.0


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_output_is_an_inter_frame_not_the_keyframe(
    small: torch.Tensor, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inter = video_call(small, name, generator=_gen(0))
    monkeypatch.setattr(codec_module, "CLIP_FRAMES", 1)  # a one-frame clip is the keyframe alone
    assert not torch.equal(video_call(small, name, generator=_gen(0)), inter)


@pytest.mark.parametrize("color", [(0.4, 0.4, 0.4), (0.8, 0.3, 0.1), (0.05, 0.9, 0.6)])
@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_flat_colours_survive_the_yuv_round_trip(name: str, color: tuple[float, float, float]) -> None:
    x = torch.tensor(color).view(1, 3, 1, 1).expand(1, 3, 19, 24).contiguous()
    y = video_call(x, name, bpp=4.0)  # enough bits that only the colour conversion is left (measured <= 1.25 levels)
    assert float((y - x).abs().max()) <= 1.5 / 255


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (1, 3, 1, 1), (1, 3, 8, 8), (1, 3, 3, 17), (2, 3, 16, 24)])
@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_odd_and_tiny_sizes_keep_shape_dtype_and_range(shape: tuple[int, ...], name: str) -> None:
    x = torch.rand(shape, generator=_gen(0), dtype=torch.float64)
    y = degrade(x, name, _gen(1))
    assert y.shape == x.shape and y.dtype == torch.float64
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-6)  # the receiver shows 8-bit frames


@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_grayscale_is_coded_as_luma(small: torch.Tensor, name: str) -> None:
    gray = small.mean(dim=1, keepdim=True)
    y1 = degrade(gray, name, _gen(0))
    y3 = degrade(gray.expand(1, 3, 64, 64).contiguous(), name, _gen(0))
    assert y1.shape == gray.shape
    # a gray RGB image has flat chroma, so it codes the same luma as the one-channel path
    assert float((y3 - y1).abs().max()) <= 1.0 / 255


def test_codecs_are_evaluation_presets_and_in_the_training_mixes(small: torch.Tensor) -> None:
    assert PRESETS[-2:] == CODEC_PRESETS and list_degradations()[4:6] == list(CODEC_PRESETS)
    x = small.repeat(3, 1, 1, 1)
    for name in ("presets", "mix+presets"):
        y = degrade(x, name, _gen(2))
        assert y.shape == x.shape and torch.equal(y, degrade(x, name, _gen(2)))


def test_unknown_codec_degradation_lists_the_codecs(small: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"unknown degradation 'h265'; known: .*h264, vp8"):
        degrade(small, "h265")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"codec": "av1"}, "unknown codec 'av1'; known: h264, vp8"),
        ({"bpp": 0.0}, "bpp must be a positive finite number, got 0.0"),
        ({"bpp": float("nan")}, "bpp must be a positive finite number"),
    ],
)
def test_video_call_validates_its_arguments(small: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        video_call(small, **kwargs)


def test_video_call_rejects_two_channels_and_non_tensors() -> None:
    with pytest.raises(ValueError, match=r"C 1 or 3, got torch.float32 \(1, 2, 8, 8\)"):
        video_call(torch.rand(1, 2, 8, 8))
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        video_call([[0.5]])


class _MissingEncoder:
    @staticmethod
    def create(name: str, mode: str | None = None):
        raise av.codec.codec.UnknownCodecError(name)


class _FailingEncoder:
    @staticmethod
    def create(name: str, mode: str | None = None):
        raise av.error.FFmpegError(-22, "Invalid argument")


@pytest.mark.parametrize("fake", [_MissingEncoder, _FailingEncoder])
@pytest.mark.parametrize("name", CODEC_PRESETS)
def test_ffmpeg_failure_is_a_codec_error_naming_codec_and_size(
    small: torch.Tensor, name: str, fake: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(av, "CodecContext", fake)
    with pytest.raises(CodecError, match=rf"^{name} \(lib\w+\) failed on a 32x32 clip of 9 frames: ") as info:
        degrade(small, name)
    assert isinstance(info.value, SharpkdError) and isinstance(info.value.__cause__, (av.error.FFmpegError, ValueError))


def test_missing_pyav_is_a_codec_error(small: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(CodecError, match=r"the h264 degradation needs PyAV \(pip install av\)"):
        degrade(small, "h264")
