"""Teacher restoration networks: one U-Net skeleton whose block and depth come from :class:`TeacherConfig`.

Presets (see :mod:`sharpkd.models`): ``nafnet`` (NAFNet blocks, additive skips; Chen et al., "Simple Baselines for
Image Restoration", 2022), ``unet`` (two conv+ReLU per block, concatenated skips) and ``rescnn`` (no down-sampling:
conv, 8 residual blocks, reconstruction conv).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sharpkd.models.blocks import UNetBody, pad_to_multiple


@dataclass
class TeacherConfig:
    block: str = "naf"  # "naf" (NAFBlock), "res" (ResBlock) or "conv"
    width: int = 32  # channels at full resolution; doubles at each level
    enc_blocks: tuple[int, ...] = (1, 1, 2)  # blocks per encoder level; its length is the number of levels
    middle_blocks: int = 4  # blocks at the lowest resolution
    dec_blocks: tuple[int, ...] = (1, 1, 1)  # blocks per decoder level, deepest first
    skip: str = "add"  # "add" (NAFNet) or "concat" (classic U-Net)
    act: str = "relu"  # activation of "res"/"conv" blocks
    residual: bool = True  # identity skip inside "res" blocks
    in_channels: int = 3  # RGB


class Teacher(nn.Module):
    """A U-Net restoration network predicting a residual added to its input.

    Shape:
        ``(B, 3, H, W) -> (B, 3, H, W)`` for any H, W (reflect-padded to the network stride and cropped back).
        With ``return_features=True`` also the last decoder map ``(B, width, H, W)`` for feature distillation.
    """

    kind = "teacher"

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        block_kw = {} if cfg.block == "naf" else {"act": cfg.act}
        if cfg.block == "res":
            block_kw["residual"] = cfg.residual
        self.intro = nn.Conv2d(cfg.in_channels, cfg.width, 3, padding=1)
        self.body = UNetBody(
            cfg.width, tuple(cfg.enc_blocks), cfg.middle_blocks, tuple(cfg.dec_blocks), cfg.block, cfg.skip, **block_kw
        )
        self.ending = nn.Conv2d(cfg.width, cfg.in_channels, 3, padding=1)
        self.feature_channels = cfg.width
        self.stride = self.body.stride

    def forward(self, x: torch.Tensor, return_features: bool = False):
        z, (H, W) = pad_to_multiple(x, self.stride)
        feats = self.body(self.intro(z))  # (B, width, H', W')
        pred = z + self.ending(feats)
        pred, feats = pred[..., :H, :W], feats[..., :H, :W]
        return (pred, feats) if return_features else pred
