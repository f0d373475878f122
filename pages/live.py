"""Live: the webcam through a simulated bad call, then the student, in real time (streamlit-webrtc)."""

from __future__ import annotations

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

import sharpkd.app.live
from pages import load_sharpener
from sharpkd.app.live import MAX_SIDES, VIEWS, LiveProcessor, LiveSettings
from sharpkd.degrade import CODEC_PRESETS
from sharpkd.errors import SharpkdError

CLEAN = "none (clean camera)"
PROCESSOR_KEY = "live_processor"  # session_state: this session's LiveProcessor (its stats survive reruns)
CAMERA_MESSAGES = {
    "device_ask_permission": "Allow the camera in your browser to start.",
    "device_not_available": "No camera found. Plug one in (or close the app using it) and press START again.",
    "device_access_denied": (
        "Camera access was denied. Allow it in the browser's site settings (the icon left of the address), "
        "then press START again."
    ),
    "media_api_not_available": "This browser cannot share a camera here (it needs https or localhost).",
}

CAMERA_HELP = (
    "No picture after START? **NotFoundError** or *No camera found*: this computer has no camera, or another app "
    "holds it; plug one in or close that app, then press START again. **NotAllowedError** or *access denied*: allow "
    "the camera for this site in the browser's settings (the icon left of the address), then press START again. "
    "The rest of the app works without a camera."
)


def settings_ui() -> LiveSettings:
    """The link, the view and the processing size, as :class:`LiveSettings`."""
    a, b, c = st.columns(3)
    link = a.selectbox(
        "Simulated bad link",
        [*CODEC_PRESETS, CLEAN],
        help="What the other side of a poor call sees: the frame downscaled 2x and coded by a real-time codec at "
        "a poor call's bitrate (the h264/vp8 presets, but as one continuous stream).",
        key="live_link",
    )
    strength = a.slider("Link strength (divides the bitrate)", 0.5, 3.0, 1.0, 0.25, key="live_strength")
    view = b.radio("View", VIEWS, horizontal=True, key="live_view")
    split = b.slider("Split position (%)", 0, 100, 50, disabled=view != "split", key="live_split")
    max_side = c.select_slider(
        "Process at (longest side, px)",
        MAX_SIDES,
        value=640,
        help="Frames are downscaled to this first; the student's cost grows with the pixel count.",
        key="live_max_side",
    )
    sharpen = c.toggle("Sharpen with the student", value=True, key="live_sharpen")
    mirror = c.toggle("Mirror (selfie view)", value=False, key="live_mirror")
    return LiveSettings(
        link=None if link == CLEAN else link,
        strength=strength,
        sharpen=sharpen,
        view=view,
        split=split / 100,
        max_side=max_side,
        mirror=mirror,
    )


def rtc_configuration() -> dict:
    """``{"iceServers": [...]}`` from ``st.secrets``; none configured means host candidates only (localhost)."""
    try:
        servers = sharpkd.app.live.ice_servers(st.secrets)
    except FileNotFoundError:  # no secrets.toml at all
        servers = []
    except ValueError as err:
        st.warning(f"Ignoring the ICE servers in st.secrets: {err}")
        servers = []
    return {"iceServers": servers}


@st.fragment(run_every=1.0)
def stats_panel() -> None:
    """FPS, latency and dropped frames, refreshed every second while the page is open."""
    processor: LiveProcessor | None = st.session_state.get(PROCESSOR_KEY)
    stats = processor.stats.snapshot() if processor is not None else {}
    fps, latency = stats.get("fps"), stats.get("latency_ms")
    a, b, c = st.columns(3)
    a.metric("Live FPS", f"{fps:.1f}" if fps is not None else "–")
    b.metric("Latency per frame", f"{latency:.0f} ms" if latency is not None else "–")
    c.metric("Frames shown / dropped", f"{stats.get('processed', 0)} / {stats.get('dropped', 0)}")
    if stats.get("error"):
        st.error(f"Processing failed on a frame (showing the camera unchanged): {stats['error']}")


st.title("Live")
st.caption(
    "Your webcam as the other side of a poor video call sees it, and the same frames after the student. Press START "
    "and allow the camera. Frames are processed on this server; when the student falls behind the camera, frames "
    "are dropped rather than queued, so the picture never lags."
)
settings = settings_ui()
try:
    student = load_sharpener("student")
except SharpkdError as err:
    st.error(f"The student model could not be loaded, so there is nothing to run live: {err}")
    st.stop()

processor = st.session_state.get(PROCESSOR_KEY)
if processor is None or processor.sharpen != student.sharpen:
    processor = st.session_state[PROCESSOR_KEY] = LiveProcessor(student.sharpen, settings)
processor.update(settings)

stats_panel()
webrtc_streamer(
    key="live",
    mode=WebRtcMode.SENDRECV,
    rtc_configuration=rtc_configuration(),
    media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}, "audio": False},
    queued_video_frames_callback=processor.recv_queued,
    async_processing=True,
    translations=CAMERA_MESSAGES,
    on_change=processor.reset_stats,
)
st.caption(CAMERA_HELP)
st.caption(
    "Latency per frame: degrading, sharpening and composing one frame on this server (mean of the last 30). "
    "The network adds its own; on localhost that is about a frame."
)
