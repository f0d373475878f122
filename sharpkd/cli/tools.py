"""``sharpkd evaluate``, ``benchmark``, ``export``, ``video`` and ``cards``: measure, ship and demo a model.

A failed export or a crashed benchmark worker exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sharpkd.cli.common import Progress, add_model_args, load_sharpener, one_line, split_csv
from sharpkd.degrade import CODEC_PRESETS, PRESETS, SYNTHETIC_PRESETS, list_degradations
from sharpkd.reporting.benchmark import DEFAULT_MODELS
from sharpkd.runtime.backends import BACKENDS


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for i, row in enumerate([header, *rows]):
        print("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


# -- evaluate, benchmark -----------------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from sharpkd.reporting.evaluate import evaluate_models, load_eval_images
    from sharpkd.reporting.tables import best_classical_note, metrics_table
    from sharpkd.reporting.tuning import best_per_preset_from_cards
    from sharpkd.runtime.sharpener import list_pretrained

    models = split_csv(args.models) if args.models is not None else tuple(list_pretrained())
    for name in models:  # fail fast, before loading images, on a bad model
        load_sharpener(name, args.backend, args.tile)
    images = load_eval_images(args.data, args.max_side, args.limit)
    best = best_per_preset_from_cards()  # the per-preset choice the last `sharpkd cards` made, if any
    with Progress("evaluate", "run") as bar:
        result = evaluate_models(
            models,
            images,
            split_csv(args.degradations),
            backend=args.backend,
            tile=args.tile,
            progress=bar,
            best_per_preset=best,
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    size = f"at most {args.max_side} px" if args.max_side else "full size"
    print(
        f"{len(images)} image(s) from {args.data} ({size}); PSNR in dB, SSIM on uint8 outputs; gain = mean PSNR - input"
    )
    print("classical peers at their tuned settings (models/<peer>.json; the default where there is no card)")
    print(metrics_table(result))
    note = best_classical_note(result)
    if note:
        print(note)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from sharpkd.reporting.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(
        models=split_csv(args.models),
        resolutions=split_csv(args.resolutions),
        backends=split_csv(args.backends),
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        tile=args.tile,
        isolate=not args.no_isolate,
    )
    for name in cfg.models:  # a bad model is one line (exit 2) here, not an error from inside a worker process
        load_sharpener(name)
    with Progress("benchmark", "run", lines=True) as bar:
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
    from sharpkd.runtime.export import export_int8, export_onnx, export_torchscript

    sharpener = load_sharpener(args.model)
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
        if args.int8:
            q = export_int8(sharpener.model, args.int8)
            print(
                f"wrote {args.int8} (int8, static QDQ): differs from eager PyTorch by max {q.max_abs_diff}/255, "
                f"mean {q.mean_abs_diff:.4f}; measure its dB cost with sharpkd evaluate --backend onnx-int8"
            )
        if args.torchscript:
            export_torchscript(sharpener.model, args.torchscript)
            print(f"wrote {args.torchscript} (TorchScript trace, matches eager within 1e-4)")
    except (RuntimeError, ImportError, OSError) as err:
        print(f"sharpkd: export failed: {one_line(err)}", file=sys.stderr)
        return 1
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from sharpkd.runtime.video import VideoConfig, sharpen_video

    if (args.input is None) == (args.camera is None):
        raise ValueError("give exactly one source: a video file INPUT or --camera N")
    # The reader and writer threads share the cores with the model: ONNX Runtime's spinning threads would slow them.
    sharpener = load_sharpener(args.model, args.backend, args.tile, args.threads, spin=args.spin)
    cfg = VideoConfig(
        side_by_side=args.side_by_side,
        fps_overlay=args.fps_overlay,
        show=args.show,
        degrade=args.degrade,
        strength=args.strength,
        seed=args.seed,
        max_frames=args.max_frames,
        codec=args.codec,
        label=f"sharpkd {args.model}",
        audio=args.audio,
    )
    source = args.input if args.input is not None else args.camera
    with Progress("video", "frame") as bar:
        report = sharpen_video(source, args.output, sharpener.sharpen, cfg, progress=bar)
    print(f"frames: {report.frames} ({report.width}x{report.height} at {report.input_fps:.1f} FPS) -> {report.output}")
    print(f"codec: {report.codec}; audio: {report.audio}")
    print(f"processing FPS: {report.processing_fps:.1f} (sharpen() only)")
    print(f"end-to-end FPS: {report.end_to_end_fps:.1f} (decode, sharpen, draw and encode, pipelined)")
    print(f"flicker ratio: {report.flicker_ratio:.3f} (output / input frame-to-frame change; 1 = no added shimmer)")
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from sharpkd.reporting.cards import CardsConfig, write_cards
    from sharpkd.runtime.sharpener import models_dir

    cfg = CardsConfig(
        out_dir=args.out if args.out is not None else models_dir(),
        data=args.data,
        max_side=args.max_side,
        limit=args.limit,
        bench=args.bench,
        bench_backends=split_csv(args.bench_backends),
        quality_backends=split_csv(args.quality_backends) if args.quality_backends else (),
        bench_repeats=args.bench_repeats,
        threads=args.threads,
        command=args.command_line,
        readme=args.readme,
    )
    for path in sorted(Path(cfg.out_dir).glob("*.pt")):  # a bad checkpoint is one line (exit 2), never a traceback
        load_sharpener(str(path))
    with Progress("cards", "run", lines=True) as bar:
        written = write_cards(cfg, progress=bar)
    for path in written:
        print(f"wrote {path}")
    return 0


# -- parser ------------------------------------------------------------------------------------------------------------
def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate``, ``benchmark``, ``export``, ``video`` and ``cards`` subcommands to ``sub``."""
    p = sub.add_parser("evaluate", help="PSNR/SSIM of models vs the degraded input and the tuned classical peers")
    p.add_argument("--models", default=None, help="comma-separated names or paths (default: every shipped model)")
    p.add_argument("--data", default="samples", help="folder of sharp images, or 'samples' (scikit-image photos)")
    p.add_argument(
        "--degradations",
        default=",".join(PRESETS),
        help=f"comma-separated (default: the synthetic {','.join(SYNTHETIC_PRESETS)} and the codecs "
        f"{','.join(CODEC_PRESETS)})",
    )
    p.add_argument("--max-side", type=int, default=None, help="downscale images to this longer side first")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--backend", default="torch", choices=BACKENDS)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="latency, FPS, MACs and memory of sharpen() per model and resolution")
    p.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated names, paths, classical peers (default {','.join(DEFAULT_MODELS)})",
    )
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
    p.add_argument(
        "--int8",
        default=None,
        metavar="OUT.int8.onnx",
        help="also write the int8-quantized graph (luma students); as models/<name>.int8.onnx, load() runs it",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("video", help="sharpen a video file or a camera stream into browser-playable H.264")
    p.add_argument("input", nargs="?", default=None, metavar="INPUT", help="any video FFmpeg reads (or use --camera)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.mp4")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="read camera N instead of a file")
    add_model_args(p)
    p.add_argument("--side-by-side", action="store_true", help="write input | output side by side")
    p.add_argument("--fps-overlay", action="store_true", help="draw the processing FPS on the output")
    p.add_argument("--show", action="store_true", help="preview in a window (q or Esc stops)")
    p.add_argument(
        "--degrade",
        default=None,
        choices=list_degradations(),
        help="degrade each input frame first (h264/vp8: one simulated call stream over the whole clip)",
    )
    p.add_argument("--strength", type=float, default=1.0, help="scales the degradation (default 1)")
    p.add_argument("--seed", type=int, default=0, help="frame i is degraded with seed + i")
    p.add_argument("--max-frames", type=int, default=None, metavar="N")
    p.add_argument(
        "--codec",
        default="libx264",
        help="FFmpeg encoder (default libx264: H.264 yuv420p, plays in browsers; mpeg4, libvpx-vp9 for .webm)",
    )
    p.add_argument(
        "--audio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="carry the input's audio over (default; copied, or re-encoded to AAC where the container needs it)",
    )
    p.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="let ONNX Runtime's idle threads spin-wait between frames (default off: spinning threads hold the cores "
        "that the decoder and encoder threads need, so the whole pipeline runs slower)",
    )
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("cards", help="tune the classical peers; regenerate models/<name>.json and models/README.md")
    p.add_argument("--out", default=None, help="folder of <name>.pt checkpoints (default: the shipped models/)")
    p.add_argument("--data", default="samples", help="validation folder of sharp images, or 'samples'")
    p.add_argument("--max-side", type=int, default=None, help="downscale validation images to this longer side")
    p.add_argument("--limit", type=int, default=None, help="use only the first N validation images")
    p.add_argument("--bench", action="store_true", help="add a 1080p speed table (sharpkd benchmark)")
    p.add_argument("--bench-backends", default="torch", help="comma-separated backends of the speed table")
    p.add_argument(
        "--quality-backends",
        default="",
        help="comma-separated backends to score too, where outputs differ from torch (onnx-int8): the models they run",
    )
    p.add_argument("--bench-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--readme", default=None, help="also fill the results block of this README (e.g. README.md)")
    p.set_defaults(func=cmd_cards)
