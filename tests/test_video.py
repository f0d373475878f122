"""Tests for sharpkd.runtime.video, .videoio and .flicker on a tiny synthesized clip (24 frames, 64x48, H.264)."""

from __future__ import annotations

import logging
import math
import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import sharpkd.runtime.video
from sharpkd.data import degrade_image
from sharpkd.errors import NoVideoStreamError, VideoDecodeError, VideoError, VideoTooLargeError
from sharpkd.runtime.flicker import FlickerMeter, flicker_ratio
from sharpkd.runtime.link import CallLink
from sharpkd.runtime.video import VideoConfig, VideoReport, sharpen_video, synthesize_clip
from sharpkd.runtime.videoio import VideoReader, VideoWriter, probe_video

FRAMES, WIDTH, HEIGHT = 24, 64, 48


def identity(rgb: np.ndarray) -> np.ndarray:
    return rgb


def unsharp(rgb: np.ndarray) -> np.ndarray:
    return cv2.addWeighted(rgb, 1.5, cv2.GaussianBlur(rgb, (0, 0), 1.0), -0.5, 0)


class Recorder:
    """A sharpen callable that records the frames it is given."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        self.inputs.append(rgb.copy())
        return rgb


def read_frames(path: str | os.PathLike) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return synthesize_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, size=(WIDTH, HEIGHT))


def test_synthesize_clip_moves(clip: str) -> None:
    frames = read_frames(clip)
    assert len(frames) == FRAMES
    assert frames[0].shape == (HEIGHT, WIDTH, 3)
    assert np.abs(frames[1].astype(int) - frames[0]).mean() > 5  # the pattern moves


def test_same_frame_count_and_size(clip: str, tmp_path: Path) -> None:
    report = sharpen_video(clip, tmp_path / "out.mp4", unsharp)
    assert isinstance(report, VideoReport)
    assert (report.frames, report.width, report.height) == (FRAMES, WIDTH, HEIGHT)
    assert report.input_fps == pytest.approx(12.0)
    assert report.processing_fps > 0 and report.end_to_end_fps > 0
    assert report.output == str(tmp_path / "out.mp4")
    frames = read_frames(report.output)
    assert len(frames) == FRAMES
    assert frames[0].shape == (HEIGHT, WIDTH, 3)


def test_identity_writes_the_input(clip: str, tmp_path: Path) -> None:
    out = read_frames(sharpen_video(clip, tmp_path / "out.mp4", identity).output)
    src = read_frames(clip)
    # mp4v is lossy, so a re-encode differs a little, but colours must not be swapped (RGB <-> BGR round trip)
    assert np.abs(out[5].astype(float) - src[5]).mean() < 8


def test_side_by_side_doubles_width(clip: str, tmp_path: Path) -> None:
    report = sharpen_video(clip, tmp_path / "sbs.mp4", identity, VideoConfig(side_by_side=True))
    assert (report.width, report.height) == (2 * WIDTH, HEIGHT)
    frames = read_frames(report.output)
    assert len(frames) == FRAMES and frames[0].shape == (HEIGHT, 2 * WIDTH, 3)


def test_fps_overlay_draws(clip: str, tmp_path: Path) -> None:
    plain = read_frames(sharpen_video(clip, tmp_path / "plain.mp4", identity).output)
    overlay = read_frames(sharpen_video(clip, tmp_path / "fps.mp4", identity, VideoConfig(fps_overlay=True)).output)
    assert len(plain) == len(overlay) == FRAMES
    diff = np.abs(plain[3].astype(int) - overlay[3]).max(axis=2)  # (H, W)
    assert diff.max() > 100
    assert diff[HEIGHT // 2 :].mean() > diff[: HEIGHT // 2].mean()  # drawn at the bottom


def test_identity_flicker_is_one(clip: str, tmp_path: Path) -> None:
    report = sharpen_video(clip, tmp_path / "out.mp4", identity)
    assert report.flicker_ratio == pytest.approx(1.0, abs=1e-9)


def test_random_noise_flickers(clip: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def noisy(rgb: np.ndarray) -> np.ndarray:
        return np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)

    report = sharpen_video(clip, tmp_path / "out.mp4", noisy)
    assert report.flicker_ratio > 1.2


def test_degrade_changes_frames_reproducibly(clip: str, tmp_path: Path) -> None:
    clean, vc, vc_again = Recorder(), Recorder(), Recorder()
    sharpen_video(clip, tmp_path / "a.mp4", clean)
    sharpen_video(clip, tmp_path / "b.mp4", vc, VideoConfig(degrade="vc"))
    sharpen_video(clip, tmp_path / "c.mp4", vc_again, VideoConfig(degrade="vc"))
    assert len(vc.inputs) == FRAMES
    assert np.abs(vc.inputs[4].astype(int) - clean.inputs[4]).mean() > 1
    for a, b in zip(vc.inputs, vc_again.inputs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_degrade_is_degrade_image_seeded_per_frame(clip: str, tmp_path: Path) -> None:
    clean, degraded = Recorder(), Recorder()
    sharpen_video(clip, tmp_path / "a.mp4", clean, VideoConfig(max_frames=3))
    sharpen_video(clip, tmp_path / "b.mp4", degraded, VideoConfig(degrade="motion9", seed=5, max_frames=3))
    for i, (frame, lq) in enumerate(zip(clean.inputs, degraded.inputs, strict=True)):
        np.testing.assert_array_equal(lq, degrade_image(frame, "motion9", seed=5 + i))


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_codec_degradation_is_one_call_link_stream(clip: str, tmp_path: Path, codec: str) -> None:
    clean, degraded = Recorder(), Recorder()
    sharpen_video(clip, tmp_path / "a.mp4", clean, VideoConfig(max_frames=6))
    sharpen_video(clip, tmp_path / "b.mp4", degraded, VideoConfig(degrade=codec, strength=2.0, max_frames=6))
    link = CallLink(codec, strength=2.0)  # one persistent encoder for the whole clip, as in a call
    for frame, lq in zip(clean.inputs, degraded.inputs, strict=True):
        np.testing.assert_array_equal(lq, link.send(frame))
    assert np.abs(degraded.inputs[5].astype(int) - clean.inputs[5]).mean() > 1


def test_unknown_degradation(clip: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown degradation"):
        sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(degrade="nope"))
    with pytest.raises(ValueError, match="strength"):
        sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(degrade="vc", strength=0))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such video file"):
        sharpen_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", identity)


@pytest.mark.parametrize(
    ("content", "message"),
    [(np.random.default_rng(0).bytes(4096), "not a video FFmpeg can decode"), (b"", "empty \\(0 bytes\\)")],
    ids=["random", "empty"],
)
def test_corrupt_file(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=f"bad.mp4.*{message}"):
        sharpen_video(bad, tmp_path / "out.mp4", identity)
    assert not (tmp_path / "out.mp4").exists()


def test_truncated_file(clip: str, tmp_path: Path) -> None:
    data = Path(clip).read_bytes()
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:200])  # inside the index (moov atom, at the front: +faststart)
    with pytest.raises(VideoDecodeError, match="head.mp4"):
        sharpen_video(head, tmp_path / "out.mp4", identity)
    assert not (tmp_path / "out.mp4").exists()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])  # a recording cut off midway: the frames that are there are kept
    report = sharpen_video(half, tmp_path / "out.mp4", identity)
    assert 0 < report.frames < FRAMES and len(read_frames(report.output)) == report.frames


def test_file_without_video_stream(tmp_path: Path) -> None:
    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(NoVideoStreamError, match="voice.m4a has no video stream .*audio"):
        sharpen_video(audio, tmp_path / "out.mp4", identity)
    assert not (tmp_path / "out.mp4").exists()


def test_too_large_frames(clip: str, tmp_path: Path) -> None:
    with pytest.raises(VideoTooLargeError, match=f"{WIDTH}x{HEIGHT}"):
        sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(max_pixels=WIDTH * HEIGHT - 1))
    assert not (tmp_path / "out.mp4").exists()
    assert sharpen_video(clip, tmp_path / "ok.mp4", identity, VideoConfig(max_pixels=WIDTH * HEIGHT)).frames == FRAMES


def test_writes_browser_playable_h264(clip: str, tmp_path: Path) -> None:
    report = sharpen_video(clip, tmp_path / "out.mp4", unsharp, VideoConfig(side_by_side=True))
    assert report.codec == "libx264"
    with av.open(report.output) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (2 * WIDTH, HEIGHT)
        assert sum(1 for _ in container.decode(stream)) == FRAMES
    data = Path(report.output).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: a browser can play before the download ends


def test_keeps_every_frame_and_its_timestamp(tmp_path: Path) -> None:
    # a variable-frame-rate source (a phone recording, a call): gaps of 1, 2 and 5 ticks of 1/30 s
    ticks = [0, 1, 2, 4, 5, 10, 11, 12, 14, 19]
    src = tmp_path / "vfr.mkv"
    with VideoWriter(src, 30.0, time_base=Fraction(1, 30)) as writer:
        for i, t in enumerate(ticks):
            writer.write(np.full((32, 48, 3), 20 * i, np.uint8), pts=t)
    report = sharpen_video(src, tmp_path / "out.mp4", identity)
    assert report.frames == len(ticks)
    with VideoReader(src) as a, VideoReader(report.output) as b:
        times_in = [float(pts * a.info.time_base) for _, pts in a.frames()]
        times_out = [float(pts * b.info.time_base) for _, pts in b.frames()]
    assert times_in == pytest.approx([t / 30 for t in ticks], abs=1e-3)
    assert times_out == pytest.approx(times_in, abs=1e-3)


def test_reads_what_ffmpeg_reads(tmp_path: Path) -> None:
    webm = tmp_path / "call.webm"  # VP9 in WebM, what a browser's MediaRecorder writes
    with VideoWriter(webm, 10.0, encoder="libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"}) as writer:
        for i in range(5):
            writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    assert probe_video(webm).codec == "vp9"
    report = sharpen_video(webm, tmp_path / "out.mp4", identity)
    assert report.frames == 5 and probe_video(report.output).codec == "h264"


def test_stages_run_in_their_own_threads(clip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[str, set[str]] = {"degrade": set(), "sharpen": set(), "encode": set()}
    real_degrade, real_write = sharpkd.runtime.video.degrade_image, VideoWriter.write

    def degrade(*args: object, **kw: object) -> np.ndarray:
        threads["degrade"].add(threading.current_thread().name)
        return real_degrade(*args, **kw)

    def write(self: VideoWriter, *args: object, **kw: object) -> None:
        threads["encode"].add(threading.current_thread().name)
        real_write(self, *args, **kw)

    def sharpen(rgb: np.ndarray) -> np.ndarray:
        threads["sharpen"].add(threading.current_thread().name)
        return rgb

    monkeypatch.setattr(sharpkd.runtime.video, "degrade_image", degrade)
    monkeypatch.setattr(VideoWriter, "write", write)
    report = sharpen_video(clip, tmp_path / "out.mp4", sharpen, VideoConfig(degrade="gauss1.5", max_frames=6))
    assert report.frames == 6
    assert threads["sharpen"] == {threading.current_thread().name}
    assert len(threads["degrade"]) == len(threads["encode"]) == 1
    assert len(set.union(*threads.values())) == 3  # decode+degrade, sharpen and encode: three threads


def test_unknown_encoder(clip: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown video encoder 'nope'"):
        sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(codec="nope"))
    report = sharpen_video(clip, tmp_path / "old.mp4", identity, VideoConfig(codec="mp4v", max_frames=3))
    assert report.codec == "mpeg4" and probe_video(report.output).codec == "mpeg4"


def test_camera_that_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="camera 99"):
        sharpen_video(99, tmp_path / "out.mp4", identity, VideoConfig(max_frames=1))


def test_unwritable_output(clip: str, tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="cannot write"):
        sharpen_video(clip, tmp_path / "out.unknownext", identity)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(VideoError, match="folder"):
        sharpen_video(clip, blocker / "out.mp4", identity)


def test_creates_output_folder(clip: str, tmp_path: Path) -> None:
    report = sharpen_video(clip, tmp_path / "a" / "b" / "out.mp4", identity, VideoConfig(max_frames=2))
    assert Path(report.output).is_file()


def test_progress_once_per_frame(clip: str, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    sharpen_video(clip, tmp_path / "out.mp4", identity, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, FRAMES) for i in range(1, FRAMES + 1)]


def test_max_frames_truncates(clip: str, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    report = sharpen_video(
        clip, tmp_path / "out.mp4", identity, VideoConfig(max_frames=5), progress=lambda d, t: calls.append((d, t))
    )
    assert report.frames == 5
    assert len(read_frames(report.output)) == 5
    assert calls[-1] == (5, 5)


def test_failure_midway_keeps_written_frames(clip: str, tmp_path: Path) -> None:
    count = 0

    def breaks(rgb: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        if count == 8:
            raise RuntimeError("model exploded")
        return rgb

    with pytest.raises(RuntimeError, match="model exploded"):
        sharpen_video(clip, tmp_path / "out.mp4", breaks)
    assert len(read_frames(tmp_path / "out.mp4")) == 7


def test_bad_sharpen_output(clip: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        sharpen_video(clip, tmp_path / "out.mp4", lambda rgb: rgb[:10])
    with pytest.raises(TypeError, match="uint8"):
        sharpen_video(clip, tmp_path / "out.mp4", lambda rgb: rgb.astype(np.float32))


def test_output_must_differ_from_source(clip: str) -> None:
    with pytest.raises(ValueError, match="differ"):
        sharpen_video(clip, clip, identity)


def test_show_headless_without_display(
    clip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level(logging.WARNING, logger="sharpkd.runtime.video"):
        report = sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(show=True))
    assert report.frames == FRAMES
    assert sum("headless" in r.getMessage() for r in caplog.records) == 1


def test_show_falls_back_when_imshow_fails(
    clip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def no_gui(*args: object) -> None:  # what opencv-python-headless does
        calls.append(args)
        raise cv2.error("The function is not implemented")

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", no_gui)
    with caplog.at_level(logging.WARNING, logger="sharpkd.runtime.video"):
        report = sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(show=True))
    assert report.frames == FRAMES
    assert len(calls) == 1  # tried once, then headless
    assert sum("headless" in r.getMessage() for r in caplog.records) == 1


def test_show_quits_on_key(clip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "imshow", lambda title, frame: shown.append(frame.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 3 else -1)
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: None)
    report = sharpen_video(clip, tmp_path / "out.mp4", identity, VideoConfig(show=True))
    assert report.frames == 3 and shown == [(HEIGHT, WIDTH, 3)] * 3


def test_odd_size_is_cropped_to_even(tmp_path: Path) -> None:
    odd = tmp_path / "odd.mkv"
    with VideoWriter(odd, 10.0, encoder="ffv1", pix_fmt="yuv444p") as writer:  # 4:4:4, so odd sizes stay odd
        for i in range(4):
            writer.write(np.full((47, 63, 3), 30 * i, np.uint8))
    assert (probe_video(odd).width, probe_video(odd).height) == (63, 47)
    report = sharpen_video(odd, tmp_path / "out.mp4", identity)
    frames = read_frames(report.output)
    assert (report.width, report.height) == (62, 46)
    assert frames[0].shape == (46, 62, 3)


def test_flicker_ratio_function() -> None:
    ramp = [np.full((4, 5, 3), v, np.uint8) for v in (0, 10, 20, 30)]
    assert flicker_ratio(ramp, ramp) == pytest.approx(1.0)
    doubled = [np.full((4, 5, 3), 2 * v, np.uint8) for v in (0, 10, 20, 30)]
    assert flicker_ratio(ramp, doubled) == pytest.approx(2.0)
    frozen = [ramp[0]] * 4
    assert flicker_ratio(ramp, frozen) == 0.0
    assert math.isnan(flicker_ratio(ramp[:1], ramp[:1]))  # fewer than 2 frames
    assert math.isnan(flicker_ratio(frozen, ramp))  # static input
    with pytest.raises(ValueError, match="same length"):
        flicker_ratio(ramp, ramp[:3])
    with pytest.raises(ValueError, match="constant"):
        flicker_ratio([ramp[0], np.zeros((2, 2, 3), np.uint8)], ramp[:2])


def test_flicker_of_uint8_frames_is_exact() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (17, 23, 3), dtype=np.uint8) for _ in range(3)]
    outputs = [rng.integers(0, 256, (17, 23, 3), dtype=np.uint8) for _ in range(3)]
    as_float = [f.astype(np.float64) for f in frames], [o.astype(np.float64) for o in outputs]  # the float64 path
    assert flicker_ratio(frames, outputs) == pytest.approx(flicker_ratio(*as_float), rel=1e-12)


def test_flicker_meter_copies_reused_buffers() -> None:
    meter, buffer = FlickerMeter(), np.zeros((2, 2, 3), np.uint8)
    for v in (0, 10, 20):
        inp = np.full((2, 2, 3), v, np.uint8)
        buffer[:] = v  # a model that writes every output into the same array
        meter.update(inp, buffer)
    assert meter.pairs == 2 and meter.ratio == pytest.approx(1.0)


def write_rotated_clip(path: Path, degrees: int, frames: int = 3) -> np.ndarray:
    """A landscape clip (64x32, a white band on its left) flagged to display rotated, as phones record upright video.
    Returns the coded frame."""
    rgb = np.zeros((32, 64, 3), np.uint8)
    rgb[:, :16] = 255
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=12)
    stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
    stream.set_display_rotation(degrees)
    for _ in range(frames):
        container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
    container.mux(stream.encode())
    container.close()
    return rgb


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_rotated_phone_clip_is_read_upright(tmp_path: Path, degrees: int) -> None:
    coded = write_rotated_clip(tmp_path / "phone.mp4", degrees)
    with VideoReader(tmp_path / "phone.mp4") as reader:
        assert (reader.info.width, reader.info.height) == (64, 32)  # the header's coded size
        rgb, _ = next(reader.frames())
    expected = np.rot90(coded, degrees // 90)  # counter-clockwise, as a player shows it
    assert rgb.shape == expected.shape
    assert np.abs(rgb.astype(int) - expected).mean() < 8  # the white band moved where the player shows it


def test_rotated_clip_is_sharpened_and_written_upright(tmp_path: Path) -> None:
    write_rotated_clip(tmp_path / "phone.mp4", 90)
    recorder = Recorder()
    report = sharpen_video(tmp_path / "phone.mp4", tmp_path / "out.mp4", recorder)
    assert recorder.inputs[0].shape == (64, 32, 3)  # the model sees the portrait frame
    assert (report.width, report.height) == (32, 64)
    with av.open(report.output) as out:  # written upright, with no rotation flag left for a player to apply
        first = next(out.decode(video=0))
        assert (first.width, first.height, first.rotation) == (32, 64, 0)
    frames = read_frames(report.output)
    assert frames[0].shape == (64, 32, 3)
    assert frames[0][:16].mean() < 40 and frames[0][-16:].mean() > 200  # the band is at the bottom, as displayed


def test_unrotated_frames_are_untouched() -> None:
    from sharpkd.runtime.videoio import upright

    rgb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert upright(rgb, 0) is rgb
    assert np.array_equal(upright(rgb, 360), rgb)
    assert np.array_equal(upright(rgb, 89), np.rot90(rgb, 1))
