"""sharpen_video carries a file's audio over (sharpkd.runtime.videoio.mux_audio): copied where the output container
takes the codec, re-encoded where it does not, kept on the video's timeline, cut at the video's end; a failure keeps
the video without audio."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import sharpkd.runtime.videoio
from sharpkd.cli import main
from sharpkd.runtime.video import VideoConfig, sharpen_video, synthesize_clip
from sharpkd.runtime.videoio import mux_audio

FPS, FRAMES, RATE, TONE = 12, 24, 48000, 440.0


def clip_with_audio(path: Path, vcodec: str, acodec: str, *, delay: float = 0.0) -> Path:
    """A 2 s, 64x48 clip of changing grey frames with a 440 Hz stereo tone starting ``delay`` seconds in."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(vcodec, rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream(acodec, rate=RATE, layout="stereo")
        fmt = audio.codec_context.codec.audio_formats[0].name
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        size = audio.codec_context.frame_size or 1024
        t = np.arange(int(RATE * (FRAMES / FPS - delay))) / RATE
        wave = (0.3 * np.sin(2 * np.pi * TONE * t)).astype(np.float32)
        for start in range(0, len(wave) - size, size):
            chunk = np.stack([wave[start : start + size]] * 2)  # planar (2, size)
            if fmt == "s16":
                chunk = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
            elif fmt == "flt":
                chunk = chunk.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = RATE, start + round(delay * RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """``{"video"|"audio": (codec, start seconds)}`` of a file."""
    with av.open(str(path)) as container:
        return {
            s.type: (s.codec_context.name, float(s.start_time * s.time_base) if s.start_time is not None else 0.0)
            for s in container.streams
            if s.type in ("video", "audio")
        }


def audio_seconds_and_pitch(path: Path) -> tuple[float, float, float]:
    """(first sample's time, last sample's end time, dominant frequency in Hz) of a file's audio."""
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.audio[0]))
    samples = np.concatenate([f.to_ndarray().reshape(len(f.layout.channels), -1)[0] for f in frames])
    rate = frames[0].sample_rate
    first = float(frames[0].pts * frames[0].time_base)
    last = float(frames[-1].pts * frames[-1].time_base) + frames[-1].samples / rate
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return first, last, float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def test_aac_in_mp4_is_copied_and_keeps_its_tone(tmp_path: Path) -> None:
    src = clip_with_audio(tmp_path / "call.mp4", "libx264", "aac")
    report = sharpen_video(src, tmp_path / "out.mp4", lambda rgb: rgb)
    assert report.audio == "copied (aac)"
    assert streams(tmp_path / "out.mp4") == {"video": ("h264", 0.0), "audio": ("aac", pytest.approx(0.0, abs=0.03))}
    first, last, pitch = audio_seconds_and_pitch(tmp_path / "out.mp4")
    assert pitch == pytest.approx(TONE, abs=5) and last == pytest.approx(FRAMES / FPS, abs=0.1)
    assert video_frames(tmp_path / "out.mp4") == FRAMES


def test_opus_from_webm_is_reencoded_to_aac_for_mp4_on_the_same_timeline(tmp_path: Path) -> None:
    """Opus in MP4 does not play in every browser: it becomes AAC. A tone that starts 0.5 s in still does."""
    src = clip_with_audio(tmp_path / "call.webm", "libvpx", "libopus", delay=0.5)
    report = sharpen_video(src, tmp_path / "out.mp4", lambda rgb: rgb)
    assert report.audio == "re-encoded (opus -> aac)"
    assert streams(tmp_path / "out.mp4")["audio"][0] == "aac"
    first, last, pitch = audio_seconds_and_pitch(tmp_path / "out.mp4")
    assert first == pytest.approx(0.5, abs=0.05) and pitch == pytest.approx(TONE, abs=5)


def test_unordered_pcm_layout_from_matroska_is_reencoded(tmp_path: Path) -> None:
    """PCM in Matroska reads back with an unnamed "2 channels" layout, which the AAC encoder refuses as it is."""
    src = clip_with_audio(tmp_path / "call.mkv", "libx264", "pcm_s16le")
    report = sharpen_video(src, tmp_path / "out.mp4", lambda rgb: rgb)
    assert report.audio == "re-encoded (pcm_s16le -> aac)"
    assert audio_seconds_and_pitch(tmp_path / "out.mp4")[2] == pytest.approx(TONE, abs=5)


def test_webm_output_gets_opus_and_matroska_takes_any_codec(tmp_path: Path) -> None:
    src = clip_with_audio(tmp_path / "call.mp4", "libx264", "aac")
    webm = sharpen_video(src, tmp_path / "out.webm", lambda rgb: rgb, VideoConfig(codec="libvpx-vp9"))
    assert webm.audio == "re-encoded (aac -> opus)" and streams(tmp_path / "out.webm")["audio"][0] == "opus"
    mkv = sharpen_video(src, tmp_path / "out.mkv", lambda rgb: rgb)
    assert mkv.audio == "copied (aac)"


def test_max_frames_cuts_the_audio_at_the_videos_end(tmp_path: Path) -> None:
    src = clip_with_audio(tmp_path / "call.mp4", "libx264", "aac")
    report = sharpen_video(src, tmp_path / "out.mp4", lambda rgb: rgb, VideoConfig(max_frames=6))
    assert report.frames == 6 and report.audio == "copied (aac)"
    _, last, _ = audio_seconds_and_pitch(tmp_path / "out.mp4")
    assert last == pytest.approx(6 / FPS, abs=0.05)  # 0.5 s of video: one AAC packet (21 ms) of slack at most


def test_audio_off_and_sources_without_audio(tmp_path: Path) -> None:
    src = clip_with_audio(tmp_path / "call.mp4", "libx264", "aac")
    off = sharpen_video(src, tmp_path / "off.mp4", lambda rgb: rgb, VideoConfig(audio=False))
    assert off.audio == "off" and "audio" not in streams(tmp_path / "off.mp4")
    silent = synthesize_clip(tmp_path / "silent.mp4", frames=4)
    report = sharpen_video(silent, tmp_path / "out.mp4", lambda rgb: rgb)
    assert report.audio == "none in the source" and "audio" not in streams(tmp_path / "out.mp4")


def test_a_failed_remux_keeps_the_video_without_audio(tmp_path: Path, monkeypatch, caplog) -> None:
    src = clip_with_audio(tmp_path / "call.mp4", "libx264", "aac")

    def broken(source, video, out_path, encoder):
        out_path.write_bytes(b"half a file")
        raise av.error.InvalidDataError(1094995529, "simulated muxer failure")

    monkeypatch.setattr(sharpkd.runtime.videoio, "_remux_with_audio", broken)
    report = sharpen_video(src, tmp_path / "out.mp4", lambda rgb: rgb)
    assert report.audio.startswith("dropped: ") and "simulated muxer failure" in report.audio
    assert video_frames(tmp_path / "out.mp4") == FRAMES and "audio" not in streams(tmp_path / "out.mp4")
    assert not list(tmp_path.glob(".out.audio*"))  # the half-written temporary file is gone
    assert "keeps no audio" in caplog.text


def test_mux_audio_reports_an_unreadable_source(tmp_path: Path) -> None:
    video = Path(synthesize_clip(tmp_path / "v.mp4", frames=2))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    assert mux_audio(bad, video).startswith("dropped: cannot read the audio of bad.mp4")
    assert video_frames(video) == 2


def test_cli_video_reports_the_audio_and_takes_no_audio(tiny_models_dir: Path, tmp_path: Path, capsys) -> None:
    src = clip_with_audio(tmp_path / "call.mp4", "libx264", "aac")
    assert main(["video", str(src), "-o", str(tmp_path / "a.mp4"), "--max-frames", "3"]) == 0
    assert "codec: libx264; audio: copied (aac)" in capsys.readouterr().out
    assert main(["video", str(src), "-o", str(tmp_path / "b.mp4"), "--max-frames", "3", "--no-audio"]) == 0
    assert "audio: off" in capsys.readouterr().out and "audio" not in streams(tmp_path / "b.mp4")
