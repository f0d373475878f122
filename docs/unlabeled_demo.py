"""Does distilling on unlabeled soft footage help? Fine-tune the shipped student with ``sharpkd distill --unlabeled``
on codec-degraded frames of some images, then compare its gain on codec-degraded frames of *other* images with the
shipped student's.

The fine-tune frames are training photos (``<data>/train``, spread over its sub-folders, downscaled to ``--max-side``)
put through a codec preset (``--preset``, default ``h264``) and written as PNGs: footage with no sharp originals, as
``--unlabeled`` sees it; the teacher labels them. The held-back frames are the validation photos (``<data>/val``,
Set14), through the same preset, with their sharp originals kept to measure PSNR. The other presets show what the
specialisation costs elsewhere. Everything runs through the uint8 path the app and the CLI use (``sharpkd.load``).

Run from the project root, on one core (about 8 minutes on a busy 2-core machine):

    OMP_NUM_THREADS=1 .venv/bin/python docs/unlabeled_demo.py --data ../shared/datasets

Last run (2026-12-02, the shipped student of that day, rtrep psnr=1,kd_rel=1, 64 frames, 8000 steps, 419 s of
training on one core): on the 14 held-back h264 photos the shipped student gains +0.184 dB, the fine-tuned one +0.240
(+0.056, better on 14 of 14), the teacher +0.297. The specialisation costs the other presets: gauss1.5 +2.475 ->
+0.436, motion9 -0.010 -> -0.131, while vc (+0.432 -> +0.480) and vp8 (+0.066 -> +0.102) gain: a student fine-tuned on
one user's codec footage is for that footage, not a new general default.

The defaults come from a small sweep on h264 footage with the previous shipped student (mean gain of the fine-tuned
student minus the shipped one's on the 14 held-back photos): lr 1e-4, 1500 steps, 32 frames, 4000 crops: +0.021 dB
(better on 10 of 14); lr 1e-3, 3000 steps: +0.043 (13 of 14); lr 2e-3, 8000 steps, 64 frames, 8000 crops: +0.056 (13
of 14). The Train page's footage mode (16 frames, 1500 steps at 1e-3, 2000 crops) measured +0.031 (12 of 14).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import sharpkd
from sharpkd.checkpoint import read_checkpoint
from sharpkd.cli import main as sharpkd_main
from sharpkd.data import EvalImages, degrade_image, find_images, to_tensor
from sharpkd.degrade import PRESETS
from sharpkd.images import read_image, write_image
from sharpkd.metrics import psnr
from sharpkd.runtime.sharpener import resolve_checkpoint


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr(to_tensor(a), to_tensor(b)))


def finetune_frames(data: Path, count: int, max_side: int, preset: str, out: Path) -> list[str]:
    """``count`` training photos spread evenly over ``data/train``, downscaled and degraded, written to ``out``."""
    paths = find_images(data / "train")
    picked = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, count).round()]
    sharp = EvalImages({p.stem: read_image(p) for p in picked}, max_side).images
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, img) in enumerate(sharp.items()):
        write_image(out / f"{name}.png", degrade_image(img, preset, seed=1000 + i))
    return list(sharp)


def gains(models: dict[str, sharpkd.Sharpener], sharp: dict[str, np.ndarray], preset: str) -> dict[str, np.ndarray]:
    """Per image: the input's PSNR (``"input"``) and each model's PSNR gain over it, on ``preset``-degraded frames."""
    rows: dict[str, list[float]] = {"input": [], **{name: [] for name in models}}
    for i, gt in enumerate(sharp.values()):
        lq = degrade_image(gt, preset, seed=i)
        base = _psnr(lq, gt)
        rows["input"].append(base)
        for name, model in models.items():
            rows[name].append(_psnr(model.sharpen(lq), gt) - base)
    return {k: np.array(v) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"), help="folder with train/ and val/")
    ap.add_argument("--preset", default="h264", choices=("h264", "vp8"), help="the codec the footage went through")
    ap.add_argument("--frames", type=int, default=64, help="fine-tune frames (training photos)")
    ap.add_argument("--max-side", type=int, default=512, help="fine-tune photos are downscaled to this side")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch-size", type=int, default=96)
    ap.add_argument("--crops", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--others", default=",".join(PRESETS), help="presets also scored on the held-back photos")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    work = args.out or Path(tempfile.mkdtemp(prefix="sharpkd-unlabeled-"))
    names = finetune_frames(args.data, args.frames, args.max_side, args.preset, work / "frames")
    print(f"fine-tune footage: {len(names)} training photos (max side {args.max_side}) through {args.preset}, no sharp")
    print(f"originals kept -> {work / 'frames'}")

    preset = read_checkpoint(resolve_checkpoint("student"))["meta"]["preset"]
    argv = ["distill", "--unlabeled", str(work / "frames"), "--teacher", "teacher", "--init", "student"]
    argv += ["--model", preset, "--out", str(work / "run"), "--steps", str(args.steps), "--lr", str(args.lr)]
    argv += ["--batch-size", str(args.batch_size), "--patch-size", str(args.patch_size), "--crops", str(args.crops)]
    argv += ["--warmup", str(max(1, args.steps // 20)), "--val-every", str(max(1, args.steps // 5))]
    argv += ["--seed", str(args.seed), "--device", "cpu", "--no-resume"]
    print("$ sharpkd " + " ".join(argv), flush=True)
    t1 = time.time()
    if sharpkd_main(argv) != 0:
        raise SystemExit("the fine-tune failed")
    train_s = time.time() - t1

    held = EvalImages.from_folder(args.data / "val").images
    models = {
        "shipped": sharpkd.load("student", backend="torch"),
        "fine-tuned": sharpkd.load(work / "run" / "final.pt", backend="torch"),
        "teacher": sharpkd.load("teacher", backend="torch"),
    }
    g = gains(models, held, args.preset)
    print(f"\nheld-back frames: {len(held)} validation photos ({args.data / 'val'}) through {args.preset}")
    print("PSNR gain over the codec-degraded input, dB (input PSNR in the first column)\n")
    print(f"{'image':<12} {'input':>7} {'shipped':>8} {'fine-tuned':>11} {'teacher':>8}")
    for i, name in enumerate(held):
        cols = [g[k][i] for k in ("shipped", "fine-tuned", "teacher")]
        print(f"{name:<12} {g['input'][i]:7.2f} {cols[0]:+8.3f} {cols[1]:+11.3f} {cols[2]:+8.3f}")
    mean = {k: float(v.mean()) for k, v in g.items()}
    better = int((g["fine-tuned"] > g["shipped"]).sum())
    print(
        f"{'mean':<12} {mean['input']:7.2f} {mean['shipped']:+8.3f} {mean['fine-tuned']:+11.3f} {mean['teacher']:+8.3f}"
    )
    print(f"fine-tuned minus shipped: {mean['fine-tuned'] - mean['shipped']:+.3f} dB; better on {better}/{len(held)}")

    others = [p for p in args.others.split(",") if p and p != args.preset]
    if others:
        print("\nthe same held-back photos through the other presets (mean gain, dB): what the specialisation costs")
        print(f"{'preset':<10} {'shipped':>8} {'fine-tuned':>11}")
        students = {k: models[k] for k in ("shipped", "fine-tuned")}
        for other in others:
            o = gains(students, held, other)
            print(f"{other:<10} {o['shipped'].mean():+8.3f} {o['fine-tuned'].mean():+11.3f}")
    print(f"\ntraining {train_s:.0f} s, total {time.time() - t0:.0f} s (torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
