"""Packing a folder of sharp images into a small one that can travel: native-resolution tiles, re-encoded, under a
byte budget (``sharpkd pack-data``; docs/gpu.md uses it to bring training data to a rented GPU machine).

Every source image is cut into non-overlapping ``crop`` x ``crop`` tiles (an image shorter than ``crop`` on a side
gives tiles as long as that side). Tiles are taken round-robin, one per image per round in a seeded order, so that
as many images as possible are represented before any contributes a second tile; a tile that does not fit in the
budget is left out and the next one is tried. Tiles keep the native resolution (no resampling, which would change how
sharp the targets are); JPEG is written with full-resolution chroma (4:4:4). With ``max_side`` whole images are
downscaled first exactly as :class:`sharpkd.data.EvalImages` does, so a validation set packed with the
``--val-max-side`` of training validates identically. The output is a plain image folder that
:meth:`sharpkd.data.SyntheticPairs.from_folder` and :meth:`sharpkd.data.EvalImages.from_folder` read; sub-folders
of the source are kept, and ``pack.json`` beside the images records the settings.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sharpkd.data import EvalImages, find_images
from sharpkd.errors import DatasetError, SharpkdError
from sharpkd.images import read_image

__all__ = ["PACK_FORMATS", "PackConfig", "PackReport", "pack_images"]

log = logging.getLogger(__name__)

PACK_FORMATS = ("jpg", "png", "webp")


@dataclass(frozen=True)
class PackConfig:
    """How :func:`pack_images` cuts and encodes.

    Raises:
        ValueError: a value out of range or an unknown ``fmt`` (named with the offending value).
    """

    max_bytes: int  # budget for the written image files together
    crop: int | None = 384  # tile side in px (256 px patches plus room for random offsets and degradation context);
    # None keeps whole images
    min_side: int = 256  # drop tiles and images whose shorter side is below this (the training patch size)
    max_side: int | None = None  # first downscale whole images to this longer side (area, as EvalImages); None = off
    fmt: str = "jpg"  # "jpg" (4:4:4 chroma), "png" (lossless) or "webp"
    quality: int = 95  # JPEG / WebP quality
    seed: int = 0  # the order of the tiles within each image and of the images within each round

    def __post_init__(self) -> None:
        rules = (
            ("max_bytes", self.max_bytes >= 1, ">= 1"),
            ("crop", self.crop is None or self.crop >= 8, ">= 8 or None"),
            ("min_side", self.min_side >= 1, ">= 1"),
            ("crop", self.crop is None or self.crop >= self.min_side, f">= min_side ({self.min_side}) or None"),
            ("max_side", self.max_side is None or self.max_side >= 8, ">= 8 or None"),
            ("quality", 1 <= self.quality <= 100, "in [1, 100]"),
        )
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"PackConfig.{name} must be {rule}, got {getattr(self, name)!r}")
        if self.fmt not in PACK_FORMATS:
            raise ValueError(f"PackConfig.fmt must be one of {PACK_FORMATS}, got {self.fmt!r}")


@dataclass
class PackReport:
    """What :func:`pack_images` wrote."""

    files: list[Path]  # the image files written, in writing order
    bytes: int  # their total size
    sources: int  # source images used (at least one tile written)
    skipped: int  # source files unreadable or smaller than min_side
    left_out: int  # tiles cut but not written (over the budget)
    per_folder: dict[str, tuple[int, int]] = field(default_factory=dict)  # sub-folder -> (files, bytes)


def pack_images(
    src: str | os.PathLike,
    out: str | os.PathLike,
    cfg: PackConfig,
    progress: Callable[[int, int], None] | None = None,
) -> PackReport:
    """Write tiles (or whole images) of every image under ``src`` into ``out``, ``cfg.max_bytes`` in total at most.

    Args:
        src: folder of sharp images (recursive, as :func:`sharpkd.data.find_images`).
        out: destination folder; created, and it must not hold images yet.
        cfg: tile size, budget and encoding.
        progress: called as ``progress(done, total)`` after each source image is cut and encoded.

    Returns:
        A :class:`PackReport`.

    Raises:
        DatasetError: ``src`` is missing or holds no usable image, ``out`` already holds images, or not even one tile
            fits in the budget.
    """
    paths = find_images(src)
    if not paths:
        raise DatasetError(f"no images found under {src}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; pack into a folder")
    stems = {}
    for path in paths:  # tiles are named after their source without its suffix: a.png and a.jpg would collide
        key = path.relative_to(Path(src)).with_suffix("")
        if key in stems:
            raise DatasetError(f"{stems[key]} and {path} would pack to the same file names; rename one of them")
        stems[key] = path
    if out.is_dir() and find_images(out):
        raise DatasetError(f"{out} already holds images; pack into a new folder (or delete it first)")
    tiles, skipped = [], 0  # tiles[i]: [(relative file name, encoded bytes)] of source i, in the order taken
    for done, path in enumerate(paths, 1):
        encoded = _encode_tiles(path, Path(src), cfg)
        if encoded:
            tiles.append(encoded)
        else:
            skipped += 1
        if progress is not None:
            progress(done, len(paths))
    if not tiles:
        raise DatasetError(f"none of the {len(paths)} images under {src} is at least {cfg.min_side} px on a side")
    chosen, left_out = _round_robin(tiles, cfg.max_bytes, cfg.seed)
    if not chosen:
        smallest = min(len(data) for per_image in tiles for _, data in per_image)
        raise DatasetError(f"no tile fits in {cfg.max_bytes} bytes (the smallest is {smallest} bytes)")
    report = PackReport([], 0, len({i for i, _ in chosen}), skipped, left_out)
    for i, k in chosen:
        name, data = tiles[i][k]
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        folder = str(Path(name).parent)
        count, size = report.per_folder.get(folder, (0, 0))
        report.per_folder[folder] = (count + 1, size + len(data))
        report.files.append(path)
        report.bytes += len(data)
    manifest = {"source": str(src), "config": asdict(cfg), "files": len(report.files), "bytes": report.bytes}
    (out / "pack.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info(
        "packed %d files (%d bytes) from %d of %d images into %s",
        len(report.files),
        report.bytes,
        report.sources,
        len(paths),
        out,
    )
    return report


def _encode_tiles(path: Path, root: Path, cfg: PackConfig) -> list[tuple[str, bytes]]:
    """The encoded tiles of one source image, in a seeded order; [] when it is unreadable or too small."""
    try:
        img = read_image(path)
    except SharpkdError as err:
        log.warning("skipping %s: %s", path, err)
        return []
    if cfg.max_side is not None:
        img = EvalImages({"img": img}, cfg.max_side).images["img"]  # the very resize validation applies
    H, W = img.shape[:2]
    if min(H, W) < cfg.min_side:
        log.warning("skipping %s: %dx%d is smaller than %d px", path, W, H, cfg.min_side)
        return []
    rel = path.relative_to(root)
    if cfg.crop is None:
        return [(str(rel.with_suffix(f".{cfg.fmt}")), _encode(img, cfg))]
    boxes = [(top, left, h, w) for top, h in _spans(H, cfg.crop) for left, w in _spans(W, cfg.crop)]
    g = torch.Generator().manual_seed(cfg.seed + zlib.crc32(rel.as_posix().encode()))  # str hashes vary per process
    order = torch.randperm(len(boxes), generator=g)
    out = []
    for k in order.tolist():
        top, left, h, w = boxes[k]
        name = rel.parent / f"{rel.stem}_y{top:04d}_x{left:04d}.{cfg.fmt}"
        out.append((str(name), _encode(img[top : top + h, left : left + w], cfg)))
    return out


def _spans(length: int, crop: int) -> list[tuple[int, int]]:
    """``(start, size)`` of non-overlapping tiles along one side, spread evenly over it (one when it is shorter)."""
    if length <= crop:
        return [(0, length)]
    n = length // crop
    return [(round(i * (length - crop) / max(1, n - 1)), crop) for i in range(n)]


def _encode(pixels: np.ndarray, cfg: PackConfig) -> bytes:
    # Pillow directly rather than sharpkd.images.encode_image: JPEG needs subsampling=0 (4:4:4), or the targets would
    # carry half-resolution chroma.
    options = {"png": {}, "jpg": {"quality": cfg.quality, "subsampling": 0}, "webp": {"quality": cfg.quality}}
    buffer = io.BytesIO()
    pil_format = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[cfg.fmt]
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format=pil_format, **options[cfg.fmt])
    return buffer.getvalue()


def _round_robin(tiles: list[list[tuple[str, bytes]]], budget: int, seed: int) -> tuple[list[tuple[int, int]], int]:
    """``[(source, tile)]`` to write, one tile per source per round (sources in a seeded order each round), skipping
    tiles over what is left of ``budget``; and how many tiles were left out."""
    chosen, used, left_out = [], 0, 0
    for r in range(max(len(t) for t in tiles)):
        for i in torch.randperm(len(tiles), generator=torch.Generator().manual_seed(seed + r)).tolist():
            if r >= len(tiles[i]):
                continue
            size = len(tiles[i][r][1])
            if used + size <= budget:
                chosen.append((i, r))
                used += size
            else:
                left_out += 1
    return chosen, left_out
