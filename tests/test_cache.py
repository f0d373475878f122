"""Teacher-output caching: the cached triples equal a live teacher forward, and fit trains on them."""

from __future__ import annotations

import pytest
import torch

from sharpkd.data import SyntheticPairs, sample_images
from sharpkd.models import build_model
from sharpkd.training.cache import TeacherCache, cache_teacher_outputs
from sharpkd.training.loop import TrainConfig, fit


@pytest.fixture
def pairs() -> SyntheticPairs:
    return SyntheticPairs(list(sample_images(("astronaut", "coffee")).values()), patch_size=32, repeats=3)


def test_cache_matches_live_teacher(pairs):
    teacher = build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1).eval()
    cache = cache_teacher_outputs(teacher, pairs, size=8, batch_size=3)
    assert len(cache) == 8
    lq, gt, pred = cache[5]
    live_lq, live_gt = pairs[5]
    # stored as float16: equal to the live pair within half-precision rounding
    assert torch.allclose(lq, live_lq, atol=1e-3) and torch.allclose(gt, live_gt, atol=1e-3)
    with torch.no_grad():
        live_pred = teacher(live_lq[None])[0].clamp(0, 1)
    assert torch.allclose(pred, live_pred, atol=2e-3)


def test_cache_cycles_epochs_when_larger_than_dataset(pairs):
    teacher = build_model("rt", width=8)
    cache = cache_teacher_outputs(teacher, pairs, size=len(pairs) + 2, batch_size=4)
    assert len(cache) == len(pairs) + 2
    # the item after a full pass comes from epoch 1, so it is a different crop/degradation than item 0
    assert not torch.equal(cache[len(pairs)][1], cache[0][1])


def test_fit_on_cache_uses_cached_teacher_outputs(pairs):
    teacher = build_model("rt", width=8)
    cache = cache_teacher_outputs(teacher, pairs, size=8, batch_size=4)
    student = build_model("rt", width=8)
    result = fit(TrainConfig(steps=4, batch_size=4, val_every=0, losses="l1=1,kd=1"), None, student, cache)
    assert result.steps == 4 and result.stopped == "done"
    with pytest.raises(ValueError, match="no teacher"):
        fit(TrainConfig(steps=1, batch_size=4, val_every=0, losses="kd=1"), None, build_model("rt", width=8), pairs)


def test_cache_rejects_bad_input(pairs):
    with pytest.raises(ValueError, match="size"):
        cache_teacher_outputs(build_model("rt", width=8), pairs, size=0)
    with pytest.raises(ValueError, match="shapes differ"):
        TeacherCache(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4))


class _Triples(torch.utils.data.Dataset):
    """(lq, gt, something) triples that are not a TeacherCache: the third tensor must not pass for teacher output."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        x = torch.full((3, 16, 16), i / 4)
        return x, x, x


def test_only_a_teacher_cache_stands_in_for_the_teacher():
    with pytest.raises(ValueError, match="include distillation terms but no teacher was given"):
        fit(
            TrainConfig(steps=1, batch_size=2, val_every=0, losses="l1=1,kd=1"),
            None,
            build_model("rt", width=8),
            _Triples(),
        )
    cache = TeacherCache(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
    with pytest.raises(ValueError, match="include feature distillation but no teacher was given"):
        fit(
            TrainConfig(steps=1, batch_size=2, val_every=0, losses="l1=1,feat=1"),
            None,
            build_model("rt", width=8),
            cache,
        )
