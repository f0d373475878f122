"""Plotly figures for the Train and Benchmark pages, with axes sized to the data and readable ticks.

Plotly's defaults go wrong on this app's data in three ways, each handled here:

* a log axis spanning less than a decade labels its minor ticks ("5 4 3 2 0.01 9 8 7 6"): :func:`log_ticks` gives
  explicit 1-2-5 tick values;
* an annotation on a log axis takes its position in log10 units (a shape takes data units), so
  ``add_vline(x=30, annotation_text=...)`` puts the label at 10^30 FPS and autorange stretches the axis to 1e28 and
  beyond: :func:`quality_speed_figure` draws the line and places its label itself;
* autorange zooms into whatever spread the data has, so a 0.01 dB wiggle fills the chart: :func:`padded_range`
  keeps a minimum span.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Imported for its side effect, before Plotly is used: Plotly's validators look pandas up in sys.modules without
# importing it, so while another session's thread is still importing pandas they find a half-initialised module and
# fail ("partially initialized module 'pandas' has no attribute 'Series'", seen on this app's first page loads). A real
# import waits for that other import to finish.
import pandas  # noqa: F401
import plotly.graph_objects as go

MARGIN = dict(l=10, r=10, t=50, b=10)
MIN_GAIN_SPAN_DB = 0.5  # a gain curve's y axis spans at least this (±0.25 dB around the data)
REALTIME_FPS = 30.0  # the reference line on the quality-against-speed chart
_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7))  # 1-2-5 ticks; finer ones when a range holds fewer than 3 of those
_LABEL_POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left")


def padded_range(values: Sequence[float], min_span: float, pad: float = 0.1) -> tuple[float, float]:
    """An axis range around ``values``: their extent plus ``pad`` of it each side, at least ``min_span`` wide.

    Non-finite values are ignored; with no finite value the range is ``(-min_span / 2, min_span / 2)``.

    Example:
        >>> padded_range([0.70, 0.71], min_span=0.5)
        (0.455, 0.955)
    """
    finite = [float(v) for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return round(lo, 12), round(hi, 12)


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values from the 1-2-5 sequence (1, 2, 5, 10, 20, ...) inside ``[lo, hi]``, both positive.

    When fewer than three of those fall inside, the finer 1-1.5-2-3-5-7 sequence is used.

    Raises:
        ValueError: ``lo`` or ``hi`` not positive and finite, or ``lo > hi``.

    Example:
        >>> log_ticks(0.15, 120)
        [0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    """
    if not (0 < lo <= hi < math.inf):
        raise ValueError(f"log_ticks needs 0 < lo <= hi < inf, got {lo} and {hi}")
    ticks: list[float] = []
    for mantissas in _MANTISSAS:
        ticks = []
        for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            for m in mantissas:
                v = float(f"{m * 10.0**exponent:.6g}")  # 0.2, not 0.20000000000000001
                if lo <= v <= hi:
                    ticks.append(int(v) if v >= 1 and v == int(v) else v)
        if len(ticks) >= 3:
            break
    return ticks


def log_axis(values: Sequence[float], pad: float = 1.25) -> dict[str, Any]:
    """Layout settings of a log axis around positive ``values``: a range ``pad`` times beyond them and 1-2-5 ticks.

    The range is in log10 units, as Plotly takes it for a log axis. Non-positive and non-finite values are ignored.

    Raises:
        ValueError: no positive finite value.
    """
    finite = [float(v) for v in values if math.isfinite(v) and v > 0]
    if not finite:
        raise ValueError(f"a log axis needs a positive finite value, got {list(values)}")
    lo, hi = min(finite) / pad, max(finite) * pad
    ticks = log_ticks(lo, hi)
    return dict(
        type="log",
        range=[math.log10(lo), math.log10(hi)],
        tickvals=ticks,
        ticktext=[f"{t:g}" for t in ticks],
    )


def _label_box(x: float, y: float, text: str, position: str) -> tuple[float, float, float, float]:
    """The box ``(x0, y0, x1, y1)`` in pixels a label takes at ``position`` next to a marker at ``(x, y)``."""
    w, h, gap = 7.0 * len(text), 14.0, 8.0  # 12 px font: about 7 px a character
    vertical, horizontal = position.split()
    if horizontal == "center":
        x0 = x - w / 2
    else:
        x0 = x + gap if horizontal == "right" else x - gap - w
    if vertical == "middle":
        y0 = y - h / 2
    else:
        y0 = y + gap if vertical == "top" else y - gap - h
    return x0, y0, x0 + w, y0 + h


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(
    points: Sequence[tuple[float, float]],
    labels: Sequence[str],
    size: tuple[float, float] = (900, 360),
    vlines: Sequence[float] = (),
) -> list[str]:
    """A Plotly ``textposition`` per point so that labels overlap neither each other nor other markers.

    Args:
        points: marker positions as fractions of the plot area, ``(0, 0)`` bottom left and ``(1, 1)`` top right
            (for a log axis, the fraction of its log10 range).
        labels: the text next to each point.
        size: the plot area in pixels, ``(width, height)``, that the fractions scale to.
        vlines: x positions (fractions) of vertical lines that labels should not cross either.

    Returns:
        For each point, the first of six positions (above, below, right, left, ...) with the least overlap with
        the labels placed so far and with every marker; points are placed left to right.
    """
    assert len(points) == len(labels), f"{len(points)} points but {len(labels)} labels"
    px = [(x * size[0], y * size[1]) for x, y in points]
    markers = [(x - 6, y - 6, x + 6, y + 6) for x, y in px]
    markers += [(x * size[0] - 2, 0, x * size[0] + 2, size[1]) for x in vlines]
    placed: list[tuple[float, float, float, float]] = []
    positions = [""] * len(points)
    for i in sorted(range(len(points)), key=lambda k: px[k]):

        def cost(position: str, i: int = i) -> float:
            box = _label_box(*px[i], labels[i], position)
            outside = _overlap(box, (0, 0, *size)) - (box[2] - box[0]) * (box[3] - box[1])
            return sum(_overlap(box, other) for other in [*placed, *markers]) - 0.5 * outside

        best = min(_LABEL_POSITIONS, key=cost)
        positions[i] = best
        placed.append(_label_box(*px[i], labels[i], best))
    return positions


def _log_scatter_layout(
    xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], ref_x: float, y_extra: Sequence[float] = ()
) -> tuple[dict[str, Any], tuple[float, float], dict[str, str]]:
    """The shared layout of the scatter charts: a log x axis holding ``xs`` and the reference line at ``ref_x``, a
    padded y range holding ``ys`` (and ``y_extra``), and a text position per label that avoids overlaps."""
    xaxis = log_axis([*xs, ref_x], pad=1.6)
    lo, hi = padded_range([*y_extra, *ys], min_span=0.5, pad=0.15)
    x0, x1 = xaxis["range"]
    fractions = [((math.log10(x) - x0) / (x1 - x0), (y - lo) / (hi - lo)) for x, y in zip(xs, ys)]
    line = (math.log10(ref_x) - x0) / (x1 - x0)
    return xaxis, (lo, hi), dict(zip(labels, place_labels(fractions, list(labels), vlines=[line])))


def quality_speed_figure(points: Sequence[dict[str, Any]], height: int = 440) -> go.Figure:
    """Mean PSNR against FPS at 1080p, one marker per model card, labelled without overlaps.

    Args:
        points: ``{"model", "kind", "psnr", "fps"}`` per model (``sharpkd.reporting.catalog.quality_speed_points``);
            points with a non-finite or non-positive FPS or PSNR are left out.
        height: figure height in pixels.
    """
    points = [p for p in points if math.isfinite(p["fps"]) and p["fps"] > 0 and math.isfinite(p["psnr"])]
    fig = go.Figure()
    fig.update_layout(
        title="Quality against speed (model cards, 1080p)",
        yaxis_title="mean PSNR (dB)",
        height=height,
        margin=MARGIN,
        legend=dict(orientation="h", y=-0.2),
    )
    if not points:
        return fig
    names = [p["model"] for p in points]
    xaxis, (lo, hi), positions = _log_scatter_layout(
        [p["fps"] for p in points], [p["psnr"] for p in points], names, REALTIME_FPS
    )
    for kind in dict.fromkeys(p["kind"] for p in points):
        mine = [p for p in points if p["kind"] == kind]
        fig.add_trace(
            go.Scatter(
                x=[p["fps"] for p in mine],
                y=[p["psnr"] for p in mine],
                text=[p["model"] for p in mine],
                mode="markers+text",
                textposition=[positions[p["model"]] for p in mine],
                marker=dict(size=11),
                name=str(kind),
                hovertemplate="%{text}: %{x:.3g} FPS, %{y:.2f} dB<extra></extra>",
            )
        )
    # On a log axis Plotly places a shape in data units but an annotation in log10 units: x=30 would mean 10^30 FPS.
    line = dict(dash="dot", color="grey")
    fig.add_shape(type="line", x0=REALTIME_FPS, x1=REALTIME_FPS, y0=0, y1=1, yref="paper", line=line)
    fig.add_annotation(
        x=math.log10(REALTIME_FPS), y=1, yref="paper", text=f"{REALTIME_FPS:g} FPS", showarrow=False, xanchor="left"
    )
    fig.update_layout(xaxis=dict(title="FPS at 1080p (log scale)", **xaxis), yaxis=dict(range=[lo, hi]))
    return fig


def latency_figure(rows: Sequence[dict[str, Any]], y: str, title: str, height: int = 360) -> go.Figure:
    """One line per model of ``y`` (``"ms"`` or ``"fps"``) against megapixels per frame.

    The y axis is logarithmic with 1-2-5 ticks when the values span at least a factor of 10, linear otherwise.
    """
    fig = go.Figure()
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        fig.add_trace(
            go.Scatter(
                x=[r["megapixels"] for r in mine],
                y=[r[y] for r in mine],
                text=[r["resolution"] for r in mine],
                mode="lines+markers",
                name=name,
                hovertemplate=f"{name} %{{text}}: %{{y:.3g}} {y}<extra></extra>",
            )
        )
    values = [float(r[y]) for r in rows if r.get(y) is not None and math.isfinite(r[y]) and r[y] > 0]
    yaxis: dict[str, Any] = dict(title=y, rangemode="tozero")
    if values and max(values) >= 10 * min(values):
        yaxis = dict(title=f"{y} (log scale)", **log_axis(values))
    fig.update_layout(title=title, xaxis_title="megapixels per frame", yaxis=yaxis, height=height, margin=MARGIN)
    return fig


def loss_figure(losses: Sequence[tuple[int, float]], height: int = 300) -> go.Figure:
    """The training loss per step, on a log axis with 1-2-5 ticks when it is positive and spans a factor of 3."""
    steps, values = zip(*losses) if losses else ((), ())
    fig = go.Figure(go.Scatter(x=steps, y=values, mode="lines", name="training loss"))
    positive = [v for v in values if math.isfinite(v) and v > 0]
    yaxis: dict[str, Any] = dict(title="loss")
    if positive and len(positive) == len(values) and max(positive) >= 3 * min(positive):
        yaxis = dict(title="loss (log scale)", **log_axis(positive, pad=1.1))
    fig.update_layout(title="Training loss", xaxis_title="step", yaxis=yaxis, height=height, margin=MARGIN)
    return fig


def gain_figure(val: Sequence[dict[str, float]], metric: str = "psnr", height: int = 300) -> go.Figure:
    """The student's validation gain over the degraded input (``metric - input_metric``) per validation step.

    The y axis always includes 0 (the input's level) when the data are near it, and spans at least
    :data:`MIN_GAIN_SPAN_DB` for PSNR (0.01 for SSIM), so a tiny change looks tiny.
    """
    steps = [v["step"] for v in val]
    gains = [v[metric] - v[f"input_{metric}"] for v in val]
    unit, min_span = ("dB", MIN_GAIN_SPAN_DB) if metric == "psnr" else ("", 0.01)
    fig = go.Figure(
        go.Scatter(
            x=steps,
            y=gains,
            mode="lines+markers",
            name="student over input",
            hovertemplate=f"step %{{x}}: %{{y:+.3f}} {unit}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_dash="dash", line_color="grey", annotation_text="degraded input")
    lo, hi = padded_range(gains, min_span=min_span)
    if lo > 0 and lo < min_span:  # the input level is close: show it
        lo = -0.1 * min_span
    fig.update_layout(
        title=f"Validation {metric.upper()} gain over the input",
        xaxis_title="step",
        yaxis=dict(title=f"gain ({unit})" if unit else "gain", range=[lo, hi], tickformat="+.2f" if unit else "+.3f"),
        height=height,
        margin=MARGIN,
        showlegend=False,
    )
    return fig


BASELINE_MODEL = "rt"  # the first default student, kept as a named baseline on the frontier chart


def frontier_figure(points: Sequence[dict[str, Any]], height: int = 460) -> go.Figure:
    """Mean PSNR gain over the input against 1080p p50 latency: one marker per network and backend, and one per
    classical peer (``sharpkd.reporting.catalog.frontier_points``), labelled ``model/backend`` without overlaps.

    The baseline student :data:`BASELINE_MODEL` is drawn as its own trace so it stays recognisable; points with a
    non-positive or non-finite latency or gain are left out.
    """
    points = [
        p
        for p in points
        if p.get("p50_ms") and math.isfinite(p["p50_ms"]) and p["p50_ms"] > 0 and math.isfinite(p["mean"])
    ]
    fig = go.Figure()
    fig.update_layout(
        title="Frontier: quality against 1080p latency (model cards, 2 threads)",
        yaxis_title="mean PSNR gain over the input (dB)",
        height=height,
        margin=MARGIN,
        legend=dict(orientation="h", y=-0.2),
    )
    if not points:
        return fig
    budget_ms = 1000.0 / REALTIME_FPS
    labels = [f"{p['model']}/{p['backend']}" for p in points]
    xaxis, (lo, hi), positions = _log_scatter_layout(
        [p["p50_ms"] for p in points], [p["mean"] for p in points], labels, budget_ms, y_extra=(0.0,)
    )
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        group = "baseline (rt)" if p["model"] == BASELINE_MODEL else str(p["kind"])
        groups.setdefault(group, []).append(i)
    for group, idx in groups.items():
        fig.add_trace(
            go.Scatter(
                x=[points[i]["p50_ms"] for i in idx],
                y=[points[i]["mean"] for i in idx],
                text=[labels[i] for i in idx],
                mode="markers+text",
                textposition=[positions[labels[i]] for i in idx],
                marker=dict(size=11, symbol="diamond" if group.startswith("baseline") else "circle"),
                name=group,
                hovertemplate="%{text}: %{x:.3g} ms, %{y:+.2f} dB<extra></extra>",
            )
        )
    # the real-time budget; as on the FPS chart, the annotation's x is in log10 units on a log axis
    dash = dict(dash="dot", color="grey")
    fig.add_shape(type="line", x0=budget_ms, x1=budget_ms, y0=0, y1=1, yref="paper", line=dash)
    fig.add_annotation(
        x=math.log10(budget_ms), y=1, yref="paper", text=f"{budget_ms:.0f} ms", showarrow=False, xanchor="left"
    )
    fig.add_shape(type="line", x0=0, x1=1, xref="paper", y0=0, y1=0, line=dash)  # no gain: the input itself
    fig.update_layout(xaxis=dict(title="1080p sharpen() p50, ms (log scale)", **xaxis), yaxis=dict(range=[lo, hi]))
    return fig
