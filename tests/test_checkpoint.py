"""Checkpoints: round trip, and every way a file can be bad becomes a CheckpointError that names the problem."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sharpkd.checkpoint import atomic_save, load_checkpoint, load_state_into, read_checkpoint, save_checkpoint
from sharpkd.errors import CheckpointError, SharpkdError
from sharpkd.models import build_model

PRESETS = {
    "rt": dict(width=8),
    "sepunet": dict(width=4),
    "nafnet": dict(width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1),
}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "model.pt", build_model("conv4", width=4), meta={"note": "test"})


def _resave(src: Path, dst: Path, edit) -> Path:
    """Load the raw dict, let ``edit`` change it, and write it back with plain torch.save."""
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_round_trip_gives_the_same_outputs(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, **PRESETS[name]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # move NAFNet's zero-initialised scales off zero too
    path = save_checkpoint(tmp_path / "sub" / f"{name}.pt", model, meta={"preset": name, "psnr": 30.5})
    assert not path.with_name(path.name + ".tmp").exists()  # written atomically, no temp file left
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.cfg == model.cfg
    assert meta == {"preset": name, "psnr": 30.5}
    x = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_is_self_describing(saved: Path) -> None:
    ckpt = read_checkpoint(saved)
    assert ckpt["format"] == "sharpkd-1" and ckpt["kind"] == "student"
    assert ckpt["config"]["width"] == 4
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(seed).bytes(2048))
    with pytest.raises(CheckpointError, match="is corrupt or not a torch file"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content", [b"hello", b"\x80\x02]q\x00.", b'{"config": {}}'], ids=["text", "pickle-list", "json"]
)
def test_small_non_checkpoints(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_zip(tmp_path: Path, saved: Path, fraction: float) -> None:
    data = saved.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_flipped_byte_inside_a_tensor_is_caught(tmp_path: Path, saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    weight = torch.load(saved, weights_only=True)["model"]["intro.0.weight"]
    offset = bytes(data).find(weight.numpy().tobytes())
    assert offset > 0
    data[offset + 5] ^= 0x40  # a silent change of one weight: torch.load alone would accept it
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_not_run(tmp_path: Path, saved: Path) -> None:
    marker = tmp_path / "PWNED"
    ckpt = torch.load(saved, weights_only=True)
    ckpt["meta"] = {"hook": _Payload(marker)}
    torch.save(ckpt, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"pickle payload.*GLOBAL (posix|nt)\.system"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickle payload"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_plain_state_dict_is_not_a_checkpoint(tmp_path: Path) -> None:
    torch.save(build_model("conv4", width=4).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"not a sharpkd checkpoint \(expected kind/config/model, found \["):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="found list"):
        load_checkpoint(tmp_path / "list.pt")


def test_mismatched_architecture(tmp_path: Path, saved: Path) -> None:
    path = _resave(saved, tmp_path / "wide.pt", lambda c: c["config"].update(width=8))
    with pytest.raises(CheckpointError, match="weights do not match the architecture: .*size mismatch"):
        load_checkpoint(path)
    path = _resave(saved, tmp_path / "deeper.pt", lambda c: c["config"].update(num_blocks=3))
    with pytest.raises(CheckpointError, match="weights do not match the architecture: .*Missing key"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["config"].update(colour=1), r"unknown student config fields \['colour'\]"),
        (lambda c: c.update(kind="critic"), "unknown model kind 'critic'"),
        (lambda c: c["config"].update(block="zzz"), "unknown block 'zzz'"),
        (lambda c: c["config"].update(width="wide"), "cannot build the stored architecture"),
        (lambda c: c.update(config=[1, 2]), "cannot build the stored architecture"),
        (lambda c: c.update(model=[1, 2]), "'model' is a list, not a state dict"),
        (lambda c: c["model"].update({"intro.0.bias": 3}), r"entry 'intro.0.bias' is a int, not a tensor"),
    ],
)
def test_bad_config_or_state(tmp_path: Path, saved: Path, edit, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(_resave(saved, tmp_path / "bad.pt", edit))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path: Path, saved: Path, value: float) -> None:
    def poison(ckpt: dict) -> None:
        ckpt["model"]["tail.weight"][0, 0, 1, 1] = value

    with pytest.raises(CheckpointError, match="weight 'tail.weight' contains NaN or Inf"):
        load_checkpoint(_resave(saved, tmp_path / "nan.pt", poison))


def test_errors_are_value_errors_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "missing.pt")
    assert issubclass(CheckpointError, SharpkdError)


def test_load_state_into_existing_model(saved: Path) -> None:
    model = build_model("conv4", width=4)
    meta = load_state_into(saved, model)
    assert meta == {"note": "test"}
    ref, _ = load_checkpoint(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref.state_dict().items())
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_state_into(saved, build_model("conv4", width=8))


def test_torch_file_is_a_zip_with_checksums(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        assert zf.testzip() is None
        assert any(name.endswith("data.pkl") for name in zf.namelist())


def test_atomic_save_keeps_the_old_file_when_a_write_fails(tmp_path: Path) -> None:
    path = atomic_save({"n": torch.arange(3)}, tmp_path / "sub" / "x.pt")
    assert path == tmp_path / "sub" / "x.pt" and torch.equal(torch.load(path, weights_only=True)["n"], torch.arange(3))
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        atomic_save({"n": lambda: 0}, path)  # a lambda cannot be pickled: torch.save fails mid-write
    assert torch.equal(torch.load(path, weights_only=True)["n"], torch.arange(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.pt"]  # no temporary file left behind
