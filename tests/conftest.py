"""Shared fixtures: fixed seeds, a single thread (CI machines have 2 cores), and tiny model folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sharpkd.checkpoint import save_checkpoint
from sharpkd.models import build_model

torch.set_num_threads(1)

# Tiny versions of every shipped role, so app/CLI tests don't depend on the trained weights.
TINY = {
    "teacher": ("nafnet", dict(width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)),
    "student": ("rt", dict(width=8)),
    "student-nokd": ("rt", dict(width=8)),
    "conv4": ("conv4", dict(width=8)),
    "resattn": ("resattn", dict(width=8, num_blocks=2)),
    "sepunet": ("sepunet", dict(width=4)),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_models_dir(tmp_path_factory, monkeypatch):
    """A models/ folder of tiny, randomly initialised checkpoints, used through ``$SHARPKD_MODELS``."""
    d = tmp_path_factory.mktemp("models")
    for name, (preset, kw) in TINY.items():
        torch.manual_seed(0)
        model = build_model(preset, **kw)
        save_checkpoint(d / f"{name}.pt", model, meta={"preset": preset, "tiny": True})
    monkeypatch.setenv("SHARPKD_MODELS", str(d))
    return d


@pytest.fixture
def photo() -> np.ndarray:
    """A 96x128 crop of scikit-image's astronaut: a real photo that is not training data."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[100:196, 180:308])
