"""Benchmark: latency and FPS against resolution measured here, quality against speed and the classical peers from
the cards."""

from __future__ import annotations

import streamlit as st

import sharpkd
import sharpkd.app.compare
import sharpkd.app.gate
import sharpkd.reporting.catalog
from pages import trained_models
from sharpkd.app.charts import frontier_figure, latency_figure, quality_speed_figure
from sharpkd.errors import SharpkdError
from sharpkd.runtime.classical import list_peers

SIZES = ("320x180", "360p", "720p", "1080p")
RESULTS_KEY = "bench_rows"  # session_state: the last measurement, kept across reruns and page switches
DEFAULT_REPEATS = 10  # timed calls per model and size: fewer make the p95 column meaningless


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
    repeats = b.number_input(
        "Repeats",
        DEFAULT_REPEATS,
        50,
        DEFAULT_REPEATS,
        key="bench_repeats",
        help="timed calls per model and frame size, after one warm-up call; the table shows their median and p95",
    )
    return sizes, int(repeats)


st.title("Benchmark")
st.subheader("Speed against resolution, measured now")
st.caption(
    f"A quick measurement on the machine running this app: the median and p95 of at least {DEFAULT_REPEATS} calls "
    "per model and size, after a warm-up call."
)
models = models_ui()
sizes, repeats = sizes_ui()
if st.button("Measure", type="primary", disabled=not models or not sizes, key="bench_run"):
    try:
        # Through the app's heavy-inference gate: timings taken while another visitor's model runs mean nothing,
        # and a 1080p teacher run is as heavy as a Compare upload.
        waiting = st.empty()
        with sharpkd.app.gate.heavy(on_wait=lambda: waiting.info(sharpkd.app.gate.WAITING)):
            waiting.empty()
            with st.spinner("Timing the models…"):
                st.session_state[RESULTS_KEY] = sharpkd.app.compare.measure_latency(models, sizes, repeats)
    except (SharpkdError, ValueError) as err:
        st.error(f"Could not measure: {err}")
rows = st.session_state.get(RESULTS_KEY)
if rows:
    left, right = st.columns(2)
    left.plotly_chart(latency_figure(rows, "ms", "Latency per frame"), key="bench_ms")
    right.plotly_chart(latency_figure(rows, "fps", "Frames per second"), key="bench_fps")
    st.dataframe(rows, hide_index=True, key="bench_table")
else:
    st.info("Choose models and frame sizes, then press **Measure**.")

st.subheader("Quality against speed, from the model cards")
points = sharpkd.reporting.catalog.quality_speed_points()
if points:
    st.plotly_chart(quality_speed_figure(points), key="bench_scatter")
else:
    st.info("No model cards with quality and speed yet (models/*.json): they are written when models are shipped.")

st.subheader("Frontier: quality per millisecond, from the model cards")
frontier = sharpkd.reporting.catalog.frontier_points()
if frontier:
    st.plotly_chart(frontier_figure(frontier), key="bench_frontier")
    st.dataframe(
        [
            {
                "model": p["model"],
                "backend": p["backend"],
                "params": p["parameters"],
                "MAC/px": None if p["mac_per_px"] is None else round(p["mac_per_px"]),
                "p50 ms": round(p["p50_ms"], 1),
                "p95 ms": None if p["p95_ms"] is None else round(p["p95_ms"], 1),
                **{f"{d} dB": round(g, 2) for d, g in p["gains"].items()},
                "mean dB": round(p["mean"], 2),
                "worst image": None if p["worst_gain"] is None else f"{p['worst_gain']:+.2f} ({p['worst_image']})",
            }
            for p in frontier
        ],
        hide_index=True,
        key="bench_frontier_table",
    )
    st.caption(
        "Each network on each benchmarked backend (onnx-int8: the quantized graph, scored on its own outputs) and "
        "each tuned classical peer: PSNR gain over the degraded input per preset and on average, and the validation "
        "image it harms most. `rt` is the first default student, kept as the baseline (`rtrep` and `rtrep4`, later "
        "defaults, are kept too)."
    )
else:
    st.info("No model cards with speed yet: `sharpkd cards --bench` writes them.")

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
