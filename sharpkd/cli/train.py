"""``sharpkd train-teacher`` and ``sharpkd distill``: argument parsing around ``sharpkd.training.loop.fit``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sharpkd.cli.common import LOAD_ERRORS, one_line
from sharpkd.errors import CheckpointError

# distill's --losses default. train-teacher's is TrainConfig.losses (ground truth only); a student also learns from
# the teacher's output and features.
DISTILL_LOSSES = "l1=1,kd=1,feat=0.1"


def _progress_callback(total: int, desc: str):
    from tqdm import tqdm

    from sharpkd.training.callbacks import Callback

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
    """The flags train-teacher and distill share; the training defaults come from ``TrainConfig``."""
    from sharpkd.training.loop import TrainConfig

    d = TrainConfig()
    p.add_argument("--data", default="samples", help="folder of sharp images, or 'samples' (built-in photos)")
    p.add_argument("--paired", action="store_true", help="--data is a GoPro-style blur/sharp folder")
    p.add_argument("--val", default=None, help="folder of sharp validation images (default: built-in samples)")
    p.add_argument("--val-max-side", type=int, default=256, help="downscale validation images to this side")
    p.add_argument("--degradation", default="mix+presets", help="training degradation: mix, presets, mix+presets")
    p.add_argument("--out", required=True, help="output folder (last.pt, best.pt, metrics.jsonl)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patch-size", type=int, default=96)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup_steps)
    p.add_argument("--losses", default=default_losses, help=f"name=weight,... (default {default_losses})")
    p.add_argument("--vgg-weights", default=d.vgg_weights, help="torchvision VGG19 state dict for the 'vgg' loss")
    p.add_argument("--val-every", type=int, default=d.val_every, help="validate and write last.pt every N steps")
    p.add_argument("--early-stop", type=int, default=d.early_stop)
    p.add_argument("--plateau", action="store_true")
    p.add_argument(
        "--ema",
        type=float,
        default=d.ema_decay,
        metavar="DECAY",
        help="keep an EMA of the weights with this decay (e.g. 0.999) and validate/save it; 0 = off",
    )
    p.add_argument("--max-minutes", type=float, default=d.max_minutes)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="model config override")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--init", default=None, help="start from these weights (shipped name or checkpoint path)")


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
    from sharpkd.training.loop import TrainConfig, fit

    if args.paired:
        data = PairedFolder(args.data, patch_size=args.patch_size, seed=args.seed)
    elif args.data == "samples":
        data = SyntheticPairs.from_samples(args.patch_size, degradation=args.degradation, seed=args.seed)
    else:
        data = SyntheticPairs.from_folder(args.data, args.patch_size, degradation=args.degradation, seed=args.seed)
    val = EvalImages.from_folder(args.val, args.val_max_side) if args.val else EvalImages(sample_images(), 256)
    torch.manual_seed(args.seed)
    model = build_model(args.model, **_overrides(args.set))
    if args.init:
        from sharpkd.checkpoint import load_state_into
        from sharpkd.runtime.sharpener import resolve_checkpoint

        load_state_into(resolve_checkpoint(args.init), model)  # OUT/last.pt, when resuming, overrides this
    meta = {
        "data": str(args.data),
        "degradation": args.degradation,
        "patch_size": args.patch_size,
        "preset": args.model,
        "teacher": str(getattr(args, "teacher", None)),
        "command": args.command_line,
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
        ema_decay=args.ema,
        ckpt_every=args.val_every,  # the CLI writes last.pt at every validation
        out_dir=args.out,
        seed=args.seed,
        device=args.device,
        max_minutes=args.max_minutes,
        resume=not args.no_resume,
        meta=meta,
    )
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 prints and writes
    cached = getattr(args, "cache_teacher", 0) > 0
    if cached:
        data = _teacher_cache(args, teacher, data)
        meta["teacher_cache"] = {"size": args.cache_teacher, "file": args.cache_file}
    if rank0:
        print(f"{args.model}: {count_parameters(model):,} parameters, {len(data)} samples/epoch -> {args.out}")
    callbacks = [_progress_callback(args.steps, args.model)] if rank0 else []
    result = fit(cfg, None if cached else teacher, model, data, val=val, callbacks=callbacks)
    if result.rank != 0:
        return 0
    final = Path(args.out) / "final.pt"
    meta.update(steps=result.steps, wall_seconds=round(result.wall_seconds, 1), stopped=result.stopped)
    if result.history:
        meta["val"] = {k: v for k, v in result.history[-1].items()}
    save_checkpoint(final, model, meta=meta)
    print(f"{result.stopped} after {result.steps} steps; best val PSNR {result.best_psnr:.2f} dB; wrote {final}")
    return 0


def _teacher_cache(args: argparse.Namespace, teacher, data):
    """Load or build the teacher-output pool for ``distill --cache-teacher N`` (see sharpkd.training.cache)."""
    from tqdm import tqdm

    from sharpkd.training.cache import cache_teacher_outputs, load_cache, save_cache

    if "feat" in args.losses:
        raise ValueError("--cache-teacher stores teacher outputs only; drop 'feat' from --losses or the cache")
    key = {
        "teacher": str(args.teacher),
        "data": str(args.data),
        "degradation": args.degradation,
        "patch_size": args.patch_size,
        "seed": args.seed,
        "size": args.cache_teacher,
    }
    cache = load_cache(args.cache_file, key) if args.cache_file else None
    if cache is not None:
        print(f"using cached teacher outputs from {args.cache_file}")
        return cache
    bar = tqdm(total=args.cache_teacher, desc="teacher outputs", unit="patch", dynamic_ncols=True)
    cache = cache_teacher_outputs(
        teacher, data, args.cache_teacher, progress=lambda done, total: bar.update(done - bar.n)
    )
    bar.close()
    if args.cache_file:
        save_cache(args.cache_file, cache, key)
    return cache


def _hardware() -> str:
    import torch

    from sharpkd.reporting.benchmark import cpu_name

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {cpu_name()} ({torch.get_num_threads()} threads)"


def cmd_train_teacher(args: argparse.Namespace) -> int:
    return _train(args, None)


def cmd_distill(args: argparse.Namespace) -> int:
    from sharpkd.runtime.sharpener import load_model

    try:
        teacher = load_model(args.teacher)
    except LOAD_ERRORS as err:
        raise CheckpointError(f"cannot load teacher {args.teacher!r}: {one_line(err)}") from err
    if teacher.kind != "teacher":
        print(f"sharpkd: note: {args.teacher} is a {teacher.kind}; distilling from it anyway", file=sys.stderr)
    return _train(args, teacher)


# -- parser ------------------------------------------------------------------------------------------------------------
def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``train-teacher`` and ``distill`` subcommands to ``sub``."""
    from sharpkd.training.loop import TrainConfig

    p = sub.add_parser("train-teacher", help="train a teacher on sharp images degraded on the fly")
    p.add_argument("--model", default="nafnet", help="teacher preset (nafnet, unet, rescnn)")
    _add_train_args(p, TrainConfig.losses)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="distill a student from a trained teacher")
    p.add_argument("--teacher", default="teacher", help="shipped model name or checkpoint path")
    p.add_argument("--model", default="rt", help="student preset (rt, conv4, resattn, sepunet)")
    _add_train_args(p, DISTILL_LOSSES)
    p.add_argument(
        "--cache-teacher",
        type=int,
        default=0,
        metavar="N",
        help="run the teacher once on a fixed pool of N degraded crops and train on it (much faster on CPU; "
        "no 'feat' loss); 0 = run the teacher live every step",
    )
    p.add_argument("--cache-file", default=None, help="save/reuse the teacher-output pool here (e.g. runs/cache.pt)")
    p.set_defaults(func=cmd_distill)
