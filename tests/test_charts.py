"""sharpkd.app.charts: axis ranges sized to the data, 1-2-5 log ticks, labels that do not overlap."""

from __future__ import annotations

import math

import pytest

from sharpkd.app.charts import (
    MIN_GAIN_SPAN_DB,
    REALTIME_FPS,
    _label_box,
    _overlap,
    gain_figure,
    latency_figure,
    log_axis,
    log_ticks,
    loss_figure,
    padded_range,
    place_labels,
    quality_speed_figure,
)

# The shipped cards' mean PSNR and 1080p FPS (rounded): three clusters where labels used to collide.
CARDS = [
    ("cas", "classical", 25.81, 17.2),
    ("conv4", "student", 26.13, 1.70),
    ("ffmpeg-unsharp", "classical", 25.86, 63.3),
    ("resattn", "student", 26.37, 0.32),
    ("rt", "student", 26.01, 25.1),
    ("sepunet", "student", 26.11, 0.51),
    ("student-kd", "student", 26.13, 30.0),
    ("student", "student", 26.35, 33.7),
    ("teacher", "teacher", 27.09, 0.169),
    ("unsharp", "classical", 25.90, 101.6),
]
POINTS = [{"model": m, "kind": k, "psnr": p, "fps": f} for m, k, p, f in CARDS]


def test_padded_range_keeps_a_minimum_span():
    assert padded_range([0.70, 0.71], min_span=0.5) == pytest.approx((0.455, 0.955))
    lo, hi = padded_range([1.0, 3.0], min_span=0.5)
    assert (lo, hi) == pytest.approx((0.8, 3.2))  # wide data: 10% padding each side
    assert padded_range([math.nan, math.inf], min_span=1.0) == (-0.5, 0.5)


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0.15, 120, [0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]),
        (3, 40, [5, 10, 20]),
        (11, 45, [15, 20, 30]),  # fewer than three 1-2-5 values: the finer sequence
        (0.011, 0.06, [0.015, 0.02, 0.03, 0.05]),
    ],
)
def test_log_ticks(lo, hi, ticks):
    assert log_ticks(lo, hi) == pytest.approx(ticks)


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (-1, 1), (2, 1), (1, math.inf)])
def test_log_ticks_rejects_bad_ranges(lo, hi):
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        log_ticks(lo, hi)


def test_log_axis_ignores_unusable_values_and_needs_one():
    axis = log_axis([0.0, -3.0, math.inf, 10.0, 100.0], pad=2.0)
    assert axis["type"] == "log" and axis["range"] == pytest.approx([math.log10(5), math.log10(200)])
    assert axis["ticktext"] == ["5", "10", "20", "50", "100", "200"]
    with pytest.raises(ValueError, match="positive finite"):
        log_axis([0.0, math.nan])


def test_quality_speed_axis_is_finite_and_around_the_data():
    fig = quality_speed_figure(POINTS)
    x0, x1 = fig.layout.xaxis.range
    fps = [p["fps"] for p in POINTS]
    assert math.isfinite(x0) and math.isfinite(x1)
    # the axis covers the data (and the 30 FPS line) within a factor of 2 each side: not 1 to 1e28
    assert min(fps) / 2 < 10**x0 < min(fps) and max(fps) < 10**x1 < 2 * max(fps)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.autorange is None
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks == [0.2, 0.5, 1, 2, 5, 10, 20, 50, 100] and list(fig.layout.xaxis.ticktext)[-1] == "100"
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == REALTIME_FPS  # a shape on a log axis: data units
    (label,) = fig.layout.annotations
    assert label.x == pytest.approx(math.log10(REALTIME_FPS))  # an annotation on a log axis: log10 units
    y0, y1 = fig.layout.yaxis.range
    assert y0 < min(p["psnr"] for p in POINTS) and max(p["psnr"] for p in POINTS) < y1 < y0 + 3
    labels = sorted(text for trace in fig.data for text in trace.text)
    assert labels == sorted(p["model"] for p in POINTS)


def test_quality_speed_labels_do_not_overlap():
    fig = quality_speed_figure(POINTS)
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    size = (900, 360)
    boxes = []
    for trace in fig.data:
        for x, y, text, position in zip(trace.x, trace.y, trace.text, trace.textposition):
            fx, fy = (math.log10(x) - x0) / (x1 - x0), (y - y0) / (y1 - y0)
            boxes.append((text, _label_box(fx * size[0], fy * size[1], text, position)))
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert _overlap(box_a, box_b) == 0, f"labels {a!r} and {b!r} overlap"


def test_place_labels_moves_a_crowded_label():
    positions = place_labels([(0.5, 0.5), (0.5, 0.54)], ["student", "student-kd"])
    assert positions[0] != positions[1]


def test_quality_speed_leaves_out_unusable_points():
    bad = [*POINTS[:2], {"model": "broken", "kind": "student", "psnr": 26.0, "fps": math.inf}]
    bad.append({"model": "zero", "kind": "student", "psnr": 26.0, "fps": 0.0})
    fig = quality_speed_figure(bad)
    assert sorted(t for trace in fig.data for t in trace.text) == ["cas", "conv4"]
    assert all(math.isfinite(v) for v in fig.layout.xaxis.range)
    assert not quality_speed_figure([]).data


def _rows(values):
    return [{"model": "m", "resolution": str(i), "megapixels": 0.1 * (i + 1), "ms": v} for i, v in enumerate(values)]


def test_latency_figure_uses_log_ticks_only_over_a_decade():
    log_fig = latency_figure(_rows([2.0, 30.0, 400.0]), "ms", "Latency")
    assert log_fig.layout.yaxis.type == "log"
    assert list(log_fig.layout.yaxis.tickvals) == [2, 5, 10, 20, 50, 100, 200, 500]
    linear = latency_figure(_rows([20.0, 25.0, 30.0]), "ms", "Latency")
    assert linear.layout.yaxis.type is None and linear.layout.yaxis.rangemode == "tozero"


def test_loss_figure_log_axis_has_readable_ticks():
    fig = loss_figure([(1, 0.2), (2, 0.05), (3, 0.011)])
    assert fig.layout.yaxis.type == "log" and list(fig.layout.yaxis.ticktext) == ["0.01", "0.02", "0.05", "0.1", "0.2"]
    assert loss_figure([(1, -28.0), (2, -28.5)]).layout.yaxis.type is None  # a negative (PSNR) loss: linear
    assert loss_figure([]).layout.yaxis.type is None


def test_gain_figure_makes_a_small_change_look_small():
    val = [{"step": s, "psnr": 25.0 + g, "input_psnr": 25.0} for s, g in ((0, 0.70), (50, 0.71), (100, 0.72))]
    fig = gain_figure(val)
    lo, hi = fig.layout.yaxis.range
    assert hi - lo >= MIN_GAIN_SPAN_DB and lo <= 0.70 and hi >= 0.72
    assert lo <= 0  # the input's level (0 dB) is in view when the gain is under the minimum span
    assert list(fig.data[0].y) == pytest.approx([0.70, 0.71, 0.72])
    big = gain_figure([{"step": 0, "psnr": 20.0, "input_psnr": 20.0}, {"step": 9, "psnr": 23.0, "input_psnr": 20.0}])
    assert big.layout.yaxis.range == pytest.approx((-0.3, 3.3))
    ssim = gain_figure([{"step": 0, "ssim": 0.81, "input_ssim": 0.8}], metric="ssim")
    assert ssim.layout.yaxis.range[1] - ssim.layout.yaxis.range[0] >= 0.01


def test_frontier_figure_plots_gain_against_latency_with_rt_as_its_own_trace():
    from sharpkd.app.charts import frontier_figure

    def point(model, kind, backend, ms, gain):
        return {"model": model, "kind": kind, "backend": backend, "p50_ms": ms, "mean": gain}

    points = [
        point("student", "student", "onnx", 14.0, 0.7),
        point("student", "student", "onnx-int8", 10.0, 0.68),
        point("rt", "student", "onnx", 20.0, 0.3),
        point("teacher", "teacher", "onnx", 2500.0, 1.4),
        point("cas", "classical", "ffmpeg", 8.0, 0.05),
        point("broken", "student", "torch", None, 0.1),  # no latency: left out
    ]
    fig = frontier_figure(points)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"student", "baseline (rt)", "teacher", "classical"}
    assert list(traces["student"].text) == ["student/onnx", "student/onnx-int8"]
    assert traces["baseline (rt)"].marker.symbol == "diamond"
    lo, hi = fig.layout.xaxis.range  # log10 units, around 8 ms .. 2500 ms and the 33 ms budget
    assert lo < math.log10(8) and hi > math.log10(2500) and hi - lo < 4
    ylo, yhi = fig.layout.yaxis.range
    assert ylo < 0 < 1.4 < yhi  # the no-gain line is on the chart
    assert fig.layout.annotations[0].text == "33 ms"
