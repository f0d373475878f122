"""Tests for app.memory: the malloc arena cap is set once, and bad arguments are refused."""

from __future__ import annotations

import platform

import pytest

from sharpkd.app.memory import limit_malloc_arenas


def test_arena_cap_is_set_on_glibc_and_only_once() -> None:
    ok = limit_malloc_arenas()
    if platform.libc_ver()[0] == "glibc":
        assert ok is True  # this machine and CI are glibc Linux
    assert limit_malloc_arenas() is ok and limit_malloc_arenas.cache_info().hits >= 1


def test_arena_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="arenas must be >= 1"):
        limit_malloc_arenas(0)
