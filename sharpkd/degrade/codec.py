"""Real video codecs: a frame of a panning clip sent through H.264 or VP8 at a poor-call bitrate, via PyAV.

What the two presets model is a video call over a poor link. The sender downscales the camera frame by 2 (bicubic,
antialiased, as :func:`sharpkd.degrade.downup`), encodes it in the codec's real-time mode, and the receiver decodes
and upscales it back (bicubic). The camera pans a little, so the frame that is kept is inter-coded (predicted from
the previous ones), the way almost every frame of a call is:

============= ================================================================================================
setting        value
============= ================================================================================================
bitrate        :data:`BPP` = 0.1 bits per pixel per frame at :data:`FPS` = 30 fps, times the coded low-res pixel
               count; ``strength`` divides it (2 = half the bits). FFmpeg passes whole kbit/s to both encoders,
               so it is rounded to kbit/s (at least 1). A poor call's webcam stream is ~0.05 bpp (640x360 at
               ~350 kbit/s), but a photo downscaled to 128-256 px packs far more detail into each pixel: at 0.05
               bpp a 256 px astronaut comes out at ~21 dB PSNR (face unrecognisable) and libvpx is already at its
               largest quantizer, so ``strength`` would change nothing. 0.1 bpp gives ~22-24 dB there, blocky but
               legible; libvpx saturates again below ~0.05-0.075 bpp (strength above ~1.5-2)
rate control   CBR with a 1 s buffer: x264 VBV (maxrate = bitrate), libvpx CBR end-usage (min = max = bitrate)
h264           libx264, preset veryfast, tune zerolatency (no lookahead, no B-frames), constrained-baseline
               profile as WebRTC negotiates it, scene-cut off, QP at most 51
vp8            libvpx, deadline realtime, cpu-used 8, error-resilient, no lag or alt-ref frames, keyframes at
               most 3x a frame's budget, undershoot 100 % / overshoot 15 % (WebRTC's settings), quantizer 2-63
               (WebRTC stops at 56, which pins these bitrates to one quantizer)
clip           :data:`CLIP_FRAMES` = 17 frames, GOP 250 (only the first frame is a keyframe); the camera pans 1-3 px
               per frame (full resolution, integer offsets) in a direction drawn from the generator; the middle
               frame is the output and its window is the image itself (the others see reflection beyond the
               border). Frames after the middle cannot change it (no lookahead, no B-frames), so they are not
               encoded: the output is the 8th inter frame after the keyframe
pixels         8-bit camera frames, downscaled in uint8; yuv420p in BT.601 TV range, converted here (chroma: 2x2
               means in, bilinear out; one channel is coded as luma only); the low-res frame is reflect-padded to
               even sides of at least :data:`MIN_SIDE` and cropped back after decoding; the upscaled result is
               quantized to 8 bits, as the receiver displays it
threads        one, so a generator seed gives bit-identical output on a given machine (x264 and libvpx pick SIMD
               code paths by CPU, so another CPU may differ in the last bits)
============= ================================================================================================

One clip costs ~3-4 ms for a 128 px training crop and ~0.3-0.5 s for a 1920x1080 image (one core).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from sharpkd.errors import CodecError

CODEC_PRESETS: tuple[str, ...] = ("h264", "vp8")
BPP = 0.1  # bits per coded low-res pixel per frame at strength 1: a poor call (see the module docstring)
FPS = 30  # declared frame rate: with BPP it sets the bitrate
CLIP_FRAMES = 17  # the middle frame (index 8) is the output; frames after it are not encoded
PAN_PX = (1.0, 3.0)  # camera pan speed range, full-resolution pixels per frame
VBV_SECONDS = 1.0  # rate-control buffer
GOP = 250  # keyframe interval, longer than the clip
MIN_SIDE = 16  # the coded frame is at least one macroblock each way

_ENCODERS: dict[str, str] = {"h264": "libx264", "vp8": "libvpx"}
_DECODERS: dict[str, str] = {"h264": "h264", "vp8": "vp8"}


def _encoder_options(codec: str, bit_rate: int) -> dict[str, str]:
    common = {"maxrate": bit_rate, "bufsize": round(bit_rate * VBV_SECONDS)}
    if codec == "h264":
        opts = {"preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "x264-params": "scenecut=0"}
    else:
        opts = {
            "deadline": "realtime",
            "cpu-used": 8,
            "minrate": bit_rate,  # min = max = target selects libvpx's CBR end-usage
            "rc_init_occupancy": round(bit_rate * VBV_SECONDS / 2),
            "error-resilient": "default",
            "lag-in-frames": 0,
            "auto-alt-ref": 0,
            "drop-threshold": 0,  # WebRTC may drop frames on overshoot; here every frame must come out
            "max-intra-rate": 300,
            "undershoot-pct": 100,
            "overshoot-pct": 15,
            "static-thresh": 1,
        }
    return {k: str(v) for k, v in {**common, **opts}.items()}


def _qrange(codec: str) -> tuple[int, int]:
    return (0, 51) if codec == "h264" else (2, 63)


def _reflect_index(n: int, start: int, length: int) -> torch.Tensor:
    """Indices ``start .. start + length - 1`` mirrored into ``[0, n)`` (edge pixel not repeated), any distance."""
    idx = torch.arange(start, start + length)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


def _reflect(x: torch.Tensor, top: int, height: int, left: int, width: int) -> torch.Tensor:
    """Window ``[top, top + height) x [left, left + width)`` of ``x`` (..., H, W), mirrored beyond the border."""
    H, W = x.shape[-2:]
    if (top, left, height, width) == (0, 0, H, W):
        return x
    return x[..., _reflect_index(H, top, height), :][..., _reflect_index(W, left, width)]


def _pan_offsets(generator: torch.Generator, frames: int) -> list[tuple[int, int]]:
    """Integer (dy, dx) window offsets of frames ``0 .. frames - 1``; the last one is (0, 0)."""
    speed = PAN_PX[0] + (PAN_PX[1] - PAN_PX[0]) * float(torch.rand((), generator=generator))
    angle = 2.0 * math.pi * float(torch.rand((), generator=generator))
    vy, vx = speed * math.sin(angle), speed * math.cos(angle)
    last = frames - 1
    return [(round((t - last) * vy), round((t - last) * vx)) for t in range(frames)]


def _low_res_size(H: int, W: int) -> tuple[int, int]:
    # the same size as downup(x, 2.0)
    return max(1, round(H / 2)), max(1, round(W / 2))


def _coded_side(n: int) -> int:
    return max(MIN_SIDE, n + n % 2)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _sender(img: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """Camera clip of one image (C, H, W) in [0, 1]: 8-bit, panned, downscaled 2x -> (T, C, h, w) uint8."""
    C, H, W = img.shape
    m = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    canvas = _reflect(_to_uint8(img), -m, H + 2 * m, -m, W + 2 * m).permute(1, 2, 0)  # (H + 2m, W + 2m, C)
    clip = torch.stack([canvas[m + dy : m + dy + H, m + dx : m + dx + W] for dy, dx in offsets])  # (T, H, W, C)
    # antialiased bicubic as downup, in uint8 and channels-last (torch's fast path): within a level or two of float
    clip = clip.permute(0, 3, 1, 2)  # (T, C, H, W), channels-last in memory
    small = F.interpolate(clip, size=_low_res_size(H, W), mode="bicubic", align_corners=False, antialias=True)
    return small.contiguous()  # (T, C, h, w)


# BT.601 "TV range", what both encoders assume for yuv420p without other metadata
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _to_yuv420(frames: torch.Tensor) -> np.ndarray:
    """(T, C, h, w) uint8 RGB or gray, h and w even -> (T, 3h/2, w) uint8 yuv420p planes (chroma: 2x2 means)."""
    T, C, h, w = frames.shape
    x = frames.float()
    if C == 1:
        y, uv = x[:, 0], torch.full((T, 2, h // 2, w // 2), 128.0)
    else:
        ycc = F.conv2d(x, _RGB_TO_YCBCR[:, :, None, None])  # (T, 3, h, w), Y in [0, 255], Cb Cr in +-127.5
        y, uv = ycc[:, 0], 128.0 + 224.0 / 255.0 * F.avg_pool2d(ycc[:, 1:], 2)
    y = 16.0 + 219.0 / 255.0 * y
    planes = torch.cat([y.flatten(1), uv.flatten(1)], dim=1)  # Y, then U, then V, as PyAV lays out yuv420p
    return planes.round().clamp(0, 255).to(torch.uint8).reshape(T, h * 3 // 2, w).numpy()


def _from_yuv420(planes: np.ndarray, channels: int) -> torch.Tensor:
    """(3h/2, w) uint8 yuv420p -> (C, h, w) float32 in [0, 1]; chroma upsampled bilinear."""
    h, w = planes.shape[0] * 2 // 3, planes.shape[1]
    p = torch.from_numpy(planes).float()
    y = (p[:h] - 16.0) * (255.0 / 219.0)
    if channels == 1:
        return (y / 255.0).clamp(0, 1)[None]
    uv = p[h:].reshape(2, h // 2, w // 2)
    uv = F.interpolate(uv[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    ycc = torch.cat([y[None], (uv - 128.0) * (255.0 / 224.0)])
    rgb = F.conv2d(ycc[None], torch.linalg.inv(_RGB_TO_YCBCR)[:, :, None, None])[0]  # (3, h, w)
    return (rgb / 255.0).clamp(0, 1)


def _bit_rate(codec_pixels: int, bpp: float) -> int:
    return max(1, round(bpp * codec_pixels * FPS / 1000)) * 1000


def _transcode(planes: np.ndarray, codec: str, bpp: float) -> np.ndarray:
    """Encode yuv420p ``planes`` (T, 3h/2, w) as a clip and return its decoded last frame (3h/2, w)."""
    import av

    T, h, w = planes.shape[0], planes.shape[1] * 2 // 3, planes.shape[2]
    bit_rate = _bit_rate(h * w, bpp)
    enc = av.CodecContext.create(_ENCODERS[codec], "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, FPS), Fraction(FPS)
    enc.bit_rate, enc.gop_size, enc.max_b_frames, enc.thread_count = bit_rate, GOP, 0, 1
    enc.qmin, enc.qmax = _qrange(codec)
    enc.options = _encoder_options(codec, bit_rate)
    dec = av.CodecContext.create(_DECODERS[codec], "r")
    dec.thread_count = 1
    decoded = []
    for t in range(T + 1):  # the last round flushes the encoder
        frame = None
        if t < T:
            frame = av.VideoFrame.from_ndarray(planes[t], format="yuv420p")
            frame.pts = t
        for packet in enc.encode(frame):
            decoded += dec.decode(packet)
        assert not enc.options, f"{codec}: FFmpeg ignored the options {enc.options}"  # what open() left unused
    decoded += dec.decode(None)
    assert len(decoded) == T, f"{codec}: {T} frames in, {len(decoded)} out"
    return decoded[-1].to_ndarray()


def _transcode_checked(frames: torch.Tensor, codec: str, bpp: float) -> torch.Tensor:
    """(T, C, hc, wc) uint8 -> the decoded last frame (C, hc, wc) float32 in [0, 1], FFmpeg errors as CodecError."""
    T, C, h, w = frames.shape
    try:
        import av
    except ImportError as err:
        raise CodecError(f"the {codec} degradation needs PyAV (pip install av): {err}") from err
    try:
        planes = _transcode(_to_yuv420(frames), codec, bpp)
    except (av.error.FFmpegError, ValueError) as err:  # an unknown codec name is a ValueError
        raise CodecError(f"{codec} ({_ENCODERS[codec]}) failed on a {w}x{h} clip of {T} frames: {err}") from err
    return _from_yuv420(planes, C)


def _receiver(decoded: torch.Tensor, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """Decoded low-res frames (B, C, h, w) in [0, 1] -> bicubic upscale to ``size``, 8-bit, ``like``'s dtype."""
    up = F.interpolate(decoded.to(like.dtype), size=size, mode="bicubic", align_corners=False)
    return (_to_uint8(up).to(like.dtype) / 255.0).to(like.device)


def _check(x: torch.Tensor, codec: str, bpp: float) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or not x.is_floating_point() or x.shape[1] not in (1, 3):
        raise ValueError(f"expected a float (B, C, H, W) tensor with C 1 or 3, got {x.dtype} {tuple(x.shape)}")
    if codec not in CODEC_PRESETS:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODEC_PRESETS)}")
    if not (math.isfinite(bpp) and bpp > 0):
        raise ValueError(f"bpp must be a positive finite number, got {bpp!r}")


def video_call(
    x: torch.Tensor, codec: str = "h264", bpp: float = BPP, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Send each image through a poor video call: downscale 2x, encode a panning clip, decode, upscale back.

    Args:
        x: sharp images in ``[0, 1]``, one or three channels.
        codec: ``"h264"`` (libx264) or ``"vp8"`` (libvpx), settings in the module docstring.
        bpp: bits per coded low-res pixel per frame (:data:`BPP` is a poor call).
        generator: draws the pan speed and direction, two numbers per image; ``None`` means seed 0.

    Returns:
        The decoded middle frames, same shape, dtype and device, quantized to multiples of 1/255.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: ``x`` is not a float (B, 1 or 3, H, W) tensor, unknown ``codec``, or a non-positive ``bpp``.
        CodecError: PyAV is missing, or FFmpeg lacks the encoder or fails on the clip.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``, C is 1 or 3.

    Example:
        >>> lq = video_call(torch.rand(1, 3, 64, 64), "vp8", generator=torch.Generator().manual_seed(0))
    """
    _check(x, codec, bpp)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    H, W = x.shape[-2:]
    h, w = _low_res_size(H, W)
    out = []
    for img in x.detach().cpu():
        small = _sender(img, _pan_offsets(g, CLIP_FRAMES // 2 + 1))  # (T, C, h, w)
        frame = _transcode_checked(_reflect(small, 0, _coded_side(h), 0, _coded_side(w)), codec, bpp)
        out.append(frame[:, :h, :w])
    return _receiver(torch.stack(out), (H, W), x)
