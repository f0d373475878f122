"""docs/average_checkpoints.py: the shipped teacher is an average of two checkpoints' weights (a model soup)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from sharpkd.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from sharpkd.models import build_model

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "average_checkpoints.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_average_is_the_weighted_mean_and_records_its_inputs(tmp_path):
    torch.manual_seed(0)
    a, b = build_model("nafnet", width=8), build_model("nafnet", width=8)
    save_checkpoint(tmp_path / "a.pt", a, meta={"preset": "nafnet", "command": "train a", "step": 10})
    save_checkpoint(tmp_path / "b.pt", b, meta={"preset": "nafnet", "command": "train b", "step": 20})
    out = tmp_path / "soup.pt"
    r = _run(str(out), f"{tmp_path / 'a.pt'}=3", f"{tmp_path / 'b.pt'}=1")  # weights renormalized: 0.75, 0.25
    assert r.returncode == 0, r.stderr
    soup, meta = load_checkpoint(out)
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in soup.state_dict().items():
        torch.testing.assert_close(v, 0.75 * sa[k] + 0.25 * sb[k])
    assert [(s["weight"], s["command"], s["step"]) for s in meta["soup"]] == [
        (0.75, "train a", 10),
        (0.25, "train b", 20),
    ]
    assert meta["command"].startswith("python docs/average_checkpoints.py") and meta["preset"] == "nafnet"
    assert read_checkpoint(out)["kind"] == "teacher"


def test_different_architectures_or_bad_weights_are_refused(tmp_path):
    save_checkpoint(tmp_path / "a.pt", build_model("nafnet", width=8), meta={})
    save_checkpoint(tmp_path / "c.pt", build_model("nafnet", width=4), meta={})
    out = tmp_path / "soup.pt"
    r = _run(str(out), f"{tmp_path / 'a.pt'}=1", f"{tmp_path / 'c.pt'}=1")
    assert r.returncode == 2 and "not the same kind and architecture" in r.stderr
    r = _run(str(out), f"{tmp_path / 'a.pt'}=1")  # one input: nothing to average
    assert r.returncode == 2 and "at least two" in r.stderr
    r = _run(str(out), f"{tmp_path / 'a.pt'}=x", f"{tmp_path / 'a.pt'}=1")
    assert r.returncode == 2 and "a number for WEIGHT" in r.stderr
    r = _run(str(out), f"{tmp_path / 'missing.pt'}=1", f"{tmp_path / 'a.pt'}=1")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = _run(str(out), f"{tmp_path / 'a.pt'}=-1", f"{tmp_path / 'c.pt'}=2")
    assert r.returncode == 2 and "non-negative" in r.stderr
    assert not out.exists()
