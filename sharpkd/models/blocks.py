"""Shared building blocks for teachers and students. The only home for layers: variants differ by arguments.

All blocks map ``(B, C, H, W) -> (B, C, H, W)`` unless their docstring says otherwise.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` map (NAFNet's norm)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """NAFNet's gate: split channels in two halves and multiply them. ``(B, 2C, H, W) -> (B, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class ChannelAttention(nn.Module):
    """Channel attention: global average pool, then a gate per channel.

    ``reduction=None`` gives NAFNet's simplified channel attention (one 1x1 conv, no activation);
    an integer gives squeeze-and-excitation (1x1 down, ReLU, 1x1 up, sigmoid).
    """

    def __init__(self, channels: int, reduction: int | None = None) -> None:
        super().__init__()
        if reduction is None:
            self.gate = nn.Conv2d(channels, channels, 1)
        else:
            hidden = max(1, channels // reduction)
            self.gate = nn.Sequential(
                nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(F.adaptive_avg_pool2d(x, 1))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a sigmoid map from channel-wise mean and max."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return x * torch.sigmoid(self.conv(stats))


# Fixed 3x3 edge filters of the re-parameterizable conv's edge branch (ECBSR, Zhang et al. 2021): Sobel x, Sobel y,
# Laplacian. Each is applied after a learned 1x1 mix of the input channels, with a learned per-output scale.
_EDGE_FILTERS = torch.tensor(
    [
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
        [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]],
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
    ]
)


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to per-output-channel symmetric int8 (scale ``max|w| / 127`` per channel), as the int8 backend
    quantizes conv weights; the gradient passes straight through (quantization-aware training, see
    :mod:`sharpkd.models.quant`).

    Shape:
        ``(C_out, ...) -> (C_out, ...)``.
    """
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / 127  # (C_out,)
    scale = scale.view(-1, *([1] * (w.dim() - 1)))
    q = (w / scale).round().clamp(-127, 127) * scale
    return w + (q - w).detach()


class RepConv(nn.Module):
    """A 3x3 conv trained as a sum of branches and run as one plain 3x3 conv (structural re-parameterization).

    Branches (RepVGG, Ding et al. 2021; ECBSR, Zhang et al. 2021): a 3x3 conv, a 1x1 conv, a 1x1 expansion to
    ``expand * c_out`` channels followed by a 3x3 conv, Sobel-x/Sobel-y/Laplacian filters after 1x1 channel mixes,
    and the identity (``identity=None``: when ``c_in == c_out``). Every branch is linear and bias-free except the
    3x3, and all use zero padding, so their sum is exactly one 3x3 conv. :meth:`kernel` computes it and ``forward``
    runs only that conv, in training too: the gradient reaching each branch is what it would be with the branches run
    separately, and what the extra parameters change is how the optimizer moves the merged kernel. Export replaces
    the block by :meth:`fuse` (see :func:`reparameterize`), so deployed graphs hold plain convs.

    Shape:
        ``(B, c_in, H, W) -> (B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, expand: int = 2, identity: bool | None = None) -> None:
        super().__init__()
        identity = c_in == c_out if identity is None else identity
        if identity and c_in != c_out:
            raise ValueError(f"an identity branch needs c_in == c_out, got {c_in} and {c_out}")
        ref = nn.Conv2d(c_in, c_out, 3, padding=1)  # borrow PyTorch's default init for the main branch
        self.k3 = nn.Parameter(ref.weight.detach().clone())  # (c_out, c_in, 3, 3)
        self.bias = nn.Parameter(ref.bias.detach().clone())  # (c_out,)
        self.k1 = nn.Parameter(torch.zeros(c_out, c_in, 1, 1))
        self.expand_in = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(expand * c_out, c_in), a=5**0.5))
        self.expand_out = nn.Parameter(torch.zeros(c_out, expand * c_out, 3, 3))
        self.edge_mix = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(3, c_out, c_in), a=5**0.5))
        self.edge_scale = nn.Parameter(torch.zeros(3, c_out))
        self.register_buffer("edge_filters", _EDGE_FILTERS.clone(), persistent=False)
        eye = torch.zeros(c_out, c_in, 3, 3)
        if identity:
            eye[torch.arange(c_out), torch.arange(c_in), 1, 1] = 1.0
        self.register_buffer("identity", eye, persistent=False)

    def kernel(self) -> torch.Tensor:
        """The merged ``(c_out, c_in, 3, 3)`` kernel (the bias is :attr:`bias`)."""
        k = self.k3 + F.pad(self.k1, (1, 1, 1, 1)) + self.identity
        k = k + torch.einsum("omhw,mi->oihw", self.expand_out, self.expand_in)
        return k + torch.einsum("fo,foi,fhw->oihw", self.edge_scale, self.edge_mix, self.edge_filters)

    def zero_(self) -> RepConv:
        """Make the merged conv output exactly zero (for a residual head without identity branch)."""
        assert not self.identity.any(), "a conv with an identity branch cannot output zero"
        with torch.no_grad():
            for p in (self.k3, self.bias, self.k1, self.expand_out, self.edge_scale):
                p.zero_()
        return self

    def fuse(self) -> nn.Conv2d:
        """The plain ``nn.Conv2d`` this block computes (for export: tracers need a kernel of known shape)."""
        c_out, c_in = self.k3.shape[:2]
        out = nn.Conv2d(c_in, c_out, 3, padding=1).to(self.k3)  # same device and dtype
        with torch.no_grad():
            out.weight.copy_(self.kernel())
            out.bias.copy_(self.bias)
        return out

    quant_weights = False  # round the merged kernel to int8 in forward (quantization-aware training, see models.quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel()
        if self.quant_weights:
            k = fake_quant_weight(k)
        return F.conv2d(x, k, self.bias, padding=1)


def reparameterize(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every :class:`RepConv` replaced by the plain conv it computes; the
    model itself is returned unchanged when it has none."""
    if not any(isinstance(m, RepConv) for m in model.modules()):
        return model
    fused = copy.deepcopy(model).eval()
    for parent in list(fused.modules()):
        for name, child in parent.named_children():
            if isinstance(child, RepConv):
                setattr(parent, name, child.fuse())
    return fused


def conv(
    c_in: int,
    c_out: int,
    kernel_size: int = 3,
    *,
    separable: bool = False,
    dilation: int = 1,
    rep: bool = False,
) -> nn.Module:
    """A same-padded conv; ``separable=True`` gives depthwise ``k x k`` then pointwise ``1 x 1``; ``rep=True`` a
    :class:`RepConv` (3x3, undilated, not separable)."""
    if rep:
        if kernel_size != 3 or dilation != 1 or separable:
            raise ValueError(f"rep convs are plain 3x3: got kernel {kernel_size}, dilation {dilation}, separable")
        return RepConv(c_in, c_out)
    pad = dilation * (kernel_size // 2)
    if not separable or kernel_size == 1:
        return nn.Conv2d(c_in, c_out, kernel_size, padding=pad, dilation=dilation)
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, kernel_size, padding=pad, dilation=dilation, groups=c_in), nn.Conv2d(c_in, c_out, 1)
    )


_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leakyrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
    "gelu": nn.GELU,
}


def make_act(name: str) -> nn.Module:
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTS)}")
    return _ACTS[name]()


def make_norm(name: str | None, channels: int) -> nn.Module:
    if name is None or name == "none":
        return nn.Identity()
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "layer":
        return LayerNorm2d(channels)
    if name == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {name!r}; known: none, instance, layer, batch")


class NAFBlock(nn.Module):
    """The NAFNet block (Chen et al. 2022): LayerNorm, 1x1 expand, depthwise 3x3, SimpleGate, simplified channel
    attention, 1x1, then a gated FFN; both branches scaled by zero-initialized ``beta``/``gamma``."""

    def __init__(self, channels: int, expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        c, dw = channels, channels * expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.gate = SimpleGate()
        self.sca = ChannelAttention(dw // 2)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, c * ffn_expand, 1)
        self.conv5 = nn.Conv2d(c * ffn_expand // 2, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.conv2(self.conv1(self.norm1(x))))  # (B, dw/2, H, W)
        y = self.conv3(self.sca(y))
        x = x + self.beta * y
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + self.gamma * y


class ResBlock(nn.Module):
    """Two convs with an activation, optional norm and attention, and an optional identity skip.

    One block serves the plain U-Net (``residual=False``), the residual CNN, the attention student
    (``act="leakyrelu", norm="instance", attention="cbam"``) and the separable U-Net (``separable=True``).
    """

    def __init__(
        self,
        channels: int,
        act: str = "relu",
        norm: str | None = None,
        attention: str | None = None,
        residual: bool = True,
        separable: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        c = channels
        self.body = nn.Sequential(
            conv(c, c, 3, separable=separable, dilation=dilation),
            make_norm(norm, c),
            make_act(act),
            conv(c, c, 3, separable=separable, dilation=dilation),
            make_norm(norm, c),
        )
        if attention is None or attention == "none":
            self.attn: nn.Module = nn.Identity()
        elif attention == "cbam":
            self.attn = nn.Sequential(ChannelAttention(c, reduction=4), SpatialAttention())
        elif attention == "channel":
            self.attn = ChannelAttention(c, reduction=4)
        else:
            raise ValueError(f"unknown attention {attention!r}; known: none, channel, cbam")
        self.residual = residual
        self.out_act = make_act(act) if not residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.body(x))
        return x + y if self.residual else self.out_act(y)


def make_block(kind: str, channels: int, **kw) -> nn.Module:
    """Build one block by name: ``"naf"`` (:class:`NAFBlock`), ``"res"`` (:class:`ResBlock`, ``kw`` passed on) or
    ``"conv"`` (one 3x3 conv and an activation, ``act``/``separable``/``dilation``/``rep`` from ``kw``)."""
    if kind == "naf":
        return NAFBlock(channels)
    if kind == "res":
        return ResBlock(channels, **kw)
    if kind == "conv":
        c = conv(
            channels,
            channels,
            3,
            separable=kw.get("separable", False),
            dilation=kw.get("dilation", 1),
            rep=kw.get("rep", False),
        )
        return nn.Sequential(c, make_act(kw.get("act", "relu")))
    raise ValueError(f"unknown block {kind!r}; known: naf, res, conv")


class Downsample(nn.Module):
    """Strided 2x2 conv doubling channels. ``(B, C, H, W) -> (B, 2C, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """1x1 conv then pixel shuffle halving channels. ``(B, C, H, W) -> (B, C/2, 2H, 2W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class UNetBody(nn.Module):
    """Encoder-decoder over feature maps: ``len(enc_blocks)`` levels, each halving resolution and doubling channels.

    Skips are added (NAFNet) or concatenated and fused by a 1x1 conv (classic U-Net). With no levels it is a plain
    stack of ``middle_blocks`` blocks. ``middle_dilations`` (one per middle block) widens the bottleneck's view.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``, H and W divisible by ``2 ** len(enc_blocks)``.
    """

    def __init__(
        self,
        width: int,
        enc_blocks: tuple[int, ...],
        middle_blocks: int,
        dec_blocks: tuple[int, ...],
        block: str = "naf",
        skip: str = "add",
        middle_dilations: tuple[int, ...] = (),
        **block_kw,
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(f"enc_blocks and dec_blocks need the same length, got {enc_blocks} and {dec_blocks}")
        if skip not in ("add", "concat"):
            raise ValueError(f"skip must be 'add' or 'concat', got {skip!r}")
        self.skip = skip
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[make_block(block, c, **block_kw) for _ in range(n)]))
            self.downs.append(Downsample(c))
            c *= 2
        mids = []
        for i in range(middle_blocks):
            kw = dict(block_kw)
            if middle_dilations:
                kw["dilation"] = middle_dilations[i % len(middle_dilations)]
            mids.append(make_block(block, c, **kw))
        self.middle = nn.Sequential(*mids)
        self.ups, self.fuses, self.decoders = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(Upsample(c))
            c //= 2
            self.fuses.append(nn.Conv2d(2 * c, c, 1) if skip == "concat" else nn.Identity())
            self.decoders.append(nn.Sequential(*[make_block(block, c, **block_kw) for _ in range(n)]))
        self.stride = 2 ** len(enc_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            x = enc(x)
            skips.append(x)
            x = down(x)  # (B, 2C, H/2, W/2)
        x = self.middle(x)
        for up, fuse, dec, s in zip(self.ups, self.fuses, self.decoders, reversed(skips)):
            x = up(x)  # (B, C/2, 2H, 2W)
            x = x + s if self.skip == "add" else fuse(torch.cat([x, s], dim=1))
            x = dec(x)
        return x


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad H and W up to a multiple of ``multiple`` and at least ``min_size``; returns the padded map and the
    original (H, W)."""
    H, W = x.shape[-2:]
    ph, pw = (
        (-max(H, min_size)) % multiple + max(0, min_size - H),
        (-max(W, min_size)) % multiple + max(0, min_size - W),
    )
    if ph or pw:
        mode = "reflect" if ph < H and pw < W else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (H, W)


# BT.601 luma in OpenCV's fixed point (cv2.COLOR_RGB2GRAY) on 0-255 values: OpenCV 4.x computes
# (4899 R + 9617 G + 1868 B + 2^13) >> 14, OpenCV 5.x (9798 R + 19235 G + 3735 B + 2^14) >> 15; they differ by one
# level on ~0.3 % of colours, so the coefficients follow the installed OpenCV (14-bit when it is missing).
LUMA_FIXED: dict[int, tuple[float, float, float]] = {14: (4899.0, 9617.0, 1868.0), 15: (9798.0, 19235.0, 3735.0)}


@functools.lru_cache(maxsize=1)
@functools.cache
def opencv_luma_bits() -> int:
    """The fixed-point precision (14 or 15 bits) of the installed OpenCV's ``RGB2GRAY``, found by one probe pixel."""
    try:
        import cv2
    except ImportError:
        return 14
    probe = np.array([[[227, 146, 166]]], dtype=np.uint8)  # luma 172.499: 173 with 14 bits, 172 with 15 bits
    return 15 if int(cv2.cvtColor(probe, cv2.COLOR_RGB2GRAY)[0, 0]) == 172 else 14


def rgb_to_luma(x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """BT.601 luma of RGB in [0, 1]. With ``quantize`` it reproduces ``cv2.cvtColor(RGB2GRAY)`` on uint8 exactly,
    which lets the fast path compute luma in OpenCV with the eager model as the reference.

    Shape:
        ``(B, 3, H, W) -> (B, 1, H, W)``.
    """
    bits = opencv_luma_bits()
    cr, cg, cb = LUMA_FIXED[bits]
    rgb = x * 255.0
    if quantize:
        rgb = torch.round(rgb)  # uint8 input values exactly, so the integer arithmetic below is exact in float32
    y = cr * rgb[:, 0:1] + cg * rgb[:, 1:2] + cb * rgb[:, 2:3]
    if quantize:
        return torch.floor((y + float(1 << (bits - 1))) / float(1 << bits)) / 255.0
    return y / (float(1 << bits) * 255.0)
