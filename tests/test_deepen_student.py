"""docs/deepen_student.py: a trained plain-stack student grows body blocks that start as the identity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from sharpkd.checkpoint import load_checkpoint, save_checkpoint
from sharpkd.models import build_model
from sharpkd.models.blocks import RepConv

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "deepen_student.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_new_blocks_are_identity_convs_and_the_old_weights_are_kept(tmp_path):
    torch.manual_seed(0)
    src = build_model("rtrep", width=8)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # trained-looking weights everywhere, the zero-init head included
    save_checkpoint(tmp_path / "s.pt", src, meta={"preset": "rtrep", "command": "distill s", "step": 7})
    r = _run(str(tmp_path / "d.pt"), str(tmp_path / "s.pt"), "2")
    assert r.returncode == 0, r.stderr
    deep, meta = load_checkpoint(tmp_path / "d.pt")
    assert deep.cfg.num_blocks == src.cfg.num_blocks + 2 and deep.cfg.width == src.cfg.width
    old = src.state_dict()
    for k, v in deep.state_dict().items():
        if k in old:
            assert torch.equal(v, old[k]), k
    for block in list(deep.body.middle)[src.cfg.num_blocks :]:
        conv = block[0]
        assert isinstance(conv, RepConv)
        torch.testing.assert_close(conv.kernel(), conv.identity)
        assert not conv.bias.any()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # only the negative part of the last activations is scaled again: close, not equal
        diff = (deep.eval()(x) - src.eval()(x)).abs()
    assert 0 < diff.mean() < 0.02
    assert meta["init"]["command"] == "distill s" and meta["command"].startswith("python docs/deepen_student.py")


def test_refuses_what_it_cannot_deepen(tmp_path):
    save_checkpoint(tmp_path / "rt.pt", build_model("rt", width=8), meta={})
    r = _run(str(tmp_path / "d.pt"), str(tmp_path / "rt.pt"), "2")
    assert r.returncode == 2 and "re-parameterizable plain-stack" in r.stderr
    assert _run(str(tmp_path / "d.pt"), str(tmp_path / "rt.pt"), "0").returncode == 2
    r = _run(str(tmp_path / "d.pt"), str(tmp_path / "missing.pt"), "1")
    assert r.returncode == 2 and "not found" in r.stderr
    assert not (tmp_path / "d.pt").exists()
