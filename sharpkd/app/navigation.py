"""The one Streamlit workaround: serve every page through ``app.py``'s ``st.navigation``, even on a deep link.

Why: Streamlit decides once per process whether an app is a "pages/ directory" app (the old multipage API) by looking
for a folder named ``pages/`` beside the main script, and remembers it in the class attribute
``PagesManager.uses_pages_directory``. The product's layout names that folder ``pages/``, so a fresh server asked
for ``/compare`` before ``/`` runs ``pages/compare.py`` directly, without ``app.py`` (its page config and
navigation). ``st.navigation()`` sets the flag to ``False`` for good once ``app.py`` runs; :func:`use_navigation_only`
does the same from whichever page is served first and reruns that page at once, so even the first view goes through
``app.py`` (with only the flag cleared, that first view kept the folder scan's sidebar of raw file names). Streamlit
has no public setting for this (its advice is to rename the folder); ``tests/test_navigation.py`` fails loudly if a
Streamlit upgrade renames or removes the attribute, so the workaround never silently stops working.
"""

from __future__ import annotations

from streamlit.runtime.pages_manager import PagesManager

FLAG = "uses_pages_directory"  # the PagesManager class attribute this module sets


def use_navigation_only() -> None:
    """Make Streamlit route every request through ``st.navigation`` (``app.py``), never the pages/ folder scan.

    Raises:
        RuntimeError: the installed Streamlit no longer has ``PagesManager.uses_pages_directory``.
    """
    if FLAG not in vars(PagesManager):
        raise RuntimeError(
            f"streamlit {_streamlit_version()} has no PagesManager.{FLAG}; sharpkd.app.navigation needs updating"
        )
    was_folder_scan = bool(getattr(PagesManager, FLAG))
    setattr(PagesManager, FLAG, False)
    if was_folder_scan:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is not None:  # inside a script run served by the folder scan
            import streamlit as st

            st.rerun()  # this time through app.py: its page config, navigation and titles


def _streamlit_version() -> str:
    import streamlit

    return streamlit.__version__
