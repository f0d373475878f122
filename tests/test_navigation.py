"""sharpkd.app.navigation: the Streamlit workaround that routes deep links through app.py."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from streamlit.runtime.pages_manager import PagesManager  # noqa: E402

from sharpkd.app import navigation  # noqa: E402


def test_streamlit_still_has_the_flag_this_workaround_sets():
    # Fails on a Streamlit upgrade that renames or removes the attribute: update sharpkd.app.navigation then.
    assert navigation.FLAG in vars(PagesManager)
    import inspect

    # ...and Streamlit still reads it when it decides how to run a script (the pages/ folder scan)
    from streamlit.runtime.scriptrunner import script_runner

    assert f"PagesManager.{navigation.FLAG}" in inspect.getsource(script_runner)


def test_use_navigation_only_switches_the_folder_scan_off(monkeypatch):
    monkeypatch.setattr(PagesManager, navigation.FLAG, True)
    navigation.use_navigation_only()
    assert PagesManager.uses_pages_directory is False


def test_missing_flag_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(navigation, "FLAG", "no_such_flag")
    with pytest.raises(RuntimeError, match="no_such_flag"):
        navigation.use_navigation_only()
