"""Reconstruction and distillation losses, each a plain function first, combined by name=weight in :class:`LossMix`.

All images are ``(B, C, H, W)`` floats in [0, 1]. Names understood by :func:`parse_weights` / :class:`LossMix`:

============ =========================================================================================
``l1``        Charbonnier (smooth L1, eps 1e-3) to ground truth
``mse``       mean squared error to ground truth
``psnr``      minus the mean per-image PSNR (dB) to ground truth: every sample weighted by its relative error
``kd``        L1 to the teacher's output (output-level distillation)
``kd_mse``    MSE to the teacher's output
``kd_psnr``   minus the mean per-image PSNR (dB) to the teacher's output (pairs with ``psnr``)
``noharm``    mean per-image PSNR *loss* in dB against the degraded input, hinged at zero: only samples the
              model makes worse than its input count (pairs with ``psnr``; needs the input)
``kd_rel``    per-image MSE to the teacher's output divided by the input's MSE to ground truth (times 10/ln 10):
              psnr's per-sample weighting for distillation without its blow-up where the teacher ~ the student
              (needs the input)
``feat``      L1 between 1x1-adapted student features and teacher features (feature distillation)
``ssim``      1 - SSIM to ground truth (Gaussian window, :func:`sharpkd.metrics.ssim`)
``msssim``    1 - MS-SSIM to ground truth (pytorch-msssim; window shrunk to fit small patches)
``edge``      L1 between Sobel gradients of prediction and ground truth
``fft``       L1 between FFT magnitudes of prediction and ground truth
``vgg``       L1 between VGG19 features (relu1_2 .. relu4_4); needs torchvision-format VGG19 weights
============ =========================================================================================
"""

from __future__ import annotations

import math
import os
import pickle

import torch
import torch.nn as nn
import torch.nn.functional as F

from sharpkd.metrics import sobel_kernels, ssim

LOSS_NAMES = (
    "l1",
    "mse",
    "psnr",
    "noharm",
    "kd",
    "kd_mse",
    "kd_psnr",
    "kd_rel",
    "feat",
    "ssim",
    "msssim",
    "edge",
    "fft",
    "vgg",
)
TEACHER_LOSSES = ("kd", "kd_mse", "kd_psnr", "kd_rel", "feat")


def charbonnier(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss ``mean(sqrt((pred - gt)^2 + eps^2))``: L1 that is smooth at zero."""
    return torch.sqrt((pred - gt) ** 2 + eps * eps).mean()


def psnr_loss(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Minus the mean per-image PSNR in dB, up to a constant: ``mean_i 10 log10(mse_i + eps)`` (NAFNet's PSNR loss).

    Unlike L1 or MSE over the batch, every image counts by its *relative* error, so heavily damaged samples (codec
    frames) do not drown out the gradient of mildly blurred ones: what is minimised is the mean PSNR gain itself.

    Shape:
        ``(B, C, H, W)`` twice -> a scalar.
    """
    mse = (pred - gt).square().mean(dim=(1, 2, 3))  # (B,)
    return 10.0 * torch.log10(mse + eps).mean()


def noharm_loss(pred: torch.Tensor, gt: torch.Tensor, lq: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over the batch of ``max(0, PSNR(lq, gt) - PSNR(pred, gt))`` in dB: the dB each sample lost to the model.

    :func:`psnr_loss` optimises the *mean* gain, which a model can raise while damaging a minority of samples (a
    motion-blurred texture sharpened the wrong way). This term is zero for every sample the model improves and grows
    linearly with the harm done to the others, so with it the model learns to back off where it cannot tell what to
    do. Samples whose input already equals the ground truth count as lossless (``eps``).

    Shape:
        ``(B, C, H, W)`` three times -> a scalar.
    """
    mse_pred = (pred - gt).square().mean(dim=(1, 2, 3))  # (B,)
    mse_in = (lq - gt).square().mean(dim=(1, 2, 3))
    return F.relu(10.0 * torch.log10((mse_pred + eps) / (mse_in + eps))).mean()


def relative_kd_loss(
    pred: torch.Tensor, teacher_pred: torch.Tensor, lq: torch.Tensor, gt: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """``10/ln 10 * mean_i mse(pred_i, teacher_i) / mse(lq_i, gt_i)``: distillation weighted per sample as
    :func:`psnr_loss` weights ground truth.

    ``kd_psnr`` (PSNR to the teacher's output) weights each sample by ``1 / mse(pred, teacher)``, which explodes on
    samples where the teacher barely changes the input (codec frames: the student starts out within a few hundredths
    of a dB of it), so those samples can swamp the gradient and the large corrections the teacher makes elsewhere
    (defocus) lose out: in this project's 40000-step ablation a psnr=1,kd_psnr=0.2 student gained 1.75 dB less on
    gauss1.5 than its psnr=1 twin while gaining more on every other preset, and a psnr=1,kd_rel=1 student keeps the
    gauss1.5 gain (docs/reproduce.sh, step 2). Dividing by the sample's own input error instead fixes each sample's
    weight: ``1 / mse(lq, gt)``, the weight ``psnr`` gives it at the identity.

    Shape:
        ``(B, C, H, W)`` four times -> a scalar.
    """
    mse_t = (pred - teacher_pred).square().mean(dim=(1, 2, 3))
    mse_in = (lq - gt).square().mean(dim=(1, 2, 3)).detach()
    return (10.0 / math.log(10.0)) * (mse_t / (mse_in + eps)).mean()


def ssim_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` (Gaussian window sigma 1.5)."""
    return 1.0 - ssim(pred, gt, data_range=1.0)


def msssim_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``1 - MS-SSIM`` from pytorch-msssim. Its 4 down-samplings need ``side > (win - 1) * 16``, so the window is
    shrunk (11, 9, 7, 5, 3) until it fits.

    Raises:
        ValueError: the images are 32 px or smaller, too small for any window.
    """
    from pytorch_msssim import ms_ssim

    side = min(pred.shape[-2:])
    for win in (11, 9, 7, 5, 3):
        if side > (win - 1) * 16:
            return 1.0 - ms_ssim(pred, gt, data_range=1.0, win_size=win)
    raise ValueError(f"MS-SSIM needs images larger than 32 px, got {tuple(pred.shape[-2:])}")


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradients per channel (:func:`sharpkd.metrics.sobel_kernels`), x then y, replicate border.

    Shape:
        ``(B, C, H, W)`` -> ``(B, 2C, H, W)``.
    """
    C = x.shape[1]
    k = sobel_kernels(x.dtype, x.device).repeat(C, 1, 1, 1)  # (2C, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=C)


def edge_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L1 between Sobel gradients."""
    return F.l1_loss(sobel(pred), sobel(gt))


def fft_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L1 between the magnitudes of the 2-D real FFTs (orthonormal), which rewards restoring high frequencies."""
    return F.l1_loss(torch.fft.rfft2(pred, norm="ortho").abs(), torch.fft.rfft2(gt, norm="ortho").abs())


def feature_loss(student_feats: torch.Tensor, teacher_feats: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Feature distillation: adapt student features with a 1x1 conv, resize to the teacher's map, L1.

    Shape:
        ``student_feats (B, Cs, h, w)``, ``teacher_feats (B, Ct, H, W)`` -> scalar.
    """
    s = adapter(student_feats)  # (B, Ct, h, w)
    if s.shape[-2:] != teacher_feats.shape[-2:]:
        s = F.interpolate(s, size=teacher_feats.shape[-2:], mode="bilinear", align_corners=False)
    return F.l1_loss(s, teacher_feats)


# VGG19 "features" stack as in torchvision (conv channels, "M" = max-pool), so its state dict loads unchanged.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512)
_VGG_TAPS = (3, 8, 17, 26)  # indices of relu1_2, relu2_2, relu3_4, relu4_4 in the stack


class VGGFeatures(nn.Module):
    """VGG19 convs up to relu4_4, frozen, loading a torchvision-format ``vgg19`` state dict (``features.N.*`` keys).

    Raises:
        ValueError: no weights path given, or the file does not hold VGG19 feature weights.
    """

    def __init__(self, weights: str | os.PathLike | None) -> None:
        super().__init__()
        if weights is None:
            raise ValueError(
                "the VGG perceptual loss needs VGG19 weights: pass vgg_weights=<path to a torchvision-format vgg19 "
                "state dict (.pth)>; sharpkd cannot download them. Drop 'vgg' from the losses to train without it."
            )
        layers: list[nn.Module] = []
        c = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
                c = v
        self.features = nn.Sequential(*layers)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise ValueError(f"cannot read VGG weights {weights}: {str(err).splitlines()[0]}") from err
        if not isinstance(state, dict):
            raise ValueError(f"{weights} holds a {type(state).__name__}, not a torchvision vgg19 state dict")
        # torchvision's stack goes on to relu5_4; keep the layers this one has
        own = self.features.state_dict()
        state = {k.removeprefix("features."): v for k, v in state.items() if isinstance(k, str)}
        state = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(state))
        if missing:
            raise ValueError(
                f"{weights} lacks VGG19 feature weights {missing[:4]}{'...' if len(missing) > 4 else ''}; "
                "expected a torchvision vgg19 state dict ('features.N.weight' / 'features.N.bias' keys)"
            )
        try:
            self.features.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{weights} does not hold torchvision VGG19 feature weights: {err}") from err
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG_TAPS:
                taps.append(x)
        return taps


def perceptual_loss(pred: torch.Tensor, gt: torch.Tensor, vgg: VGGFeatures) -> torch.Tensor:
    """Sum of L1 distances between VGG19 feature maps."""
    return sum(F.l1_loss(a, b) for a, b in zip(vgg(pred), vgg(gt)))


def parse_weights(spec: str | dict[str, float]) -> dict[str, float]:
    """``"l1=1,kd=0.5"`` or a dict -> ``{"l1": 1.0, "kd": 0.5}``, zero weights dropped. The one validation of loss
    weights: the training loop and the app's loss sliders both go through it.

    Raises:
        ValueError: an unknown name, a malformed or negative/non-finite weight, or no positive weight at all.
    """
    if isinstance(spec, dict):
        weights = {k: float(v) for k, v in spec.items()}
    else:
        weights = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            try:
                weights[name.strip()] = float(value) if sep else 1.0
            except ValueError as err:
                raise ValueError(f"bad loss weight {part!r}; expected name=number") from err
    unknown = set(weights) - set(LOSS_NAMES)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; known: {', '.join(LOSS_NAMES)}")
    bad = {k: v for k, v in weights.items() if not (math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"loss weights must be finite and non-negative, got {bad}; use weights >= 0 (0 drops a term)")
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"at least one loss weight must be positive, got {weights}")
    return {k: v for k, v in weights.items() if v != 0}


class LossMix(nn.Module):
    """Weighted named loss terms. Holds the 1x1 feature adapter (trainable) and the frozen VGG when used.

    Args:
        weights: ``name -> weight`` (see :func:`parse_weights`).
        student_channels, teacher_channels: feature widths, needed for ``feat``.
        vgg_weights: path to torchvision VGG19 weights, needed for ``vgg``.
    """

    def __init__(
        self,
        weights: dict[str, float],
        student_channels: int | None = None,
        teacher_channels: int | None = None,
        vgg_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.weights = parse_weights(weights)
        self.adapter = None
        if "feat" in self.weights:
            if student_channels is None or teacher_channels is None:
                raise ValueError("feature distillation needs student_channels and teacher_channels")
            self.adapter = nn.Conv2d(student_channels, teacher_channels, 1)
        self.vgg = VGGFeatures(vgg_weights) if "vgg" in self.weights else None

    @property
    def needs_teacher(self) -> bool:
        return any(k in TEACHER_LOSSES for k in self.weights)

    def forward(
        self,
        pred: torch.Tensor,
        gt: torch.Tensor,
        teacher_pred: torch.Tensor | None = None,
        student_feats: torch.Tensor | None = None,
        teacher_feats: torch.Tensor | None = None,
        lq: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted terms by name (their sum is the training loss). ``lq`` (the model's input) is needed for
        ``noharm`` and ``kd_rel`` only.

        Raises:
            ValueError: a teacher term without ``teacher_pred``, or ``noharm`` / ``kd_rel`` without ``lq``.
        """
        fns = {
            "l1": lambda: charbonnier(pred, gt),
            "mse": lambda: F.mse_loss(pred, gt),
            "psnr": lambda: psnr_loss(pred, gt),
            "noharm": lambda: noharm_loss(pred, gt, lq),
            "kd": lambda: F.l1_loss(pred, teacher_pred),
            "kd_mse": lambda: F.mse_loss(pred, teacher_pred),
            "kd_psnr": lambda: psnr_loss(pred, teacher_pred),
            "kd_rel": lambda: relative_kd_loss(pred, teacher_pred, lq, gt),
            "feat": lambda: feature_loss(student_feats, teacher_feats, self.adapter),
            "ssim": lambda: ssim_loss(pred.clamp(0, 1), gt),
            "msssim": lambda: msssim_loss(pred.clamp(0, 1), gt),
            "edge": lambda: edge_loss(pred, gt),
            "fft": lambda: fft_loss(pred, gt),
            "vgg": lambda: perceptual_loss(pred, gt, self.vgg),
        }
        if self.needs_teacher and teacher_pred is None:
            raise ValueError(f"loss terms {sorted(set(self.weights) & set(TEACHER_LOSSES))} need a teacher")
        for name in ("noharm", "kd_rel"):
            if name in self.weights and lq is None:
                raise ValueError(f"the {name!r} loss term needs the degraded input (lq)")
        return {name: w * fns[name]() for name, w in self.weights.items()}
