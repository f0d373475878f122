"""Helpers shared by the ``sharpkd`` subcommands: one-line errors, model loading, csv options, progress bars."""

from __future__ import annotations

import argparse
import re
import sys

from sharpkd.errors import CheckpointError
from sharpkd.runtime.backends import BACKENDS
from sharpkd.runtime.sharpener import Sharpener, load

# What a malformed checkpoint can raise beyond CheckpointError (a config that builds negative-size layers, a 'meta'
# that is not a mapping, ...), so that a bad --model is one line, never a traceback.
LOAD_ERRORS = (RuntimeError, TypeError, KeyError, AttributeError, ImportError)


def one_line(err: BaseException | str) -> str:
    """The first line of ``err`` with runs of whitespace collapsed (the exception's type name if it is empty)."""
    text = str(err).strip().splitlines()
    return re.sub(r"\s+", " ", text[0]) if text else type(err).__name__


def split_csv(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def load_sharpener(
    name: str, backend: str = "auto", tile: int = 512, threads: int | None = None, *, spin: bool = True
) -> Sharpener:
    """:func:`sharpkd.load` with any load failure turned into a one-line ``CheckpointError``.

    ``threads`` (``--threads``) is also set as torch's process-wide intra-op thread count: a command owns its
    process, whereas the library never changes that setting (it only sizes the ONNX Runtime session).

    Raises:
        ValueError: ``threads`` below 1.
        CheckpointError: the model cannot be loaded.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    try:
        return load(name, backend=backend, tile=tile, threads=threads, spin=spin)
    except LOAD_ERRORS as err:
        raise CheckpointError(f"cannot load model {name!r}: {one_line(err)}") from err


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--backend``, ``--tile``, ``--threads``: the options of commands that run one sharpener."""
    p.add_argument("--model", default="student", help="shipped model name, checkpoint path, 'unsharp' or 'input'")
    p.add_argument(
        "--backend", default="auto", choices=[*BACKENDS, "auto"], help="default auto: the fastest installed (onnx)"
    )
    p.add_argument("--tile", type=int, default=512, help="tile side of the tiled inference path (px)")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: torch's)")


class Progress:
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

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
