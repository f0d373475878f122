"""Data-parallel training: two gloo processes on CPU (``torch.multiprocessing``, forked) agree with each other and with
one process on the same global batch, and checkpoints resume across different numbers of processes."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sharpkd.data import EvalImages
from sharpkd.models import build_model
from sharpkd.training.callbacks import Callback
from sharpkd.training.distributed import rank_batches
from sharpkd.training.loop import TrainConfig, fit

STEPS, STOP_AT, BATCH = 6, 3, 4
ATOL = 1e-5  # DDP averages per-rank gradients; float32 summation order is the only difference from one process


class _Pairs(Dataset):
    """Sixteen fixed ``(lq, gt)`` pairs of ``(3, 16, 16)``: a box-blurred copy of random images, and the images."""

    def __init__(self) -> None:
        self.gt = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        self.lq = F.avg_pool2d(self.gt, 3, stride=1, padding=1, count_include_pad=False)

    def __len__(self) -> int:
        return len(self.gt)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lq[i], self.gt[i]


class _Index(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([i]), torch.tensor([i])


class _Recorder(Callback):
    """Records the logged loss; cancels after ``stop_at`` steps when given."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at, self.losses = stop_at, []

    def on_step(self, step: int, logs: dict[str, float]) -> bool:
        self.losses.append(logs["loss"])
        return self.stop_at is not None and step >= self.stop_at


def _val() -> EvalImages:
    """One 24x32 checkerboard of 4 px squares: sharp edges, which blurring spoils."""
    board = (np.indices((24, 32)) // 4).sum(0) % 2
    return EvalImages({"board": np.stack([board * 200 + 30, board * 150 + 50, 220 - board * 180], -1).astype(np.uint8)})


def _run(out_dir: Path, stop_at: int | None = None, **cfg_kw) -> tuple[torch.nn.Module, object, list[float]]:
    """Distil a tiny ``rt`` student from a tiny NAFNet with l1 + kd + feat (all per-sample means, so a batch split
    over ranks has the same mean gradient), seeded so every process builds the same models."""
    torch.manual_seed(0)
    teacher = build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)
    student = build_model("rt", width=8)
    kw = dict(steps=STEPS, batch_size=BATCH, lr=1e-2, warmup_steps=1, val_every=STOP_AT, ckpt_every=STOP_AT)
    cfg = TrainConfig(out_dir=str(out_dir), losses="l1=1,kd=1,feat=0.1", device="cpu", **{**kw, **cfg_kw})
    rec = _Recorder(stop_at)
    result = fit(cfg, teacher, student, _Pairs(), val=_val(), callbacks=[rec])
    return student, result, rec.losses


def _summary(student: torch.nn.Module, result, losses: list[float]) -> dict:
    return {
        "state": student.state_dict(),
        "losses": losses,
        "history": result.history,
        "stopped": result.stopped,
        "steps": result.steps,
        "rank": result.rank,
        "world": result.world_size,
        "group_alive": dist.is_initialized(),
    }


def _worker(rank: int, tmp: Path, port_a: int, port_b: int) -> None:
    torch.set_num_threads(1)
    # A: launched like torchrun (environment only), so fit() creates the process group and destroys it.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port_a), WORLD_SIZE="2", RANK=str(rank))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.save(_summary(*_run(tmp / "two", stop_at=STOP_AT)), tmp / f"a{rank}.pt")
    # B: the caller owns the group; fit() uses it and leaves it alive. First a batch that does not split over 2 ranks.
    dist.init_process_group("gloo", f"tcp://127.0.0.1:{port_b}", rank=rank, world_size=2, timeout=timedelta(60))
    try:
        _run(tmp / "never", batch_size=3)
    except ValueError as err:
        assert "divisible by the number of processes 2" in str(err)
    else:
        raise AssertionError("batch_size 3 over 2 processes did not raise")
    torch.save(_summary(*_run(tmp / "one")), tmp / f"b{rank}.pt")  # resumes what one process wrote
    dist.destroy_process_group()


def _launch(fn, args: tuple, nprocs: int = 2, timeout: float = 120.0) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` processes; fail instead of hanging if a collective deadlocks.

    Forkserver, not fork: late in a full test run the pytest process holds threads (video pipelines, app tests,
    ONNX Runtime), and a worker forked from it could inherit a lock held by one of them and hang (seen in a
    full run here). The fork server is a clean single-threaded process, so its workers start fast and safely.
    """
    # gloo on the loopback device: otherwise it resolves this machine's hostname to pick an interface, and on a host
    # without working name resolution that lookup can stall the rendezvous past the timeout (seen here)
    saved = os.environ.get("GLOO_SOCKET_IFNAME")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    try:
        ctx = mp.start_processes(fn, args, nprocs=nprocs, join=False, start_method="forkserver")
    finally:
        if saved is None:
            del os.environ["GLOO_SOCKET_IFNAME"]
        else:
            os.environ["GLOO_SOCKET_IFNAME"] = saved
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"distributed workers still running after {timeout:.0f} s (deadlock?)")


def _no_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "elapsed"}  # each rank's own clock


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_batches_match_distributed_sampler():
    data = _Index()
    for world in (1, 2):
        for rank in range(world):
            sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=7, drop_last=True)
            expected = []
            for epoch in range(3):
                sampler.set_epoch(epoch)
                loader = DataLoader(data, 4 // world, sampler=sampler, drop_last=True)
                expected += [lq.flatten().tolist() for lq, _ in loader]
            ours = rank_batches(data, 4, 7, rank, world, start_step=0)
            assert [next(ours)[0].flatten().tolist() for _ in expected] == expected
            resumed = rank_batches(data, 4, 7, rank, world, start_step=3)  # mid-epoch 1: skips indices, same batches
            assert [next(resumed)[0].flatten().tolist() for _ in expected[3:]] == expected[3:]
    # The two ranks' batches are the halves of the one-process global batch, whatever the world size.
    one, r0, r1 = (rank_batches(data, 4, 7, r, w, 0) for r, w in ((0, 1), (0, 2), (1, 2)))
    for _ in range(5):
        assert sorted(next(one)[0].flatten().tolist()) == sorted(
            next(r0)[0].flatten().tolist() + next(r1)[0].flatten().tolist()
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One process, all steps in one go."""
    out = tmp_path_factory.mktemp("ref")
    student, result, losses = _run(out)
    return {**_summary(student, result, losses), "last": _load(out / "last.pt")}


def test_single_process_resume_is_exact(tmp_path, reference):
    _, first, _ = _run(tmp_path, stop_at=STOP_AT)
    assert (first.stopped, first.steps, first.rank, first.world_size) == ("cancelled", STOP_AT, 0, 1)
    student, result, losses = _run(tmp_path)
    assert (result.stopped, result.steps) == ("done", STEPS)
    assert losses == reference["losses"][STOP_AT:]
    last = _load(tmp_path / "last.pt")
    assert last["loop"]["step"] == STEPS
    assert _max_diff(last["model"], reference["last"]["model"]) == 0.0
    assert _max_diff(last["loss"], reference["last"]["loss"]) == 0.0
    assert [h["mean/psnr"] for h in result.history] == [h["mean/psnr"] for h in reference["history"]]
    assert _max_diff(student.state_dict(), reference["state"]) == 0.0  # both reloaded the same best.pt


def test_run_without_validation_ignores_a_stale_best_pt(tmp_path):
    _run(tmp_path)  # an earlier run leaves best.pt behind
    student, result, _ = _run(tmp_path, resume=False, val_every=0, ckpt_every=0, lr=3e-2)
    assert result.history == [] and result.best_psnr == float("-inf")
    last = _load(tmp_path / "last.pt")["model"]  # written at the end even with ckpt_every=0
    assert _max_diff(student.state_dict(), last) == 0.0
    assert _max_diff(student.state_dict(), _load(tmp_path / "best.pt")["model"]) > 1000 * ATOL


def test_two_processes_match_one_and_resume_across_world_sizes(tmp_path, reference):
    # One process writes a step-3 checkpoint for the 2-process resume. Its best PSNR is raised out of reach, so that
    # the resumed run never writes a better best.pt and must end on the step-3 weights of best.pt on both ranks.
    _run(tmp_path / "one", stop_at=STOP_AT)
    last = _load(tmp_path / "one" / "last.pt")
    last["loop"]["best_psnr"] = 1000.0
    torch.save(last, tmp_path / "one" / "last.pt")
    best = _load(tmp_path / "one" / "best.pt")["model"]
    with socket.socket() as s_a, socket.socket() as s_b:  # two distinct free ports
        s_a.bind(("127.0.0.1", 0))
        s_b.bind(("127.0.0.1", 0))
        ports = (s_a.getsockname()[1], s_b.getsockname()[1])
    _launch(_worker, (tmp_path, *ports))
    a0, a1, b0, b1 = (_load(tmp_path / f"{n}.pt") for n in ("a0", "a1", "b0", "b1"))

    # The ranks agree exactly on weights, validation history and cancellation.
    for r0, r1 in ((a0, a1), (b0, b1)):
        assert _max_diff(r0["state"], r1["state"]) == 0.0
        assert [_no_time(h) for h in r0["history"]] == [_no_time(h) for h in r1["history"]]
        assert (r0["rank"], r1["rank"], r0["world"], r1["world"]) == (0, 1, 2, 2)
    assert (a0["stopped"], a1["stopped"], a0["steps"], a1["steps"]) == ("cancelled", "cancelled", STOP_AT, STOP_AT)
    assert not a0["group_alive"] and not a1["group_alive"]  # fit() created the group, so it destroyed it
    assert b0["group_alive"] and b1["group_alive"]  # the caller's group is left alone
    assert a1["losses"] == [] and a0["losses"] == pytest.approx(reference["losses"][:STOP_AT], abs=ATOL)
    # Both ranks of B ended on rank 0's best.pt (step 3), not on their step-6 weights.
    assert _max_diff(b0["state"], best) == 0.0 and _max_diff(b1["state"], best) == 0.0
    assert (
        _max_diff(b1["state"], _load(tmp_path / "one" / "last.pt")["model"]) > 100 * ATOL
    )  # far beyond float noise (the residual head starts at zero, so early steps move less)

    # Only rank 0 wrote: one metrics line per validation, an unwrapped student at the global step.
    two = _load(tmp_path / "two" / "last.pt")
    assert (tmp_path / "two" / "metrics.jsonl").read_text().count("\n") == 1
    assert two["loop"]["step"] == STOP_AT
    assert not any(k.startswith("module.") for k in two["model"])

    # 2 processes -> 1: resume the 2-process checkpoint in this process (1 -> 2 was the workers' job B).
    _, resumed, losses = _run(tmp_path / "two")
    assert (resumed.steps, resumed.world_size) == (STEPS, 1)
    assert losses == pytest.approx(reference["losses"][STOP_AT:], abs=ATOL)
    assert [h["mean/psnr"] for h in b0["history"]] == pytest.approx([h["mean/psnr"] for h in reference["history"]])
    ref = reference["last"]
    for out in ("two", "one"):
        last = _load(tmp_path / out / "last.pt")
        assert last["loop"]["step"] == STEPS
        assert _max_diff(last["model"], ref["model"]) < ATOL
        assert _max_diff(last["loss"], ref["loss"]) < ATOL  # the feature adapter's gradients were averaged too
    # The agreement means something: training moved the weights far more than the tolerance.
    torch.manual_seed(0)
    build_model("nafnet", width=8, enc_blocks=(1,), dec_blocks=(1,), middle_blocks=1)
    assert _max_diff(build_model("rt", width=8).state_dict(), ref["model"]) > 1000 * ATOL


def _ema_worker(rank: int, tmp: Path, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    os.environ["LOCAL_RANK"] = str(rank)
    student, result, losses = _run(tmp / "ema-two", ema_decay=0.5, val_every=0)
    torch.save(_summary(student, result, losses), tmp / f"ema{rank}.pt")


def test_two_processes_keep_the_same_ema(tmp_path):
    student, _, _ = _run(tmp_path / "ema-one", ema_decay=0.5, val_every=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _launch(_ema_worker, (tmp_path, port))
    r0, r1 = _load(tmp_path / "ema0.pt"), _load(tmp_path / "ema1.pt")
    assert _max_diff(r0["state"], r1["state"]) == 0.0  # every rank ends on the same EMA
    assert _max_diff(r0["state"], student.state_dict()) < ATOL  # and it is one process's EMA
    last = _load(tmp_path / "ema-two" / "last.pt")
    assert _max_diff(last["ema"], r0["state"]) == 0.0
    assert _max_diff(last["model"], r0["state"]) > 100 * ATOL  # the raw weights are not the EMA
