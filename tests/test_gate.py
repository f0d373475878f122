"""sharpkd.app.gate: at most ``slots`` heavy runs at once per process, the others queued and told so."""

from __future__ import annotations

import threading

import pytest

import sharpkd.app.gate
from sharpkd.app.gate import Gate


def _run_visitors(gate: Gate, n: int) -> tuple[list[str], int]:
    """``n`` threads enter the gate at once; each records entering and leaving. Returns the log and the most inside."""
    log: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n)
    inside, most = [0], [0]

    def visitor(i: int) -> None:
        start.wait()
        with gate.hold():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                log.append(f"in {i}")
            threading.Event().wait(0.02)  # long enough for the others to pile up at the gate
            with lock:
                inside[0] -= 1
                log.append(f"out {i}")

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return log, most[0]


def test_one_slot_serializes_the_runs():
    gate = Gate(1)
    log, most = _run_visitors(gate, 4)
    assert most == 1 and gate.peak == 1 and len(log) == 8
    assert all(log[k].startswith("in") and log[k + 1] == f"out {log[k].split()[1]}" for k in range(0, 8, 2))
    assert gate.inside == 0 and gate.waiting == 0 and not gate.busy


def test_two_slots_admit_two_at_once():
    gate = Gate(2)
    _, most = _run_visitors(gate, 4)
    assert most <= 2 and gate.peak <= 2


def test_a_queued_thread_is_told_and_waits_for_the_release():
    gate = Gate(1)
    told, order = threading.Event(), []
    with gate.hold() as waited:
        assert waited < 1.0 and gate.busy

        def queued() -> None:
            with gate.hold(on_wait=told.set):
                order.append("queued ran")

        t = threading.Thread(target=queued)
        t.start()
        assert told.wait(10)  # on_wait ran before it blocked
        assert gate.waiting == 1 and order == []
        order.append("holder done")
    t.join(10)
    assert order == ["holder done", "queued ran"] and gate.waiting == 0


def test_free_gate_never_calls_on_wait_and_is_reentrant():
    gate = Gate(1)
    calls = []
    with gate.hold(on_wait=lambda: calls.append("waited")):
        with gate.hold(on_wait=lambda: calls.append("nested waited")):  # the same thread: no deadlock
            assert gate.inside == 1
    assert calls == [] and not gate.busy


def test_gate_is_released_on_an_exception():
    gate = Gate(1)
    with pytest.raises(RuntimeError, match="boom"):
        with gate.hold():
            raise RuntimeError("boom")
    assert not gate.busy
    with gate.hold():  # would block forever if the slot had leaked
        assert gate.inside == 1


def test_heavy_uses_the_process_wide_gate():
    with sharpkd.app.gate.heavy():
        assert sharpkd.app.gate.HEAVY.busy == (sharpkd.app.gate.HEAVY.slots == 1)
    assert sharpkd.app.gate.HEAVY.inside == 0


def test_slots_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHARPKD_HEAVY_SLOTS", "3")
    assert sharpkd.app.gate._slots_from_env() == 3
    monkeypatch.setenv("SHARPKD_HEAVY_SLOTS", "many")
    assert sharpkd.app.gate._slots_from_env() == 1
    with pytest.raises(ValueError, match="slots must be >= 1"):
        Gate(0)
