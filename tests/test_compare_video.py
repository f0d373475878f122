"""Compare's video tab: sharpkd.app.clip (limits, side-by-side H.264) and pages/compare_video.render() in AppTest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from sharpkd.app.clip import ClipLimits, check_clip, side_by_side_clip
from sharpkd.errors import NoVideoStreamError, VideoDecodeError, VideoTooLargeError
from sharpkd.runtime.video import synthesize_clip
from sharpkd.runtime.videoio import VideoReader

ROOT = Path(__file__).resolve().parent.parent
FRAMES, WIDTH, HEIGHT, FPS = 12, 64, 48, 12.0  # one second


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return synthesize_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, size=(WIDTH, HEIGHT), fps=FPS)


def brighter(rgb: np.ndarray) -> np.ndarray:
    return np.minimum(rgb, 235) + 20


def test_side_by_side_clip_is_browser_h264_degraded_left_sharpened_right(clip: str) -> None:
    done: list[tuple[int, int | None]] = []
    result = side_by_side_clip(clip, brighter, "gauss1.5", 1.0, progress=lambda d, t: done.append((d, t)))
    assert done[-1] == (FRAMES, FRAMES) and len(done) == FRAMES
    assert result.report.frames == FRAMES and (result.report.width, result.report.height) == (2 * WIDTH, HEIGHT)
    assert result.video[4:8] == b"ftyp" and result.notes == []
    out = Path(clip).with_name("result.mp4")
    out.write_bytes(result.video)
    with av.open(str(out)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "yuv420p")
    with VideoReader(out) as reader:
        frames = [rgb for rgb, _ in reader.frames()]
    assert len(frames) == FRAMES
    left, right = frames[6][HEIGHT // 2 :, :WIDTH].astype(int), frames[6][HEIGHT // 2 :, WIDTH:].astype(int)
    assert 10 < (right - left).mean() < 30  # the right half is the "sharpened" (brighter) left half


def test_codec_preset_and_already_blurry(clip: str) -> None:
    assert side_by_side_clip(clip, brighter, "vp8", 2.0).report.frames == FRAMES
    assert side_by_side_clip(clip, brighter, None).report.frames == FRAMES


def test_limits_are_checked_before_decoding(clip: str, tmp_path: Path) -> None:
    with pytest.raises(VideoTooLargeError, match=r"64x48 .* the limit is 0\.0 MP"):
        check_clip(clip, ClipLimits(max_pixels=1000))
    with pytest.raises(VideoTooLargeError, match=r"1\.0 s long; the limit is 0\.5 s"):
        check_clip(clip, ClipLimits(max_seconds=0.5))
    with pytest.raises(VideoTooLargeError, match="the limit is 0 MB"):
        check_clip(clip, ClipLimits(max_bytes=100))
    info, notes = check_clip(clip)
    assert (info.width, info.height, info.frames) == (WIDTH, HEIGHT, FRAMES) and notes == []


def test_4k_clip_is_refused(tmp_path: Path) -> None:
    uhd = synthesize_clip(tmp_path / "uhd.mp4", frames=1, size=(3840, 2160), fps=30.0)
    with pytest.raises(VideoTooLargeError, match="3840x2160"):
        side_by_side_clip(uhd, brighter, "vc")


# -- the tab, through a one-line wrapper page --------------------------------------------------------------------------
class Upload:
    """What st.file_uploader hands over, enough for render(): name, size, bytes and a file_id."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data, self.size, self.file_id = name, data, len(data), f"{name}-{len(data)}"

    def getvalue(self) -> bytes:
        return self._data


@pytest.fixture
def tab(tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """AppTest on a wrapper script that calls render(); st.file_uploader returns whatever ``uploads[0]`` holds."""
    uploads: list[Upload | None] = [None]
    monkeypatch.setattr(st, "file_uploader", lambda *a, **kw: uploads[0])  # AppTest cannot drop files
    script = tmp_path / "video_tab.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            import pages.compare_video
            pages.compare_video.render()
            """
        )
    )
    st.cache_resource.clear()
    at = AppTest.from_file(str(script), default_timeout=120)
    yield at, uploads
    st.cache_resource.clear()


def test_tab_states_the_limits_and_waits_for_an_upload(tab) -> None:
    at, _ = tab
    at.run()
    assert not at.exception
    assert "up to 50 MB, 10 s and 1080p" in at.markdown[0].value
    assert at.info[0].value == "Upload a clip to start."


def test_tab_runs_and_offers_the_video(tab, clip: str) -> None:
    at, uploads = tab
    uploads[0] = Upload("holiday.mp4", Path(clip).read_bytes())
    at.run()
    at.button(key="cmpv_run").click().run()
    assert not at.exception and not at.error
    videos = at.get("video")
    assert len(videos) == 1
    assert any("12 frames at 12.0 fps, 128x48 H.264" in c.value for c in at.caption)
    assert at.get("download_button")[0].proto.label == "Download side-by-side MP4"
    at.selectbox(key="cmpv_degr").set_value("vp8").run()  # a new setting: the old result is not shown as its result
    assert not at.get("video") and "press the button" in at.info[0].value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty (0 bytes)"),
        (np.random.default_rng(0).bytes(2048), "not a video FFmpeg can decode"),
    ],
    ids=["zero-byte", "corrupt"],
)
def test_tab_bad_clip_is_an_error_message(tab, data: bytes, message: str) -> None:
    at, uploads = tab
    uploads[0] = Upload("bad.mp4", data)
    at.run()
    at.button(key="cmpv_run").click().run()
    assert not at.exception
    assert message in at.error[0].value and "bad.mp4" in at.error[0].value
    assert not at.get("video")


def test_tab_audio_only_and_4k_are_error_messages(tab, tmp_path: Path) -> None:
    at, uploads = tab
    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    uploads[0] = Upload("voice.m4a", audio.read_bytes())
    at.run()
    at.button(key="cmpv_run").click().run()
    assert "voice.m4a has no video stream" in at.error[0].value
    uhd = synthesize_clip(tmp_path / "uhd.mp4", frames=1, size=(3840, 2160), fps=30.0)
    uploads[0] = Upload("uhd.mp4", Path(uhd).read_bytes())
    at.run()
    at.button(key="cmpv_run").click().run()
    assert not at.exception
    assert "3840x2160" in at.error[0].value and "limit" in at.error[0].value


def test_tab_too_big_file_is_refused_unread(tab, monkeypatch: pytest.MonkeyPatch) -> None:
    import pages.compare_video

    at, uploads = tab
    monkeypatch.setattr(pages.compare_video, "LIMITS", ClipLimits(max_bytes=10))
    uploads[0] = Upload("big.mp4", b"x" * 11)
    at.run()
    at.button(key="cmpv_run").click().run()
    assert not at.exception and "MB" in at.error[0].value


def test_errors_are_specific(tmp_path: Path) -> None:
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError):
        check_clip(empty)
    audio = tmp_path / "a.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(NoVideoStreamError):
        check_clip(audio)
