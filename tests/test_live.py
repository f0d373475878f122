"""The Live page's engine (sharpkd.app.live), the streaming bad link (sharpkd.runtime.link) and the page in AppTest.

The browser half (WebRTC with a fake camera) is tests/test_live_browser.py.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from sharpkd.app.live import LiveProcessor, LiveSettings, LiveStats, check_settings, compose, fit_side, ice_servers
from sharpkd.errors import CheckpointError
from sharpkd.metrics import psnr
from sharpkd.runtime.link import CallLink

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def pan(photo: np.ndarray, frames: int) -> list[np.ndarray]:
    """A camera panning 2 px per frame over ``photo``: (64, 96, 3) crops."""
    return [np.ascontiguousarray(photo[10 : 10 + 64, 2 * t : 2 * t + 96]) for t in range(frames)]


def mean_psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    import torch

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255

    return float(np.mean([psnr(t(x), t(y)).item() for x, y in zip(a, b, strict=True)]))


# -- the streaming link ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_call_link_degrades_each_frame_and_keeps_its_shape(photo: np.ndarray, codec: str) -> None:
    frames = pan(photo, 8)
    link = CallLink(codec)
    out = [link.send(f) for f in frames]
    assert all(o.shape == f.shape and o.dtype == np.uint8 for o, f in zip(out, frames, strict=True))
    quality = mean_psnr(frames, out)
    assert 18 < quality < 40  # blurred and blocky, yet the same picture


def test_call_link_strength_lowers_the_bitrate(photo: np.ndarray) -> None:
    frames = pan(photo, 8)
    good = CallLink("h264", strength=0.5)
    bad = CallLink("h264", strength=3.0)
    assert mean_psnr(frames, [good.send(f) for f in frames]) > mean_psnr(frames, [bad.send(f) for f in frames]) + 0.5


def test_call_link_is_deterministic_and_restarts_on_a_new_size(photo: np.ndarray) -> None:
    frames = pan(photo, 4)
    a, b = CallLink("vp8"), CallLink("vp8")
    for f in frames:
        np.testing.assert_array_equal(a.send(f), b.send(f))
    odd = np.ascontiguousarray(photo[:33, :47])  # odd size: coded padded to even and cropped back
    assert a.send(odd).shape == (33, 47, 3)


def test_call_link_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown codec 'av1'"):
        CallLink("av1")
    with pytest.raises(ValueError, match="strength"):
        CallLink("h264", strength=0)
    with pytest.raises(ValueError, match="uint8 RGB"):
        CallLink().send(np.zeros((8, 8), np.uint8))


# -- frame processing and the drop logic -------------------------------------------------------------------------------
class CountingSharpen:
    """Adds 1 to every pixel (so its output is recognisable) and records what it was given."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        self.inputs.append(rgb.copy())
        return np.minimum(rgb, 254) + 1


def video_frame(value: int, pts: int, size: tuple[int, int] = (48, 64)) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.full((*size, 3), value, np.uint8), format="rgb24")
    frame.pts, frame.time_base = pts, Fraction(1, 90_000)
    return frame


CLEAN = LiveSettings(link=None)


def test_recv_queued_processes_only_the_newest_frame_and_counts_the_dropped() -> None:
    sharpen = CountingSharpen()
    proc = LiveProcessor(sharpen, CLEAN)
    out = asyncio.run(proc.recv_queued([video_frame(10, 0), video_frame(20, 3000), video_frame(30, 6000)]))
    assert len(out) == 1 and len(sharpen.inputs) == 1
    assert sharpen.inputs[0].mean() == 30  # the newest
    assert out[0].pts == 6000 and out[0].time_base == Fraction(1, 90_000)
    shown = out[0].to_ndarray(format="rgb24")
    assert shown.shape == (48, 128, 3)  # side by side
    assert np.all(shown[-10:, 64:] == 31)  # the sharpened half (below its label)
    asyncio.run(proc.recv_queued([video_frame(40, 9000)]))  # nothing queued behind it: nothing dropped
    stats = proc.stats.snapshot()
    assert (stats["processed"], stats["dropped"]) == (2, 2)
    assert stats["latency_ms"] is not None and stats["latency_ms"] >= 0


def test_recv_queued_shows_the_camera_and_the_error_when_processing_fails() -> None:
    def broken(rgb: np.ndarray) -> np.ndarray:
        raise RuntimeError("model exploded")

    proc = LiveProcessor(broken, CLEAN)
    latest = video_frame(50, 100)
    assert asyncio.run(proc.recv_queued([video_frame(5, 0), latest])) == [latest]
    assert proc.stats.snapshot()["error"] == "RuntimeError: model exploded"


def test_process_through_the_link_downscaled_and_split(photo: np.ndarray) -> None:
    sharpen = CountingSharpen()
    settings = LiveSettings(link="h264", view="split", split=0.25, max_side=64)
    proc = LiveProcessor(sharpen, settings)
    out = proc.process(photo)  # 96x128 -> 48x64 first
    lq = sharpen.inputs[0]
    assert lq.shape == out.shape == (48, 64, 3)
    assert np.abs(lq.astype(int) - fit_side(photo, 64)).mean() > 1  # the link changed it
    np.testing.assert_array_equal(out[20:, 18:], np.minimum(lq[20:, 18:], 254) + 1)  # right of the divider: student
    np.testing.assert_array_equal(out[20:, :15], lq[20:, :15])  # left: the link's output
    assert np.all(out[:, 15:17] == 255)  # the divider
    proc.update(LiveSettings(link=None, sharpen=False, max_side=64, mirror=True))
    np.testing.assert_array_equal(proc.process(photo)[20:, 64:], fit_side(photo[:, ::-1], 64)[20:])


def test_compose_side_by_side_labels_the_halves() -> None:
    lq, pred = np.full((40, 50, 3), 100, np.uint8), np.full((40, 50, 3), 200, np.uint8)
    out = compose(lq, pred, LiveSettings(), "h264 call")
    assert out.shape == (40, 100, 3)
    assert np.all(out[-5:, :50] == 100) and np.all(out[-5:, 50:] == 200)
    assert out[:12, :30].min() == 35 and out[:12, :30].max() > 200  # white caption on a darkened box


def test_fit_side_keeps_small_frames_and_even_sizes(photo: np.ndarray) -> None:
    assert fit_side(photo, 640) is photo
    assert fit_side(photo, 50).shape == (38, 50, 3)


def test_settings_are_checked() -> None:
    assert check_settings(LiveSettings(link="vp8")).link == "vp8"
    for bad in (LiveSettings(link="mpeg2"), LiveSettings(view="wipe"), LiveSettings(split=2), LiveSettings(max_side=4)):
        with pytest.raises(ValueError):
            check_settings(bad)
    with pytest.raises(ValueError, match="view"):
        LiveProcessor(lambda x: x).update(LiveSettings(view="grid"))


def test_stats_fps_over_the_last_two_seconds() -> None:
    stats = LiveStats()
    assert stats.snapshot(now=0.0)["fps"] is None
    for i in range(11):
        stats.record(0.02, dropped=1, now=10.0 + 0.1 * i)  # 10 frames per second
    snap = stats.snapshot(now=11.0)
    assert snap["fps"] == pytest.approx(10.0)
    assert snap["latency_ms"] == pytest.approx(20.0)
    assert (snap["processed"], snap["dropped"]) == (11, 11)
    assert stats.snapshot(now=20.0)["fps"] is None  # nothing shown lately


# -- ICE servers from st.secrets ---------------------------------------------------------------------------------------
def test_ice_servers_from_secrets() -> None:
    assert ice_servers({}) == []  # localhost: host candidates only
    turn = {"urls": ("turn:turn.example.com:3478",), "username": "u", "credential": "p"}
    got = ice_servers({"webrtc": {"ice_servers": [{"urls": "stun:stun.example.com:3478"}, turn]}})
    assert got == [{"urls": "stun:stun.example.com:3478"}, {**turn, "urls": ["turn:turn.example.com:3478"]}]
    with pytest.raises(ValueError, match=r"ice_servers\[0\] needs 'urls'"):
        ice_servers({"webrtc": {"ice_servers": [{"username": "u"}]}})
    with pytest.raises(ValueError, match="must be a list"):
        ice_servers({"webrtc": {"ice_servers": "turn:x"}})


# -- the page ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def streamer_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stands in for streamlit_webrtc.webrtc_streamer, which needs a real server (the browser test has one)."""
    import streamlit_webrtc

    calls: list[dict] = []
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", lambda **kw: calls.append(kw))
    return calls


@pytest.fixture
def live_app(tiny_models_dir, streamer_calls):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    yield at
    st.cache_resource.clear()


def test_live_page_renders_controls_and_stats(live_app: AppTest, streamer_calls: list[dict]) -> None:
    at = live_app
    turn = {"urls": ["turn:turn.example.com:3478"], "username": "u", "credential": "p"}
    at.secrets["webrtc"] = {"ice_servers": [turn]}
    at.switch_page("pages/live.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="live_link").options == ["h264", "vp8", "none (clean camera)"]
    assert [m.label for m in at.metric] == ["Live FPS", "Latency per frame", "Frames shown / dropped"]
    assert at.metric[0].value == "–"  # before START
    processor = at.session_state["live_processor"]
    call = streamer_calls[-1]
    assert call["rtc_configuration"] == {"iceServers": [turn]}
    assert call["queued_video_frames_callback"] == processor.recv_queued and call["async_processing"]
    assert call["media_stream_constraints"]["audio"] is False
    at.selectbox(key="live_link").set_value("none (clean camera)").run()
    at.radio(key="live_view").set_value("split").run()
    assert at.session_state["live_processor"] is processor  # kept across reruns, with the new settings
    assert processor.settings.link is None and processor.settings.view == "split"
    assert any("NotFoundError" in c.value for c in at.caption)  # what a missing camera looks like, and what to do


def test_live_page_bad_ice_secrets_warn_and_go_on(live_app: AppTest, streamer_calls: list[dict]) -> None:
    at = live_app
    at.secrets["webrtc"] = {"ice_servers": "turn:nope"}
    at.switch_page("pages/live.py").run()
    assert not at.exception
    assert any("Ignoring the ICE servers" in w.value for w in at.warning)
    assert streamer_calls[-1]["rtc_configuration"] == {"iceServers": []}  # localhost still works


def test_live_page_without_a_student_is_an_error(live_app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    import sharpkd.runtime.sharpener

    def missing(name: str, **kw: object) -> None:
        raise CheckpointError(f"no shipped model {name!r}")

    monkeypatch.setattr(sharpkd.runtime.sharpener, "load_pretrained", missing)
    live_app.switch_page("pages/live.py").run()
    assert not live_app.exception
    assert "could not be loaded" in live_app.error[0].value
