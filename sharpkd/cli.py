"""``sharpkd`` command line: each subcommand parses arguments and calls one library function.

Errors a user can cause print one line (``sharpkd: error: ...``) and exit with status 2; batch commands report each
bad file and carry on with the rest, exiting 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sharpkd.errors import SharpkdError


def _progress_callback(total: int, desc: str):
    from tqdm import tqdm

    from sharpkd.train import Callback

    class Bar(Callback):
        def __init__(self) -> None:
            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

        def on_step(self, step, logs):
            self.bar.n = step
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
            self.bar.refresh()

        def on_validation(self, step, metrics):
            m = metrics["mean"]
            self.bar.write(
                f"step {step}: val PSNR {m['psnr']:.2f} dB (input {m['input_psnr']:.2f}), SSIM {m['ssim']:.4f}"
            )

    return Bar()


def _add_train_args(p: argparse.ArgumentParser, default_losses: str) -> None:
    p.add_argument("--data", default="samples", help="folder of sharp images, or 'samples' (built-in photos)")
    p.add_argument("--paired", action="store_true", help="--data is a GoPro-style blur/sharp folder")
    p.add_argument("--val", default=None, help="folder of sharp validation images (default: built-in samples)")
    p.add_argument("--val-max-side", type=int, default=256, help="downscale validation images to this side")
    p.add_argument("--degradation", default="mix+presets", help="training degradation: mix, presets, mix+presets")
    p.add_argument("--out", required=True, help="output folder (last.pt, best.pt, metrics.jsonl)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--losses", default=default_losses, help=f"name=weight,... (default {default_losses})")
    p.add_argument("--vgg-weights", default=None, help="torchvision VGG19 state dict for the 'vgg' loss")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--early-stop", type=int, default=0)
    p.add_argument("--plateau", action="store_true")
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="model config override")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def _train(args: argparse.Namespace, teacher) -> int:
    import torch

    from sharpkd.checkpoint import save_checkpoint
    from sharpkd.data import EvalImages, PairedFolder, SyntheticPairs, sample_images
    from sharpkd.models import build_model, count_parameters
    from sharpkd.train import TrainConfig, fit

    if args.paired:
        data = PairedFolder(args.data, patch_size=args.patch_size, seed=args.seed)
    elif args.data == "samples":
        data = SyntheticPairs.from_samples(args.patch_size, degradation=args.degradation, seed=args.seed)
    else:
        data = SyntheticPairs.from_folder(args.data, args.patch_size, degradation=args.degradation, seed=args.seed)
    val = EvalImages.from_folder(args.val, args.val_max_side) if args.val else EvalImages(sample_images(), 256)
    torch.manual_seed(args.seed)
    model = build_model(args.model, **_overrides(args.set))
    meta = {
        "data": str(args.data),
        "degradation": args.degradation,
        "patch_size": args.patch_size,
        "preset": args.model,
        "teacher": str(getattr(args, "teacher", None)),
        "command": " ".join(sys.argv),
        "hardware": _hardware(),
    }
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup,
        losses=args.losses,
        vgg_weights=args.vgg_weights,
        val_every=args.val_every,
        early_stop=args.early_stop,
        plateau=args.plateau,
        ckpt_every=args.val_every,
        out_dir=args.out,
        seed=args.seed,
        device=args.device,
        max_minutes=args.max_minutes,
        resume=not args.no_resume,
        meta=meta,
    )
    print(f"{args.model}: {count_parameters(model):,} parameters, {len(data)} samples/epoch -> {args.out}")
    result = fit(cfg, teacher, model, data, val=val, callbacks=[_progress_callback(args.steps, args.model)])
    final = Path(args.out) / "final.pt"
    meta.update(steps=result.steps, wall_seconds=round(result.wall_seconds, 1), stopped=result.stopped)
    if result.history:
        meta["val"] = {k: v for k, v in result.history[-1].items()}
    save_checkpoint(final, model, meta=meta)
    print(f"{result.stopped} after {result.steps} steps; best val PSNR {result.best_psnr:.2f} dB; wrote {final}")
    return 0


def _hardware() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu} ({torch.get_num_threads()} threads)"


def cmd_train_teacher(args: argparse.Namespace) -> int:
    return _train(args, None)


def cmd_distill(args: argparse.Namespace) -> int:
    from sharpkd.infer import load_model

    teacher = load_model(args.teacher)
    if teacher.kind != "teacher":
        print(f"sharpkd: note: {args.teacher} is a {teacher.kind}; distilling from it anyway", file=sys.stderr)
    return _train(args, teacher)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharpkd", description="Sharpen video-call frames with distilled CNNs.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="train a teacher on sharp images degraded on the fly")
    p.add_argument("--model", default="nafnet", help="teacher preset (nafnet, unet, rescnn)")
    _add_train_args(p, "l1=1")
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="distill a student from a trained teacher")
    p.add_argument("--teacher", default="teacher", help="shipped model name or checkpoint path")
    p.add_argument("--model", default="rt", help="student preset (rt, conv4, resattn, sepunet)")
    _add_train_args(p, "l1=1,kd=1,feat=0.1")
    p.set_defaults(func=cmd_distill)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (SharpkdError, ValueError, FileNotFoundError) as err:
        print(f"sharpkd: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sharpkd: interrupted; checkpoints written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
