"""Benchmark: latency and FPS against resolution measured here, quality against speed and the classical peers from
the cards."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import sharpkd
import sharpkd.app.compare
import sharpkd.reporting.catalog
from pages import trained_models
from sharpkd.errors import SharpkdError
from sharpkd.runtime.classical import list_peers

SIZES = ("320x180", "360p", "720p", "1080p")
RESULTS_KEY = "bench_rows"  # session_state: the last measurement, kept across reruns and page switches
_MARGIN = dict(l=10, r=10, t=50, b=10)


def models_ui() -> dict[str, str]:
    """Display name -> what to load: shipped names, the classical peers, and the checkpoints of students trained
    here."""
    trained = {name: model.meta["checkpoint"] for name, model in trained_models().items()}
    options = [*sharpkd.list_pretrained(), *list_peers(), *trained]
    default = [n for n in ("teacher", "student", *list_peers()) if n in options]
    names = st.multiselect("Models", options, default=default, key="bench_models")
    return {name: trained.get(name, name) for name in names}


def sizes_ui() -> tuple[list[str], int]:
    a, b = st.columns([3, 1])
    sizes = a.multiselect(
        "Frame sizes",
        SIZES,
        default=list(SIZES[:3]),
        key="bench_sizes",
        help="1080p with the teacher takes a while on a small CPU",
    )
    repeats = b.number_input("Repeats", 1, 10, 3, key="bench_repeats")
    return sizes, int(repeats)


def latency_chart(rows: list[dict], y: str, title: str, log: bool) -> go.Figure:
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
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="megapixels per frame",
        yaxis_title=y,
        yaxis_type="log" if log else "linear",
        height=360,
        margin=_MARGIN,
    )
    return fig


def quality_speed_chart(points: list[dict]) -> go.Figure:
    fig = go.Figure()
    for kind in dict.fromkeys(p["kind"] for p in points):
        mine = [p for p in points if p["kind"] == kind]
        fig.add_trace(
            go.Scatter(
                x=[p["fps"] for p in mine],
                y=[p["psnr"] for p in mine],
                text=[p["model"] for p in mine],
                mode="markers+text",
                textposition="top center",
                marker=dict(size=12),
                name=str(kind),
            )
        )
    fig.add_vline(x=30, line_dash="dot", annotation_text="30 FPS")
    fig.update_layout(
        title="Quality against speed (model cards, 1080p)",
        xaxis_title="FPS at 1080p (log)",
        xaxis_type="log",
        yaxis_title="mean PSNR (dB)",
        height=420,
        margin=_MARGIN,
    )
    return fig


st.title("Benchmark")
st.subheader("Speed against resolution, measured now")
st.caption("A quick measurement on the machine running this app (median of a few calls after a warm-up).")
models = models_ui()
sizes, repeats = sizes_ui()
if st.button("Measure", type="primary", disabled=not models or not sizes, key="bench_run"):
    try:
        with st.spinner("Timing the models…"):
            st.session_state[RESULTS_KEY] = sharpkd.app.compare.measure_latency(models, sizes, repeats)
    except (SharpkdError, ValueError) as err:
        st.error(f"Could not measure: {err}")
rows = st.session_state.get(RESULTS_KEY)
if rows:
    left, right = st.columns(2)
    left.plotly_chart(latency_chart(rows, "ms", "Latency per frame", log=True), key="bench_ms")
    right.plotly_chart(latency_chart(rows, "fps", "Frames per second", log=True), key="bench_fps")
    st.dataframe(rows, hide_index=True, key="bench_table")
else:
    st.info("Choose models and frame sizes, then press **Measure**.")

st.subheader("Quality against speed, from the model cards")
points = sharpkd.reporting.catalog.quality_speed_points()
if points:
    st.plotly_chart(quality_speed_chart(points), key="bench_scatter")
else:
    st.info("No model cards with quality and speed yet (models/*.json): they are written when models are shipped.")

st.subheader("Classical peers, from their cards")
peers = sharpkd.reporting.catalog.classical_peers_table()
if peers:
    st.dataframe(peers, hide_index=True, key="bench_peers")
    st.caption(
        "Each peer's setting is tuned on the validation images for the best mean PSNR gain over the presets "
        "(`sharpkd cards`); `best classical on` lists the presets where it is the strongest classical choice."
    )
else:
    st.info("No classical peer cards yet (models/<peer>.json): `sharpkd cards` tunes the peers and writes them.")
