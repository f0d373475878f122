"""Tests for reporting.measure: the synthetic test frame, conv MAC counting against the formula, and peak memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from sharpkd.models import build_model
from sharpkd.reporting.measure import PeakMemory, conv_macs, synthetic_frame, time_calls


@pytest.mark.parametrize(("width", "height"), [(64, 48), (1, 1), (333, 17), (1300, 700)])
def test_synthetic_frame_is_a_deterministic_textured_photo(width: int, height: int) -> None:
    frame = synthetic_frame(width, height)
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    np.testing.assert_array_equal(frame, synthetic_frame(width, height))
    if width * height > 100:
        assert frame.std() > 20  # real content, not a constant frame a codec or cache could shortcut


def test_synthetic_frame_rejects_empty_size() -> None:
    with pytest.raises(ValueError, match="0x5"):
        synthetic_frame(0, 5)


def test_conv_macs_counts_each_conv_by_formula() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),  # 10*12 * 6 outputs * 3 inputs * 9 taps
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),  # depthwise: 1 input channel per output
        nn.Conv2d(6, 4, 1, stride=2),  # 5*6 * 4 outputs * 6 inputs
    )
    expected = 10 * 12 * 6 * 3 * 9 + 10 * 12 * 6 * 1 * 9 + 5 * 6 * 4 * 6
    assert conv_macs(model, 10, 12) == expected
    assert next(model.parameters()).device.type == "cpu"  # counted on a meta copy; the model itself is untouched


def test_conv_macs_of_realtime_student_is_576_per_pixel() -> None:
    # the rt preset's docstring promises ~576 MAC/pixel: 4 convs of width 16 on the x4-unshuffled luma
    assert conv_macs(build_model("rt"), 48, 64) == 576 * 48 * 64


def test_peak_memory_sees_torch_allocations() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to reset the RSS high-water mark")
    memory = PeakMemory()
    memory.start()
    x = torch.ones(64 * 2**20 // 4)  # 64 MB through torch's CPU allocator
    peak = memory.peak_mb()
    del x
    assert 60 <= peak < 200


def test_time_calls_warms_up_then_times_each_call() -> None:
    calls = []
    times = time_calls(calls.append, np.zeros(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


def test_thread_count_sets_and_restores_torch_and_opencv():
    import cv2
    import torch

    from sharpkd.reporting.measure import thread_count

    before = torch.get_num_threads(), cv2.getNumThreads()
    with thread_count(1) as n:
        assert n == 1
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
    with thread_count(None) as n:
        assert n == before[0]


def test_conv_macs_counts_a_rep_student_as_its_merged_convs():
    from sharpkd.models import build_model
    from sharpkd.reporting.measure import conv_macs

    assert conv_macs(build_model("rtrep"), 64, 64) == conv_macs(build_model("rt"), 64, 64) == 576 * 64 * 64


def test_rtrep4_costs_two_more_body_convs_than_rtrep():
    from sharpkd.models import build_model
    from sharpkd.reporting.measure import conv_macs

    # each body conv is 16 -> 16 channels, 3x3, at 1/16 of the pixels: 144 MAC per output pixel
    assert conv_macs(build_model("rtrep4"), 64, 64) == (576 + 2 * 144) * 64 * 64
