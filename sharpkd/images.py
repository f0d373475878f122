"""Robust image file decoding and encoding: any file a user may upload becomes ``(H, W, 3)`` uint8 RGB.

:func:`load_image` accepts a path, raw bytes or a binary file-like (such as Streamlit's ``UploadedFile``) and
handles what real files throw at it: EXIF orientation, CMYK, palettes, alpha, 16-bit and float data, animated
images, truncated or mislabelled files and decompression bombs. Everything it changed along the way is reported
in :attr:`LoadedImage.notes`, so the app can tell the user. Errors are :class:`~sharpkd.errors.ImageDecodeError`
(not an image, empty, truncated) and :class:`~sharpkd.errors.ImageTooLargeError` (declared size over the limit).

Pillow's global state (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) is never changed: the
declared size is checked against ``hard_limit`` before any pixel is decoded.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from sharpkd.errors import ImageDecodeError, ImageTooLargeError

DEFAULT_MAX_PIXELS: int = 120_000_000
# The one list of file suffixes read as images, wherever sharpkd scans for them: training and evaluation folders
# (sharpkd.data.find_images), `sharpkd sharpen DIR` and `sharpkd degrade DIR`. Pillow decodes every one of them.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")

# Errors Pillow raises for corrupt or truncated data (struct.error leaks from some header parsers).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
_EXIF_ORIENTATION = 0x0112
# Orientation tag value -> (transpose that undoes it, note); the same table as PIL.ImageOps.exif_transpose.
_ORIENTATIONS: dict[int, tuple[Image.Transpose, str]] = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, "flipped per EXIF orientation"),
    3: (Image.Transpose.ROTATE_180, "rotated per EXIF orientation"),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, "flipped per EXIF orientation"),
    5: (Image.Transpose.TRANSPOSE, "rotated and flipped per EXIF orientation"),
    6: (Image.Transpose.ROTATE_270, "rotated per EXIF orientation"),
    7: (Image.Transpose.TRANSVERSE, "rotated and flipped per EXIF orientation"),
    8: (Image.Transpose.ROTATE_90, "rotated per EXIF orientation"),
}
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_LOSSLESS_TO_RGB_MODES = ("1", "L", "P", "RGB", "RGBX")
_WRITE_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
WRITABLE_SUFFIXES: tuple[str, ...] = tuple(f".{ext}" for ext in _WRITE_FORMATS)  # what write_image can encode


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has an image suffix (:data:`IMAGE_SUFFIXES`, any case); the file itself is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and what was done to it.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB, C-contiguous, writable; already rotated and downscaled.
        original_size: ``(width, height)`` as declared in the file, after EXIF rotation.
        notes: Human-readable notes on every lossy or surprising step (downscaling, first frame of an
            animation, 16-bit or CMYK conversion, alpha compositing, EXIF rotation).
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    notes: tuple[str, ...]


def load_image(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    max_pixels: int | None = None,
    hard_limit: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Decode an image file into uint8 RGB, robustly.

    Args:
        source: A file path, the file's bytes, or a binary file-like object with ``read()`` (a Streamlit
            ``UploadedFile`` works). A file-like is read from its start and left at the position it had.
        max_pixels: Working limit. A larger image is downscaled (aspect ratio kept, Lanczos) to at most this many
            pixels; JPEGs are reduced by 1/2, 1/4 or 1/8 while decoding, so memory stays bounded. ``None`` keeps
            the full size.
        hard_limit: Refuse images whose declared ``width * height`` exceeds this, before decoding any pixel.
            Pillow's own refusal above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179 MP by default) still applies.

    Returns:
        The pixels, the declared size and notes. The first frame is used for animated and multi-page images,
        alpha is composited on white, and EXIF orientation is applied.

    Raises:
        ImageDecodeError: The path does not exist or is a directory, the data is empty, not an image, truncated
            or corrupt, or in a mode that cannot be converted to RGB.
        ImageTooLargeError: The declared size exceeds ``hard_limit`` (or Pillow's decompression bomb limit).
        ValueError: ``max_pixels`` or ``hard_limit`` is not a positive integer.
        TypeError: ``source`` is none of the accepted types.

    Example:
        >>> loaded = load_image("photo.jpg", max_pixels=4_000_000)  # doctest: +SKIP
        >>> loaded.pixels.shape, loaded.notes  # doctest: +SKIP
        ((1732, 2309, 3), ('downscaled from 8000x6000 to 2309x1732 to stay under 4.0 MP',))
    """
    for arg_name, value in (("max_pixels", max_pixels), ("hard_limit", hard_limit)):
        if (value is not None or arg_name == "hard_limit") and not _is_positive_int(value):
            raise ValueError(f"{arg_name} must be a positive int, got {value!r}")
    fp, name = _open_source(source)
    with fp:
        return _decode(fp, name, max_pixels=max_pixels, hard_limit=hard_limit)


def read_image(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    max_pixels: int | None = None,
    hard_limit: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file into ``(H, W, 3)`` uint8 RGB; :func:`load_image` without the notes.

    Args:
        source: A file path, the file's bytes, or a binary file-like object.
        max_pixels: Downscale to at most this many pixels; ``None`` keeps the full size.
        hard_limit: Refuse images whose declared size exceeds this many pixels.

    Returns:
        ``(H, W, 3)`` uint8 RGB, C-contiguous.

    Raises:
        ImageDecodeError: The source is missing, empty, not an image, truncated or corrupt.
        ImageTooLargeError: The declared size exceeds ``hard_limit``.
    """
    return load_image(source, max_pixels=max_pixels, hard_limit=hard_limit).pixels


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Normalize an in-memory image array to ``(H, W, 3)`` uint8 RGB.

    Accepted shapes are ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` and ``(H, W, 4)`` (RGBA, composited on white).
    uint8 passes through, uint16 is scaled by ``1/257`` and rounded (65535 -> 255), floats are read as ``[0, 1]``,
    clipped, scaled by 255 and rounded.

    Args:
        array: The image array.

    Returns:
        ``(H, W, 3)`` uint8, C-contiguous. May be ``array`` itself when it already is exactly that.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: The shape, dtype or values are not an image (wrong rank or channel count, zero size, bool,
            complex or integer types other than uint8/uint16, NaN).
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(array).__name__}")
    desc = f"shape {array.shape} and dtype {array.dtype}"
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image array, got {desc}")
    if array.size == 0:
        raise ValueError(f"expected a non-empty image array, got {desc}")
    if array.dtype == np.uint8:
        out = array
    elif array.dtype == np.uint16:
        out = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)  # == round(v / 257); no ties, 257 is odd
    elif np.issubdtype(array.dtype, np.floating):
        if np.isnan(array).any():
            raise ValueError(f"image array contains NaN ({desc})")
        out = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"expected a uint8, uint16 or float image array, got {desc}")
    if out.ndim == 2:
        out = out[:, :, None]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:
        rgb, alpha = out[..., :3].astype(np.uint32), out[..., 3:].astype(np.uint32)
        # rgb * a + white * (1 - a), in integers with rounding.
        out = ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def encode_image(pixels: np.ndarray, fmt: str = "PNG", *, quality: int = 95) -> bytes:
    """Encode an image array into file bytes (for download buttons).

    Args:
        pixels: ``(H, W, 3)`` RGB or ``(H, W)`` grayscale uint8.
        fmt: ``"PNG"``, ``"JPEG"`` (or ``"JPG"``), ``"WEBP"`` or ``"BMP"``, any case, with or without a dot.
        quality: JPEG/WebP quality in ``[1, 100]``; ignored for PNG and BMP.

    Returns:
        The encoded file.

    Raises:
        TypeError: ``pixels`` is not a numpy array.
        ValueError: ``pixels`` is not ``(H, W, 3)`` or ``(H, W)`` uint8, or ``fmt`` or ``quality`` is invalid.
    """
    _check_writable_pixels(pixels)
    pil_format = _WRITE_FORMATS.get(str(fmt).lower().lstrip("."))
    if pil_format is None:
        raise ValueError(f"unsupported image format {fmt!r}, expected one of {sorted(set(_WRITE_FORMATS.values()))}")
    if not _is_positive_int(quality) or quality > 100:
        raise ValueError(f"quality must be an int in [1, 100], got {quality!r}")
    options = {"quality": quality} if pil_format in ("JPEG", "WEBP") else {}
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def write_image(path: str | os.PathLike, pixels: np.ndarray, *, quality: int = 95) -> None:
    """Write an image array to a file whose format follows its suffix, creating parent directories.

    The file is encoded in memory first, so a bad array or suffix never leaves a partial file behind.

    Args:
        path: Destination; the suffix (``.png``, ``.jpg``, ``.jpeg``, ``.webp``, ``.bmp``) picks the format.
        pixels: ``(H, W, 3)`` RGB or ``(H, W)`` grayscale uint8.
        quality: JPEG/WebP quality in ``[1, 100]``.

    Raises:
        TypeError: ``pixels`` is not a numpy array.
        ValueError: ``pixels`` is not ``(H, W, 3)`` or ``(H, W)`` uint8, or the suffix or quality is unsupported.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        known = ", ".join(WRITABLE_SUFFIXES)
        raise ValueError(f"cannot write {path}: unsupported suffix {path.suffix!r}, expected one of {known}")
    data = encode_image(pixels, path.suffix, quality=quality)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_writable_pixels(pixels: np.ndarray) -> None:
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(pixels).__name__}")
    ok_shape = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    if not ok_shape or pixels.dtype != np.uint8 or pixels.size == 0:
        raise ValueError(
            f"expected a non-empty (H, W, 3) or (H, W) uint8 array, got shape {pixels.shape} and dtype {pixels.dtype}"
        )


def _open_source(source: str | os.PathLike | bytes | BinaryIO) -> tuple[BinaryIO, str]:
    """Return an open binary stream positioned at the image's start, and a name for messages."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise ImageDecodeError(f"{path} is a directory, not an image file")
        try:
            fp = path.open("rb")
        except FileNotFoundError as err:
            raise ImageDecodeError(f"no such file: {path}") from err
        except OSError as err:
            raise ImageDecodeError(f"cannot open {path}: {err}") from err
        if os.fstat(fp.fileno()).st_size == 0:
            fp.close()
            raise ImageDecodeError(f"{path} is empty (0 bytes)")
        return fp, str(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "image data"
    elif hasattr(source, "read"):
        name = str(getattr(source, "name", None) or "image stream")
        data = _read_stream(source)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{name} must be opened in binary mode, read() returned {type(data).__name__}")
        data = bytes(data)
    else:
        raise TypeError(f"expected a path, bytes or a binary file-like object, got {type(source).__name__}")
    if not data:
        raise ImageDecodeError(f"{name} is empty (0 bytes)")
    return io.BytesIO(data), name


def _read_stream(stream: BinaryIO) -> bytes:
    """Read a whole stream from its start without moving it (UploadedFile and BytesIO have getvalue())."""
    if hasattr(stream, "getvalue"):
        return stream.getvalue()
    if stream.seekable():
        position = stream.tell()
        stream.seek(0)
        try:
            return stream.read()
        finally:
            stream.seek(position)
    return stream.read()


def _decode(fp: BinaryIO, name: str, *, max_pixels: int | None, hard_limit: int) -> LoadedImage:
    notes: list[str] = []
    try:
        # Our own size check below supersedes Pillow's warning (its error above 2x its limit still fires).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except UnidentifiedImageError as err:
        raise ImageDecodeError(f"{name} is not an image Pillow can read (unknown or unsupported format)") from err
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(_bomb_message(name, err, hard_limit)) from err
    except _DECODE_ERRORS as err:
        raise ImageDecodeError(f"{name} is truncated or corrupt: {err}") from err

    with img:
        width, height = img.size
        if width * height > hard_limit:
            raise ImageTooLargeError(
                f"{name} declares {width}x{height} = {width * height:,} pixels, more than the limit of "
                f"{hard_limit:,} pixels; refusing to decode it (possible decompression bomb)"
            )
        target = _fit_size(width, height, max_pixels) if max_pixels is not None else (width, height)
        deep = _is_16bit_color(img)  # read before load(), which empties img.tile
        try:
            if target != (width, height):
                img.draft("RGB", target)  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, still >= target
            img.load()
        except Image.DecompressionBombError as err:
            raise ImageTooLargeError(_bomb_message(name, err, hard_limit)) from err
        except _DECODE_ERRORS as err:
            raise ImageDecodeError(f"{name} is truncated or corrupt: {err}") from err
        decoded = img
        if target != img.size and img.mode in ("RGB", "L"):
            # Shrink in Pillow before any numpy copy: a full-size array (and its RGB conversion) would add ~6 bytes
            # per source pixel on top of the decoded image, the largest cost of a big PNG upload.
            decoded = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        pixels = _to_rgb_array(decoded, name, notes)  # (h, w, 3), h and w >= target after draft
        del decoded
        if deep:
            notes.append("converted from 16-bit")
        orientation = _exif_orientation(img)  # EXIF and frame count live on the opened file, not the resized copy
        frames_note = _frames_note(img)

    downscaled = target != (width, height)
    if target != (pixels.shape[1], pixels.shape[0]):
        pixels = np.array(Image.fromarray(pixels).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0))
    transpose, rotation_note = _ORIENTATIONS.get(orientation, (None, ""))
    if transpose is not None:
        pixels = np.array(Image.fromarray(pixels).transpose(transpose))
        notes.append(rotation_note)
        if orientation >= 5:  # these four swap width and height
            width, height = height, width
    if downscaled:
        out_h, out_w = pixels.shape[:2]
        notes.insert(
            0, f"downscaled from {width}x{height} to {out_w}x{out_h} to stay under {_format_pixels(max_pixels)}"
        )
    if frames_note:
        notes.append(frames_note)
    assert pixels.dtype == np.uint8 and pixels.shape[2:] == (3,), f"bad decoded shape {pixels.shape} {pixels.dtype}"
    return LoadedImage(pixels=np.ascontiguousarray(pixels), original_size=(width, height), notes=tuple(notes))


def _bomb_message(name: str, err: Image.DecompressionBombError, hard_limit: int) -> str:
    # Pillow refuses above 2x its MAX_IMAGE_PIXELS; state the one limit that applied, once (not Pillow's text too).
    match = re.search(r"\((\d+) pixels\)", str(err))  # Pillow: "Image size (N pixels) exceeds limit of ..."
    declared = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    pillow_limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else hard_limit
    return (
        f"{name} declares {declared}, more than the limit of {min(hard_limit, pillow_limit):,} pixels; "
        "refusing to decode it (possible decompression bomb)"
    )


def _format_pixels(count: int) -> str:
    return f"{count / 1e6:.1f} MP" if count >= 100_000 else f"{count:,} pixels"


def _fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest (w, h) with the same aspect ratio and w * h <= max_pixels; (width, height) when that already fits."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w = max(1, min(width, math.floor(width * scale)))
    h = max(1, min(height, math.floor(height * scale)))
    # Extreme aspect ratios: one side was clamped to 1, so shrink the other to fit.
    w = max(1, min(w, max_pixels // h))
    h = max(1, min(h, max_pixels // w))
    return w, h


def _to_rgb_array(img: Image.Image, name: str, notes: list[str]) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to (H, W, 3) uint8, noting lossy steps."""
    mode = img.mode
    try:
        if mode.startswith("I;16") or mode == "I":
            array = np.clip(np.array(img), 0, 65535).astype(np.uint16)
            notes.append("converted from 16-bit")
            return to_rgb_uint8(array)
        if mode == "F":
            array = np.nan_to_num(np.array(img, dtype=np.float64), nan=0.0)
            if array.max(initial=0.0) > 1.0:  # not [0, 1] data: assume [0, 255]
                array = array / 255.0
            notes.append("converted from 32-bit float")
            return to_rgb_uint8(array)
        if mode in _ALPHA_MODES or "transparency" in img.info:
            array = np.array(img.convert("RGBA"))
            if array[..., 3].min() < 255:
                notes.append("alpha channel composited on white")
            return to_rgb_uint8(array)
        if mode == "CMYK":
            notes.append("CMYK converted to RGB")
        elif mode not in _LOSSLESS_TO_RGB_MODES:
            notes.append(f"{mode} converted to RGB")
        return np.array(img.convert("RGB"))
    except _DECODE_ERRORS as err:  # e.g. a mode Pillow cannot convert to RGB
        raise ImageDecodeError(f"{name} has image mode {mode!r}, which cannot be converted to RGB: {err}") from err


def _is_16bit_color(img: Image.Image) -> bool:
    """Whether the file stores 16-bit colour samples that Pillow reads as 8-bit "RGB"/"RGBA" (16-bit grey is mode
    "I;16" and noted in :func:`_to_rgb_array`). Only the tile's raw mode ("RGB;16B" for PNG) tells."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _exif_orientation(img: Image.Image) -> int:
    """EXIF orientation tag (1..8), 1 when absent or unreadable: broken EXIF should not reject a good image."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1
    return orientation if isinstance(orientation, int) and orientation in _ORIENTATIONS else 1


def _frames_note(img: Image.Image) -> str:
    """A note when only the first frame of an animated or multi-page image was used."""
    if img.format == "MPO":  # phone photos: the extra frames are previews or depth maps, not content
        return ""
    try:
        n_frames = getattr(img, "n_frames", 1)  # GIF counts by seeking through every frame
    except _DECODE_ERRORS:
        return "used the first frame (the later frames are unreadable)"
    if n_frames <= 1:
        return ""
    kind = "multi-page TIFF" if img.format == "TIFF" else "animated image"
    return f"used the first of {n_frames} frames ({kind})"
