"""One heavy inference at a time per server process, so a few visitors cannot run the app out of memory.

Streamlit runs every session's script in its own thread of one process. Each heavy call (a model run on a whole
photo, the teacher, decoding a large upload, a video) briefly needs tens to hundreds of MB on top of the resident
models; four of them at once is what took the server past 1.5 GB. Every page wraps such a call in
:func:`heavy`, which lets one run at a time and tells a session that has to queue, so its visitor sees why it waits::

    with sharpkd.app.gate.heavy(on_wait=lambda: st.info(sharpkd.app.gate.WAITING)):
        result = compare(...)

The gate is :data:`HEAVY`, one :class:`Gate` for the whole process; ``$SHARPKD_HEAVY_SLOTS`` (default 1) sets how
many runs it admits at once. It is reentrant per thread (a page that already holds it may call a helper that takes
it again), and it is released on any exception, including Streamlit's rerun and stop exceptions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

log = logging.getLogger(__name__)

WAITING = "Waiting for another visitor's run to finish (one heavy run at a time keeps the server within its memory)…"


class Gate:
    """A counting gate: at most ``slots`` threads inside at once; the others wait in :meth:`hold`.

    Args:
        slots: how many threads may hold the gate at the same time, at least 1.

    Raises:
        ValueError: ``slots`` below 1.

    Attributes:
        slots: as given.
        peak: the most threads that were inside at once since creation (a check for tests and the memory script).
    """

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.peak = 0
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._inside = 0
        self._waiting = 0
        self._owned = threading.local()  # per thread: how deep it is inside (reentrancy)

    @property
    def inside(self) -> int:
        """Threads holding the gate now."""
        return self._inside

    @property
    def busy(self) -> bool:
        """Whether a thread entering now would have to wait."""
        return self._inside >= self.slots

    @property
    def waiting(self) -> int:
        """Threads queued in :meth:`hold` now."""
        return self._waiting

    @contextmanager
    def hold(self, on_wait: Callable[[], object] | None = None) -> Iterator[float]:
        """Enter the gate for the ``with`` block; yields the seconds this thread waited.

        Args:
            on_wait: called once, before blocking, when the gate is full (show a "waiting" message here).
        """
        depth = getattr(self._owned, "depth", 0)
        if depth:  # this thread is already inside: entering again must not deadlock it
            self._owned.depth = depth + 1
            try:
                yield 0.0
            finally:
                self._owned.depth = depth
            return
        start = time.perf_counter()
        if not self._semaphore.acquire(blocking=False):
            with self._lock:
                self._waiting += 1
            try:
                if on_wait is not None:
                    on_wait()
                self._semaphore.acquire()
            finally:
                with self._lock:
                    self._waiting -= 1
        waited = time.perf_counter() - start
        with self._lock:
            self._inside += 1
            self.peak = max(self.peak, self._inside)
        self._owned.depth = 1
        log.info("heavy run started (waited %.2f s, %d queued)", waited, self._waiting)
        try:
            yield waited
        finally:
            self._owned.depth = 0
            with self._lock:
                self._inside -= 1
            self._semaphore.release()
            log.info("heavy run finished after %.2f s", time.perf_counter() - start - waited)


def _slots_from_env() -> int:
    raw = os.environ.get("SHARPKD_HEAVY_SLOTS", "1")
    try:
        return max(1, int(raw))
    except ValueError:
        log.warning("ignoring SHARPKD_HEAVY_SLOTS=%r (not an integer); using 1", raw)
        return 1


HEAVY = Gate(_slots_from_env())  # the process-wide gate every page's heavy call goes through


def heavy(on_wait: Callable[[], object] | None = None) -> AbstractContextManager[float]:
    """``HEAVY.hold(on_wait)``: the context manager pages wrap their heavy calls in (see the module docstring)."""
    return HEAVY.hold(on_wait)
