"""Process-wide memory settings for the app server.

glibc gives each thread that allocates heavily its own malloc arena, and keeps freed memory in it. A Streamlit server
runs every browser session in its own thread, so after a few visitors the process holds one arena of image buffers
per session: measured with docs/measure_memory.py, capping the arenas at 2 lowered four sessions' peak RSS from 1026
to 765 MB. Community Cloud starts the app itself, so ``MALLOC_ARENA_MAX`` cannot be set in its environment; the
same cap is set here through ``mallopt`` before the sessions' threads allocate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number for the arena cap (malloc.h)
ARENAS = 2


@functools.cache
def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process, once; ``False`` where there is no glibc (macOS,
    musl) or it refuses, and nothing changes.

    Raises:
        ValueError: ``arenas`` below 1.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be >= 1, got {arenas}")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # no C library by that name, or one without mallopt
        ok = False
    log.info("malloc arenas capped at %d: %s", arenas, ok)
    return ok
