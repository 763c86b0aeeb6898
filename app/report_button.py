"""The "download the whole run as one HTML file" button."""

from __future__ import annotations

import streamlit as st

from app import data


def render(path: str, mtime: float, name: str, *, key: str) -> None:
    """Draw the report download button; the report is built only when clicked.

    Parameters
    ----------
    path : str
        Run folder.
    mtime : float
        Its modification time (cache key).
    name : str
        Run name (file name of the download).
    key : str
        Widget key.
    """
    st.download_button(
        "Download the full report (HTML)",
        data=lambda: data.report_html(path, mtime).encode(),
        file_name=f"{name}-report.html",
        mime="text/html",
        key=key,
        on_click="ignore",
        icon=":material/description:",
        help="Every table and figure of this run in one self-contained HTML file (opens offline). "
        "Building it takes a while on a large run. Same as `python -m analysis report RUN`.",
    )
