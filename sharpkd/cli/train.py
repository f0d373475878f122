"""``sharpkd train-teacher`` and ``sharpkd distill``: argument parsing around ``sharpkd.training.loop.fit``; and
``sharpkd pack-data`` around ``sharpkd.training.pack.pack_images`` (training data small enough to travel)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

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
    from sharpkd.training.loop import AMP_MODES, TrainConfig

    d = TrainConfig()
    p.add_argument("--data", default="samples", help="folder of sharp images, or 'samples' (built-in photos)")
    p.add_argument("--paired", action="store_true", help="--data is a GoPro-style blur/sharp folder")
    p.add_argument("--val", default=None, help="folder of sharp validation images (default: built-in samples)")
    p.add_argument("--val-max-side", type=int, default=256, help="downscale validation images to this side")
    p.add_argument(
        "--degradation",
        default="mix+presets",
        help="training degradation: mix, presets, mix+presets, a weighted pool presets:motion9=3,... "
        "(presets not named weigh 1), or mix+presets:vp8=2,... (half the random mix, half that pool)",
    )
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
    p.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware training: train through the int8 rounding of the onnx-int8 backend (RepConv "
        "students such as rtrep4); ship the result with sharpkd export --int8",
    )
    p.add_argument("--max-minutes", type=float, default=d.max_minutes)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--amp", default=d.amp, choices=AMP_MODES, help="bf16 autocast: auto (on CUDA only), bf16, off")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions on CUDA)")
    p.add_argument("--workers", type=int, default=d.num_workers, help="DataLoader worker processes; 0 = none")
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
    from sharpkd.losses import parse_weights
    from sharpkd.models import build_model, count_parameters
    from sharpkd.training.loop import TrainConfig, fit

    unlabeled = getattr(args, "unlabeled", None)
    if unlabeled:
        data, val = _unlabeled_data(args, teacher)  # teacher-labelled crops of soft footage; val: held-back frames
    elif args.paired:
        data = PairedFolder(args.data, patch_size=args.patch_size, seed=args.seed)
    elif args.data == "samples":
        data = SyntheticPairs.from_samples(args.patch_size, degradation=args.degradation, seed=args.seed)
    else:
        data = SyntheticPairs.from_folder(args.data, args.patch_size, degradation=args.degradation, seed=args.seed)
    if not unlabeled:
        val = EvalImages.from_folder(args.val, args.val_max_side) if args.val else EvalImages(sample_images(), 256)
    torch.manual_seed(args.seed)
    init_meta: dict[str, Any] | None = None
    if args.init:
        model, init_meta = _init_model(args)  # OUT/last.pt, when resuming, overrides these weights
    else:
        args.model = args.model or args.default_model
        model = build_model(args.model, **_overrides(args.set))
    if args.qat:
        from sharpkd.models.quant import attach_fake_quant

        attach_fake_quant(model).remove()  # a model QAT cannot round fails here, before any data or pool is built
    meta = {
        "data": str(args.data),
        "degradation": args.degradation,
        "patch_size": args.patch_size,
        "preset": args.model,
        "teacher": str(getattr(args, "teacher", None)),
        "command": args.command_line,
        "hardware": _hardware(),
    }
    if init_meta is not None:  # the provenance chain: how the starting weights were made (their own val dropped)
        meta["init"] = {"from": str(args.init), **{k: v for k, v in init_meta.items() if k != "val"}}
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
        qat=args.qat,
        ckpt_every=args.val_every,  # the CLI writes last.pt at every validation
        out_dir=args.out,
        seed=args.seed,
        device=args.device,
        max_minutes=args.max_minutes,
        amp=args.amp,
        channels_last=args.channels_last,
        num_workers=args.workers,
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
    # A pool holds the teacher's outputs, not its features: with ``feat`` the teacher reruns on the pooled inputs.
    live_teacher = not cached or "feat" in parse_weights(args.losses)
    result = fit(cfg, teacher if live_teacher else None, model, data, val=val, callbacks=callbacks)
    if result.rank != 0:
        return 0
    final = Path(args.out) / "final.pt"
    meta.update(steps=result.steps, wall_seconds=round(result.wall_seconds, 1), stopped=result.stopped)
    if result.history:
        meta["val"] = {k: v for k, v in result.history[-1].items()}
    save_checkpoint(final, model, meta=meta)
    print(f"{result.stopped} after {result.steps} steps; best val PSNR {result.best_psnr:.2f} dB; wrote {final}")
    if result.stopped == "interrupted":
        print(f"{args.out}/last.pt holds step {result.steps}: the same command resumes from it", file=sys.stderr)
        return 130
    return 0


def _init_model(args: argparse.Namespace):
    """The model that ``--init`` continues, with the checkpoint's weights, and the checkpoint's meta.

    Without ``--model`` it is the checkpoint's own architecture (its stored config; ``--set`` may change fields that
    keep the weights' shapes) and ``args.model`` becomes its preset. With ``--model`` it must be the checkpoint's.

    Raises:
        CheckpointError: unreadable checkpoint, or weights that do not fit the model.
        ValueError: ``--model`` names another preset than the checkpoint's, or the checkpoint holds the other kind
            of model (a teacher for ``distill``, a student for ``train-teacher``).
    """
    from sharpkd.checkpoint import load_weights, read_checkpoint
    from sharpkd.models import build_model, model_from_config
    from sharpkd.runtime.sharpener import resolve_checkpoint

    path = resolve_checkpoint(args.init)
    ckpt = read_checkpoint(path)
    meta = dict(ckpt.get("meta") or {})
    preset, kind = meta.get("preset"), ckpt["kind"]
    want = "teacher" if args.command == "train-teacher" else "student"
    if kind != want:
        raise ValueError(f"--init {args.init} holds a {kind}; {args.command} trains a {want}")
    if args.model is not None and preset is not None and preset != args.model:
        raise ValueError(
            f"--init {args.init} holds a {preset!r} {kind}, not --model {args.model!r}: "
            f"drop --model to continue it as it is, or pass --model {preset}"
        )
    overrides = _overrides(args.set)
    if args.model is None:
        args.model = preset or args.default_model
        try:
            model = model_from_config(kind, {**dict(ckpt["config"]), **overrides})
        except (ValueError, TypeError) as err:
            raise ValueError(f"--init {args.init}: cannot build its architecture with {overrides}: {err}") from err
    else:
        model = build_model(args.model, **overrides)
    load_weights(path, model, ckpt["model"])
    return model, meta


def _teacher_cache(args: argparse.Namespace, teacher, data):
    """Load or build the teacher-output pool for ``distill --cache-teacher N`` (see sharpkd.training.cache)."""
    from tqdm import tqdm

    from sharpkd.training.cache import cache_teacher_outputs, load_cache, save_cache

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


# distill --unlabeled's --losses default: the shipped student's own loss. The footage's "ground truth" is the teacher's
# output, so psnr (to gt) and kd_psnr (to the teacher) are the same target; features are not cached.
UNLABELED_LOSSES = "psnr=1"


def _check_unlabeled_args(args: argparse.Namespace) -> None:
    """Refuse the flags that mean nothing without sharp originals; point --data at the footage (for the provenance)."""
    from sharpkd.losses import parse_weights

    clashes = {
        "--data": args.data != "samples",
        "--paired": args.paired,
        "--val": args.val is not None,
        "--cache-teacher": args.cache_teacher > 0,
    }
    given = [flag for flag, on in clashes.items() if on]
    if given:
        raise ValueError(
            f"--unlabeled takes its frames from DIR, labels them with the teacher and validates on held-back frames; "
            f"drop {', '.join(given)}"
        )
    if args.losses == DISTILL_LOSSES:  # the default, whose feature term needs the live teacher
        args.losses = UNLABELED_LOSSES
    if "feat" in parse_weights(args.losses):
        raise ValueError("--unlabeled trains on cached teacher outputs; drop 'feat' from --losses")
    # checked here, before the teacher's pass over every frame, so that a typo does not cost that pass
    if args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.crops < args.batch_size:
        raise ValueError(f"--crops ({args.crops}) must be at least --batch-size ({args.batch_size})")
    args.data, args.degradation = str(args.unlabeled), "none (soft footage, teacher-labelled)"


def _unlabeled_data(args: argparse.Namespace, teacher):
    """Training crops and validation frames for ``distill --unlabeled DIR`` (see sharpkd.training.unlabeled)."""
    from tqdm import tqdm

    from sharpkd.training.distributed import resolve_device
    from sharpkd.training.unlabeled import find_footage, holdout_indices, load_footage, prepare_unlabeled

    footage = load_footage(
        find_footage(args.unlabeled),
        max_frames=args.max_frames,
        frames_per_video=args.frames_per_video,
        min_size=args.patch_size,
    )
    for name, reason in footage.skipped:
        print(f"sharpkd: skipped {name}: {reason}", file=sys.stderr)
    holdout_indices(len(footage), args.holdout)  # a bad --holdout fails before the teacher's pass
    with tqdm(total=len(footage), desc="teacher labels", unit="frame", dynamic_ncols=True) as bar:
        data = prepare_unlabeled(
            teacher,
            footage,
            patch_size=args.patch_size,
            crops=args.crops,
            holdout=args.holdout,
            val_max_side=args.val_max_side,
            seed=args.seed,
            device=resolve_device(args.device),
            progress=lambda done, total: bar.update(done - bar.n),
        )
    n_val = len(data.val_names)
    where = f"{n_val} held-back frames" if data.held_back else f"the {n_val} training frames (too few to hold any back)"
    print(
        f"{len(footage)} frames from {args.unlabeled}: {len(data.train)} crops of {len(data.train_names)} frames; "
        f"val PSNR is to the teacher's output, on {where}"
    )
    return data.train, data.val


def _add_unlabeled_args(p: argparse.ArgumentParser) -> None:
    from sharpkd.training import unlabeled as u

    g = p.add_argument_group(
        "unlabeled footage",
        "distill on frames that are soft already and have no sharp originals (your own calls): the teacher's output "
        "on each whole frame is the target. Usually fine-tunes: --init student --model rtrep4 (the shipped student "
        "and its preset) with a small --lr (e.g. 1e-4)",
    )
    g.add_argument(
        "--unlabeled",
        default=None,
        metavar="DIR",
        help="folder of soft frames (images) and/or clips (videos); replaces --data, --val and --cache-teacher",
    )
    g.add_argument("--max-frames", type=int, default=u.DEFAULT_MAX_FRAMES, help="frames in all (thinned evenly)")
    g.add_argument(
        "--frames-per-video", type=int, default=u.DEFAULT_FRAMES_PER_VIDEO, help="frames sampled evenly from each clip"
    )
    g.add_argument("--crops", type=int, default=u.DEFAULT_CROPS, help="training crops cut from the labelled frames")
    g.add_argument(
        "--holdout", type=int, default=None, help="frames held back for validation (default: one in eight, 0 if < 8)"
    )


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

    if args.unlabeled:
        _check_unlabeled_args(args)
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
    from sharpkd.models import list_models
    from sharpkd.training.loop import TrainConfig

    p = sub.add_parser("train-teacher", help="train a teacher on sharp images degraded on the fly")
    p.add_argument(
        "--model",
        default=None,
        help=f"teacher preset ({', '.join(list_models('teacher'))}; default nafnet, or the --init checkpoint's)",
    )
    _add_train_args(p, TrainConfig.losses)
    p.set_defaults(func=cmd_train_teacher, default_model="nafnet")

    p = sub.add_parser("distill", help="distill a student from a trained teacher")
    p.add_argument("--teacher", default="teacher", help="shipped model name or checkpoint path")
    p.add_argument(
        "--model",
        default=None,
        help=f"student preset ({', '.join(list_models('student'))}; default rt, or the --init checkpoint's)",
    )
    _add_train_args(p, DISTILL_LOSSES)
    p.add_argument(
        "--cache-teacher",
        type=int,
        default=0,
        metavar="N",
        help="run the teacher once on a fixed pool of N degraded crops and train on it (much faster on CPU; "
        "with 'feat' the teacher reruns on the pooled crops for its features); 0 = run the teacher live every step",
    )
    p.add_argument("--cache-file", default=None, help="save/reuse the teacher-output pool here (e.g. runs/cache.pt)")
    _add_unlabeled_args(p)
    p.set_defaults(func=cmd_distill, default_model="rt")
    _add_pack_parser(sub)


def _add_pack_parser(sub: argparse._SubParsersAction) -> None:
    from sharpkd.training.pack import PACK_FORMATS, PackConfig

    d = PackConfig  # its class attributes are the defaults
    p = sub.add_parser("pack-data", help="pack training images into a small folder of tiles (for a remote GPU)")
    p.add_argument("src", help="folder of sharp images (recursive)")
    p.add_argument("out", help="new folder to write (e.g. gpu_data/train, ignored by git)")
    p.add_argument("--max-mb", type=float, required=True, help="budget for the written files (MB = 10^6 bytes)")
    p.add_argument("--crop", type=int, default=d.crop, help="tile side in px; 0 keeps whole images")
    p.add_argument("--min-side", type=int, default=d.min_side, help="skip tiles/images shorter than this")
    p.add_argument("--max-side", type=int, default=0, help="downscale whole images first, as --val-max-side; 0 = off")
    p.add_argument("--format", default=d.fmt, choices=PACK_FORMATS, help="jpg (4:4:4), png (lossless) or webp")
    p.add_argument("--quality", type=int, default=d.quality, help="JPEG/WebP quality")
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(func=cmd_pack_data)


def cmd_pack_data(args: argparse.Namespace) -> int:
    from sharpkd.cli.common import Progress
    from sharpkd.training.pack import PackConfig, pack_images

    cfg = PackConfig(
        max_bytes=int(args.max_mb * 1e6),
        crop=args.crop or None,
        min_side=args.min_side,
        max_side=args.max_side or None,
        fmt=args.format,
        quality=args.quality,
        seed=args.seed,
    )
    with Progress("reading", unit="image") as progress:
        report = pack_images(args.src, args.out, cfg, progress=progress)
    for folder, (count, size) in sorted(report.per_folder.items()):
        print(f"  {folder}: {count} files, {size / 1e6:.2f} MB")
    print(
        f"wrote {len(report.files)} files, {report.bytes:,} bytes of a {int(args.max_mb * 1e6):,} budget, from "
        f"{report.sources} images -> {args.out}; {report.left_out} tiles over the budget left out, "
        f"{report.skipped} images skipped"
    )
    return 0
