"""``sharpkd`` command line: each subcommand parses arguments and calls one library function.

Errors a user can cause print one line (``sharpkd: error: ...``) and exit with status 2; batch commands report each
bad file (``sharpkd: skipped <path>: <reason>``) and carry on with the rest, exiting 1 if any failed. A failed export or
a crashed benchmark worker exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from sharpkd.degrade import PRESETS, list_degradations
from sharpkd.errors import CheckpointError, SharpkdError
from sharpkd.infer import BACKENDS


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
        ckpt_every=args.val_every,
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
    """Load or build the teacher-output pool for ``distill --cache-teacher N`` (see sharpkd.cache)."""
    from tqdm import tqdm

    from sharpkd.cache import cache_teacher_outputs, load_cache, save_cache

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

    from sharpkd.benchmark import cpu_name

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {cpu_name()} ({torch.get_num_threads()} threads)"


def cmd_train_teacher(args: argparse.Namespace) -> int:
    return _train(args, None)


def cmd_distill(args: argparse.Namespace) -> int:
    from sharpkd.infer import load_model

    try:
        teacher = load_model(args.teacher)
    except _LOAD_ERRORS as err:
        raise CheckpointError(f"cannot load teacher {args.teacher!r}: {_one_line(err)}") from err
    if teacher.kind != "teacher":
        print(f"sharpkd: note: {args.teacher} is a {teacher.kind}; distilling from it anyway", file=sys.stderr)
    return _train(args, teacher)


# -- shared helpers --------------------------------------------------------------------------------------------------
# What one bad input file can raise while it is read, sharpened and written; anything else is a bug and propagates.
_ITEM_ERRORS = (SharpkdError, ValueError, OSError, RuntimeError, MemoryError)
# What a malformed checkpoint can raise beyond CheckpointError (a config that builds negative-size layers, a 'meta'
# that is not a mapping, ...), so that a bad --model is one line, never a traceback.
_LOAD_ERRORS = (RuntimeError, TypeError, KeyError, AttributeError, ImportError)
_WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _one_line(err: BaseException | str) -> str:
    text = str(err).strip().splitlines()
    return re.sub(r"\s+", " ", text[0]) if text else type(err).__name__


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _load_sharpener(name: str, backend: str = "torch", tile: int = 512, threads: int | None = None):
    from sharpkd.infer import load

    try:
        return load(name, backend=backend, tile=tile, threads=threads)
    except _LOAD_ERRORS as err:
        raise CheckpointError(f"cannot load model {name!r}: {_one_line(err)}") from err


class _Progress:
    """A tqdm bar on stderr driven by ``progress(done, total, label)`` callbacks; a new total starts a new bar.

    Without a terminal the bar is off; with ``lines=True`` each step is then logged as one plain stderr line instead,
    so slow commands (benchmark, cards) still show where they are in a log file.
    """

    def __init__(self, desc: str, unit: str = "it", lines: bool = False) -> None:
        self.desc, self.unit, self.lines, self.bar = desc, unit, lines, None

    def __call__(self, done: int, total: int | None, label: str = "") -> None:
        from tqdm import tqdm

        if self.lines and not sys.stderr.isatty():
            if done != total:
                print(f"{self.desc} [{done + 1}/{total}] {label}", file=sys.stderr, flush=True)
            return
        if self.bar is None or self.bar.total != total:
            self.close()
            self.bar = tqdm(
                total=total, desc=self.desc, unit=self.unit, dynamic_ncols=True, file=sys.stderr, disable=None
            )
        if label:
            self.bar.set_postfix_str(label, refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for i, row in enumerate([header, *rows]):
        print("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


# -- batch image commands: sharpen, degrade ---------------------------------------------------------------------------
def _skip_reason(err: BaseException, path: Path) -> str:
    """The error as one line, with a leading repeat of the path replaced by 'file'."""
    reason = _one_line(err)
    return "file" + reason[len(str(path)) :] if reason.startswith(str(path)) else reason


def _batch_items(
    inputs: list[str], outdir: Path, suffix: str, keep_format: bool
) -> list[tuple[Path, Path | None, str]]:
    """``(source, destination, error)`` per input file; folders expand recursively to their image files."""
    from sharpkd.images import IMAGE_SUFFIXES

    out_root = outdir.resolve()
    items: list[tuple[Path, Path | None, str]] = []
    for name in inputs:
        root = Path(name)
        if root.is_dir():
            files = [
                p
                for p in sorted(root.rglob("*"))
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and out_root not in p.resolve().parents
            ]
            if not files:
                items.append((root, None, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
            pairs = [(p, p.relative_to(root)) for p in files]
        elif root.exists():
            pairs = [(root, Path(root.name))]
        else:
            items.append((root, None, "no such file or directory"))
            continue
        for src, rel in pairs:
            ext = rel.suffix.lower() if keep_format and rel.suffix.lower() in _WRITABLE_SUFFIXES else ".png"
            items.append((src, outdir / rel.parent / f"{rel.stem}{suffix}{ext}", ""))
    return items


def _run_batch(args: argparse.Namespace, process: Callable, desc: str) -> int:
    """Read each input, ``process`` it, write it under ``args.output``; one stderr line per failure."""
    from tqdm import tqdm

    from sharpkd.images import read_image, write_image

    outdir = Path(args.output)
    items = _batch_items(args.inputs, outdir, args.suffix, args.keep_format)
    written: dict[Path, Path] = {}
    failed = 0
    with tqdm(total=len(items), desc=desc, unit="img", disable=None, file=sys.stderr) as bar:
        for src, dst, error in items:
            if not error and dst in written:
                error = f"its output {dst} would overwrite the result for {written[dst]}"
            if not error:
                try:
                    write_image(dst, process(read_image(src)))
                    written[dst] = src
                except _ITEM_ERRORS as err:
                    error = _skip_reason(err, src)
            if error:
                failed += 1
                tqdm.write(f"sharpkd: skipped {src}: {error}", file=sys.stderr)
            bar.update(1)
    print(f"wrote {len(written)} image(s) to {outdir}" + (f", skipped {failed}" if failed else ""))
    return 1 if failed else 0


def cmd_sharpen(args: argparse.Namespace) -> int:
    sharpener = _load_sharpener(args.model, args.backend, args.tile, args.threads)
    return _run_batch(args, sharpener.sharpen, f"sharpen ({args.model})")


def cmd_degrade(args: argparse.Namespace) -> int:
    from sharpkd.data import degrade_image

    if args.strength <= 0:
        raise ValueError(f"--strength must be > 0, got {args.strength}")
    if args.suffix is None:
        args.suffix = f"_{args.degradation}"
    return _run_batch(
        args,
        lambda img: degrade_image(img, args.degradation, args.seed, args.strength),
        f"degrade ({args.degradation})",
    )


# -- evaluate, benchmark -----------------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from sharpkd.cards import evaluate_models, load_eval_images, metrics_table
    from sharpkd.infer import list_pretrained

    models = _csv(args.models) if args.models is not None else tuple(list_pretrained())
    for name in models:  # fail fast, before loading images, on a bad model
        _load_sharpener(name, args.backend, args.tile)
    images = load_eval_images(args.data, args.max_side, args.limit)
    with _Progress("evaluate", "run") as bar:
        result = evaluate_models(
            models, images, _csv(args.degradations), backend=args.backend, tile=args.tile, progress=bar
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    size = f"at most {args.max_side} px" if args.max_side else "full size"
    print(
        f"{len(images)} image(s) from {args.data} ({size}); PSNR in dB, SSIM on uint8 outputs; gain = mean PSNR - input"
    )
    print(metrics_table(result))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from sharpkd.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(
        models=_csv(args.models),
        resolutions=_csv(args.resolutions),
        backends=_csv(args.backends),
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        tile=args.tile,
        isolate=not args.no_isolate,
    )
    for name in cfg.models:  # a bad model is one line (exit 2) here, not an error from inside a worker process
        _load_sharpener(name)
    with _Progress("benchmark", "run", lines=True) as bar:
        report = run_benchmark(cfg, progress=bar)  # a worker that dies raises RuntimeError: one line, exit 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    ref = ", ".join(f"{res} {ms:.2f} ms" for res, ms in report.unsharp_ms.items())
    print(
        f"CPU {report.cpu}, {report.threads} thread(s), torch {report.torch_version}; "
        f"p50/p95 of {report.repeats} runs after {report.warmup} warm-up"
    )
    print(f"OpenCV unsharp mask reference (GaussianBlur sigma 2 + addWeighted): {ref}")
    header = ["model", "backend", "resolution", "p50 ms", "p95 ms", "FPS", "x unsharp", "GMACs", "params", "peak MB"]
    rows = [
        [
            r.model,
            r.backend,
            r.resolution,
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.fps:.1f}",
            f"{r.ratio_to_unsharp:.2f}",
            f"{r.macs / 1e9:.3g}",
            f"{r.parameters:,}",
            "-" if r.peak_mb is None else f"{r.peak_mb:.0f}",
        ]
        for r in report.results
    ]
    _print_table(header, rows)
    return 0


# -- export, video, cards ----------------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from sharpkd.export import export_onnx, export_torchscript

    sharpener = _load_sharpener(args.model)
    if sharpener.model is None:
        raise ValueError(f"{args.model!r} is a classical method with no network; nothing to export")
    try:
        report = export_onnx(sharpener.model, args.output, check=not args.no_check)
        print(f"wrote {args.output}")
        if report is None:
            print("parity check skipped (--no-check)")
        else:
            sizes = ", ".join(f"{w}x{h}" for h, w in report.sizes)
            print(
                f"parity vs eager PyTorch on uint8 ({sizes}): max abs diff {report.max_abs_diff}/255, "
                f"mean {report.mean_abs_diff:.4f} -> OK"
            )
        if args.torchscript:
            export_torchscript(sharpener.model, args.torchscript)
            print(f"wrote {args.torchscript} (TorchScript trace, matches eager within 1e-4)")
    except (RuntimeError, ImportError, OSError) as err:
        print(f"sharpkd: export failed: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from sharpkd.video import VideoConfig, sharpen_video

    if (args.input is None) == (args.camera is None):
        raise ValueError("give exactly one source: a video file INPUT or --camera N")
    sharpener = _load_sharpener(args.model, args.backend, args.tile, args.threads)
    cfg = VideoConfig(
        side_by_side=args.side_by_side,
        fps_overlay=args.fps_overlay,
        show=args.show,
        degrade=args.degrade,
        seed=args.seed,
        max_frames=args.max_frames,
        codec=args.codec,
        label=f"sharpkd {args.model}",
    )
    source = args.input if args.input is not None else args.camera
    with _Progress("video", "frame") as bar:
        report = sharpen_video(source, args.output, sharpener.sharpen, cfg, progress=bar)
    print(f"frames: {report.frames} ({report.width}x{report.height} at {report.input_fps:.1f} FPS) -> {report.output}")
    print(f"processing FPS: {report.processing_fps:.1f} (sharpen() only)")
    print(f"end-to-end FPS: {report.end_to_end_fps:.1f} (decode, sharpen, draw and encode)")
    print(f"flicker ratio: {report.flicker_ratio:.3f} (output / input frame-to-frame change; 1 = no added shimmer)")
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from sharpkd.cards import CardsConfig, write_cards
    from sharpkd.infer import models_dir

    cfg = CardsConfig(
        out_dir=args.out if args.out is not None else models_dir(),
        data=args.data,
        max_side=args.max_side,
        limit=args.limit,
        bench=args.bench,
        bench_backends=_csv(args.bench_backends),
        bench_repeats=args.bench_repeats,
        threads=args.threads,
        command=args.command_line,
        readme=args.readme,
    )
    for path in sorted(Path(cfg.out_dir).glob("*.pt")):  # a bad checkpoint is one line (exit 2), never a traceback
        _load_sharpener(str(path))
    with _Progress("cards", "run", lines=True) as bar:
        written = write_cards(cfg, progress=bar)
    for path in written:
        print(f"wrote {path}")
    return 0


# -- parser ------------------------------------------------------------------------------------------------------------
def _add_batch_args(p: argparse.ArgumentParser, default_suffix: str | None) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (mirrors input names)")
    p.add_argument("--suffix", default=default_suffix, help="appended to each output file's stem")
    p.add_argument("--keep-format", action="store_true", help="write each output in its input's format, not PNG")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="student", help="shipped model name, checkpoint path, 'unsharp' or 'input'")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--tile", type=int, default=512, help="tile side of the tiled inference path (px)")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: torch's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharpkd", description="Sharpen video-call frames with distilled CNNs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress; show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="train a teacher on sharp images degraded on the fly")
    p.add_argument("--model", default="nafnet", help="teacher preset (nafnet, unet, rescnn)")
    _add_train_args(p, "l1=1")
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="distill a student from a trained teacher")
    p.add_argument("--teacher", default="teacher", help="shipped model name or checkpoint path")
    p.add_argument("--model", default="rt", help="student preset (rt, conv4, resattn, sepunet)")
    _add_train_args(p, "l1=1,kd=1,feat=0.1")
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

    p = sub.add_parser("sharpen", help="sharpen image files or folders")
    _add_batch_args(p, "_sharp")
    _add_model_args(p)
    p.set_defaults(func=cmd_sharpen)

    p = sub.add_parser("degrade", help="synthesize degraded (soft) versions of sharp images")
    _add_batch_args(p, None)
    p.add_argument("--degradation", default="vc", choices=list_degradations(), help="default vc; suffix _<name>")
    p.add_argument("--strength", type=float, default=1.0, help="scales the preset (see sharpkd.degrade)")
    p.add_argument("--seed", type=int, default=0, help="every image is degraded with this seed")
    p.set_defaults(func=cmd_degrade)

    p = sub.add_parser("evaluate", help="PSNR/SSIM of models vs the degraded input and an unsharp mask")
    p.add_argument("--models", default=None, help="comma-separated names or paths (default: every shipped model)")
    p.add_argument("--data", default="samples", help="folder of sharp images, or 'samples' (scikit-image photos)")
    p.add_argument("--degradations", default=",".join(PRESETS), help=f"comma-separated (default {','.join(PRESETS)})")
    p.add_argument("--max-side", type=int, default=None, help="downscale images to this longer side first")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="latency, FPS, MACs and memory of sharpen() per model and resolution")
    p.add_argument("--models", default="student,teacher,unsharp", help="comma-separated names, paths, 'unsharp'")
    p.add_argument("--resolutions", default="720p,1080p,4k", help="360p,480p,720p,1080p,1440p,4k or WxH (64x48)")
    p.add_argument("--backends", default="torch,onnx", help="comma-separated: torch, onnx")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (small for a 4k teacher)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch/ONNX Runtime/OpenCV")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--no-isolate", action="store_true", help="measure in this process (faster; no peak memory)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("export", help="export a model to ONNX (and TorchScript) with a parity check")
    p.add_argument("model", metavar="MODEL", help="shipped model name or checkpoint path")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument("--torchscript", default=None, metavar="OUT.pt", help="also write a TorchScript trace")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs eager parity check")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("video", help="sharpen a video file or a camera stream")
    p.add_argument("input", nargs="?", default=None, metavar="INPUT", help="video file (or use --camera)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.mp4")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="read camera N instead of a file")
    _add_model_args(p)
    p.add_argument("--side-by-side", action="store_true", help="write input | output side by side")
    p.add_argument("--fps-overlay", action="store_true", help="draw the processing FPS on the output")
    p.add_argument("--show", action="store_true", help="preview in a window (q or Esc stops)")
    p.add_argument("--degrade", default=None, choices=list_degradations(), help="degrade each input frame first")
    p.add_argument("--seed", type=int, default=0, help="frame i is degraded with seed + i")
    p.add_argument("--max-frames", type=int, default=None, metavar="N")
    p.add_argument("--codec", default="mp4v", help="fourcc of the writer (mp4v for .mp4, MJPG for .avi)")
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("cards", help="regenerate models/<name>.json and models/README.md")
    p.add_argument("--out", default=None, help="folder of <name>.pt checkpoints (default: the shipped models/)")
    p.add_argument("--data", default="samples", help="validation folder of sharp images, or 'samples'")
    p.add_argument("--max-side", type=int, default=None, help="downscale validation images to this longer side")
    p.add_argument("--limit", type=int, default=None, help="use only the first N validation images")
    p.add_argument("--bench", action="store_true", help="add a 1080p speed table (sharpkd benchmark)")
    p.add_argument("--bench-backends", default="torch", help="comma-separated backends of the speed table")
    p.add_argument("--bench-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--readme", default=None, help="also fill the results block of this README (e.g. README.md)")
    p.set_defaults(func=cmd_cards)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sharpkd`` command line; returns the exit status (0 ok, 1 some work failed, 2 bad usage or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["sharpkd", *argv])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (SharpkdError, ValueError, FileNotFoundError, ImportError) as err:
        print(f"sharpkd: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if args.verbose:
            raise
        print(f"sharpkd: error: {_one_line(err)} (rerun with -v for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sharpkd: interrupted; files written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
