"""Make a trained plain-stack student deeper: append body blocks that start as the identity (a warm start).

Usage (from the repository root):

    python docs/deepen_student.py OUT.pt IN.pt BLOCKS

IN.pt must be a re-parameterizable plain stack (``rep=True``, e.g. rtrep4). OUT.pt has ``num_blocks + BLOCKS`` body
blocks: the old ones keep their weights, each new one has every learned branch of its conv at zero, so its merged
kernel is the identity branch alone and the block computes ``act(h)``. After a LeakyReLU that is ``h`` where
``h >= 0`` and ``0.2 h`` elsewhere: the deeper student starts close to IN.pt (on full-size val, four new blocks
after the shipped student: gauss1.5 -0.06 dB, downup2 -0.19, motion9 0.00), and fine-tuning then has the new
blocks to use. The output's meta records IN.pt's provenance and this command.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sharpkd.checkpoint import atomic_save, read_checkpoint  # noqa: E402
from sharpkd.errors import CheckpointError  # noqa: E402
from sharpkd.models import model_from_config  # noqa: E402

ZEROED = ("k3", "bias", "k1", "expand_out", "edge_scale")  # RepConv branches that start at zero (see RepConv.zero_)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[2].isdigit() or int(argv[2]) < 1:
        print("usage: python docs/deepen_student.py OUT.pt IN.pt BLOCKS  (new body blocks, >= 1)", file=sys.stderr)
        return 2
    out, src, extra = Path(argv[0]), Path(argv[1]), int(argv[2])
    try:
        ckpt = read_checkpoint(src)
    except CheckpointError as err:
        print(err, file=sys.stderr)
        return 2
    cfg = dict(ckpt["config"])
    if ckpt["kind"] != "student" or not cfg.get("rep") or cfg.get("enc_blocks"):
        print(f"{src} is not a re-parameterizable plain-stack student (rep=True, no U-Net)", file=sys.stderr)
        return 2
    cfg["num_blocks"] += extra
    torch.manual_seed(0)
    model = model_from_config("student", cfg)
    state = model.state_dict()
    for key in state:
        if key in ckpt["model"]:
            state[key] = ckpt["model"][key].clone()
        elif key.rsplit(".", 1)[-1] in ZEROED:
            state[key] = torch.zeros_like(state[key])
    model.load_state_dict(state)
    meta = {k: v for k, v in dict(ckpt.get("meta") or {}).items() if k in ("preset", "data", "hardware", "patch_size")}
    meta["command"] = "python docs/deepen_student.py " + shlex.join(argv)
    meta["init"] = {"from": str(src), **{k: v for k, v in dict(ckpt.get("meta") or {}).items() if k != "val"}}
    atomic_save({**ckpt, "config": cfg, "model": model.state_dict(), "meta": meta}, out)
    print(f"wrote {out}: {src} with {extra} identity blocks appended ({cfg['num_blocks']} body blocks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
