"""Losses: weight parsing, each term at pred == gt and against references, gradients, KD plumbing, VGG loading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sharpkd.losses import (
    LOSS_NAMES,
    LossMix,
    VGGFeatures,
    charbonnier,
    edge_loss,
    feature_loss,
    fft_loss,
    msssim_loss,
    parse_weights,
    perceptual_loss,
    sobel,
    ssim_loss,
)
from sharpkd.metrics import sobel_kernels


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 20, 24, generator=g)
    pred = (gt + 0.1 * torch.randn(2, 3, 20, 24, generator=g)).clamp(0, 1)
    return pred, gt


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-format vgg19 state dict (features.N.* plus classifier keys), random but fixed."""
    torch.manual_seed(0)
    layers, c = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    state = {f"features.{k}": v for k, v in nn.Sequential(*layers).state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier too
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


# -- parse_weights ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("l1=1", {"l1": 1.0}),
        ("l1=1,kd=0.5", {"l1": 1.0, "kd": 0.5}),
        (" l1 = 2 , feat=0.1 ,", {"l1": 2.0, "feat": 0.1}),
        ("l1,edge", {"l1": 1.0, "edge": 1.0}),
        ("l1=1,mse=0", {"l1": 1.0}),
        ({"ssim": 1, "fft": "0.25"}, {"ssim": 1.0, "fft": 0.25}),
    ],
)
def test_parse_weights_good(spec: str | dict, expected: dict[str, float]) -> None:
    assert parse_weights(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("l1=abc", r"bad loss weight 'l1=abc'; expected name=number"),
        ("l2=1", r"unknown loss terms \['l2'\]; known: l1, mse"),
        ("l1=1,perceptual=1", r"unknown loss terms \['perceptual'\]"),
        ("l1=0", "at least one loss weight must be positive"),
        ("", "at least one loss weight must be positive"),
        ("l1=1,kd=-0.5", r"finite and non-negative, got \{'kd': -0.5\}"),
        ("l1=1,kd=nan", "finite and non-negative"),
        ({"l1": float("inf")}, "finite and non-negative"),
    ],
)
def test_parse_weights_bad(spec: str | dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weights(spec)


# -- individual terms ---------------------------------------------------------------------------------------------


def test_terms_vanish_at_pred_equal_gt(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, gt = images
    assert float(charbonnier(gt, gt)) == pytest.approx(1e-3, abs=1e-7)  # sqrt(eps^2) = eps
    assert float(F.mse_loss(gt, gt)) == 0.0
    assert float(edge_loss(gt, gt)) == 0.0
    assert float(fft_loss(gt, gt)) == 0.0
    assert float(ssim_loss(gt, gt)) == pytest.approx(0.0, abs=1e-6)


def test_terms_are_positive_and_finite_for_different_images(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    for fn in (charbonnier, edge_loss, fft_loss, ssim_loss):
        value = fn(pred, gt)
        assert value.ndim == 0 and torch.isfinite(value) and float(value) > 1e-3, fn.__name__


def test_charbonnier_approaches_l1(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    l1 = float((pred - gt).abs().mean())
    assert float(charbonnier(pred, gt)) == pytest.approx(l1, abs=1e-3)
    assert float(charbonnier(pred, gt)) >= l1


def test_sobel_responds_to_a_ramp() -> None:
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 6, 8) / 10  # +0.1 per column
    grads = sobel(ramp)
    assert grads.shape == (1, 4, 6, 8)
    # interior: (1 + 2 + 1) * 0.2 / 8 = 0.1, the change per pixel; replicate border halves it at the edges
    assert torch.allclose(grads[:, 0, :, 1:-1], torch.full((1, 6, 6), 0.1), atol=1e-6)
    assert torch.allclose(grads[:, 0, :, 0], torch.full((1, 6), 0.05), atol=1e-6)
    assert torch.allclose(grads[:, 1], torch.zeros(1, 6, 8), atol=1e-7)  # no vertical change


def test_sobel_uses_the_metrics_kernel() -> None:
    import sharpkd.losses

    x = torch.rand(2, 3, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    k = sobel_kernels(torch.float64)  # (2, 1, 3, 3): one owner of the Sobel taps
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    for c in range(3):
        torch.testing.assert_close(sobel(x)[:, 2 * c : 2 * c + 2], F.conv2d(padded[:, c : c + 1], k))
    assert sobel(x).dtype == torch.float64
    assert not any(name.upper().startswith("_SOBEL") for name in vars(sharpkd.losses))


def test_fft_loss_is_shift_invariant_but_sees_blur(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, gt = images
    shifted = gt.roll(3, dims=-1)  # a circular shift keeps every FFT magnitude
    assert float(fft_loss(shifted, gt)) == pytest.approx(0.0, abs=1e-5)
    blurred = F.avg_pool2d(gt, 3, stride=1, padding=1, count_include_pad=False)
    assert float(fft_loss(blurred, gt)) > 0.01


@pytest.mark.parametrize("name", ["l1", "mse", "psnr", "ssim", "edge", "fft"])
def test_gradients_flow(name: str, images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    pred = pred.clone().requires_grad_(True)
    loss = sum(LossMix({name: 1.0})(pred, gt).values())
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and float(pred.grad.abs().sum()) > 0


def test_charbonnier_gradcheck() -> None:
    pred = torch.rand(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    gt = torch.rand(1, 1, 3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: charbonnier(p, gt), (pred,))
    assert torch.autograd.gradcheck(lambda p: edge_loss(p, gt) + fft_loss(p, gt), (pred,))


def test_feature_loss_resizes_and_adapts() -> None:
    adapter = nn.Conv2d(4, 6, 1)
    student_feats = torch.rand(2, 4, 5, 6, requires_grad=True)
    teacher_feats = torch.rand(2, 6, 20, 24)
    loss = feature_loss(student_feats, teacher_feats, adapter)
    loss.backward()
    assert loss.ndim == 0 and loss.item() > 0
    assert student_feats.grad is not None and adapter.weight.grad is not None
    # with matching sizes and an identity adapter it is plain L1
    eye = nn.Conv2d(6, 6, 1, bias=False)
    with torch.no_grad():
        eye.weight.copy_(torch.eye(6).view(6, 6, 1, 1))
    s = torch.rand(2, 6, 20, 24)
    assert feature_loss(s, teacher_feats, eye).item() == pytest.approx(F.l1_loss(s, teacher_feats).item(), rel=1e-6)
    assert feature_loss(teacher_feats, teacher_feats, eye).item() == 0.0


def test_msssim_works_at_64_and_refuses_16() -> None:
    pytest.importorskip("pytorch_msssim")
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 3, 64, 64, generator=g)
    assert float(msssim_loss(gt, gt)) == pytest.approx(0.0, abs=1e-5)
    noisy = (gt + 0.2 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    assert 0.0 < float(msssim_loss(noisy, gt)) < 1.0
    with pytest.raises(ValueError, match=r"MS-SSIM needs images larger than 32 px, got \(16, 16\)"):
        msssim_loss(gt[..., :16, :16], gt[..., :16, :16])


# -- LossMix ------------------------------------------------------------------------------------------------------


def test_lossmix_weights_terms(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    terms = LossMix({"l1": 2.0, "mse": 0.5, "edge": 1.0})(pred, gt)
    assert set(terms) == {"l1", "mse", "edge"}
    assert float(terms["l1"]) == pytest.approx(2 * float(charbonnier(pred, gt)))
    assert float(terms["mse"]) == pytest.approx(0.5 * float(F.mse_loss(pred, gt)))


def test_lossmix_distillation_terms(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    mix = LossMix("l1=1,kd=1,kd_mse=1,kd_psnr=1,feat=0.1", student_channels=4, teacher_channels=8)
    assert mix.needs_teacher and isinstance(mix.adapter, nn.Conv2d)
    teacher_pred = gt.clone()
    terms = mix(pred, gt, teacher_pred, torch.rand(2, 4, 5, 6), torch.rand(2, 8, 20, 24))
    assert float(terms["kd"]) == pytest.approx(float(F.l1_loss(pred, gt)))
    assert float(terms["kd_mse"]) == pytest.approx(float(F.mse_loss(pred, gt)))
    from sharpkd.losses import psnr_loss

    assert float(terms["kd_psnr"]) == pytest.approx(float(psnr_loss(pred, gt)))
    assert torch.isfinite(terms["feat"]) and terms["feat"].item() > 0


def test_lossmix_kd_without_teacher_raises(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    mix = LossMix("l1=1,kd=0.5")
    with pytest.raises(ValueError, match=r"loss terms \['kd'\] need a teacher"):
        mix(pred, gt)
    with pytest.raises(ValueError, match="feature distillation needs student_channels and teacher_channels"):
        LossMix("feat=1")
    assert not LossMix("l1=1").needs_teacher


def test_vgg_without_weights_says_how_to_supply_them() -> None:
    with pytest.raises(ValueError, match=r"pass vgg_weights=<path to a torchvision-format vgg19"):
        LossMix("l1=1,vgg=0.1")


def test_vgg_features_load_torchvision_format(vgg_weights: Path) -> None:
    vgg = VGGFeatures(vgg_weights)
    state = torch.load(vgg_weights, weights_only=True)
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    assert torch.equal(vgg.features[25].bias, state["features.25.bias"])
    assert not any(p.requires_grad for p in vgg.parameters())
    taps = vgg(torch.rand(1, 3, 32, 32))
    assert [tuple(t.shape) for t in taps] == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4)]
    gt = torch.rand(1, 3, 32, 32)
    pred = gt.clone().requires_grad_(True)
    assert perceptual_loss(pred, gt, vgg).item() == 0.0
    mix = LossMix("vgg=1", vgg_weights=vgg_weights)
    value = mix((gt + 0.1).clamp(0, 1).requires_grad_(True), gt)["vgg"]
    assert value.item() > 0
    assert all(not p.requires_grad for p in mix.parameters())  # frozen: nothing for the optimizer


def test_vgg_features_reject_bad_files(tmp_path: Path, vgg_weights: Path) -> None:
    partial = torch.load(vgg_weights, weights_only=True)
    del partial["features.10.weight"]
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"lacks VGG19 feature weights \['10.weight'\]"):
        VGGFeatures(tmp_path / "partial.pth")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="lacks VGG19 feature weights"):
        VGGFeatures(tmp_path / "other.pth")
    wrong = dict(torch.load(vgg_weights, weights_only=True))
    wrong["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="does not hold torchvision VGG19 feature weights"):
        VGGFeatures(tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read VGG weights"):
        VGGFeatures(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="cannot read VGG weights"):
        VGGFeatures(tmp_path / "missing.pth")


def test_every_loss_name_is_documented() -> None:
    import sharpkd.losses as mod

    for name in LOSS_NAMES:
        assert f"``{name}``" in mod.__doc__


def test_psnr_loss_is_minus_mean_per_image_psnr() -> None:
    from sharpkd.losses import psnr_loss
    from sharpkd.metrics import psnr

    torch.manual_seed(0)
    gt = torch.rand(3, 3, 16, 16)
    pred = (gt + torch.randn_like(gt) * torch.tensor([0.01, 0.05, 0.2])[:, None, None, None]).clamp(0, 1)
    per_image = [float(psnr(pred[i : i + 1], gt[i : i + 1])) for i in range(3)]
    assert float(psnr_loss(pred, gt)) == pytest.approx(-sum(per_image) / 3, abs=1e-3)
    # each image counts by its relative error: halving the worst image's error moves the loss by the same ~3 dB / 3
    # as halving the best one's, where a batch MSE would hardly notice the best one
    better = pred.clone()
    better[0] = gt[0] + (pred[0] - gt[0]) / 2**0.5
    assert float(psnr_loss(pred, gt) - psnr_loss(better, gt)) == pytest.approx(1.0, abs=0.02)


def test_noharm_counts_only_samples_made_worse_than_their_input() -> None:
    from sharpkd.losses import noharm_loss
    from sharpkd.metrics import psnr

    torch.manual_seed(0)
    gt = torch.rand(2, 3, 16, 16)
    lq = (gt + 0.05 * torch.randn_like(gt)).clamp(0, 1)
    pred = lq.clone()
    pred[0] = gt[0] + (lq[0] - gt[0]) / 2  # sample 0 improved: contributes nothing
    pred[1] = (gt[1] + 2 * (lq[1] - gt[1])).clamp(0, 1)  # sample 1 made worse
    lost = float(psnr(lq[1:], gt[1:]) - psnr(pred[1:], gt[1:]))
    assert lost > 0
    assert float(noharm_loss(pred, gt, lq)) == pytest.approx(lost / 2, abs=1e-3)  # mean over the batch of 2
    assert float(noharm_loss(lq, gt, lq)) == 0.0  # the identity does no harm
    # the gradient reaches only the damaged sample
    pred = pred.clone().requires_grad_(True)
    noharm_loss(pred, gt, lq).backward()
    assert pred.grad[0].abs().sum() == 0 and pred.grad[1].abs().sum() > 0


def test_lossmix_noharm_needs_the_input(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    mix = LossMix("psnr=1,noharm=2")
    with pytest.raises(ValueError, match="'noharm' loss term needs the degraded input"):
        mix(pred, gt)
    terms = mix(pred, gt, lq=pred)  # the prediction equals the input: no harm done
    assert float(terms["noharm"]) == 0.0 and set(terms) == {"psnr", "noharm"}


def test_relative_kd_weights_each_sample_by_its_input_error() -> None:
    from sharpkd.losses import relative_kd_loss

    torch.manual_seed(0)
    gt = torch.rand(2, 3, 16, 16)
    lq = gt.clone()
    lq[0] += 0.01 * torch.randn_like(gt[0])  # a mild sample
    lq[1] += 0.1 * torch.randn_like(gt[1])  # a badly damaged one
    teacher = gt.clone()
    assert float(relative_kd_loss(teacher, teacher, lq, gt)) == 0.0
    # at the identity each sample contributes 10/ln10 * mse(lq, teacher)/mse(lq, gt) = 10/ln10 here, whatever its error
    loss = relative_kd_loss(lq, teacher, lq, gt)
    assert float(loss) == pytest.approx(10 / math.log(10), rel=2e-2)  # eps=1e-6 against mse 1e-4
    # kd_psnr's per-sample gradient is ~100x larger on the mild sample; this term's is the same order on both
    pred = lq.clone().requires_grad_(True)
    relative_kd_loss(pred, teacher, lq, gt).backward()
    g0, g1 = pred.grad[0].abs().mean(), pred.grad[1].abs().mean()
    assert 0.05 < float(g0 / g1) < 20


def test_lossmix_relative_kd_needs_teacher_and_input(images: tuple[torch.Tensor, torch.Tensor]) -> None:
    pred, gt = images
    mix = LossMix("psnr=1,kd_rel=0.5")
    assert mix.needs_teacher
    with pytest.raises(ValueError, match="need a teacher"):
        mix(pred, gt, lq=pred)
    with pytest.raises(ValueError, match="'kd_rel' loss term needs the degraded input"):
        mix(pred, gt, gt)
    terms = mix(pred, gt, gt, lq=pred)
    assert float(terms["kd_rel"]) > 0
