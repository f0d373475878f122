"""``sharpkd sharpen`` and ``sharpkd degrade``: process image files and folders one file at a time.

Each bad file is reported on one stderr line (``sharpkd: skipped <path>: <reason>``) and the rest carry on; the
command exits 1 if any file failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from sharpkd.cli.common import add_model_args, load_sharpener, one_line
from sharpkd.data import degrade_image, find_images
from sharpkd.degrade import list_degradations
from sharpkd.errors import SharpkdError
from sharpkd.images import IMAGE_SUFFIXES, WRITABLE_SUFFIXES, read_image, write_image

# What one bad input file can raise while it is read, sharpened and written; anything else is a bug and propagates.
_ITEM_ERRORS = (SharpkdError, ValueError, OSError, RuntimeError, MemoryError)


def _skip_reason(err: BaseException, path: Path) -> str:
    """The error as one line, with a leading repeat of the path replaced by 'file'."""
    reason = one_line(err)
    return "file" + reason[len(str(path)) :] if reason.startswith(str(path)) else reason


def _batch_items(
    inputs: list[str], outdir: Path, suffix: str, keep_format: bool
) -> list[tuple[Path, Path | None, str]]:
    """``(source, destination, error)`` per input file; folders expand to their image files as training reads them
    (:func:`sharpkd.data.find_images`), minus anything inside ``outdir``."""
    out_root = outdir.resolve()
    items: list[tuple[Path, Path | None, str]] = []
    for name in inputs:
        root = Path(name)
        if root.is_dir():
            files = [p for p in find_images(root) if out_root not in p.resolve().parents]
            if not files:
                items.append((root, None, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
            pairs = [(p, p.relative_to(root)) for p in files]
        elif root.exists():
            pairs = [(root, Path(root.name))]
        else:
            items.append((root, None, "no such file or directory"))
            continue
        for src, rel in pairs:
            ext = rel.suffix.lower() if keep_format and rel.suffix.lower() in WRITABLE_SUFFIXES else ".png"
            items.append((src, outdir / rel.parent / f"{rel.stem}{suffix}{ext}", ""))
    return items


def _run_batch(args: argparse.Namespace, process: Callable, desc: str) -> int:
    """Read each input, ``process`` it, write it under ``args.output``; one stderr line per failure."""
    from tqdm import tqdm

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
    sharpener = load_sharpener(args.model, args.backend, args.tile, args.threads)
    return _run_batch(args, sharpener.sharpen, f"sharpen ({args.model})")


def cmd_degrade(args: argparse.Namespace) -> int:
    if args.strength <= 0:
        raise ValueError(f"--strength must be > 0, got {args.strength}")
    if args.suffix is None:
        args.suffix = f"_{args.degradation}"
    return _run_batch(
        args,
        lambda img: degrade_image(img, args.degradation, args.seed, args.strength),
        f"degrade ({args.degradation})",
    )


# -- parser ------------------------------------------------------------------------------------------------------------
def _add_batch_args(p: argparse.ArgumentParser, default_suffix: str | None) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (mirrors input names)")
    p.add_argument("--suffix", default=default_suffix, help="appended to each output file's stem")
    p.add_argument("--keep-format", action="store_true", help="write each output in its input's format, not PNG")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``sharpen`` and ``degrade`` subcommands to ``sub``."""
    p = sub.add_parser("sharpen", help="sharpen image files or folders")
    _add_batch_args(p, "_sharp")
    add_model_args(p)
    p.set_defaults(func=cmd_sharpen)

    p = sub.add_parser("degrade", help="synthesize degraded (soft) versions of sharp images")
    _add_batch_args(p, None)
    p.add_argument("--degradation", default="vc", choices=list_degradations(), help="default vc; suffix _<name>")
    p.add_argument("--strength", type=float, default=1.0, help="scales the preset (see sharpkd.degrade)")
    p.add_argument("--seed", type=int, default=0, help="every image is degraded with this seed")
    p.set_defaults(func=cmd_degrade)
