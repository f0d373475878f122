"""sharpkd: real-time sharpening of soft video-call frames, by distilling a restoration teacher into a tiny student.

Example:
    >>> import sharpkd
    >>> model = sharpkd.load("student")      # or "teacher", any shipped name, a checkpoint path, "unsharp"
    >>> out = model.sharpen(frame)            # (H, W, 3) uint8 RGB in, same shape and dtype out
"""

from __future__ import annotations

from sharpkd.degrade import PRESETS, degrade, list_degradations
from sharpkd.errors import (
    CheckpointError,
    DatasetError,
    ImageDecodeError,
    ImageTooLargeError,
    SharpkdError,
    VideoError,
)
from sharpkd.images import load_image, read_image, write_image
from sharpkd.metrics import psnr, sharpness, ssim
from sharpkd.models import build_model, list_models
from sharpkd.runtime.classical import unsharp_mask
from sharpkd.runtime.sharpener import Sharpener, list_pretrained, load, load_pretrained

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CheckpointError",
    "DatasetError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "Sharpener",
    "SharpkdError",
    "VideoError",
    "__version__",
    "build_model",
    "degrade",
    "list_degradations",
    "list_models",
    "list_pretrained",
    "load",
    "load_image",
    "load_pretrained",
    "psnr",
    "read_image",
    "sharpness",
    "ssim",
    "unsharp_mask",
    "write_image",
]
