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


def test_a_run_served_by_the_folder_scan_reruns_through_app_py(monkeypatch):
    import streamlit
    from streamlit.runtime import scriptrunner

    reruns = []
    monkeypatch.setattr(PagesManager, navigation.FLAG, True)
    monkeypatch.setattr(scriptrunner, "get_script_run_ctx", lambda suppress_warning=False: object())
    monkeypatch.setattr(streamlit, "rerun", lambda: reruns.append(1))
    navigation.use_navigation_only()
    assert PagesManager.uses_pages_directory is False and reruns == [1]
    navigation.use_navigation_only()  # the flag is already off: no second rerun
    assert reruns == [1]


def test_outside_a_script_run_it_only_clears_the_flag(monkeypatch):
    import streamlit

    monkeypatch.setattr(PagesManager, navigation.FLAG, True)
    monkeypatch.setattr(streamlit, "rerun", lambda: pytest.fail("no rerun outside a script run"))
    navigation.use_navigation_only()
    assert PagesManager.uses_pages_directory is False
