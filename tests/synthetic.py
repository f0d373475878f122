"""Synthetic test images shared by several test modules (imported as ``from synthetic import wave_frame``)."""

from __future__ import annotations

import numpy as np


def wave_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth waves plus noise: a uint8 RGB frame with edges at every scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (4 + c)) * np.cos(yy / (5 + c)) for c in range(3)], axis=2) * 90 + 128
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
