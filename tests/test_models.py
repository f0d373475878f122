"""Model zoo: every preset runs forward and backward at odd sizes, overfits a batch, and has the size it claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from sharpkd.degrade import degrade
from sharpkd.models import (
    Student,
    StudentConfig,
    Teacher,
    build_model,
    count_parameters,
    list_models,
    model_config,
    model_from_config,
)
from sharpkd.models.blocks import LayerNorm2d, pad_to_multiple, rgb_to_luma

# Small versions of each preset: width 4-8 and shallow, so a forward + backward takes milliseconds.
SMALL = {
    "nafnet": dict(width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1),
    "unet": dict(width=8, enc_blocks=(1,), dec_blocks=(1,)),
    "rescnn": dict(width=8, middle_blocks=2),
    "conv4": dict(width=8),
    "resattn": dict(width=8, num_blocks=2),
    "sepunet": dict(width=4),
    "rt": dict(width=8),
    "rtrep": dict(width=8),
    "rtrep4": dict(width=8),
}


def _small(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name])
    # NAFNet zero-initialises its branch scales, which would make every block an identity and hide bugs
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(("beta", "gamma")):
                p.normal_(0.0, 0.5)
    return model


def test_registry_lists_every_preset_by_kind() -> None:
    assert set(list_models()) == set(SMALL)
    assert list_models("teacher") == ["nafnet", "rescnn", "unet"]
    assert list_models("student") == ["conv4", "resattn", "rt", "rtrep", "rtrep4", "sepunet"]


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 3, 8, 8), (1, 3, 5, 3)])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_keeps_shape(name: str, shape: tuple[int, ...]) -> None:
    model = _small(name).train()
    x = torch.rand(shape, requires_grad=True)
    pred, feats = model(x, return_features=True)
    assert pred.shape == x.shape
    assert feats.shape[:2] == (shape[0], model.feature_channels)
    assert torch.isfinite(pred).all() and torch.isfinite(feats).all()
    (pred.square().mean() + feats.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.equal(model(x), pred)  # return_features does not change the prediction


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 2), (3, 5)])
def test_tiny_images_in_eval_mode(name: str, size: tuple[int, int]) -> None:
    model = _small(name).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        pred = model(x)
    assert pred.shape == x.shape and torch.isfinite(pred).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_eval_output_is_batch_independent(name: str) -> None:
    model = _small(name).eval()
    x = torch.rand(3, 3, 13, 11)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_build_model_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'tiny'; known: conv4, nafnet, .*sepunet, unet"):
        build_model("tiny")


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("rt", dict(depth=3), "bad overrides for 'rt'"),
        ("conv4", dict(act="swish"), "unknown activation 'swish'"),
        ("resattn", dict(norm="group"), "unknown norm 'group'"),
        ("sepunet", dict(output="tanh"), "output must be 'residual' or 'sigmoid'"),
        ("rt", dict(output="sigmoid"), "luma mode predicts a residual"),
        ("nafnet", dict(enc_blocks=(1,), dec_blocks=(1, 1)), "need the same length"),
    ],
)
def test_build_model_bad_overrides(name: str, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, **overrides)


def test_parameter_counts_at_default_config() -> None:
    counts = {name: count_parameters(build_model(name)) for name in list_models()}
    assert 15_000 <= counts["sepunet"] <= 25_000  # "about 20K parameters"
    assert counts["conv4"] < counts["rt"] < counts["resattn"]  # rt spends its parameters at 1/4 resolution
    assert counts["rt"] < 15_000
    assert min(counts[n] for n in list_models("teacher")) > 2 * max(counts[n] for n in list_models("student"))


def _macs_per_pixel(model: nn.Module, H: int = 64, W: int = 64) -> float:
    macs = 0

    def hook(mod: nn.Conv2d, inputs, output) -> None:
        nonlocal macs
        kh, kw = mod.kernel_size
        macs += output.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.rand(1, 3, H, W))
    for h in handles:
        h.remove()
    return macs / (H * W)


def test_rt_budget_is_576_macs_per_pixel() -> None:
    model = build_model("rt")
    assert model.stride == 4
    # 4 convs of 16 -> 16 channels, 3x3, at 1/16 of the pixels: 4 * 16 * 16 * 9 / 16
    assert _macs_per_pixel(model) == pytest.approx(576.0)
    assert _macs_per_pixel(build_model("conv4")) > 9 * 576  # the full-resolution 4-conv student: 5472 MAC/px
    from sharpkd.models.blocks import reparameterize

    # trained with extra branches, rtrep runs as exactly rt's convs once merged
    assert _macs_per_pixel(reparameterize(build_model("rtrep").eval())) == pytest.approx(576.0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_config_round_trip(name: str) -> None:
    model = _small(name)
    info = model_config(model)
    # as stored in a checkpoint: tuples become lists in JSON
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in info["config"].items()}
    rebuilt = model_from_config(info["kind"], config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 9, 10)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_model_from_config_rejects_unknown_kind_and_fields() -> None:
    with pytest.raises(ValueError, match="unknown model kind 'critic'"):
        model_from_config("critic", {})
    with pytest.raises(ValueError, match=r"unknown student config fields \['colour'\]"):
        model_from_config("student", {"colour": 1})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_tiny_model_overfits_one_batch(name: str, photo: np.ndarray) -> None:
    gt = torch.from_numpy(photo[8:24, 8:24].copy()).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, 16, 16)
    lq = degrade(gt, "gauss1.5")
    input_loss = float((lq - gt).abs().mean())
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = (model(lq) - gt).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], f"{name}: {losses[0]:.4f} -> {losses[-1]:.4f}"
    assert losses[-1] < input_loss, f"{name} does not beat the identity: {losses[-1]:.4f} vs {input_loss:.4f}"


def test_rgb_to_luma_matches_opencv_exactly() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    img[0, :4] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [227, 146, 166]]  # the last is 172.499: a near tie
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    luma = rgb_to_luma(x, quantize=True)
    assert luma.shape == (1, 1, 37, 53)
    assert np.array_equal((luma[0, 0] * 255).round().to(torch.uint8).numpy(), ref)
    # every (R, G) pair with a few blues: 262k colours, all exact
    rg = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), axis=-1)
    cube = np.concatenate([np.dstack([rg, np.full((256, 256, 1), b)]) for b in (0, 77, 166, 255)]).astype(np.uint8)
    x = torch.from_numpy(cube).permute(2, 0, 1)[None].float() / 255.0
    got = (rgb_to_luma(x)[0, 0] * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(got, cv2.cvtColor(cube, cv2.COLOR_RGB2GRAY))
    # gray pixels keep their value; unquantized luma is BT.601
    assert float(rgb_to_luma(torch.full((1, 3, 1, 1), 0.5), quantize=False)) == pytest.approx(0.5, abs=1e-6)
    assert float(rgb_to_luma(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1), quantize=False)) == pytest.approx(
        0.299, abs=1e-3
    )


def test_luma_student_adds_the_same_residual_to_rgb() -> None:
    model = _small("rt").eval()
    with torch.no_grad():
        model.tail.bias.fill_(0.05)  # a non-zero residual even if the learned part is small
        x = torch.rand(2, 3, 12, 20)
        pred = model(x)
    r = pred - x
    assert float(r.abs().max()) > 1e-3
    assert torch.allclose(r[:, 0], r[:, 1], atol=1e-6) and torch.allclose(r[:, 1], r[:, 2], atol=1e-6)
    # chroma (differences between channels) is unchanged
    assert torch.allclose(pred[:, 0] - pred[:, 1], x[:, 0] - x[:, 1], atol=1e-6)
    # the residual is a function of luma only: same luma, different colour -> same residual
    gray = rgb_to_luma(x).expand(-1, 3, -1, -1)
    with torch.no_grad():
        assert torch.allclose(model(gray) - gray, r, atol=1e-6)


def test_sigmoid_output_stays_in_range() -> None:
    model = _small("sepunet").eval()
    with torch.no_grad():
        model.tail.bias.fill_(5.0)
        pred = model(torch.rand(1, 3, 16, 16))
    assert 0.0 <= float(pred.min()) and float(pred.max()) <= 1.0
    assert float(pred.mean()) > 0.9


def test_teacher_and_student_strides() -> None:
    assert build_model("nafnet").stride == 8
    assert build_model("rescnn").stride == 1
    assert build_model("sepunet").stride == 4
    assert isinstance(build_model("unet"), Teacher) and isinstance(build_model("rt"), Student)
    assert Student(StudentConfig()).stride == 1


@pytest.mark.parametrize("size", [(5, 7), (8, 8), (1, 1), (3, 9)])
def test_pad_to_multiple(size: tuple[int, int]) -> None:
    x = torch.rand(1, 2, *size)
    z, hw = pad_to_multiple(x, 4)
    assert hw == size
    assert z.shape[-2] % 4 == 0 and z.shape[-1] % 4 == 0
    assert z.shape[-2] - size[0] < 4 and z.shape[-1] - size[1] < 4
    assert torch.equal(z[..., : size[0], : size[1]], x)
    z, _ = pad_to_multiple(x, 4, min_size=8)
    assert z.shape[-2:] == (max(8, z.shape[-2]), max(8, z.shape[-1])) and z.shape[-2] % 4 == 0
    assert z.shape[-2] == max(8, -(-size[0] // 4) * 4) and z.shape[-1] == max(8, -(-size[1] // 4) * 4)
    assert torch.equal(z[..., : size[0], : size[1]], x)


def test_instance_norm_student_pads_tiny_inputs() -> None:
    model = build_model("resattn", width=8, num_blocks=1)
    assert model.min_size == 2 and build_model("conv4").min_size == 1
    x = torch.rand(1, 3, 1, 1)
    pred = model.train()(x)  # train mode is where InstanceNorm refuses a single value
    assert pred.shape == x.shape and torch.isfinite(pred).all()


def test_layernorm2d_matches_layer_norm_over_channels() -> None:
    norm = LayerNorm2d(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 3, 4)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (5,), norm.weight, norm.bias, eps=1e-6)
    assert torch.allclose(norm(x), ref.permute(0, 3, 1, 2), atol=1e-5)


def _branch_sum(r, x: torch.Tensor) -> torch.Tensor:
    """A RepConv's branches run one by one (the definition its merged kernel must reproduce)."""
    import torch.nn.functional as F

    c_out, c_in = r.k3.shape[:2]
    y = F.conv2d(x, r.k3, r.bias, padding=1) + F.conv2d(x, r.k1)
    y = y + F.conv2d(F.conv2d(x, r.expand_in[:, :, None, None]), r.expand_out, padding=1)
    for f in range(3):
        mixed = F.conv2d(x, r.edge_mix[f][:, :, None, None])
        edge = F.conv2d(mixed, r.edge_filters[f].expand(c_out, 1, 3, 3), padding=1, groups=c_out)
        y = y + r.edge_scale[f][None, :, None, None] * edge
    return y + x if r.identity.any() else y


@pytest.mark.parametrize(("c_in", "c_out"), [(4, 4), (3, 5)])
def test_repconv_merged_kernel_equals_its_branches(c_in: int, c_out: int) -> None:
    from sharpkd.models.blocks import RepConv

    torch.manual_seed(0)
    r = RepConv(c_in, c_out).double()
    with torch.no_grad():
        for p in r.parameters():
            p.normal_()
    x = torch.rand(2, c_in, 9, 11, dtype=torch.float64)
    assert torch.allclose(r(x), _branch_sum(r, x), atol=1e-10)
    fused = r.fuse()
    assert isinstance(fused, torch.nn.Conv2d) and torch.allclose(fused(x), r(x), atol=1e-10)


def test_repconv_gradients_reach_every_branch() -> None:
    from sharpkd.models.blocks import RepConv

    torch.manual_seed(0)
    r = RepConv(4, 4)
    r(torch.rand(1, 4, 8, 8)).square().sum().backward()
    for name, p in r.named_parameters():
        # the two halves of each two-factor branch start with one factor at zero, so the other gets no gradient yet
        if name not in ("expand_in", "edge_mix"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rep_student_starts_as_identity_and_reparameterizes_exactly() -> None:
    from sharpkd.models.blocks import RepConv, reparameterize

    torch.manual_seed(0)
    model = build_model("rt", width=8, rep=True).eval()
    x = torch.rand(1, 3, 20, 28)
    assert torch.equal(model(x), x)  # zero-initialised head: a fresh student changes nothing
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    fused = reparameterize(model)
    assert not any(isinstance(m, RepConv) for m in fused.modules())
    assert any(isinstance(m, RepConv) for m in model.modules())  # the original is left alone
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-5)
    plain = build_model("rt", width=8)
    assert reparameterize(plain) is plain


def test_rep_needs_a_plain_conv_stack() -> None:
    with pytest.raises(ValueError, match="rep=True"):
        build_model("sepunet", width=4, rep=True)
