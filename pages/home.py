"""Home: what sharpkd does, how to use each page, and the shipped models' cards."""

from __future__ import annotations

import streamlit as st

import sharpkd.reporting.catalog
from sharpkd.degrade import CODEC_PRESETS, PRESETS, SYNTHETIC_PRESETS

st.title("sharpkd: sharper video calls, in real time, on a CPU")
st.markdown(
    "sharpkd sharpens the soft, blocky frames of a video call. A heavy restoration network (the *teacher*) is "
    "distilled into a tiny *student* that runs in real time on an ordinary CPU, with no GPU."
)

st.subheader("How to use it")
st.page_link(
    "pages/compare.py",
    label="**Compare**: see the teacher, the student and tuned classical sharpeners side by side",
    icon=":material/compare:",
)
st.markdown(
    "- Pick a sample photo, upload your own or take a webcam snapshot.\n"
    "- Choose a degradation (or *already blurry* for a photo that is soft to begin with), then look at the panels, "
    "zoom into a detail, drag the before/after divider and download any output as PNG.\n"
    "- With a sharp original you get PSNR and SSIM; without one, a no-reference sharpness score.\n"
    "- The *Video* tab does the same for a short clip (up to 10 s) and gives back a side-by-side video."
)
st.page_link(
    "pages/live.py",
    label="**Live**: your webcam through a simulated bad call, sharpened as it plays",
    icon=":material/videocam:",
)
st.markdown(
    "- Press START and allow the camera; pick the simulated link (H.264, VP8 or a clean one) and a view (side by "
    "side or split).\n"
    "- The page shows the frame rate and per-frame latency the student achieves on this server."
)
st.page_link(
    "pages/train.py", label="**Train**: distil your own student in about a minute", icon=":material/model_training:"
)
st.markdown(
    "- Choose an architecture, the number of steps and the loss weights, on the sample photos or your own.\n"
    "- Watch the loss and validation PSNR/SSIM curves live, cancel at any time, then use the student on Compare "
    "or download its checkpoint."
)
st.page_link(
    "pages/benchmark.py",
    label="**Benchmark**: speed against resolution, quality against speed",
    icon=":material/speed:",
)
st.markdown("- Time the models on this machine at a few frame sizes, and compare all models' quality and speed.")

st.subheader("Shipped models")
rows = sharpkd.reporting.catalog.model_cards_table()
if rows:
    st.dataframe(rows, hide_index=True, key="home_cards")
    st.caption(
        f"PSNR/SSIM: mean over the {len(PRESETS)} evaluation presets ({', '.join(SYNTHETIC_PRESETS)} synthetic, "
        f"{', '.join(CODEC_PRESETS)} real video codecs). Classical peers at their tuned settings. Speed: 1080p frames "
        "on the reference CPU."
    )
else:
    st.info("No model cards (models/*.json) yet: the trained models and their cards have not been shipped.")
readme = sharpkd.reporting.catalog.models_readme()
if readme:
    with st.expander("How the models were trained (models/README.md)"):
        st.markdown(readme)
