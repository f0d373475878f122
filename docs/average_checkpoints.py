"""Average the weights of checkpoints of one architecture (a "model soup") into a new checkpoint.

Usage (from the repository root):

    python docs/average_checkpoints.py OUT.pt A.pt=0.5 B.pt=0.5

The inputs must be the same kind and config (fine-tunes of one run, so their weights lie in one basin); the weights
are renormalized to sum to 1. Floating-point tensors are averaged; the others are taken from the first checkpoint.
The output's meta records each input's provenance and this command, so its model card says how it was made.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sharpkd.checkpoint import atomic_save, read_checkpoint  # noqa: E402
from sharpkd.errors import CheckpointError  # noqa: E402

PROVENANCE = ("command", "step", "degradation", "data", "patch_size", "elapsed_s", "hardware")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or any("=" not in a for a in argv[1:]):
        print("usage: python docs/average_checkpoints.py OUT.pt A.pt=WEIGHT B.pt=WEIGHT [...]", file=sys.stderr)
        print(f"each input is PATH=WEIGHT, at least two of them; got {argv[1:]}", file=sys.stderr)
        return 2
    out, pairs = Path(argv[0]), [a.rsplit("=", 1) for a in argv[1:]]
    try:
        weights = [float(w) for _, w in pairs]
    except ValueError:
        print(f"each input is PATH=WEIGHT with a number for WEIGHT, got {argv[1:]}", file=sys.stderr)
        return 2
    if min(weights) < 0 or sum(weights) <= 0:
        print(f"weights must be non-negative with a positive sum, got {weights}", file=sys.stderr)
        return 2
    weights = [w / sum(weights) for w in weights]
    try:
        ckpts = [read_checkpoint(p) for p, _ in pairs]
    except CheckpointError as err:
        print(err, file=sys.stderr)
        return 2
    first = ckpts[0]
    for (path, _), c in zip(pairs, ckpts):
        same = c["kind"] == first["kind"] and dict(c["config"]) == dict(first["config"])
        if not same or c["model"].keys() != first["model"].keys():
            print(f"{path} is not the same kind and architecture as {pairs[0][0]}", file=sys.stderr)
            return 2
    model = {}
    for k, t in first["model"].items():
        if t.is_floating_point():
            model[k] = sum(w * c["model"][k].float() for w, c in zip(weights, ckpts)).to(t.dtype)
        else:
            model[k] = t
    meta = {k: v for k, v in dict(first.get("meta") or {}).items() if k in ("preset", "data", "hardware", "patch_size")}
    meta["command"] = "python docs/average_checkpoints.py " + shlex.join(argv)
    meta["soup"] = [
        {"from": p, "weight": round(w, 6), **{k: (c.get("meta") or {}).get(k) for k in PROVENANCE}}
        for (p, _), w, c in zip(pairs, weights, ckpts)
    ]
    atomic_save({**first, "model": model, "meta": meta}, out)
    print(f"wrote {out}: " + ", ".join(f"{w:.3g} x {p}" for (p, _), w in zip(pairs, weights)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
