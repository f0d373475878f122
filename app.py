"""sharpkd's Streamlit app: page config and navigation only. Each screen lives in pages/."""

import streamlit as st

# Import torch (through sharpkd) here, before any page: two sessions whose first runs import torch at the same time in
# different threads break its initialisation ("partially initialized module"). Python's per-module import lock makes
# every other session wait on this line until the first import has finished.
import sharpkd  # noqa: F401
from sharpkd.app.memory import limit_malloc_arenas

limit_malloc_arenas()  # once per process: one malloc arena per session thread is most of the server's memory

# No page_icon and no st.Page icons: the current page's icon becomes the favicon, and for an icon name or an emoji
# the browser fetches that from a font CDN. The app must work offline; Streamlit's own favicon is served locally.
st.set_page_config(page_title="sharpkd: sharpen video-call frames", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", default=True),
    st.Page("pages/compare.py", title="Compare"),
    st.Page("pages/live.py", title="Live"),
    st.Page("pages/train.py", title="Train"),
    st.Page("pages/benchmark.py", title="Benchmark"),
]
st.navigation(pages).run()
