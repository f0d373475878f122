from __future__ import annotations

import numpy as np
import pytest
import torch

from sharpkd.metrics import MAE, PSNR, SSIM, gaussian_window, mae, psnr, sharpness, sobel_kernels, ssim

skimage_data = pytest.importorskip("skimage.data")
skimage_metrics = pytest.importorskip("skimage.metrics")
ndimage = pytest.importorskip("scipy.ndimage")

IMAGES = ("astronaut", "coffee", "chelsea")
DEGRADATIONS = ("noise", "blur", "shift")


def _crop(name: str, height: int = 128, width: int = 128, top: int = 64, left: int = 64) -> np.ndarray:
    return getattr(skimage_data, name)()[top : top + height, left : left + width]  # (H, W, 3) uint8


def _degrade(name: str, kind: str, height: int = 128, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A clean uint8 crop and a degraded uint8 version of it."""
    clean = _crop(name, height, width)
    if kind == "noise":
        noisy = clean + np.random.default_rng(0).normal(0.0, 12.0, clean.shape)
        return clean, np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    if kind == "blur":
        blurred = ndimage.gaussian_filter(clean.astype(np.float64), sigma=(1.2, 1.2, 0), mode="reflect")
        return clean, np.clip(np.round(blurred), 0, 255).astype(np.uint8)
    assert kind == "shift", kind
    return clean, _crop(name, height, width, top=66, left=67)


def _to_tensor(*images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in images]).to(dtype) / 255.0  # (B, 3, H, W)


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return skimage_metrics.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )


def _reference_ssim(a: np.ndarray, b: np.ndarray, radius: int, sigma: float = 1.5) -> float:
    """scikit-image's algorithm with a free window radius: reflect-filter, then crop `radius` pixels per border."""
    a, b = a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0
    scores = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]

        def blur(im: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(im, sigma=sigma, radius=radius, mode="reflect")

        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(s[radius : s.shape[0] - radius, radius : s.shape[1] - radius].mean())
    return float(np.mean(scores))


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_ssim_matches_skimage(name: str, kind: str) -> None:
    clean, degraded = _degrade(name, kind)
    expected = _skimage_ssim(clean, degraded)
    got = ssim(_to_tensor(degraded), _to_tensor(clean), data_range=1.0)
    assert abs(got.item() - expected) < 1e-3, (got.item(), expected)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_psnr_matches_skimage(name: str, kind: str) -> None:
    clean, degraded = _degrade(name, kind)
    expected = skimage_metrics.peak_signal_noise_ratio(clean, degraded, data_range=255)
    got = psnr(_to_tensor(degraded), _to_tensor(clean), data_range=1.0)
    assert abs(got.item() - expected) < 1e-4, (got.item(), expected)


def test_batch_matches_skimage_per_image_on_odd_size() -> None:
    pairs = [_degrade("coffee", "noise", 67, 93), _degrade("coffee", "shift", 67, 93)]
    pred = _to_tensor(*(degraded for _, degraded in pairs), dtype=torch.float64)
    gt = _to_tensor(*(clean for clean, _ in pairs), dtype=torch.float64)
    expected_ssim = torch.tensor([_skimage_ssim(c, d) for c, d in pairs], dtype=torch.float64)
    expected_psnr = torch.tensor(
        [skimage_metrics.peak_signal_noise_ratio(c, d, data_range=255) for c, d in pairs], dtype=torch.float64
    )
    torch.testing.assert_close(ssim(pred, gt, reduction="none"), expected_ssim, atol=1e-10, rtol=0)
    torch.testing.assert_close(psnr(pred, gt, reduction="none"), expected_psnr, atol=1e-10, rtol=0)


def test_reference_matches_skimage() -> None:
    clean, degraded = _degrade("chelsea", "blur", 40, 48)
    assert abs(_reference_ssim(clean, degraded, radius=5) - _skimage_ssim(clean, degraded)) < 1e-12


@pytest.mark.parametrize(("height", "width"), [(10, 12), (7, 9), (6, 20), (3, 3)])
def test_ssim_small_images_shrink_window(height: int, width: int) -> None:
    clean, degraded = _degrade("astronaut", "noise", height, width)
    side = min(height, width)
    radius = (side - 1) // 2 if side % 2 == 1 else (side - 2) // 2
    expected = _reference_ssim(clean, degraded, radius=radius)
    got = ssim(_to_tensor(degraded, dtype=torch.float64), _to_tensor(clean, dtype=torch.float64))
    assert abs(got.item() - expected) < 1e-10, (got.item(), expected)
    got_module = SSIM()(_to_tensor(degraded), _to_tensor(clean))
    assert abs(got_module.item() - expected) < 1e-4  # float32


@pytest.mark.parametrize("size", [(1, 1), (2, 8), (8, 2)])
def test_ssim_rejects_images_below_3x3(size: tuple[int, int]) -> None:
    x = torch.rand(1, 3, *size)
    with pytest.raises(ValueError, match="at least 3x3"):
        ssim(x, x)
    with pytest.raises(ValueError, match="at least 3x3"):
        sharpness(x)


def test_gaussian_window_is_skimage_11_taps() -> None:
    taps = gaussian_window(1.5, dtype=torch.float64)
    assert taps.shape == (11,)
    impulse = np.zeros(11)
    impulse[5] = 1.0
    expected = ndimage.gaussian_filter1d(impulse, sigma=1.5, truncate=3.5)
    np.testing.assert_allclose(taps.numpy(), expected, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_images(dtype: torch.dtype) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=dtype)
    torch.testing.assert_close(ssim(x, x, reduction="none"), torch.ones(2, dtype=dtype))
    # the MSE floor of 1e-10 caps PSNR at 100 dB for data_range 1 instead of +inf
    torch.testing.assert_close(psnr(x, x, reduction="none"), torch.full((2,), 100.0, dtype=dtype))
    assert psnr(x * 255, x * 255, data_range=255.0).item() == pytest.approx(100 + 20 * np.log10(255))
    assert mae(x, x).item() == 0.0


def test_known_values() -> None:
    gt = torch.full((2, 3, 8, 8), 0.5)
    pred = gt + torch.tensor([0.1, -0.01]).view(2, 1, 1, 1)
    torch.testing.assert_close(psnr(pred, gt, reduction="none"), torch.tensor([20.0, 40.0]))
    torch.testing.assert_close(mae(pred, gt, reduction="none"), torch.tensor([0.1, 0.01]))
    torch.testing.assert_close(psnr(pred, gt), torch.tensor(30.0))


def test_data_range_scales_out() -> None:
    g = torch.Generator().manual_seed(1)
    pred, gt = torch.rand(2, 3, 20, 20, generator=g), torch.rand(2, 3, 20, 20, generator=g)
    torch.testing.assert_close(ssim(pred * 255, gt * 255, data_range=255.0), ssim(pred, gt), atol=1e-5, rtol=0)
    torch.testing.assert_close(psnr(pred * 255, gt * 255, data_range=255.0), psnr(pred, gt), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 1, 13, 17), (2, 3, 9, 24)])
def test_reductions_and_batch(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    pred, gt = torch.rand(shape, generator=g, dtype=dtype), torch.rand(shape, generator=g, dtype=dtype)
    for fn in (psnr, ssim, mae):
        per_image = fn(pred, gt, reduction="none")
        assert per_image.shape == (2,) and per_image.dtype == dtype
        mean = fn(pred, gt)
        assert mean.shape == () and mean.dtype == dtype
        torch.testing.assert_close(mean, per_image.mean())
        # each image is scored on its own: batching does not mix images
        torch.testing.assert_close(fn(pred[1:], gt[1:], reduction="none"), per_image[1:])
    per_image = sharpness(pred, reduction="none")
    assert per_image.shape == (2,) and per_image.dtype == dtype
    torch.testing.assert_close(sharpness(pred), per_image.mean())


def test_half_precision_is_computed_in_float32() -> None:
    g = torch.Generator().manual_seed(3)
    pred, gt = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    got = ssim(pred.half(), gt.half())
    assert got.dtype == torch.float32
    assert abs(got.item() - ssim(pred.half().float(), gt.half().float()).item()) < 1e-6


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_function_and_module_agree(reduction: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    pred, gt = torch.rand(2, 3, 24, 20, generator=g, dtype=dtype), torch.rand(2, 3, 24, 20, generator=g, dtype=dtype)
    torch.testing.assert_close(
        PSNR(data_range=2.0, reduction=reduction)(pred, gt), psnr(pred, gt, data_range=2.0, reduction=reduction)
    )
    torch.testing.assert_close(MAE(reduction=reduction)(pred, gt), mae(pred, gt, reduction=reduction))
    kwargs = {"data_range": 2.0, "reduction": reduction, "sigma": 1.0, "k1": 0.02, "k2": 0.04}
    module = SSIM(**kwargs).to(dtype)
    # the module's taps are a float32 buffer, so a float64 module agrees to float32 precision
    torch.testing.assert_close(module(pred, gt), ssim(pred, gt, **kwargs), atol=1e-6, rtol=0)


def test_ssim_window_is_a_non_persistent_buffer() -> None:
    module = SSIM(sigma=1.5)
    assert dict(module.named_buffers())["window"].shape == (11,)
    assert "window" not in module.state_dict()
    assert module.to(torch.float64).window.dtype == torch.float64


def test_shape_mismatch_names_both_shapes() -> None:
    pred, gt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15)
    for fn in (psnr, ssim, mae, PSNR(), SSIM(), MAE()):
        with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\) and \(1, 3, 16, 15\)"):
            fn(pred, gt)


def test_bad_inputs() -> None:
    x = torch.rand(1, 3, 16, 16)
    for fn in (psnr, ssim, mae):
        with pytest.raises(TypeError, match="ndarray"):
            fn(x.numpy(), x)
        with pytest.raises(TypeError, match="torch.uint8"):
            fn(x, (x * 255).to(torch.uint8))
        with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
            fn(x[0], x[0])
        with pytest.raises(ValueError, match="'sum'"):
            fn(x, x, reduction="sum")
    with pytest.raises(TypeError, match="list"):
        sharpness([[0.0]])
    with pytest.raises(ValueError, match="data_range must be > 0, got 0"):
        psnr(x, x, data_range=0)
    with pytest.raises(ValueError, match="sigma must be > 0, got -1"):
        ssim(x, x, sigma=-1)
    with pytest.raises(ValueError, match="k2 must be > 0"):
        SSIM(k2=0.0)


def test_ssim_gradcheck() -> None:
    g = torch.Generator().manual_seed(5)
    pred = torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64, requires_grad=True)
    gt = torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: ssim(p, gt), (pred,))


def test_psnr_gradcheck() -> None:
    g = torch.Generator().manual_seed(6)
    pred = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    gt = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: psnr(p, gt), (pred,))


def test_losses_backpropagate_in_float32() -> None:
    g = torch.Generator().manual_seed(7)
    pred = torch.rand(2, 3, 16, 16, generator=g, requires_grad=True)
    gt = torch.rand(2, 3, 16, 16, generator=g)
    loss = (1 - SSIM()(pred, gt)) - 0.01 * PSNR()(pred, gt) + MAE()(pred, gt) - sharpness(pred)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_sharpness_decreases_with_blur() -> None:
    rgb = np.stack([_crop(name) for name in IMAGES]).astype(np.float64) / 255.0  # (3, H, W, 3)

    def blur(sigma: float) -> np.ndarray:
        return ndimage.gaussian_filter(rgb, sigma=(0, sigma, sigma, 0), mode="reflect")

    scores = [
        sharpness(torch.from_numpy(im).permute(0, 3, 1, 2), reduction="none") for im in (blur(3.0), blur(1.0), rgb)
    ]
    assert (scores[0] < scores[1]).all() and (scores[1] < scores[2]).all(), scores


def test_sharpness_values() -> None:
    assert sharpness(torch.full((1, 3, 8, 8), 0.3)).item() < 1e-6
    # a horizontal ramp of 0.01 per pixel has gradient 0.01 everywhere: score 1
    ramp = (torch.arange(10, dtype=torch.float64) * 0.01).expand(1, 1, 6, 10)
    assert sharpness(ramp).item() == pytest.approx(1.0)
    # grey RGB scores like its single channel (the luma weights sum to 1)
    torch.testing.assert_close(sharpness(ramp.expand(1, 3, 6, 10)), sharpness(ramp))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_sobel_kernels(dtype: torch.dtype) -> None:
    k = sobel_kernels(dtype)
    assert k.shape == (2, 1, 3, 3) and k.dtype == dtype
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64) / 8
    assert torch.equal(k[0, 0].double(), expected) and torch.equal(k[1, 0].double(), expected.T)  # exact taps
    # sharpness is the mean gradient magnitude of exactly these kernels
    x = torch.rand(2, 1, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grad = torch.nn.functional.conv2d(x, sobel_kernels(torch.float64))
    magnitude = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-20)
    torch.testing.assert_close(sharpness(x, reduction="none"), 100 * magnitude.flatten(1).mean(dim=1))
