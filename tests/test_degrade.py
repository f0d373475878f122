"""Degradations: determinism per generator, stated strengths against references, odd and tiny sizes, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sharpkd.degrade import (
    CODEC_PRESETS,
    PRESET_SUMMARIES,
    PRESETS,
    SYNTHETIC_PRESETS,
    add_noise,
    degrade,
    downup,
    gaussian_blur,
    gaussian_kernel1d,
    jpeg,
    list_degradations,
    motion_blur,
    motion_kernel,
    random_mix,
)
from sharpkd.metrics import psnr, sharpness

ndimage = pytest.importorskip("scipy.ndimage")
QUANTIZED = ("vc", *CODEC_PRESETS)  # presets that end in an 8-bit decoder


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _high_freq_energy(x: torch.Tensor) -> float:
    """Spectral power above a quarter of the sampling rate (either axis), mean removed."""
    f = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True))
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    return float((f.abs() ** 2)[..., (fy > 0.25) | (fx > 0.25)].sum())


@pytest.fixture
def sharp(photo: np.ndarray) -> torch.Tensor:
    """A 48x64 crop of the fixture photo as (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(photo[:48, :64].copy()).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize("name", list_degradations())
def test_same_generator_seed_gives_identical_output(sharp: torch.Tensor, name: str) -> None:
    x = sharp.repeat(2, 1, 1, 1)
    a, b = degrade(x, name, _gen(3)), degrade(x, name, _gen(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert float((a - x).abs().mean()) > 1e-3  # it did something
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


@pytest.mark.parametrize("name", PRESETS)
def test_dtype_is_kept_and_float64_agrees_with_float32(sharp: torch.Tensor, name: str) -> None:
    y32 = degrade(sharp, name, _gen(2))
    y64 = degrade(sharp.double(), name, _gen(2))
    assert y64.dtype == torch.float64 and y32.dtype == torch.float32
    # JPEG and the codecs decode to whole levels, so a float rounding difference can move a pixel by one level there
    assert float((y64 - y32.double()).abs().max()) <= (1.01 / 255 if name in QUANTIZED else 1e-5)


def test_blurs_are_differentiable() -> None:
    x = torch.rand(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 1.2), (x,))
    assert torch.autograd.gradcheck(lambda t: motion_blur(t, 5, 30.0), (x,))
    assert torch.autograd.gradcheck(lambda t: downup(t, 2.0), (x,))


def test_motion9_angle_depends_on_generator(sharp: torch.Tensor) -> None:
    a, b = degrade(sharp, "motion9", _gen(0)), degrade(sharp, "motion9", _gen(1))
    assert float((a - b).abs().max()) > 0.05


def test_no_generator_means_seed_zero(sharp: torch.Tensor) -> None:
    assert torch.equal(degrade(sharp, "motion9"), degrade(sharp, "motion9", _gen(0)))


def test_gauss_matches_scipy_gaussian_filter() -> None:
    x = torch.rand(2, 3, 21, 26, dtype=torch.float64)
    y = degrade(x, "gauss1.5")
    # radius ceil(3 * 1.5) = 5 -> truncate 5 / 1.5; torch "reflect" excludes the edge pixel, which is scipy "mirror"
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 1.5, 1.5), mode="mirror", truncate=5 / 1.5)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.7])
def test_gaussian_kernel1d_is_normalized_with_radius_3_sigma(sigma: float) -> None:
    k = gaussian_kernel1d(sigma, dtype=torch.float64)
    radius = max(1, math.ceil(3 * sigma))
    assert k.numel() == 2 * radius + 1
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-12)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    assert float((k * t * t).sum()) == pytest.approx(sigma**2, rel=0.04)  # truncation at 3 sigma loses ~3 %


def test_gaussian_kernel1d_rejects_non_positive_sigma() -> None:
    with pytest.raises(ValueError, match="sigma must be positive, got 0"):
        gaussian_kernel1d(0.0)


def test_gauss_strength_scales_blur(sharp: torch.Tensor) -> None:
    s1 = sharpness(degrade(sharp, "gauss1.5", strength=1.0))
    s2 = sharpness(degrade(sharp, "gauss1.5", strength=2.0))
    s05 = sharpness(degrade(sharp, "gauss1.5", strength=0.5))
    assert float(s2) < float(s1) < float(s05) < float(sharpness(sharp))
    # strength 2 is exactly sigma 3
    assert torch.allclose(degrade(sharp, "gauss1.5", strength=2.0), gaussian_blur(sharp, 3.0))


@pytest.mark.parametrize("angle", [0.0, 90.0, 30.0, 45.0, 135.0])
@pytest.mark.parametrize("length", [5, 9])
def test_motion_kernel_sums_to_one_and_spans_its_length(length: int, angle: float) -> None:
    k = motion_kernel(length, angle, dtype=torch.float64)
    assert k.shape == (length, length)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(k.min()) >= 0.0
    # centred: the first moments vanish
    c = length // 2
    ys, xs = torch.meshgrid(torch.arange(length) - c, torch.arange(length) - c, indexing="ij")
    assert float((k * xs).sum()) == pytest.approx(0.0, abs=1e-9)
    assert float((k * ys).sum()) == pytest.approx(0.0, abs=1e-9)
    # mass lies along the angle: projecting onto the normal gives (almost) no spread
    a = math.radians(angle)
    along = xs * math.cos(a) - ys * math.sin(a)
    across = xs * math.sin(a) + ys * math.cos(a)
    assert float((k * across**2).sum()) < 0.2
    # spread along the line: a uniform segment from -(L-1)/2 to (L-1)/2 has variance (L-1)^2/12; the bilinear splat
    # adds at most 1/4 per axis
    var_along = float((k * along**2).sum())
    assert (length - 1) ** 2 / 12 <= var_along + 1e-9 <= (length - 1) ** 2 / 12 + 0.5


def test_horizontal_motion_kernel_is_a_centre_row_of_support_9() -> None:
    k = motion_kernel(9, 0.0)
    assert int((k[4] > 0).sum()) == 9
    assert float(k[4].sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(k.sum() - k[4].sum()) == pytest.approx(0.0, abs=1e-6)
    vertical = motion_kernel(9, 90.0)
    assert torch.allclose(vertical[:, 4], k[4], atol=1e-6)
    even = motion_kernel(8, 0.0)
    assert even.shape == (9, 9)  # even lengths round the kernel up to odd
    assert int((even[4] > 0).sum()) == 9 and float(even.sum()) == pytest.approx(1.0, abs=1e-6)


def test_motion_blur_of_a_point_is_the_kernel() -> None:
    x = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    x[..., 10, 10] = 1.0
    y = motion_blur(x, 9, 30.0)
    k = motion_kernel(9, 30.0, dtype=torch.float64)
    # conv2d is correlation, so the impulse response is the kernel flipped
    assert torch.allclose(y[0, 0, 6:15, 6:15], k.flip(0, 1), atol=1e-12)


def test_motion_kernel_rejects_zero_length() -> None:
    with pytest.raises(ValueError, match="motion length must be >= 1, got 0"):
        motion_kernel(0, 0.0)


def test_downup2_keeps_size_and_removes_high_frequencies(sharp: torch.Tensor) -> None:
    y = degrade(sharp, "downup2")
    assert y.shape == sharp.shape
    assert _high_freq_energy(y) < 0.5 * _high_freq_energy(sharp)
    assert 18.0 < float(psnr(y, sharp)) < 40.0
    # a checkerboard (Nyquist) is averaged away almost completely by the antialiased downscale
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(1, 3, 16, 16)
    assert float(degrade(checker.contiguous(), "downup2")[..., 4:-4, 4:-4].std()) < 0.05


@pytest.mark.parametrize("name", PRESETS)
def test_constant_image_stays_constant(name: str) -> None:
    x = torch.full((1, 3, 19, 24), 0.4)
    y = degrade(x, name)
    level = round(0.4 * 255) / 255 if name in QUANTIZED else 0.4
    # at 0.1 bits per pixel the codecs quantize even a flat frame's DC coarsely: level 102 comes back as 107 (h264)
    # or 105 (vp8), measured; with bits to spare it is within 1.25 levels (test_codec)
    atol = 6.0 / 255 if name in CODEC_PRESETS else 1.5 / 255 if name == "vc" else 1e-5
    assert torch.allclose(y, torch.full_like(y, level), atol=atol)


def test_downup_downscale_matches_pillow_bicubic() -> None:
    from PIL import Image

    x = torch.rand(1, 1, 40, 52, generator=_gen(0))
    small = np.asarray(Image.fromarray(x[0, 0].numpy()).resize((26, 20), Image.BICUBIC))  # antialiased
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(small.copy())[None, None], size=(40, 52), mode="bicubic", align_corners=False
    )
    assert torch.allclose(downup(x, 2.0), ref.clamp(0, 1), atol=1e-5)


def test_downup_scale_one_is_identity(sharp: torch.Tensor) -> None:
    assert torch.equal(downup(sharp, 1.0), sharp)


@pytest.mark.parametrize("name", ["vc"])
def test_vc_is_quantized_to_8_bit(sharp: torch.Tensor, name: str) -> None:
    y = degrade(sharp, name) * 255
    assert torch.allclose(y, y.round(), atol=1e-4)
    assert float(psnr(y / 255, sharp)) < float(psnr(degrade(sharp, "downup2"), sharp))


def test_jpeg_quality_orders_error_and_validates(sharp: torch.Tensor) -> None:
    err95 = float((jpeg(sharp, 95) - sharp).abs().mean())
    err10 = float((jpeg(sharp, 10) - sharp).abs().mean())
    assert err95 < err10
    with pytest.raises(ValueError, match="quality must be in"):
        jpeg(sharp, 0)
    with pytest.raises(ValueError, match="1 or 3 channels, got 2"):
        jpeg(torch.rand(1, 2, 8, 8), 50)


def test_vc_strength_lowers_jpeg_quality(sharp: torch.Tensor) -> None:
    assert float(psnr(degrade(sharp, "vc", strength=1.3), sharp)) < float(psnr(degrade(sharp, "vc"), sharp))


def test_random_mix_changes_each_image_and_is_seeded(sharp: torch.Tensor) -> None:
    x = sharp.repeat(4, 1, 1, 1)
    y = random_mix(x, _gen(5))
    assert y.shape == x.shape
    for i in range(4):
        assert float((y[i] - x[i]).abs().mean()) > 1e-3
    assert torch.equal(y, random_mix(x, _gen(5)))
    assert not torch.equal(y, random_mix(x, _gen(6)))


def test_add_noise_has_stated_sigma() -> None:
    x = torch.full((1, 3, 64, 64), 0.5)
    y = add_noise(x, 0.02, _gen(0))
    assert float((y - x).std()) == pytest.approx(0.02, rel=0.05)
    assert torch.equal(y, add_noise(x, 0.02, _gen(0)))


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 3, 1, 1), (1, 3, 2, 3), (1, 1, 9, 4), (1, 3, 3, 40)])
@pytest.mark.parametrize("name", list_degradations())
def test_odd_and_tiny_sizes_keep_shape(shape: tuple[int, ...], name: str) -> None:
    x = torch.rand(shape, generator=_gen(0))
    y = degrade(x, name, _gen(1))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_unknown_name_lists_the_known_ones(sharp: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"unknown degradation 'blurry'; known: downup2, gauss1\.5"):
        degrade(sharp, "blurry")


def test_numpy_and_tensor_strengths_are_accepted(sharp: torch.Tensor) -> None:
    ref = degrade(sharp, "gauss1.5", strength=2.0)
    assert torch.equal(degrade(sharp, "gauss1.5", strength=np.float32(2.0)), ref)
    assert torch.equal(degrade(sharp, "gauss1.5", strength=torch.tensor(2.0)), ref)


@pytest.mark.parametrize("strength", [0.0, -1.0, float("nan"), float("inf"), "strong", None])
def test_bad_strength_is_rejected(sharp: torch.Tensor, strength: float) -> None:
    with pytest.raises(ValueError, match="strength must be a positive finite number"):
        degrade(sharp, "gauss1.5", strength=strength)


@pytest.mark.parametrize(
    "bad", [torch.rand(3, 8, 8), torch.rand(1, 1, 3, 8, 8), torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8)]
)
def test_non_4d_or_integer_input_is_rejected(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"expected a float \(B, C, H, W\) tensor, got dtype"):
        degrade(bad, "downup2")


def test_non_tensor_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected a torch.Tensor, got ndarray"):
        degrade(np.zeros((1, 3, 8, 8), np.float32), "downup2")


def test_six_presets_synthetic_first_then_codecs() -> None:
    assert SYNTHETIC_PRESETS == ("downup2", "gauss1.5", "motion9", "vc") and CODEC_PRESETS == ("h264", "vp8")
    assert PRESETS == SYNTHETIC_PRESETS + CODEC_PRESETS
    assert list(PRESET_SUMMARIES) == list(PRESETS) and all(PRESET_SUMMARIES.values())


def test_list_degradations_puts_presets_first() -> None:
    assert list_degradations()[:6] == list(PRESETS)
    assert list_degradations()[6:] == ["mix", "presets", "mix+presets"]


def test_presets_mix_draws_every_one_of_the_six_presets(sharp: torch.Tensor) -> None:
    small, drawn = sharp[..., :16, :16].contiguous(), set()
    for seed in range(24):
        g = _gen(seed)
        name = PRESETS[int(torch.randint(len(PRESETS), (), generator=g))]  # the mix's draw, then the preset's own
        drawn.add(name)
        assert torch.equal(degrade(small, "presets", _gen(seed)), degrade(small, name, g))
    assert drawn == set(PRESETS)


def test_context_margin_is_wide_only_where_a_codec_may_be_drawn() -> None:
    from sharpkd.degrade import CODEC_PRESETS, SYNTHETIC_PRESETS, context_margin

    assert {context_margin(p) for p in SYNTHETIC_PRESETS} == {context_margin("mix")} == {16}
    assert {context_margin(p) for p in CODEC_PRESETS} == {context_margin("presets"), context_margin("mix+presets")}
    assert context_margin("h264") >= 128  # a 96 px crop codes inside a frame of about 384 px
    with pytest.raises(ValueError, match="unknown degradation"):
        context_margin("nope")


def test_weighted_pool_draws_in_proportion_and_only_named_weights_change() -> None:
    from sharpkd.degrade import _weighted_pick, preset_weights

    weights = preset_weights("presets:motion9=3,vp8=0")
    assert weights == {"downup2": 1.0, "gauss1.5": 1.0, "motion9": 3.0, "vc": 1.0, "h264": 1.0, "vp8": 0.0}
    g = _gen(0)
    counts = {p: 0 for p in PRESETS}
    for _ in range(4000):
        counts[_weighted_pick(weights, g)] += 1
    assert counts["vp8"] == 0
    assert abs(counts["motion9"] / 4000 - 3 / 7) < 0.03  # 3 of 7 weight units
    assert all(abs(counts[p] / 4000 - 1 / 7) < 0.03 for p in ("downup2", "gauss1.5", "vc", "h264"))
    assert preset_weights("presets") is None and preset_weights("motion9") is None


def test_weighted_pool_of_one_preset_is_that_preset(sharp: torch.Tensor) -> None:
    only_gauss = "presets:" + ",".join(f"{p}={int(p == 'gauss1.5')}" for p in PRESETS)
    assert torch.equal(degrade(sharp, only_gauss, _gen(1)), degrade(sharp, "gauss1.5", _gen(2)))  # gauss1.5 is seedless


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("presets:nope=1", "bad weighted pool"),
        ("presets:motion9", "bad weighted pool"),
        ("presets:motion9=1,motion9=2", "bad weighted pool"),
        ("presets:motion9=-1", "bad weight"),
        ("presets:motion9=nan", "bad weight"),
        ("presets:" + ",".join(f"{p}=0" for p in PRESETS), "weight 0"),
        ("mix+presets:nope=1", "bad weighted pool"),
        ("mix+presets:vp8=-1", "bad weight"),
    ],
)
def test_bad_weighted_pool_says_what_is_wrong(sharp: torch.Tensor, name: str, match: str) -> None:
    from sharpkd.data import SyntheticPairs
    from sharpkd.degrade import check_degradation

    with pytest.raises(ValueError, match=match):
        degrade(sharp, name)
    with pytest.raises(ValueError, match=match):
        check_degradation(name)
    with pytest.raises(ValueError, match=match):
        SyntheticPairs([np.zeros((32, 32, 3), np.uint8)], 16, degradation=name)


def test_weighted_pool_context_margin_follows_the_presets_it_draws() -> None:
    from sharpkd.degrade import context_margin

    assert context_margin("presets:motion9=3") == context_margin("presets")
    assert context_margin("presets:h264=0,vp8=0") == context_margin("mix")
    assert context_margin("mix+presets:vp8=2,h264=2") == context_margin("mix+presets")
    assert context_margin("mix+presets:h264=0,vp8=0") == context_margin("mix")


def test_mix_plus_weighted_pool_is_half_random_mix_half_the_pool() -> None:
    from sharpkd.degrade import check_degradation

    only_gauss = "mix+presets:" + ",".join(f"{p}={int(p == 'gauss1.5')}" for p in PRESETS)
    check_degradation(only_gauss)
    x = torch.rand(64, 3, 32, 32, generator=_gen(0))
    out = degrade(x, only_gauss, _gen(5))
    assert torch.equal(out, degrade(x, only_gauss, _gen(5)))  # deterministic for a seed
    gauss = degrade(x, "gauss1.5")  # seedless
    is_gauss = [torch.equal(o, gi) for o, gi in zip(out, gauss)]
    assert 16 <= sum(is_gauss) <= 48  # about half from the pool (binomial 64, 1/2: outside this is < 1e-4)
    rest = [(o, xi) for o, xi, hit in zip(out, x, is_gauss) if not hit]
    assert all((o - xi).abs().mean() > 1e-3 for o, xi in rest)  # the rest are degraded by the random mix
