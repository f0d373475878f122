"""Image quality metrics: PSNR, SSIM and MAE against a reference, and a no-reference sharpness score.

Every metric is a plain function first (``psnr(pred, gt)``) and a thin ``nn.Module`` second (``PSNR()``) that only
stores arguments. Images are ``(B, C, H, W)`` float tensors in ``[0, data_range]``. Each function scores every image
of the batch on its own, then ``reduction="mean"`` averages over the batch (a 0-d tensor) and ``reduction="none"``
returns the ``(B,)`` per-image scores. Half-precision inputs are computed in float32; float64 stays float64.

All functions are differentiable, so ``1 - ssim(pred, gt)`` or ``-psnr(pred, gt)`` can serve as a loss.

This module imports nothing from ``sharpkd`` on purpose: it is the yardstick the rest of the package is measured by.

Example:
    >>> pred, gt = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    >>> psnr(pred, gt).shape, ssim(pred, gt, reduction="none").shape
    (torch.Size([]), torch.Size([2]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS: tuple[str, ...] = ("mean", "none")
MSE_FLOOR = 1e-10  # psnr clamps the MSE here, so identical images score 10 * log10(data_range**2 / 1e-10)
SSIM_TRUNCATE = 3.5  # window radius in sigmas; with sigma 1.5 this is the 11x11 window of Wang et al. and skimage


def _check_image(x: object, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def _check_pair(pred: object, gt: object) -> None:
    _check_image(pred, "pred")
    _check_image(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must match, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _compute_dtype(*xs: Tensor) -> torch.dtype:
    # float16/bfloat16 lose too much in E[x^2] - E[x]^2; compute in at least float32
    dtype = torch.float32
    for x in xs:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _reduce(per_image: Tensor, reduction: str) -> Tensor:
    return per_image.mean() if reduction == "mean" else per_image


def psnr(pred: Tensor, gt: Tensor, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB, ``10 * log10(data_range**2 / MSE)``.

    The MSE is taken per image over all of ``C, H, W`` (as ``skimage.metrics.peak_signal_noise_ratio`` does for one
    image), then the per-image PSNRs are reduced. Identical images would give ``+inf``, which is useless in an
    average, so the MSE is clamped at ``1e-10``: the maximum is ``10 * log10(data_range**2) + 100`` dB (100 dB for
    ``data_range=1``), and the gradient is zero there.

    Args:
        pred: Predicted images in ``[0, data_range]``.
        gt: Reference images, same shape as ``pred``.
        data_range: Peak value of the images (1.0 for ``[0, 1]`` floats, 255.0 for 8-bit scale).
        reduction: ``"mean"`` averages the per-image PSNRs over the batch; ``"none"`` returns them.

    Returns:
        PSNR in dB, a 0-d tensor (``"mean"``) or ``(B,)`` (``"none"``).

    Raises:
        TypeError: If ``pred`` or ``gt`` is not a floating point tensor.
        ValueError: If the shapes are not ``(B, C, H, W)`` or differ, ``data_range <= 0``, or ``reduction`` is unknown.

    Shape:
        ``pred, gt (B, C, H, W)`` -> ``()`` or ``(B,)``.

    Example:
        >>> gt = torch.full((1, 3, 8, 8), 0.5)
        >>> psnr(gt + 0.1, gt).round()  # MSE 0.01 -> 20 dB
        tensor(20.)
    """
    _check_pair(pred, gt)
    _check_positive(data_range=data_range)
    _check_reduction(reduction)
    dtype = _compute_dtype(pred, gt)
    mse = (pred.to(dtype) - gt.to(dtype)).pow(2).flatten(1).mean(dim=1)  # (B,)
    per_image = 10.0 * torch.log10(data_range**2 / mse.clamp_min(MSE_FLOOR))  # (B,)
    return _reduce(per_image, reduction)


def mae(pred: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error per image over all of ``C, H, W``, in the images' own units.

    Args:
        pred: Predicted images.
        gt: Reference images, same shape as ``pred``.
        reduction: ``"mean"`` averages the per-image errors over the batch; ``"none"`` returns them.

    Returns:
        MAE, a 0-d tensor (``"mean"``) or ``(B,)`` (``"none"``).

    Raises:
        TypeError: If ``pred`` or ``gt`` is not a floating point tensor.
        ValueError: If the shapes are not ``(B, C, H, W)`` or differ, or ``reduction`` is unknown.

    Shape:
        ``pred, gt (B, C, H, W)`` -> ``()`` or ``(B,)``.
    """
    _check_pair(pred, gt)
    _check_reduction(reduction)
    dtype = _compute_dtype(pred, gt)
    per_image = (pred.to(dtype) - gt.to(dtype)).abs().flatten(1).mean(dim=1)  # (B,)
    return _reduce(per_image, reduction)


def gaussian_window(sigma: float = 1.5, truncate: float = SSIM_TRUNCATE, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalized 1-D Gaussian taps, radius ``int(truncate * sigma + 0.5)`` as in ``scipy.ndimage``.

    The SSIM window is the outer product of these taps with themselves (the filter is separable).

    Args:
        sigma: Standard deviation in pixels.
        truncate: Radius in units of ``sigma``.
        dtype: Floating point dtype of the result.

    Returns:
        Taps summing to 1, ``(2r + 1,)``; 11 taps for the defaults.

    Raises:
        ValueError: If ``sigma`` or ``truncate`` is not positive.
    """
    _check_positive(sigma=sigma, truncate=truncate)
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(dtype)


def _fit_window(window: Tensor, size: int) -> Tensor:
    # Keep the central taps and renormalize: the same as a Gaussian truncated at the smaller radius
    n = window.numel()
    assert n % 2 == 1, f"window must have an odd number of taps, got {n}"
    if n <= size:
        return window
    keep = size if size % 2 == 1 else size - 1
    start = (n - keep) // 2
    cropped = window[start : start + keep]
    return cropped / cropped.sum()


def ssim(
    pred: Tensor,
    gt: Tensor,
    data_range: float = 1.0,
    reduction: str = "mean",
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    *,
    window: Tensor | None = None,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, matching scikit-image.

    Local means, variances (population, divided by the window weight sum of 1) and the covariance are taken under a
    Gaussian window of ``sigma`` truncated at 3.5 sigma (11x11 for ``sigma=1.5``), per channel. The SSIM map
    ``(2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))`` with
    ``C1 = (k1 * data_range)**2`` and ``C2 = (k2 * data_range)**2`` is computed only where the window fits inside the
    image ('valid' convolution), then averaged over channels and pixels per image. This equals
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    channel_axis=...)``, which filters with reflect padding and then crops ``(win_size - 1) // 2`` pixels per border.

    Images smaller than the window use a smaller window: the largest odd size that fits ``min(H, W)``, the Gaussian
    truncated there and renormalized (scikit-image raises instead). A side below 3 pixels raises ``ValueError``: a
    1x1 window has no variance, so SSIM would reduce to a luminance comparison.

    Args:
        pred: Predicted images in ``[0, data_range]``.
        gt: Reference images, same shape as ``pred``.
        data_range: Peak value of the images (1.0 for ``[0, 1]`` floats).
        reduction: ``"mean"`` averages the per-image SSIMs over the batch; ``"none"`` returns them.
        sigma: Standard deviation of the Gaussian window in pixels.
        k1: Luminance stabilizer constant.
        k2: Contrast stabilizer constant.
        window: Precomputed 1-D taps (odd length, summing to 1) used instead of ``gaussian_window(sigma)``;
            :class:`SSIM` passes its buffer here. ``sigma`` is then ignored.

    Returns:
        SSIM in ``[-1, 1]`` (1 for identical images), a 0-d tensor (``"mean"``) or ``(B,)`` (``"none"``).

    Raises:
        TypeError: If ``pred`` or ``gt`` is not a floating point tensor.
        ValueError: If the shapes are not ``(B, C, H, W)`` or differ, a side is below 3 pixels, ``data_range``,
            ``sigma``, ``k1`` or ``k2`` is not positive, or ``reduction`` is unknown.

    Shape:
        ``pred, gt (B, C, H, W)`` with ``H, W >= 3`` -> ``()`` or ``(B,)``.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> ssim(x, x, reduction="none")
        tensor([1., 1.])
    """
    _check_pair(pred, gt)
    _check_positive(data_range=data_range, sigma=sigma, k1=k1, k2=k2)
    _check_reduction(reduction)
    B, C, H, W = pred.shape
    if min(H, W) < 3:
        raise ValueError(f"ssim needs images of at least 3x3 pixels for a 3x3 window, got {H}x{W}")

    dtype = _compute_dtype(pred, gt)
    taps = gaussian_window(sigma, dtype=dtype) if window is None else window.to(dtype)
    taps = _fit_window(taps, min(H, W)).to(pred.device)
    n = taps.numel()

    x, y = pred.to(dtype), gt.to(dtype)
    # Filter all five moments in one grouped, separable pass: (B, 5C, H, W) -> (B, 5C, H-n+1, W-n+1)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    moments = F.conv2d(stack, taps.view(1, 1, n, 1).expand(5 * C, 1, n, 1), groups=5 * C)
    moments = F.conv2d(moments, taps.view(1, 1, 1, n).expand(5 * C, 1, 1, n), groups=5 * C)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)  # each (B, C, H', W')
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    per_image = (numerator / denominator).flatten(1).mean(dim=1)  # (B,)
    return _reduce(per_image, reduction)


def sobel_kernels(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The Sobel pair divided by 8 (x then y), so a response is the intensity change per pixel on a linear ramp.

    The one definition of the kernel: :func:`sharpness` uses it, and so does :func:`sharpkd.losses.sobel`.

    Args:
        dtype: Floating point dtype of the result; the taps (0, 1/8, 2/8) are exact in every float dtype.
        device: Device of the result.

    Returns:
        ``(2, 1, 3, 3)`` weights for ``F.conv2d``: ``[0]`` responds to horizontal change, ``[1]`` to vertical.
    """
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype, device=device) / 8
    return torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)  # (2, 1, 3, 3)


def sharpness(img: Tensor, reduction: str = "mean") -> Tensor:
    """No-reference sharpness: 100 times the mean Sobel gradient magnitude of the luma.

    ``luma = 0.299 R + 0.587 G + 0.114 B`` for 3 channels (ITU-R BT.601), the channel mean otherwise. The gradients
    ``gx, gy`` are Sobel responses divided by 8, so they estimate the intensity change per pixel; the score is
    ``100 * mean(sqrt(gx**2 + gy**2))`` over the pixels where the 3x3 kernel fits (no border padding, which would
    add false edges). For ``[0, 1]`` images it is the average edge strength in percent of the range per pixel:
    0 for a flat image, typically 1-10 for photos. Blurring does not increase it, up to border effects (a convolution
    with a normalized non-negative kernel cannot raise the mean gradient magnitude), so a less blurred image scores
    higher.

    Use it to compare versions of the same image when there is no ground truth; it is not comparable across scenes
    and rises with noise as well as with detail.

    Args:
        img: Images in ``[0, 1]``, any number of channels.
        reduction: ``"mean"`` averages the per-image scores over the batch; ``"none"`` returns them.

    Returns:
        Sharpness score, a 0-d tensor (``"mean"``) or ``(B,)`` (``"none"``).

    Raises:
        TypeError: If ``img`` is not a floating point tensor.
        ValueError: If ``img`` is not ``(B, C, H, W)`` with ``H, W >= 3``, or ``reduction`` is unknown.

    Shape:
        ``img (B, C, H, W)`` with ``H, W >= 3`` -> ``()`` or ``(B,)``.
    """
    _check_image(img, "img")
    _check_reduction(reduction)
    H, W = img.shape[-2:]
    if min(H, W) < 3:
        raise ValueError(f"sharpness needs images of at least 3x3 pixels, got {H}x{W}")

    dtype = _compute_dtype(img)
    x = img.to(dtype)
    if x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=dtype, device=x.device)
        luma = (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    else:
        luma = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    grad = F.conv2d(luma, sobel_kernels(dtype, x.device))  # (B, 2, H-2, W-2)
    # the tiny epsilon keeps the backward of sqrt finite on flat regions without visibly biasing the score
    magnitude = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-20)  # (B, H-2, W-2)
    per_image = 100.0 * magnitude.flatten(1).mean(dim=1)  # (B,)
    return _reduce(per_image, reduction)


class PSNR(nn.Module):
    """Module form of :func:`psnr`; see it for the arguments.

    Shape:
        ``pred, gt (B, C, H, W)`` -> ``()`` or ``(B,)``.
    """

    def __init__(self, data_range: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        _check_positive(data_range=data_range)
        _check_reduction(reduction)
        self.data_range = data_range
        self.reduction = reduction

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        return psnr(pred, gt, data_range=self.data_range, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, reduction={self.reduction!r}"


class SSIM(nn.Module):
    """Module form of :func:`ssim`; see it for the arguments.

    The Gaussian taps are a float32 buffer (not saved in the ``state_dict``), so ``.to()`` moves them; on float64
    inputs the module therefore agrees with :func:`ssim` to about 1e-7.

    Shape:
        ``pred, gt (B, C, H, W)`` with ``H, W >= 3`` -> ``()`` or ``(B,)``.
    """

    window: Tensor

    def __init__(
        self,
        data_range: float = 1.0,
        reduction: str = "mean",
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
    ) -> None:
        super().__init__()
        _check_positive(data_range=data_range, sigma=sigma, k1=k1, k2=k2)
        _check_reduction(reduction)
        self.data_range = data_range
        self.reduction = reduction
        self.sigma = sigma
        self.k1 = k1
        self.k2 = k2
        # not persistent: it is derived from sigma, so it does not belong in a state_dict
        self.register_buffer("window", gaussian_window(sigma), persistent=False)

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        return ssim(
            pred,
            gt,
            data_range=self.data_range,
            reduction=self.reduction,
            sigma=self.sigma,
            k1=self.k1,
            k2=self.k2,
            window=self.window,
        )

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, reduction={self.reduction!r}, sigma={self.sigma}"


class MAE(nn.Module):
    """Module form of :func:`mae`; see it for the arguments.

    Shape:
        ``pred, gt (B, C, H, W)`` -> ``()`` or ``(B,)``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        return mae(pred, gt, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
