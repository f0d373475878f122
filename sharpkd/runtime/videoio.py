"""Read any video FFmpeg reads and write browser-playable H.264, through PyAV (which bundles FFmpeg and libx264).

:class:`VideoReader` decodes a file's first video stream into ``(H, W, 3)`` uint8 RGB frames with their timestamps;
:func:`probe_video` reads only the header. :class:`VideoWriter` encodes RGB frames, by default as H.264 in yuv420p
(what every browser plays) at CRF 20 with x264's ``veryfast`` preset, and moves an MP4's index to the front
(``+faststart``) so a browser starts playing before the whole file has arrived. :class:`CameraReader` reads a webcam
through OpenCV, which opens cameras on every OS. :func:`synthesize_clip` writes a small moving test pattern.

Bad files raise the specific :class:`~sharpkd.errors.VideoError` subclasses: :class:`~sharpkd.errors.VideoDecodeError`
(zero bytes, corrupt, truncated, no decodable frame), :class:`~sharpkd.errors.NoVideoStreamError` and
:class:`~sharpkd.errors.VideoTooLargeError` (frames above a caller's pixel limit).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sharpkd.errors import NoVideoStreamError, VideoDecodeError, VideoError, VideoTooLargeError

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # what a camera (or a file) that declares no frame rate is written at
DEFAULT_ENCODER = "libx264"  # H.264: plays in every browser (in yuv420p)
BROWSER_PIX_FMT = "yuv420p"  # 4:2:0 chroma; browsers play neither yuv444p nor 10-bit H.264
ENCODER_ALIASES = {"mp4v": "mpeg4", "h264": "libx264", "vp9": "libvpx-vp9", "mjpg": "mjpeg"}  # old fourccs
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ogv", ".3gp", ".flv", ".wmv")
_FASTSTART_SUFFIXES = (".mp4", ".m4v", ".mov")
_X264_DEFAULTS = {"crf": "20", "preset": "veryfast"}  # visually near-lossless, ~3x faster than x264's "medium"


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says about its first video stream."""

    width: int
    height: int
    fps: float  # average frame rate; DEFAULT_FPS when the file declares none
    frames: int | None  # declared frame count; None when unknown (many containers don't store it)
    duration: float | None  # seconds; None when unknown
    codec: str  # FFmpeg's decoder name, e.g. "h264"
    time_base: Fraction  # unit of the frames' timestamps


def _open_input(path: Path) -> Any:
    import av

    if not path.is_file():
        raise VideoError(f"no such video file: {path}")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path.name} is empty (0 bytes): not a video")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise VideoDecodeError(
            f"cannot read {path.name}: not a video FFmpeg can decode, or corrupt or truncated ({err.strerror})"
        ) from err


def _stream_info(container: Any, path: Path, max_pixels: int | None) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams} & {"audio", "subtitle"})
        if not kinds:  # no stream at all, or only unreadable "data": a cut-off or broken header
            raise VideoDecodeError(f"cannot read {path.name}: it holds no readable stream (corrupt or truncated)")
        raise NoVideoStreamError(f"{path.name} has no video stream (its streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"{path.name}: its video stream declares no frame size (corrupt header)")
    if max_pixels is not None and width * height > max_pixels:
        raise VideoTooLargeError(
            f"{path.name} is {width}x{height} ({width * height / 1e6:.1f} MP); the limit is {max_pixels / 1e6:.1f} MP "
            f"(e.g. {_example_size(max_pixels)}). Downscale it first, e.g. ffmpeg -i in.mp4 -vf scale=-2:1080 out.mp4"
        )
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate and math.isfinite(float(rate)) and float(rate) > 0 else DEFAULT_FPS
    duration = None
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        frames=stream.frames or None,
        duration=duration,
        codec=stream.codec_context.name,
        time_base=stream.time_base or Fraction(1, round(fps)),
    )


def _rotation(frame: Any) -> int:
    """The counter-clockwise display rotation of a decoded frame in degrees (0 when it carries no display matrix)."""
    try:
        return int(frame.rotation or 0)
    except (AttributeError, ValueError, TypeError):  # older PyAV, or a malformed matrix: show the frame as coded
        return 0


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """``rgb`` turned by ``rotation`` degrees counter-clockwise, to the nearest quarter turn (what a player shows)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _example_size(max_pixels: int) -> str:
    for w, h in ((3840, 2160), (2560, 1440), (1920, 1080), (1280, 720), (640, 360)):
        if w * h <= max_pixels:
            return f"{w}x{h}"
    return f"{int(math.sqrt(max_pixels))} px square"


def probe_video(path: str | os.PathLike, max_pixels: int | None = None) -> VideoInfo:
    """Read a video's header (size, frame rate, frame count, duration) without decoding frames.

    Raises:
        VideoError: no such file. VideoDecodeError: empty, corrupt or unreadable. NoVideoStreamError: no video
            stream. VideoTooLargeError: more than ``max_pixels`` pixels per frame.
    """
    path = Path(path)
    container = _open_input(path)
    try:
        return _stream_info(container, path, max_pixels)
    finally:
        container.close()


class VideoReader:
    """Decode the first video stream of any file FFmpeg reads into RGB frames.

    Args:
        path: the video file.
        max_pixels: refuse frames larger than this (``None``: no limit).

    Raises:
        VideoError, VideoDecodeError, NoVideoStreamError, VideoTooLargeError: see :func:`probe_video`; raised by the
            constructor, so nothing has been written when a file is refused.

    Example:
        >>> with VideoReader("call.webm") as reader:
        ...     for rgb, pts in reader.frames():
        ...         ...
    """

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.name = f"video {self.path}"
        self._container = _open_input(self.path)
        try:
            self.info = _stream_info(self._container, self.path, max_pixels)
        except VideoError:
            self._container.close()
            raise

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """Yield ``((H, W, 3) uint8 RGB, pts)`` in presentation order; ``pts`` in :attr:`VideoInfo.time_base` units.

        Frames come upright: a rotation in the stream's display matrix (a phone held upright records landscape frames
        and a 90-degree flag) is applied, as FFmpeg's own tools do, so a portrait clip yields portrait frames while
        :attr:`info` keeps the coded size.

        Raises:
            VideoDecodeError: the stream holds no decodable frame. A stream that breaks after some frames ends
                there, with a warning (a recording cut off midway keeps what it has).
        """
        import av

        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads inside FFmpeg's decoder
        count = 0
        try:
            for frame in self._container.decode(stream):
                count += 1
                yield upright(frame.to_ndarray(format="rgb24"), _rotation(frame)), frame.pts
        except av.error.FFmpegError as err:
            if count == 0:
                raise VideoDecodeError(f"cannot decode {self.path.name}: {err.strerror}") from err
            logger.warning("%s: decoding stopped after %d frames: %s", self.path.name, count, err)
        if count == 0:
            raise VideoDecodeError(f"{self.path.name} holds no decodable video frames (empty or truncated)")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CameraReader:
    """Frames of camera ``index`` through OpenCV, as ``(rgb, None)`` pairs like :meth:`VideoReader.frames`.

    Raises:
        VideoError: the camera cannot be opened (no such device, or in use), or gives no frame.
    """

    def __init__(self, index: int) -> None:
        self.name = f"camera {index}"
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise VideoError(f"cannot open camera {index} (no such device, or it is in use)")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        w, h = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(fps) if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self.info = VideoInfo(w, h, fps, None, None, "camera", Fraction(1, round(fps)))

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """Yield ``((H, W, 3) uint8 RGB, None)`` until the camera stops giving frames."""
        ok, bgr = self._capture.read()
        if not ok:
            raise VideoError(f"{self.name} gives no frames")
        while ok:
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None
            ok, bgr = self._capture.read()

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> CameraReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_encoder(name: str) -> str:
    """The FFmpeg encoder for ``name`` (an encoder name, or an old fourcc such as ``mp4v``).

    Raises:
        ValueError: FFmpeg (as bundled with PyAV) has no such video encoder.
    """
    import av

    encoder = ENCODER_ALIASES.get(name.lower(), name)
    try:
        codec = av.Codec(encoder, "w")
    except (av.error.FFmpegError, ValueError) as err:  # PyAV raises UnknownCodecError, a ValueError
        raise ValueError(f"unknown video encoder {name!r}; try libx264 (H.264), mpeg4 or libvpx-vp9") from err
    if codec.type != "video":
        raise ValueError(f"{name!r} is a {codec.type} encoder, not a video encoder")
    return encoder


class VideoWriter:
    """Encode RGB frames into a video file; opened on the first frame, whose size it takes.

    Args:
        path: the output; its extension picks the container (``.mp4``, ``.mkv``, ``.mov``, ``.webm``, ``.avi``).
            Missing parent folders are created.
        fps: the declared frame rate, and the frame spacing when frames come without timestamps.
        time_base: unit of the ``pts`` given to :meth:`write` (the input's, to keep its timing); ``None``: ``1/fps``.
        encoder: an FFmpeg encoder (default ``libx264``) or an alias from :data:`ENCODER_ALIASES`.
        options: encoder options; ``None`` gives x264 CRF 20 with the ``veryfast`` preset.
        pix_fmt: the coded pixel format, ``yuv420p`` (what browsers play) unless the encoder lacks it.

    With 4:2:0 or 4:2:2 chroma, frames are cropped to even width and height. Timestamps that do not increase are
    nudged one tick forward, so every frame is kept.

    Raises:
        ValueError: an unknown encoder. VideoError: the folder cannot be created, or FFmpeg cannot write ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = DEFAULT_FPS,
        *,
        time_base: Fraction | None = None,
        encoder: str = DEFAULT_ENCODER,
        options: dict[str, str] | None = None,
        pix_fmt: str = BROWSER_PIX_FMT,
    ) -> None:
        self.path = Path(path)
        self.pix_fmt = pix_fmt
        self.encoder = resolve_encoder(encoder)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.time_base = time_base if time_base is not None else 1 / self.fps
        if options is None:
            options = dict(_X264_DEFAULTS) if self.encoder == "libx264" else {}
        self.options = options
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._last_pts: int | None = None
        self._even = True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise VideoError(f"cannot create the folder of {self.path}: {err}") from err

    def _open(self, width: int, height: int) -> None:
        import av

        faststart = self.path.suffix.lower() in _FASTSTART_SUFFIXES
        try:
            self._container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"} if faststart else {})
            stream = self._container.add_stream(self.encoder, rate=self.fps)
            formats = [f.name for f in (stream.codec_context.codec.video_formats or ())]
            stream.pix_fmt = self.pix_fmt if not formats or self.pix_fmt in formats else formats[0]
            self._even = any(s in stream.pix_fmt for s in ("420", "422", "nv12", "nv21"))
            width, height = (width - width % 2, height - height % 2) if self._even else (width, height)
            stream.width, stream.height = width, height
            stream.time_base = stream.codec_context.time_base = self.time_base
            stream.options = dict(self.options)
            stream.codec_context.open()
        except (av.error.FFmpegError, ValueError) as err:  # ValueError: no container for this extension
            self.close()
            raise VideoError(
                f"cannot write video {self.path}: FFmpeg cannot write {self.encoder} at {width}x{height} to a "
                f"{self.path.suffix or 'suffixless'} file ({err}); use .mp4 or .mkv for H.264"
            ) from err
        self._stream = stream

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame; ``pts`` in ``time_base`` units (``None``: the next frame slot)."""
        import av

        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        if self._even:
            H, W = rgb.shape[:2]
            rgb = rgb[: H - H % 2, : W - W % 2]
        if pts is None:
            pts = round(self.frames / (self.fps * self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        try:
            self._container.mux(self._stream.encode(frame))
        except av.error.FFmpegError as err:
            raise VideoError(f"writing frame {self.frames} of {self.path} failed: {err}") from err
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (frames written so far stay playable); safe to call twice."""
        import av

        container, self._container = self._container, None
        if container is None:
            return
        try:
            if self._stream is not None:
                container.mux(self._stream.encode(None))
        except av.error.FFmpegError as err:
            logger.warning("flushing the encoder of %s failed: %s", self.path, err)
        finally:
            container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Audio codecs that every browser plays in an MP4/MOV; other sources' audio is re-encoded to AAC for these containers.
_BROWSER_AUDIO = ("aac", "mp3")
_AUDIO_FALLBACK = {".webm": "libopus", ".ogv": "libopus", ".ogg": "libopus"}  # other containers: "aac"


def mux_audio(source: str | os.PathLike, video: str | os.PathLike) -> str:
    """Give ``video`` (a file :class:`VideoWriter` wrote from ``source``'s frames, at their timestamps) the first
    audio stream of ``source``, in place; the video stream is copied untouched.

    The audio is copied as it is when ``video``'s container takes its codec (in ``.mp4``/``.mov``/``.m4v`` only the
    codecs every browser plays, AAC and MP3), else re-encoded (to AAC; Opus for ``.webm``). Audio past the video's
    last frame is dropped, so a clip cut short (``max_frames``) keeps only its own part. On any failure ``video`` is
    left as it was, without audio.

    Returns:
        What happened, for a report: ``"none in the source"``, ``"copied (aac)"``, ``"re-encoded (vorbis -> aac)"``,
        or ``"dropped: <reason>"``.
    """
    import av

    source, video = Path(source), Path(video)
    try:
        with av.open(str(source)) as src:
            if not src.streams.audio:
                return "none in the source"
            codec = src.streams.audio[0].codec_context.name
    except av.error.FFmpegError as err:
        return f"dropped: cannot read the audio of {source.name} ({err.strerror})"
    tmp = video.with_name(f".{video.stem}.audio{video.suffix}")
    suffix = video.suffix.lower()
    attempts = [] if suffix in _FASTSTART_SUFFIXES and codec not in _BROWSER_AUDIO else [None]
    attempts.append(_AUDIO_FALLBACK.get(suffix, "aac"))
    reason = ""
    for encoder in attempts:
        try:
            _remux_with_audio(source, video, tmp, encoder)
            os.replace(tmp, video)
        except (av.error.FFmpegError, ValueError, OSError) as err:
            reason = str(err)
            tmp.unlink(missing_ok=True)
            continue
        return f"copied ({codec})" if encoder is None else f"re-encoded ({codec} -> {encoder.removeprefix('lib')})"
    logger.warning("%s keeps no audio: %s", video.name, reason)
    return f"dropped: {reason}"


def _named_layout(layout: Any) -> str:
    """An encoder-friendly channel layout: the source's when it has a name ("stereo", "5.1"), else mono or stereo by
    channel count (an unordered "2 channels" layout, as PCM in Matroska has, is refused by the AAC encoder)."""
    name = getattr(layout, "name", "") or ""
    if name and not name.endswith("channels"):
        return name
    return "mono" if len(getattr(layout, "channels", ())) == 1 else "stereo"


def _video_end(video: Path) -> float:
    """Seconds at which the last frame of ``video``'s first video stream ends (from packet headers)."""
    import av

    end = 0.0
    with av.open(str(video)) as vid:
        for packet in vid.demux(vid.streams.video[0]):
            if packet.pts is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end


def _remux_with_audio(source: Path, video: Path, out_path: Path, encoder: str | None) -> None:
    """Write ``out_path``: ``video``'s video packets, and ``source``'s first audio stream copied (``encoder=None``)
    or re-encoded with ``encoder``, interleaved by time and cut at the video's end."""
    import av

    end = _video_end(video)
    options = {"movflags": "+faststart"} if out_path.suffix.lower() in _FASTSTART_SUFFIXES else {}
    with av.open(str(video)) as vid, av.open(str(source)) as src, av.open(str(out_path), "w", options=options) as out:
        v_in, a_in = vid.streams.video[0], src.streams.audio[0]
        v_out = out.add_stream_from_template(v_in)
        if encoder is None:
            a_out = out.add_stream_from_template(a_in)
        else:
            rate = a_in.codec_context.sample_rate or 48000
            a_out = out.add_stream(encoder, rate=rate, layout=_named_layout(a_in.codec_context.layout))
            a_out.time_base = Fraction(1, rate)

        def audio_packets() -> Iterator[Any]:
            for packet in src.demux(a_in):
                if packet.dts is None:  # the demuxer's final flush packet
                    continue
                if packet.pts is not None and float(packet.pts * packet.time_base) >= end:
                    break
                if encoder is None:
                    packet.stream = a_out
                    yield packet
                    continue
                for frame in packet.decode():
                    if frame.pts is not None:  # keep the audio's place on the timeline, in samples
                        frame.pts = round(float(frame.pts * frame.time_base) * rate)
                        frame.time_base = Fraction(1, rate)
                    yield from a_out.encode(frame)
            if encoder is not None:
                yield from a_out.encode(None)

        def seconds(packet: Any) -> float:
            return float(packet.dts * packet.time_base) if packet.dts is not None else -math.inf

        audio = audio_packets()
        pending = next(audio, None)
        for packet in vid.demux(v_in):  # interleaved by time, so the muxer holds next to nothing back
            if packet.dts is None:
                continue
            while pending is not None and seconds(pending) <= seconds(packet):
                out.mux(pending)
                pending = next(audio, None)
            packet.stream = v_out
            out.mux(packet)
        while pending is not None:
            out.mux(pending)
            pending = next(audio, None)


def synthesize_clip(
    path: str | os.PathLike, frames: int = 24, size: tuple[int, int] = (64, 48), fps: float = 12.0
) -> str:
    """Write a deterministic moving test pattern: a checkerboard drifting right and a disc circling over it.

    Args:
        path: output file, e.g. ``.mp4`` (H.264, CRF 12: near-lossless). Missing parent folders are created.
        frames: number of frames, at least 1.
        size: ``(width, height)`` in pixels; odd sizes lose their last row or column (4:2:0 chroma).
        fps: declared frame rate.

    Returns:
        ``str(path)``.

    Raises:
        ValueError: non-positive ``frames``, ``size`` or ``fps``.
        VideoError: FFmpeg cannot write ``path``.
    """
    width, height = size
    if frames < 1 or width < 1 or height < 1 or fps <= 0:
        raise ValueError(f"frames, size and fps must be positive, got frames={frames}, size={size}, fps={fps}")
    cell = max(2, min(width, height) // 6)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = max(2, min(width, height) // 5)
    with VideoWriter(path, fps, options={"crf": "12", "preset": "veryfast"}) as writer:
        for t in range(frames):
            board = (((xx - t) // cell + yy // cell) % 2).astype(np.uint8)  # (H, W), shifts 1 px per frame
            frame = np.where(board[..., None] == 1, np.uint8(200), np.uint8(40)).repeat(3, axis=2)
            angle = 2 * math.pi * t / max(frames, 2)
            cx = int(width / 2 + width / 4 * math.cos(angle))
            cy = int(height / 2 + height / 4 * math.sin(angle))
            cv2.circle(frame, (cx, cy), radius, (230, 80, 40), thickness=-1, lineType=cv2.LINE_AA)  # RGB: red
            writer.write(frame)
    return str(path)
