"""Student networks: small, fast restorers distilled from a teacher, one skeleton configured by :class:`StudentConfig`.

The skeleton is: optional luma extraction, optional pixel-unshuffle (space-to-depth) so the learned computation
runs at reduced resolution, an intro conv, a body (a plain stack or a small U-Net of shared blocks), an optional
refinement conv, a tail conv, pixel-shuffle back, and an output that is either ``input + residual`` or
``sigmoid(logit(input) + residual)``. Presets live in :mod:`sharpkd.models`.

In luma mode the residual is predicted for luma only and added to R, G and B alike: that changes luma by exactly the
residual and leaves chroma untouched, so no colour conversion back is needed (a big saving at full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sharpkd.models.blocks import RepConv, UNetBody, conv, make_act, pad_to_multiple, rgb_to_luma


@dataclass
class StudentConfig:
    block: str = "conv"  # "conv" (conv + act), "res" (ResBlock) or "naf"
    width: int = 16  # channels after the intro conv (at the unshuffled resolution)
    num_blocks: int = 2  # blocks in the body (the middle of the U-Net when enc_blocks is non-empty)
    enc_blocks: tuple[int, ...] = ()  # U-Net levels; empty for a plain stack
    dec_blocks: tuple[int, ...] = ()  # blocks per decoder level
    middle_dilations: tuple[int, ...] = ()  # dilation per body block (cycled), e.g. (2, 4) for a dilated bottleneck
    unshuffle: int = 1  # pixel-unshuffle factor: learned work runs at 1/unshuffle resolution
    luma: bool = False  # predict a luma residual from BT.601 luma instead of an RGB residual
    act: str = "relu"  # activation: relu, leakyrelu, gelu
    norm: str | None = None  # norm inside "res" blocks: None, "instance", "layer", "batch"
    attention: str | None = None  # attention inside "res" blocks: None, "channel", "cbam"
    separable: bool = False  # depthwise-separable convs inside blocks
    refine: bool = False  # an extra conv + act after the body (the "refinement layer")
    output: str = "residual"  # "residual": input + r;  "sigmoid": sigmoid(logit(input) + r)
    rep: bool = False  # train every 3x3 conv as a re-parameterizable RepConv (one plain conv at inference)


class Student(nn.Module):
    """A small restoration network; see the module docstring for the skeleton.

    Shape:
        ``(B, 3, H, W) -> (B, 3, H, W)`` for any H, W. With ``return_features=True`` also the body output
        ``(B, width, H', W')`` at the working resolution, for feature distillation.
    """

    kind = "student"

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        if cfg.output not in ("residual", "sigmoid"):
            raise ValueError(f"output must be 'residual' or 'sigmoid', got {cfg.output!r}")
        if cfg.luma and cfg.output != "residual":
            raise ValueError("luma mode predicts a residual; use output='residual'")
        if cfg.rep and (cfg.block != "conv" or cfg.separable or cfg.enc_blocks or cfg.middle_dilations):
            raise ValueError("rep=True needs a plain stack of 'conv' blocks (no U-Net, separable or dilated convs)")
        self.cfg = cfg
        c_src = 1 if cfg.luma else 3
        c_in = c_src * cfg.unshuffle**2
        block_kw = {"act": cfg.act, "separable": cfg.separable}
        if cfg.block == "res":
            block_kw.update(norm=cfg.norm, attention=cfg.attention)
        if cfg.rep:
            block_kw["rep"] = True
        self.intro = nn.Sequential(conv(c_in, cfg.width, 3, rep=cfg.rep), make_act(cfg.act))
        self.body = UNetBody(
            cfg.width,
            tuple(cfg.enc_blocks),
            cfg.num_blocks,
            tuple(cfg.dec_blocks),
            cfg.block,
            "add",
            tuple(cfg.middle_dilations),
            **block_kw,
        )
        self.refine = (
            nn.Sequential(conv(cfg.width, cfg.width, 3, rep=cfg.rep), make_act(cfg.act))
            if cfg.refine
            else nn.Identity()
        )
        # Zero-init the residual head: a fresh student is the identity, so training starts from "do no harm"
        # instead of from a random residual that first has to be unlearned.
        if cfg.rep:
            self.tail = RepConv(cfg.width, c_in, identity=False).zero_()
        else:
            self.tail = nn.Conv2d(cfg.width, c_in, 3, padding=1)
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)
        self.feature_channels = cfg.width
        self.stride = cfg.unshuffle * self.body.stride
        # instance norm needs more than one value per channel at the coarsest level, so tiny inputs get padded
        self.min_size = 2 * self.stride if cfg.norm == "instance" else 1

    def predict_residual(self, src: torch.Tensor, return_features: bool = False):
        """The learned part: a residual for ``src`` (RGB, or luma in luma mode) at full resolution.

        Shape:
            ``(B, C, H, W) -> (B, C, H, W)`` with C = 1 (luma) or 3.
        """
        z, (H, W) = pad_to_multiple(src, self.stride, self.min_size)
        f = self.cfg.unshuffle
        if f > 1:
            z = F.pixel_unshuffle(z, f)  # (B, C*f*f, H/f, W/f)
        r, feats = self.working_residual(z)
        if f > 1:
            r = F.pixel_shuffle(r, f)  # (B, C, H, W)
        r = r[..., :H, :W]
        return (r, feats) if return_features else r

    def working_residual(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network at its working resolution: the pixel-unshuffled source in, the residual before
        pixel-shuffle out (the runtime runs only this, doing the space-to-depth moves on uint8 itself).

        Shape:
            ``(B, C*f*f, H/f, W/f) -> (B, C*f*f, H/f, W/f)`` residual and ``(B, width, H/f, W/f)`` features, with
            ``f = cfg.unshuffle`` and H/f, W/f multiples of the body stride.
        """
        feats = self.refine(self.body(self.intro(z)))  # (B, width, H/f, W/f)
        return self.tail(feats), feats

    def forward(self, x: torch.Tensor, return_features: bool = False):
        src = rgb_to_luma(x) if self.cfg.luma else x
        r, feats = self.predict_residual(src, return_features=True)
        if self.cfg.output == "sigmoid":
            eps = 1e-3
            pred = torch.sigmoid(torch.logit(x.clamp(eps, 1 - eps)) + r)
        else:
            pred = x + r  # a luma residual (B, 1, H, W) broadcasts over R, G, B
        return (pred, feats) if return_features else pred
