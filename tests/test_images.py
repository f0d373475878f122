"""Tests for sharpkd.images: every file is synthesized in tmp_path, nothing is read from datasets."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from sharpkd.errors import ImageDecodeError, ImageTooLargeError
from sharpkd.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    WRITABLE_SUFFIXES,
    LoadedImage,
    encode_image,
    is_image_path,
    load_image,
    read_image,
    to_rgb_uint8,
    write_image,
)


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _gradient(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 with a distinct smooth ramp per channel."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) * 255 // max(1, width + height - 2)],
        axis=-1,
    ).astype(np.uint8)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height RGB pixels, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, color type 2 (RGB)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _check_result(loaded: LoadedImage, shape: tuple[int, int]) -> None:
    assert loaded.pixels.shape == (*shape, 3)
    assert loaded.pixels.dtype == np.uint8
    assert loaded.pixels.flags.c_contiguous


# --- unreadable inputs ------------------------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty \(0 bytes\)"):
        load_image(path)


@pytest.mark.parametrize("source", [b"", io.BytesIO(b"")], ids=["bytes", "bytesio"])
def test_empty_buffer(source: bytes | io.BytesIO) -> None:
    with pytest.raises(ImageDecodeError, match=r"empty \(0 bytes\)"):
        load_image(source)


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_file(tmp_path: Path, fmt: str, suffix: str) -> None:
    rng = np.random.default_rng(0)  # noise does not compress, so half the file is half the pixel data
    data = encode_image(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="truncated or corrupt") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, OSError | SyntaxError | ValueError)


@pytest.mark.parametrize(
    "payload", [b"this is a text file, not a jpeg\n", bytes(range(256)) * 4], ids=["text", "random"]
)
def test_not_an_image(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(payload)
    with pytest.raises(ImageDecodeError, match="not an image Pillow can read"):
        load_image(path)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("source", [42, None, [1, 2, 3]])
def test_bad_source_type(source: object) -> None:
    with pytest.raises(TypeError, match="expected a path, bytes or a binary file-like"):
        load_image(source)  # type: ignore[arg-type]


def test_text_mode_stream_rejected() -> None:
    with pytest.raises(TypeError, match="binary mode"):
        load_image(io.StringIO("not bytes"))  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"max_pixels": 0}, {"max_pixels": 1.5}, {"hard_limit": -1}, {"hard_limit": None}])
def test_bad_limits(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be a positive int"):
        load_image(encode_image(np.zeros((2, 2, 3), np.uint8)), **kwargs)


# --- size limits ------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error")  # Pillow's DecompressionBombWarning must not leak out either
@pytest.mark.parametrize("side", [20_000, 11_000])  # above Pillow's own error limit, and between its warning and ours
def test_decompression_bomb_rejected_before_decoding(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_declaring(side, side))
    assert path.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="decompression bomb") as info:
        load_image(path)
    assert time.perf_counter() - start < 5.0  # decoding 121-400 MP would take far longer and gigabytes
    message = str(info.value)
    assert f"{side * side:,} pixels" in message
    assert f"more than the limit of {DEFAULT_MAX_PIXELS:,} pixels" in message
    assert message.count("limit") == 1 and "DOS" not in message  # one limit, stated once (not Pillow's text too)


def test_hard_limit_names_declared_size(tmp_path: Path) -> None:
    path = _save(Image.fromarray(_gradient(100, 60)), tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError, match=r"100x60 = 6,000 pixels, more than the limit of 5,000"):
        load_image(path, hard_limit=5_000)
    assert load_image(path, hard_limit=6_000).pixels.shape == (60, 100, 3)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_large_image_downscaled_to_max_pixels(tmp_path: Path, fmt: str, suffix: str) -> None:
    gt = _gradient(3000, 2000)
    path = tmp_path / f"big{suffix}"
    write_image(path, gt, quality=90)
    loaded = load_image(path, max_pixels=1_000_000)
    H, W = loaded.pixels.shape[:2]
    assert H * W <= 1_000_000
    assert H * W > 0.99 * 1_000_000
    assert abs((W / H) / 1.5 - 1) < 0.01
    assert loaded.original_size == (3000, 2000)
    assert loaded.notes == (f"downscaled from 3000x2000 to {W}x{H} to stay under 1.0 MP",)
    # Content survives: compare with a plain Pillow downscale of the ground truth.
    reference = np.asarray(Image.fromarray(gt).resize((W, H), Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(loaded.pixels.astype(np.float64) - reference).mean() < 3.0


def test_large_jpeg_decoded_at_reduced_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.new("RGB", (2400, 1600), (10, 20, 30)), tmp_path / "big.jpg")
    decoded_sizes = []
    original_load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> object:
        decoded_sizes.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    pixels = read_image(path, max_pixels=200_000)
    assert pixels.shape[0] * pixels.shape[1] <= 200_000
    assert decoded_sizes and max(decoded_sizes) == (600, 400)  # JPEG draft: 1/4 scale, never the full 2400x1600


@pytest.mark.parametrize("size, max_pixels, expected", [((400, 1), 10, (10, 1)), ((5, 7), 35, (5, 7))])
def test_downscale_edge_cases(size: tuple[int, int], max_pixels: int, expected: tuple[int, int]) -> None:
    loaded = load_image(encode_image(np.zeros((size[1], size[0], 3), np.uint8)), max_pixels=max_pixels)
    assert loaded.pixels.shape[:2] == (expected[1], expected[0])
    assert loaded.original_size == size


# --- modes and formats ------------------------------------------------------------------------------------------


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    loaded = load_image(path)
    _check_result(loaded, (1, 4))
    np.testing.assert_array_equal(loaded.pixels[0, :, 0], [0, 1, 128, 255])
    assert (loaded.pixels == loaded.pixels[..., :1]).all()
    assert "converted from 16-bit" in loaded.notes


def _png_16bit_rgb(values: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG (colour type 2, bit depth 16) of ``values``, ``(H, W, 3)`` uint16."""
    H, W, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(H))  # filter byte 0 per row
    ihdr = struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def test_16bit_rgb_png_gets_the_conversion_note() -> None:
    values = np.zeros((2, 3, 3), np.uint16)
    values[..., 0], values[..., 1], values[..., 2] = 65535, 32896, 0
    data = _png_16bit_rgb(values)
    assert Image.open(io.BytesIO(data)).mode == "RGB"  # Pillow reads it as 8-bit RGB: only the note tells the user
    loaded = load_image(data)
    _check_result(loaded, (2, 3))
    np.testing.assert_array_equal(loaded.pixels[0, 0], [255, 128, 0])
    assert loaded.notes == ("converted from 16-bit",)


def test_16bit_rgb_tiff_gets_the_conversion_note(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, np.full((3, 5, 3), 32896, np.uint16), photometric="rgb")
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.pixels, np.full((3, 5, 3), 128, np.uint8))
    assert "converted from 16-bit" in loaded.notes


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_8bit_rgb_has_no_conversion_note(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buffer, format=fmt)
    assert load_image(buffer.getvalue()).notes == ()


def test_float_tiff(tmp_path: Path) -> None:
    path = _save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), tmp_path / "f.tif")
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.pixels[0, :, 1], [0, 128, 255])
    assert "converted from 32-bit float" in loaded.notes


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    loaded = load_image(path)
    _check_result(loaded, (16, 16))
    np.testing.assert_allclose(loaded.pixels.reshape(-1, 3).mean(0), [255, 0, 0], atol=6)
    assert "CMYK converted to RGB" in loaded.notes


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[0, :, 3] = (0, 128, 255)
    rgba[1, :, 3] = 255
    loaded = load_image(_save(Image.fromarray(rgba), tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.pixels[0], [[255, 255, 255], [227, 127, 127], [200, 0, 0]])
    np.testing.assert_array_equal(loaded.pixels[1], [[200, 0, 0]] * 3)
    assert "alpha channel composited on white" in loaded.notes


def test_opaque_rgba_has_no_alpha_note(tmp_path: Path) -> None:
    loaded = load_image(_save(Image.new("RGBA", (4, 4), (1, 2, 3, 255)), tmp_path / "opaque.png"))
    assert loaded.notes == ()
    assert (loaded.pixels == (1, 2, 3)).all()


@pytest.mark.parametrize("mode", ["L", "1", "LA", "P"])
def test_gray_and_palette_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    gray = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8))
    img = gray.convert(mode)
    loaded = load_image(_save(img, tmp_path / f"{mode}.png"))
    _check_result(loaded, (2, 2))
    assert (loaded.pixels == loaded.pixels[..., :1]).all()  # three equal channels
    np.testing.assert_array_equal(loaded.pixels[..., 0], [[0, 255], [255, 0]])


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255])
    img.putpixel((1, 0), 1)
    loaded = load_image(_save(img, tmp_path / "p.png", transparency=1))
    np.testing.assert_array_equal(loaded.pixels[0], [[255, 0, 0], [255, 255, 255]])
    assert "alpha channel composited on white" in loaded.notes


@pytest.mark.parametrize("orientation, top_colour", [(6, (255, 0, 0)), (8, (0, 0, 255))])
def test_exif_orientation_applied(tmp_path: Path, orientation: int, top_colour: tuple[int, int, int]) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    loaded = load_image(_save(img, tmp_path / "rot.jpg", exif=exif, quality=95))
    _check_result(loaded, (40, 20))  # displayed upright: 20 wide, 40 high
    assert loaded.original_size == (20, 40)
    np.testing.assert_allclose(loaded.pixels[5, 10], top_colour, atol=40)
    np.testing.assert_allclose(loaded.pixels[34, 10], top_colour[::-1], atol=40)
    assert "rotated per EXIF orientation" in loaded.notes


def test_exif_orientation_with_downscale(tmp_path: Path) -> None:
    img = Image.fromarray(_gradient(400, 200))
    exif = img.getexif()
    exif[0x0112] = 6
    loaded = load_image(_save(img, tmp_path / "rot.jpg", exif=exif), max_pixels=20_000)
    assert loaded.pixels.shape == (200, 100, 3)
    assert loaded.original_size == (200, 400)
    assert loaded.notes == (
        "downscaled from 200x400 to 100x200 to stay under 20,000 pixels",
        "rotated per EXIF orientation",
    )


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_image_uses_first_frame(tmp_path: Path, suffix: str) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (8, 8), c) for c in colours]
    path = _save(frames[0], tmp_path / f"anim{suffix}", save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = load_image(path)
    _check_result(loaded, (8, 8))
    np.testing.assert_allclose(loaded.pixels.reshape(-1, 3).mean(0), colours[0], atol=8)
    assert "used the first of 3 frames (animated image)" in loaded.notes


@pytest.mark.parametrize("side", [1, 3])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".gif", ".tif", ".webp"])
def test_tiny_images(tmp_path: Path, side: int, suffix: str) -> None:
    path = tmp_path / f"tiny{suffix}"
    Image.new("RGB", (side, side), (10, 200, 30)).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    loaded = load_image(path)
    _check_result(loaded, (side, side))
    assert loaded.original_size == (side, side)
    tolerance = 10 if suffix in (".jpg", ".gif") else 0  # lossy JPEG, GIF's palette quantization
    np.testing.assert_allclose(loaded.pixels.reshape(-1, 3), [[10, 200, 30]] * side * side, atol=tolerance)


# --- sources ----------------------------------------------------------------------------------------------------


def test_bytes_and_streams_match_path(tmp_path: Path) -> None:
    gt = _gradient(7, 5)
    path = tmp_path / "src.png"
    write_image(path, gt)
    data = path.read_bytes()

    buffer = io.BytesIO(data)
    buffer.seek(11)
    with path.open("rb") as fh:
        fh.seek(3)
        results = [read_image(s) for s in (path, str(path), data, bytearray(data), memoryview(data), buffer, fh)]
        assert fh.tell() == 3  # a plain file object is read from its start and put back where it was
    assert buffer.tell() == 11
    for pixels in results:
        np.testing.assert_array_equal(pixels, gt)


def test_stream_name_used_in_errors() -> None:
    stream = io.BytesIO(b"GIF89a but not really")
    stream.name = "upload.gif"
    with pytest.raises(ImageDecodeError, match="upload.gif"):
        load_image(stream)


# --- to_rgb_uint8 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.array([[0, 128, 255]], np.uint8), [0, 128, 255]),
        (np.array([[[0], [128], [255]]], np.uint8), [0, 128, 255]),
        (np.array([[0, 257, 32896, 65535]], np.uint16), [0, 1, 128, 255]),
        (np.array([[-0.5, 0.0, 0.5, 1.0, 7.0]], np.float32), [0, 0, 128, 255, 255]),
        (np.array([[0.25, 1.0]], np.float64), [64, 255]),
        (np.array([[0.25, 1.0]], np.float16), [64, 255]),
    ],
)
def test_to_rgb_uint8_gray_dtypes(array: np.ndarray, expected: list[int]) -> None:
    out = to_rgb_uint8(array)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.shape == (*array.shape[:2], 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[0, :, channel], expected)


def test_to_rgb_uint8_rgb_and_rgba() -> None:
    rgb = _gradient(4, 3)
    assert to_rgb_uint8(rgb) is rgb  # already normalized: no copy
    np.testing.assert_array_equal(to_rgb_uint8(rgb[:, ::-1]), rgb[:, ::-1])
    assert to_rgb_uint8(rgb[:, ::-1]).flags.c_contiguous
    rgba = np.array([[[200, 0, 0, 0], [200, 0, 0, 255], [0, 0, 0, 51]]], np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba)[0], [[255, 255, 255], [200, 0, 0], [204, 204, 204]])
    rgba_float = np.array([[[1.0, 0.0, 0.0, 0.5]]], np.float32)
    np.testing.assert_array_equal(to_rgb_uint8(rgba_float)[0, 0], [255, 127, 127])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4,), np.uint8), r"\(4,\)"),
        (np.zeros((1, 2, 2, 3), np.uint8), r"\(1, 2, 2, 3\)"),
        (np.zeros((2, 2, 2), np.uint8), r"\(2, 2, 2\)"),
        (np.zeros((0, 5, 3), np.uint8), r"non-empty.*\(0, 5, 3\)"),
        (np.zeros((2, 2), bool), "bool"),
        (np.zeros((2, 2), np.complex64), "complex64"),
        (np.zeros((2, 2), np.int32), "int32"),
        (np.array([[0.5, np.nan]], np.float32), "NaN"),
    ],
)
def test_to_rgb_uint8_rejects(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_rgb_uint8(array)


def test_to_rgb_uint8_rejects_non_array() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        to_rgb_uint8([[0, 1]])  # type: ignore[arg-type]


# --- writing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, atol", [(".png", 0), (".bmp", 0), (".jpg", 20), (".jpeg", 20), (".webp", 20)])
def test_write_image_round_trip(tmp_path: Path, suffix: str, atol: int) -> None:
    gt = _gradient(32, 24)
    path = tmp_path / "nested" / "dir" / f"out{suffix.upper()}"
    write_image(path, gt)
    assert path.is_file()
    error = np.abs(read_image(path).astype(np.int16) - gt)
    assert error.max() <= atol


def test_write_grayscale(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    write_image(tmp_path / "g.png", gray)
    loaded = read_image(tmp_path / "g.png")
    np.testing.assert_array_equal(loaded, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize(
    "fmt, magic", [("PNG", b"\x89PNG"), ("jpg", b"\xff\xd8"), (".JPEG", b"\xff\xd8"), ("bmp", b"BM")]
)
def test_encode_image(fmt: str, magic: bytes) -> None:
    gt = _gradient(9, 6)
    data = encode_image(gt, fmt)
    assert data.startswith(magic)
    error = np.abs(read_image(data).astype(np.int16) - gt)
    if fmt in ("PNG", "bmp"):
        assert error.max() == 0
    else:  # lossy, and chroma subsampling smears a 9x6 image's corners
        assert error.mean() < 6


def test_jpeg_quality_changes_size() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert len(encode_image(noise, "JPEG", quality=30)) < len(encode_image(noise, "JPEG", quality=95))


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 1), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4, 3), np.uint16),
    ],
)
def test_write_rejects_bad_arrays(tmp_path: Path, pixels: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) or \(H, W\) uint8.*shape"):
        write_image(tmp_path / "x.png", pixels)
    with pytest.raises(ValueError, match="uint8"):
        encode_image(pixels)
    assert not (tmp_path / "x.png").exists()


def test_write_rejects_bad_suffix_format_and_quality(tmp_path: Path) -> None:
    gt = _gradient(4, 4)
    with pytest.raises(ValueError, match="unsupported suffix '.gif'"):
        write_image(tmp_path / "x.gif", gt)
    with pytest.raises(ValueError, match="unsupported image format 'TIFF'"):
        encode_image(gt, "TIFF")
    with pytest.raises(ValueError, match="quality"):
        write_image(tmp_path / "x.jpg", gt, quality=0)
    with pytest.raises(TypeError, match="numpy array"):
        write_image(tmp_path / "x.png", [[0]])  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_is_image_path_follows_image_suffixes() -> None:
    for suffix in IMAGE_SUFFIXES:
        assert is_image_path(f"a/b{suffix}") and is_image_path(Path(f"B{suffix.upper()}"))
    for name in ("notes.txt", "clip.mp4", "model.pt", "png", "archive.png.zip", "folder/"):
        assert not is_image_path(name)


def test_writable_suffixes_are_what_write_image_accepts(tmp_path: Path) -> None:
    assert WRITABLE_SUFFIXES == (".png", ".jpg", ".jpeg", ".webp", ".bmp")
    assert set(WRITABLE_SUFFIXES) <= set(IMAGE_SUFFIXES)  # every written file is found again by a folder scan
    for suffix in WRITABLE_SUFFIXES:
        write_image(tmp_path / f"x{suffix}", _gradient(4, 4))
        assert read_image(tmp_path / f"x{suffix}").shape == (4, 4, 3)
    for suffix in sorted(set(IMAGE_SUFFIXES) - set(WRITABLE_SUFFIXES)):
        with pytest.raises(ValueError, match=f"unsupported suffix '{suffix}'"):
            write_image(tmp_path / f"x{suffix}", _gradient(4, 4))


def test_image_suffixes_are_all_readable(tmp_path: Path) -> None:
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
    for suffix in IMAGE_SUFFIXES:
        path = _save(Image.new("RGB", (2, 2), (0, 0, 0)), tmp_path / f"x{suffix}")
        assert read_image(path).shape == (2, 2, 3)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_large_png_is_shrunk_in_pillow_with_the_same_result(tmp_path: Path, mode: str) -> None:
    # RGB and grey uploads are resized before the array copy (bounded memory); the pixels must be those of
    # resizing the full decoded array, and the EXIF rotation (kept on the opened file) must still apply.
    rng = np.random.default_rng(0)
    full = rng.integers(0, 255, (300, 400, 3) if mode == "RGB" else (300, 400), dtype=np.uint8)
    img = Image.fromarray(full)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "big.png", exif=exif)
    loaded = load_image(tmp_path / "big.png", max_pixels=30_000)
    expected = np.array(img.resize((200, 150), Image.Resampling.LANCZOS, reducing_gap=3.0).convert("RGB"))
    expected = np.array(Image.fromarray(expected).transpose(Image.Transpose.ROTATE_270))
    assert loaded.pixels.shape == (200, 150, 3)
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert loaded.notes[0].startswith("downscaled from 300x400 to 150x200")
