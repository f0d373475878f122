"""Degradation synthesis: the soft frames of a poor video call, made from sharp images.

Every function takes and returns ``(B, C, H, W)`` float tensors in ``[0, 1]``, is pure (no global RNG), and is
deterministic for a given ``torch.Generator``. The six named presets, :data:`PRESETS`, are the project's evaluation
suite: the four synthetic ones (:data:`SYNTHETIC_PRESETS`) and two real video codecs (:data:`CODEC_PRESETS`):

========== =====================================================================================
name        what it models
========== =====================================================================================
downup2     bicubic downscale by 2 (antialiased), then bicubic upscale back: a low-bandwidth stream
            upscaled by the receiver
gauss1.5    Gaussian blur, sigma 1.5 px, reflect border: defocus
motion9     linear motion blur, 9 px long, angle drawn uniformly from [0, 180) degrees: camera shake
vc          downup2 followed by JPEG quality 35: the full video-call case, with a still-image codec
h264        a poor video call through H.264 (libx264, real-time, constrained baseline): 2x downscale, one
            inter-coded frame of a panning clip at 0.1 bits per pixel (CBR), decoded and upscaled back
vp8         the same call through VP8 (libvpx, real-time, WebRTC's settings)
========== =====================================================================================

``strength`` (default 1.0) scales a preset: ``downup`` factor ``1 + strength``, sigma ``1.5 * strength``, motion length
``round(9 * strength)``, for ``vc`` JPEG quality ``round(100 - 65 * strength)`` clamped to [5, 95], and for the codecs
the bitrate divided by ``strength``. :mod:`sharpkd.degrade.codec` documents the codec settings (PyAV / FFmpeg).

Training uses :func:`random_mix` ("mix"): downscale 1.5-4x (p=0.5), Gaussian sigma 0.5-3 (p=0.5), motion length
3-15 (p=0.3), Gaussian noise sigma up to 0.02 (p=0.3), JPEG quality 30-95 (p=0.5), at least one applied. The mixes
"presets" and "mix+presets" draw from all of :data:`PRESETS`. A weighted pool, ``"presets:motion9=3,gauss1.5=0.5"``,
draws each preset with probability proportional to its weight (1 for a preset not named, 0 leaves it out): see
:func:`preset_weights`. ``"mix+presets:vp8=2,..."`` is half :func:`random_mix`, half that weighted pool.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sharpkd.degrade.codec import BPP, CODEC_PRESETS, video_call

SYNTHETIC_PRESETS: tuple[str, ...] = ("downup2", "gauss1.5", "motion9", "vc")
PRESETS: tuple[str, ...] = SYNTHETIC_PRESETS + CODEC_PRESETS  # the evaluation suite, in table order
TRAIN_MIXES: tuple[str, ...] = ("mix", "presets", "mix+presets")
# one line per preset, for help texts (the app's preset selector); the module docstring has the details
PRESET_SUMMARIES: dict[str, str] = {
    "downup2": "a low-resolution stream upscaled by the receiver",
    "gauss1.5": "defocus",
    "motion9": "camera shake",
    "vc": "downup2 plus strong JPEG, a video call through a still-image codec",
    "h264": "a poor video call through a real H.264 encoder (0.1 bits per pixel, 2x downscaled)",
    "vp8": "the same call through VP8, WebRTC's codec",
}


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float (B, C, H, W) tensor, got dtype {x.dtype} and shape {tuple(x.shape)}")


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def downup(x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """Bicubic downscale by ``scale`` (antialiased) and bicubic upscale back to the input size.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``; the low-resolution size is ``max(1, round(H / scale))`` by the same for W.
    """
    _check(x)
    if scale <= 1.0:
        return x
    H, W = x.shape[-2:]
    h, w = max(1, round(H / scale)), max(1, round(W / scale))
    small = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def _pad_reflect(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    # reflect padding needs pad < size; fall back to replicate on tiny images
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel with one 2-D ``kernel`` (odd size), reflect border.

    Shape:
        ``x (B, C, H, W)``, ``kernel (kh, kw)`` -> ``(B, C, H, W)``.
    """
    _check(x)
    kh, kw = kernel.shape
    assert kh % 2 == 1 and kw % 2 == 1, f"kernel must be odd-sized, got {tuple(kernel.shape)}"
    C = x.shape[1]
    weight = kernel.to(x).expand(C, 1, kh, kw)
    return F.conv2d(_pad_reflect(x, kh // 2, kw // 2), weight, groups=C)


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalized 1-D Gaussian of size ``2 * ceil(3 * sigma) + 1``."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur with standard deviation ``sigma`` pixels, reflect border.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """
    _check(x)
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma).to(x)
    C, r = x.shape[1], k.numel() // 2
    y = F.conv2d(_pad_reflect(x, 0, r), k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(_pad_reflect(y, r, 0), k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def motion_kernel(length: int, angle_deg: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A normalized line kernel ``length`` pixels long at ``angle_deg`` (0 = horizontal), antialiased.

    The line is sampled at 8 points per pixel and splatted bilinearly, so every angle has the same length.

    Shape:
        ``(K, K)`` with ``K = length`` rounded up to odd.
    """
    if length < 1:
        raise ValueError(f"motion length must be >= 1, got {length}")
    K = length if length % 2 == 1 else length + 1
    kernel = torch.zeros(K, K, dtype=torch.float64)
    c = K // 2
    n = 8 * length
    t = torch.linspace(-(length - 1) / 2, (length - 1) / 2, n, dtype=torch.float64)
    a = math.radians(angle_deg)
    xs, ys = c + t * math.cos(a), c - t * math.sin(a)
    x0, y0 = xs.floor().long(), ys.floor().long()
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = (x0 + dx).clamp(0, K - 1), (y0 + dy).clamp(0, K - 1)
        kernel.index_put_((yi, xi), w, accumulate=True)
    return (kernel / kernel.sum()).to(dtype)


def motion_blur(x: torch.Tensor, length: int, angle_deg: float) -> torch.Tensor:
    """Linear motion blur ``length`` pixels long at ``angle_deg``, reflect border.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """
    _check(x)
    if length <= 1:
        return x
    return filter2d(x, motion_kernel(length, angle_deg))


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress each image at ``quality`` (1-95, Pillow's encoder, 4:2:0 chroma) and decode it again.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``, C is 1 or 3; the result is quantized to multiples of 1/255.
    """
    _check(x)
    import numpy as np
    from PIL import Image

    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, got {x.shape[1]}")
    out = []
    for img in x:
        arr = (img.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(pil.mode))
        dec = dec[..., None] if dec.ndim == 2 else dec
        out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1))
    return torch.stack(out).to(device=x.device, dtype=x.dtype) / 255.0


def add_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` and clamp to [0, 1].

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """
    _check(x)
    g = _default_generator(generator)
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype, device="cpu").to(x.device)
    return (x + sigma * noise).clamp(0.0, 1.0)


# -- named presets ------------------------------------------------------------------------------------------------


def _downup2(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    return downup(x, 1.0 + strength)


def _gauss(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    return gaussian_blur(x, 1.5 * strength)


def _motion(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    length = max(1, round(9 * strength))
    return torch.cat([motion_blur(img[None], length, _uniform(g, 0.0, 180.0)) for img in x])


def _vc(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    quality = int(min(95, max(5, round(100 - 65 * strength))))
    return jpeg(downup(x, 1.0 + strength), quality)


def _h264(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    return video_call(x, "h264", BPP / strength, g)


def _vp8(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    return video_call(x, "vp8", BPP / strength, g)


_PRESET_FNS: dict[str, Callable[[torch.Tensor, torch.Generator, float], torch.Tensor]] = {
    "downup2": _downup2,
    "gauss1.5": _gauss,
    "motion9": _motion,
    "vc": _vc,
    "h264": _h264,
    "vp8": _vp8,
}
_MIX_POOLS: dict[str, tuple[str, ...]] = {"presets": PRESETS, "mix+presets": PRESETS}  # drawn from, one per image


WEIGHTED_PREFIX = "presets:"
MIX_PREFIX = "mix+"  # "mix+presets:NAME=W,...": half the images the random mix, half the weighted pool


def _mixed_weights(name: str) -> dict[str, float] | None:
    """The weighted pool of ``"mix+presets:NAME=W,..."`` (see :func:`preset_weights`); ``None`` for any other name."""
    if not name.startswith(MIX_PREFIX + WEIGHTED_PREFIX):
        return None
    try:
        return preset_weights(name[len(MIX_PREFIX) :])
    except ValueError as err:
        raise ValueError(f"{name!r}: {err}") from err


def preset_weights(name: str) -> dict[str, float] | None:
    """The draw weights of a weighted preset pool ``"presets:NAME=W,..."``; ``None`` when ``name`` is not one.

    Every preset of :data:`PRESETS` not named weighs 1, so ``"presets:motion9=2"`` draws motion9 twice as often as
    each of the other five (2/7 of the crops).

    Raises:
        ValueError: an unknown preset, a weight that is not a finite number >= 0, a preset named twice, or all
            weights 0.
    """
    if not name.startswith(WEIGHTED_PREFIX):
        return None
    weights = dict.fromkeys(PRESETS, 1.0)
    seen: set[str] = set()
    for item in name[len(WEIGHTED_PREFIX) :].split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in weights or key in seen:
            known = ", ".join(PRESETS)
            raise ValueError(f"bad weighted pool {name!r}: want presets:NAME=W,... with NAME one of {known}")
        try:
            w = float(value)
        except ValueError:
            w = float("nan")
        if not (math.isfinite(w) and w >= 0):
            raise ValueError(f"bad weight {value!r} for {key} in {name!r}: want a finite number >= 0")
        weights[key] = w
        seen.add(key)
    if sum(weights.values()) <= 0:
        raise ValueError(f"weighted pool {name!r} gives every preset weight 0")
    return weights


def check_degradation(name: str) -> None:
    """Raise ``ValueError`` unless :func:`degrade` accepts ``name``: a listed one (:func:`list_degradations`) or a
    valid weighted pool, ``"presets:..."`` or ``"mix+presets:..."`` (its own message says what is wrong with it)."""
    if name not in list_degradations() and preset_weights(name) is None and _mixed_weights(name) is None:
        known = ", ".join(list_degradations())
        raise ValueError(f"unknown degradation {name!r}; known: {known}, presets:NAME=W,..., mix+presets:NAME=W,...")


def _weighted_pick(weights: dict[str, float], g: torch.Generator) -> str:
    drawn = [(preset, w) for preset, w in weights.items() if w > 0]
    u, acc = _uniform(g, 0.0, sum(w for _, w in drawn)), 0.0
    for preset, w in drawn:
        acc += w
        if u < acc:
            return preset
    return drawn[-1][0]  # u at the top edge (float rounding)


def random_mix(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The default training degradation: a random chain of resize, blur, motion, noise and JPEG per image.

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """
    _check(x)
    g = _default_generator(generator)
    out = []
    for img in x:
        y = img[None]
        applied = False
        while not applied:
            if _uniform(g, 0, 1) < 0.5:
                y, applied = downup(y, _uniform(g, 1.5, 4.0)), True
            if _uniform(g, 0, 1) < 0.5:
                y, applied = gaussian_blur(y, _uniform(g, 0.5, 3.0)), True
            if _uniform(g, 0, 1) < 0.3:
                y, applied = motion_blur(y, int(_uniform(g, 3, 16)), _uniform(g, 0, 180)), True
            if _uniform(g, 0, 1) < 0.3:
                y = add_noise(y, _uniform(g, 0.0, 0.02), g)
            if _uniform(g, 0, 1) < 0.5 and y.shape[1] in (1, 3):
                y, applied = jpeg(y, int(_uniform(g, 30, 96))), True
        out.append(y)
    return torch.cat(out)


def degrade(
    x: torch.Tensor, name: str, generator: torch.Generator | None = None, strength: float = 1.0
) -> torch.Tensor:
    """Apply a named degradation: a preset (:data:`PRESETS`) or a training mix.

    Args:
        x: sharp images.
        name: ``"downup2"``, ``"gauss1.5"``, ``"motion9"``, ``"vc"``, ``"h264"``, ``"vp8"``, ``"mix"``
            (:func:`random_mix`), ``"presets"`` (one of the six :data:`PRESETS` drawn per image),
            ``"mix+presets"`` (half the images each way), a weighted pool ``"presets:motion9=3,..."``
            (:func:`preset_weights`) or half the random mix and half a weighted pool ``"mix+presets:vp8=2,..."``.
        generator: source of randomness (motion angle, camera pan, mix parameters); ``None`` means a generator
            seeded with 0.
        strength: scales a preset's parameters (see the module docstring); ignored by the mixes.

    Returns:
        The degraded images, same shape, dtype and device.

    Raises:
        ValueError: unknown ``name``, non-positive or non-finite ``strength``, or a non-(B, C, H, W) float input.
        CodecError: a codec preset could not run (PyAV missing, FFmpeg failure).

    Shape:
        ``(B, C, H, W) -> (B, C, H, W)``.

    Example:
        >>> lq = degrade(torch.rand(1, 3, 32, 32), "gauss1.5")
    """
    _check(x)
    try:
        strength = float(strength)
    except (TypeError, ValueError) as err:
        raise ValueError(f"strength must be a positive finite number, got {strength!r}") from err
    if not (math.isfinite(strength) and strength > 0):
        raise ValueError(f"strength must be a positive finite number, got {strength!r}")
    g = _default_generator(generator)
    if name in _PRESET_FNS:
        return _PRESET_FNS[name](x, g, strength)
    if name == "mix":
        return random_mix(x, g)
    if name in _MIX_POOLS:
        pool, out = _MIX_POOLS[name], []
        for img in x:
            if name.startswith("mix+") and _uniform(g, 0, 1) < 0.5:
                out.append(random_mix(img[None], g))
            else:
                preset = pool[int(torch.randint(len(pool), (), generator=g))]
                out.append(_PRESET_FNS[preset](img[None], g, 1.0))
        return torch.cat(out)
    weights = preset_weights(name)
    if weights is not None:
        return torch.cat([_PRESET_FNS[_weighted_pick(weights, g)](img[None], g, 1.0) for img in x])
    weights = _mixed_weights(name)
    if weights is not None:
        out = []
        for img in x:
            if _uniform(g, 0, 1) < 0.5:
                out.append(random_mix(img[None], g))
            else:
                out.append(_PRESET_FNS[_weighted_pick(weights, g)](img[None], g, 1.0))
        return torch.cat(out)
    raise ValueError(f"unknown degradation {name!r}; known: {', '.join(list_degradations())}")


# Real image content a degradation needs around a training crop, in pixels on each side. Blur and JPEG are local
# (16 px covers their support). A codec's rate control spends its bits over the whole frame, so a codec run on a
# 128 px region is about 2 dB harsher than the same codec on the full photo (measured on Set14 with h264 and vp8);
# from a 384 px region on it is within about 0.5 dB, so codec crops are degraded inside that much context.
_LOCAL_MARGIN, _CODEC_MARGIN = 16, 144


def context_margin(name: str) -> int:
    """Pixels of real content to degrade around a crop for ``name`` (a preset or a mix), so the crop degrades as it
    would inside a whole frame.

    Raises:
        ValueError: unknown ``name``.
    """
    weights = preset_weights(name) or _mixed_weights(name)
    if weights is not None:
        drawn: tuple[str, ...] = tuple(k for k, w in weights.items() if w > 0)
    elif name in list_degradations():
        drawn = _MIX_POOLS.get(name, (name,))
    else:
        raise ValueError(f"unknown degradation {name!r}; known: {', '.join(list_degradations())}")
    return _CODEC_MARGIN if set(drawn) & set(CODEC_PRESETS) else _LOCAL_MARGIN


def list_degradations() -> list[str]:
    """Names accepted by :func:`degrade`: the evaluation presets (:data:`PRESETS`) first, then the training mixes."""
    return list(PRESETS + TRAIN_MIXES)
