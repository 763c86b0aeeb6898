"""Small rendering helpers shared by the pages: downloads, remembered widgets, messages.

No computation here: tables and figures arrive finished from :mod:`app.data`
and :mod:`analysis.figures`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

_KEEP = "keep:"


def _slug(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", name).strip("_") or "table"


def remembered(key: str, default: Any, options: Sequence[Any] | None = None, multi: bool = False) -> str:
    """Prepare a page widget's key so its value survives switching pages.

    Streamlit forgets the state of a widget that was not drawn in the last
    run, so every page widget copies its value to a plain session key
    (:func:`remember`) and is seeded from it here. A remembered value that no
    longer fits the options (another run was opened) falls back to ``default``.

    Parameters
    ----------
    key : str
        Widget key, namespaced per page (``"similarity.measure"``).
    default : object
        Value when nothing valid is remembered.
    options : sequence, optional
        Valid values (for select widgets).
    multi : bool
        The value is a list whose items must all be in ``options``.

    Returns
    -------
    str
        ``key``, to pass to the widget.
    """
    value = st.session_state.get(key, st.session_state.get(_KEEP + key, default))
    if options is not None:
        opts = list(options)
        if multi:
            value = [v for v in value if v in opts] if isinstance(value, list | tuple) else default
        elif value not in opts:
            value = default
    st.session_state[key] = value
    return key


def remember(key: str) -> None:
    """Copy a widget's current value to the store :func:`remembered` reads."""
    if key in st.session_state:
        st.session_state[_KEEP + key] = st.session_state[key]


def select(
    widget: Callable[..., Any],
    label: str,
    key: str,
    options: Sequence[Any],
    default: Any = None,
    **kwargs: Any,
) -> Any:
    """Draw a select-type widget (selectbox, radio, segmented control, ...) that is remembered.

    Parameters
    ----------
    widget : callable
        E.g. ``st.selectbox`` or ``st.radio``.
    label, key : str
    options : sequence
    default : object, optional
        Default value (first option when None).
    **kwargs
        Passed to the widget.

    Returns
    -------
    object
        The chosen option.
    """
    options = list(options)
    default = options[0] if default is None and options else default
    remembered(key, default, options)
    value = widget(label, options=options, key=key, **kwargs)
    remember(key)
    return value


def toggle(label: str, key: str, default: bool = False, **kwargs: Any) -> bool:
    """A remembered ``st.toggle``."""
    remembered(key, default)
    value = st.toggle(label, key=key, **kwargs)
    remember(key)
    return bool(value)


def table(
    df: pd.DataFrame,
    name: str,
    *,
    key: str,
    caption: str | None = None,
    column_config: dict | None = None,
    hide_index: bool = True,
    height: int | str = "auto",
) -> None:
    """Show a table with a CSV download button under it.

    Parameters
    ----------
    df : DataFrame
    name : str
        File name stem of the download.
    key : str
        Unique widget key stem.
    caption : str, optional
    column_config : dict, optional
        Passed to ``st.dataframe``.
    hide_index : bool
    height : int or "auto"
    """
    config = column_formats(df) if column_config is None else column_config
    st.dataframe(df, hide_index=hide_index, column_config=config, height=height, width="stretch")
    if caption:
        st.caption(caption)
    st.download_button(
        "CSV",
        data=df.to_csv(index=not hide_index).encode(),
        file_name=f"{_slug(name)}.csv",
        mime="text/csv",
        key=f"{key}.csv",
        on_click="ignore",
        icon=":material/download:",
        help=f"Download this table ({len(df)} rows) as {_slug(name)}.csv",
    )


def figure(
    fig: go.Figure,
    name: str,
    *,
    key: str,
    on_select: str = "ignore",
    selection_mode: str | Sequence[str] = ("points", "box", "lasso"),
) -> Any:
    """Show a plotly figure with an HTML download button under it.

    The HTML is built only when the button is clicked (deferred data) and
    embeds plotly.js, so the file opens offline.

    Parameters
    ----------
    fig : go.Figure
    name : str
        File name stem of the download.
    key : str
        Unique key stem (chart and button).
    on_select : {"ignore", "rerun"}
        ``"rerun"`` returns the chart's selection state.
    selection_mode : str or sequence of str

    Returns
    -------
    object
        The selection state when ``on_select="rerun"``, else the element.
    """
    if on_select == "ignore":
        out = st.plotly_chart(fig, key=f"{key}.chart", width="stretch")
    else:
        out = st.plotly_chart(
            fig, key=f"{key}.chart", on_select=on_select, selection_mode=selection_mode, width="stretch"
        )
    st.download_button(
        "Figure (HTML)",
        data=lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode(),
        file_name=f"{_slug(name)}.html",
        mime="text/html",
        key=f"{key}.html",
        on_click="ignore",
        icon=":material/download:",
        help="Download this figure as an interactive HTML file (opens offline)",
    )
    return out


def percent(x: float | None, digits: int = 1) -> str:
    """``0.487 -> '48.7 %'``; None or NaN gives an em dash."""
    if x is None or pd.isna(x):
        return "—"
    return f"{100 * float(x):.{digits}f} %"


_PERCENT_COLUMNS = ("sparsity", "density", "fraction")


def column_formats(df: pd.DataFrame) -> dict:
    """Column config for ``st.dataframe``: sparsities as percents, floats to 3 digits, counts grouped."""
    config: dict = {}
    for col in df.columns:
        name = str(col)
        dtype = df[col].dtype
        if pd.api.types.is_bool_dtype(dtype):
            continue
        if any(p in name for p in _PERCENT_COLUMNS) and pd.api.types.is_float_dtype(dtype):
            config[name] = st.column_config.NumberColumn(name, format="percent")
        elif "bits" in name:  # large counts: digit grouping, no decimals worth reading
            config[name] = st.column_config.NumberColumn(name, format="localized")
        elif pd.api.types.is_float_dtype(dtype):
            config[name] = st.column_config.NumberColumn(name, format="%.3f")
        elif pd.api.types.is_integer_dtype(dtype) and (
            name.startswith(("n_", "params")) or name.endswith("bits")
        ):
            config[name] = st.column_config.NumberColumn(name, format="localized")
    return config
