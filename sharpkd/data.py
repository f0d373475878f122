"""Datasets: sharp images -> ``(lq, gt)`` training pairs via :mod:`sharpkd.degrade`, real blur/sharp pairs, and the
uint8 <-> tensor conversions (the only place in the library besides :mod:`sharpkd.runtime` that touches uint8).

Three sources:

* :meth:`SyntheticPairs.from_folder` - any folder of sharp photos (recursive; :data:`sharpkd.images.IMAGE_SUFFIXES`);
* :func:`sample_images` / :meth:`SyntheticPairs.from_samples` - colour photos that ship with scikit-image, so
  training and demos work on a fresh machine with no downloads;
* :class:`PairedFolder` - real pairs in the GoPro layout (``<root>/<split>/<sequence>/blur|sharp/``) or flat
  (``<root>/blur/`` + ``<root>/sharp/``), matched by file name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sharpkd.degrade import check_degradation, context_margin, degrade
from sharpkd.errors import DatasetError, SharpkdError
from sharpkd.images import IMAGE_SUFFIXES, is_image_path, read_image

log = logging.getLogger(__name__)

# Colour photos in skimage.data that need no download (camera is grayscale and is expanded to RGB).
SAMPLE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera")


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(1, 3, H, W)`` float32 in [0, 1]."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{type(img).__name__} {getattr(img, 'dtype', '')} {getattr(img, 'shape', '')}"
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {got}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 (clamped and rounded)."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"to_uint8 takes one image, got batch of {x.shape[0]}")
        x = x[0]
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def degrade_image(img: np.ndarray, name: str, seed: int = 0, strength: float = 1.0) -> np.ndarray:
    """Apply a named degradation (:func:`sharpkd.degrade.degrade`) to one uint8 RGB image.

    The generator is seeded with ``seed``, so equal arguments give equal output; every uint8 caller (``sharpkd
    degrade``, the evaluation, the app, ``sharpen_video``'s ``degrade`` option) degrades through here.

    Raises:
        ValueError: ``img`` is not ``(H, W, 3)`` uint8, or ``name`` is not a known degradation.

    Shape:
        ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` uint8.
    """
    g = torch.Generator().manual_seed(seed)
    return to_uint8(degrade(to_tensor(img), name, g, strength))


def find_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root`` (recursive, sorted): those with a suffix in :data:`sharpkd.images.IMAGE_SUFFIXES`.

    Raises:
        DatasetError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    return sorted(p for p in root.rglob("*") if is_image_path(p) and p.is_file())


def sample_images(names: Sequence[str] = SAMPLE_NAMES) -> dict[str, np.ndarray]:
    """Built-in sample photos from ``skimage.data`` as ``{name: (H, W, 3) uint8}`` (needs scikit-image).

    Raises:
        DatasetError: scikit-image is missing, or a name is not a ``skimage.data`` image.
    """
    try:
        import skimage.data
    except ImportError as err:
        raise DatasetError("the built-in sample photos need scikit-image: pip install scikit-image") from err
    out = {}
    for name in names:
        loader = getattr(skimage.data, name, None) if not name.startswith("_") else None
        if not callable(loader):
            raise DatasetError(f"unknown sample image {name!r}; known: {', '.join(SAMPLE_NAMES)}")
        img = loader()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out[name] = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    return out


def _load_all(paths: Sequence[Path], min_size: int) -> tuple[list[np.ndarray], list[str], int]:
    images, names, skipped = [], [], 0
    for p in paths:
        try:
            img = read_image(p)
        except SharpkdError as err:
            log.warning("skipping %s: %s", p, err)
            skipped += 1
            continue
        if min(img.shape[:2]) < min_size:
            log.warning("skipping %s: %dx%d is smaller than %d px", p, img.shape[1], img.shape[0], min_size)
            skipped += 1
            continue
        images.append(img)
        names.append(str(p))
    return images, names, skipped


class SyntheticPairs(Dataset):
    """Random crops of sharp images, degraded on the fly: ``(lq, gt)`` pairs of ``(3, P, P)`` float tensors.

    Each item's crop, flip and degradation come from a generator seeded by ``(seed, epoch, index)``, so a run is
    reproducible whatever the number of workers. A margin around each crop is degraded too and cut away, so blur
    kernels see real image content instead of padding.

    Args:
        images: sharp ``(H, W, 3)`` uint8 images, each at least ``patch_size`` on its shorter side.
        patch_size: crop side P.
        degradation: a name accepted by :func:`sharpkd.degrade.degrade`.
        repeats: crops per image per epoch.
        seed: base seed.
        names: optional labels for the images (paths).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        patch_size: int = 96,
        degradation: str = "mix+presets",
        repeats: int = 8,
        seed: int = 0,
        names: Sequence[str] | None = None,
    ) -> None:
        check_degradation(degradation)
        if patch_size < 8:
            raise ValueError(f"patch_size must be >= 8, got {patch_size}")
        if names is not None and len(names) != len(images):
            raise ValueError(f"got {len(names)} names for {len(images)} images")
        labels = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
        keep = [i for i, im in enumerate(images) if min(im.shape[:2]) >= patch_size]
        if not keep:
            raise DatasetError(f"no image is at least {patch_size} px on its shorter side (got {len(images)} images)")
        self.images = [images[i] for i in keep]
        self.names = [labels[i] for i in keep]  # filtered together, so names[i] labels images[i]
        self.patch_size, self.degradation, self.repeats, self.seed = patch_size, degradation, repeats, seed
        self.epoch = 0
        self.skipped = 0

    @classmethod
    def from_folder(cls, root: str | os.PathLike, patch_size: int = 96, **kw) -> SyntheticPairs:
        """Every readable image under ``root``; unreadable or too-small files are skipped and counted in ``.skipped``.

        Raises:
            DatasetError: the folder is missing or holds no usable image.
        """
        paths = find_images(root)
        if not paths:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
        images, names, skipped = _load_all(paths, patch_size)
        if not images:
            raise DatasetError(f"none of the {len(paths)} images under {root} could be used ({skipped} skipped)")
        ds = cls(images, patch_size, names=names, **kw)
        ds.skipped = skipped
        log.info("loaded %d images from %s (%d skipped)", len(images), root, skipped)
        return ds

    @classmethod
    def from_samples(cls, patch_size: int = 96, **kw) -> SyntheticPairs:
        """The built-in scikit-image photos (see :data:`SAMPLE_NAMES`)."""
        samples = sample_images()
        return cls(list(samples.values()), patch_size, names=list(samples), **kw)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")  # also ends plain iteration
        index %= len(self)
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) % (2**63))
        img = self.images[index % len(self.images)]
        H, W = img.shape[:2]
        P = self.patch_size
        m = min(context_margin(self.degradation), (H - P) // 2, (W - P) // 2)  # degraded too, then cut away
        top = int(torch.randint(m, H - P - m + 1, (), generator=g))
        left = int(torch.randint(m, W - P - m + 1, (), generator=g))
        crop = img[top - m : top + P + m, left - m : left + P + m]
        gt = to_tensor(crop)
        if torch.rand((), generator=g) < 0.5:
            gt = gt.flip(-1)
        if torch.rand((), generator=g) < 0.5:
            gt = gt.flip(-2)
        lq = degrade(gt, self.degradation, g)
        sl = (..., slice(m, m + P), slice(m, m + P))
        return lq[0][sl].contiguous(), gt[0][sl].contiguous()


def _pairs_in(blur_dir: Path, sharp_dir: Path) -> tuple[list[tuple[Path, Path]], int]:
    blur = {p.name: p for p in blur_dir.iterdir() if is_image_path(p)}
    sharp = {p.name: p for p in sharp_dir.iterdir() if is_image_path(p)}
    common = sorted(blur.keys() & sharp.keys())
    return [(blur[n], sharp[n]) for n in common], len(blur.keys() ^ sharp.keys())


class PairedFolder(Dataset):
    """Real (blurry, sharp) pairs: GoPro layout ``<root>/<split>/<seq>/{blur,sharp}/`` or flat ``<root>/{blur,sharp}``.

    Files are paired by name; unpaired files are counted in ``.unpaired`` and ignored. Items are aligned random
    crops ``(lq, gt)`` of ``(3, P, P)`` (or whole images when ``patch_size`` is None).

    Raises:
        DatasetError: no ``blur``/``sharp`` folders, or no pair.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", patch_size: int | None = 96, seed: int = 0):
        root = Path(root)
        candidates = [root] if (root / "blur").is_dir() else []
        base = root / split if (root / split).is_dir() else root
        candidates += [d for d in sorted(base.iterdir()) if (d / "blur").is_dir()] if base.is_dir() else []
        if not candidates:
            raise DatasetError(f"no blur/ and sharp/ folders under {root} (GoPro layout <root>/{split}/<seq>/blur)")
        self.pairs: list[tuple[Path, Path]] = []
        self.unpaired = 0
        for d in candidates:
            if not (d / "sharp").is_dir():
                raise DatasetError(f"{d / 'blur'} has no sibling sharp/ folder")
            pairs, unpaired = _pairs_in(d / "blur", d / "sharp")
            self.pairs += pairs
            self.unpaired += unpaired
        if not self.pairs:
            raise DatasetError(f"no blur/sharp file pairs with matching names under {root}")
        if self.unpaired:
            log.warning("%d unpaired files under %s ignored", self.unpaired, root)
        self.patch_size, self.seed, self.epoch = patch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        blur_path, sharp_path = self.pairs[index]
        lq, gt = read_image(blur_path), read_image(sharp_path)
        if lq.shape != gt.shape:
            raise DatasetError(f"{blur_path} is {lq.shape} but {sharp_path} is {gt.shape}")
        if self.patch_size is not None:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) % (2**63))
            H, W = gt.shape[:2]
            P = min(self.patch_size, H, W)
            top = int(torch.randint(0, H - P + 1, (), generator=g))
            left = int(torch.randint(0, W - P + 1, (), generator=g))
            lq, gt = lq[top : top + P, left : left + P], gt[top : top + P, left : left + P]
        return to_tensor(lq)[0], to_tensor(gt)[0]


class EvalImages:
    """Whole validation images with a fixed degradation per preset: ``{(name, preset): (lq, gt)}`` as needed."""

    def __init__(self, images: dict[str, np.ndarray], max_side: int | None = None) -> None:
        if not images:
            raise DatasetError("no evaluation images")
        self.images = {}
        for name, img in images.items():
            if max_side is not None and max(img.shape[:2]) > max_side:
                t = to_tensor(img)
                s = max_side / max(img.shape[:2])
                size = (max(8, round(img.shape[0] * s)), max(8, round(img.shape[1] * s)))
                img = to_uint8(torch.nn.functional.interpolate(t, size=size, mode="area"))
            self.images[name] = img

    @classmethod
    def from_folder(cls, root: str | os.PathLike, max_side: int | None = None) -> EvalImages:
        paths = find_images(root)
        images, names, _ = _load_all(paths, 8)
        return cls({Path(n).stem: im for n, im in zip(names, images)}, max_side)

    def pairs(self, preset: str, seed: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """``[(name, lq, gt)]`` with ``(1, 3, H, W)`` tensors; the degradation seed is fixed per image."""
        out = []
        for i, (name, img) in enumerate(self.images.items()):
            gt = to_tensor(img)
            out.append((name, degrade(gt, preset, torch.Generator().manual_seed(seed + i)), gt))
        return out
