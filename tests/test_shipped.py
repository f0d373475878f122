"""The shipped weights in models/: they load, carry their cards, and restore photos they were never trained on.

The photos come from scikit-image (not from the training or validation sets). Each is degraded with every named preset;
the teacher and the default student must each raise PSNR over the degraded input on average over the photos.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sharpkd
from sharpkd.data import degrade_image, sample_images, to_tensor
from sharpkd.degrade import PRESETS
from sharpkd.metrics import psnr
from sharpkd.runtime.sharpener import models_dir

SHIPPED = ("teacher", "student", "student-nokd", "rtrep4", "rtrep", "rt", "conv4", "resattn", "sepunet")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    # 160x160 crops of three colour photos: small enough to keep the test fast, big enough to have texture
    samples = sample_images(("astronaut", "coffee", "chelsea"))
    return [
        samples["astronaut"][40:200, 150:310],
        samples["coffee"][100:260, 200:360],
        samples["chelsea"][60:220, 120:280],
    ]


def test_every_shipped_model_loads_with_its_card() -> None:
    d = models_dir()
    assert sorted(p.stem for p in d.glob("*.pt")) == sorted(SHIPPED)
    for name in SHIPPED:
        assert (d / f"{name}.pt").stat().st_size < 20 * 2**20  # at most 20 MB each
        model = sharpkd.load(name)
        card = json.loads((d / f"{name}.json").read_text())
        assert card["name"] == name and card["kind"] == model.kind
        assert card["parameters"] == sum(p.numel() for p in model.model.parameters())
        assert set(PRESETS) <= set(card["metrics"])


def _gains(name: str, photos: list[np.ndarray]) -> dict[str, float]:
    model = sharpkd.load(name)
    gains = {}
    for preset in PRESETS:
        deltas = []
        for i, gt in enumerate(photos):
            lq = degrade_image(gt, preset, seed=i)
            out = model.sharpen(lq)
            ref = to_tensor(gt)
            deltas.append(float(psnr(to_tensor(out), ref) - psnr(to_tensor(lq), ref)))
        gains[preset] = float(np.mean(deltas))
    return gains


def test_shipped_teacher_raises_psnr_on_unseen_photos(photos: list[np.ndarray]) -> None:
    torch.set_num_threads(1)
    gains = _gains("teacher", photos)
    assert all(g > 0 for g in gains.values()), f"teacher PSNR gain over the degraded input per preset: {gains}"


def test_shipped_student_raises_psnr_on_unseen_photos(photos: list[np.ndarray]) -> None:
    torch.set_num_threads(1)
    gains = _gains("student", photos)
    msg = f"student PSNR gain over the degraded input per preset: {gains}"
    assert all(g > 0 for g in gains.values()), msg
    # the defocus, rescaling and camera-shake gains it ships for
    assert gains["gauss1.5"] > 2.0 and gains["downup2"] > 0.5 and gains["motion9"] > 0.1, msg
