"""The sidebar every page shares: run, methods, level (sparsity), tickets.

The widgets are drawn by the entry point on every run, before the page, so
their values survive page switches. The resulting :class:`Selection` is put in
``st.session_state`` for the pages to read with :func:`selection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import Run
from app import data, open_folder, upload

KEY_RUN = "sidebar.run"
KEY_METHODS = "sidebar.methods"
KEY_LEVEL = "sidebar.level"
KEY_TICKETS = "sidebar.tickets"
_SELECTION = "sidebar.selection"


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose.

    Attributes
    ----------
    path : str
        Run folder.
    mtime : float
        Its modification time (cache key).
    methods : tuple of str
        Chosen methods, in run order (never empty).
    level : int
        Chosen pruning level.
    tickets : tuple of str
        Chosen subsets / tickets (partition names; all of them when the filter is empty).
    all_tickets : tuple of str
        Every subset of the partition.
    levels : DataFrame
        Sparsity and parameter counts of every level of the run (:func:`analysis.overview.level_table`).
    """

    path: str
    mtime: float
    methods: tuple[str, ...]
    level: int
    tickets: tuple[str, ...]
    all_tickets: tuple[str, ...]
    levels: pd.DataFrame

    @property
    def run(self) -> Run:
        """The run reader (cached)."""
        return data.get_run(self.path, self.mtime)

    def level_for(self, method: str) -> int:
        """The level of ``method`` nearest in sparsity to the chosen one."""
        rows = self.levels[self.levels["method"] == method]
        if self.level in set(rows["level"]):
            return self.level
        return int(rows.loc[(rows["sparsity"] - self.sparsity).abs().idxmin(), "level"])

    @property
    def sparsity(self) -> float:
        """Sparsity of the chosen level (of the first chosen method that has it)."""
        rows = self.levels[self.levels["level"] == self.level]
        chosen = rows[rows["method"].isin(self.methods)]
        return float((chosen if len(chosen) else rows)["sparsity"].iloc[0])

    def sparsity_of(self, method: str) -> float:
        """Sparsity of ``method`` at :meth:`level_for`."""
        rows = self.levels[
            (self.levels["method"] == method) & (self.levels["level"] == self.level_for(method))
        ]
        return float(rows["sparsity"].iloc[0])

    def ticket_kind(self, method: str) -> str:
        """How ``method`` uses its tickets (``detector``, ``expert``, ``single``)."""
        return str(self.run.manifest["methods"][method].get("ticket_kind", "detector"))

    @staticmethod
    def preferred(methods: list[str]) -> str | None:
        """The method a page opens on: ``rtl`` (the subject of the paper) when offered."""
        return next((m for m in methods if m.startswith("rtl")), methods[0] if methods else None)

    def multi_ticket_methods(self) -> list[str]:
        """Chosen methods with more than one ticket (those with ticket masks to compare)."""
        return [m for m in self.methods if len(self.run.ticket_names(m)) > 1]


def _run_label(path: str) -> str:
    p = Path(path)
    name = upload.uploaded_name(path)
    if name is not None:
        return f"{name}  ·  uploaded"
    where = "embedded" if p.parent == data.EMBEDDED_DIR else str(p.parent)
    return f"{p.name}  ·  {where}"


def _default_run(paths: list[str]) -> str:
    for p in paths:
        if Path(p).name == data.DEFAULT_RUN:
            return p
    embedded = [p for p in paths if Path(p).parent == data.EMBEDDED_DIR]
    return (embedded or paths)[0]


def _keep_valid(key: str, valid: list, default, multi: bool = False) -> None:
    """Drop a stale value (e.g. a method of the previously opened run) before the widget is drawn."""
    if key not in st.session_state:
        st.session_state[key] = default
        return
    value = st.session_state[key]
    if multi:
        kept = [v for v in value if v in valid]
        st.session_state[key] = kept if kept else default
    elif value not in valid:
        st.session_state[key] = default


def _no_runs(roots: list[str], bad: list[tuple[str, str]]) -> None:
    st.sidebar.warning("No run found.")
    st.sidebar.caption(
        "Searched: " + ", ".join(f"`{r}`" for r in roots) + ". Train one with "
        "`python -m lottery train --preset smoke --out runs/smoke` and start the app with "
        "`-- --runs-dir runs` (or set `RTL_RUNS_DIR`)."
    )
    _show_bad(bad)


def _show_bad(bad: list[tuple[str, str]]) -> None:
    if bad:
        with st.sidebar.expander(f"{len(bad)} folder(s) could not be read"):
            for path, reason in bad:
                st.caption(f"`{path}`: {reason}")


def render() -> Selection | None:
    """Draw the sidebar and store the selection; None when no run can be opened."""
    roots = data.run_roots()
    paths, bad = data.discover_runs(tuple(roots))
    # The uploader sits below the run picker but is handled first, so that a
    # checkpoint converted in this script run can be selected before the picker is drawn.
    sb, below = st.sidebar.container(), st.sidebar.container()
    by_path = open_folder.render(below)  # large checkpoints, by path (local sessions only)
    opened = upload.render(below) or by_path
    paths = paths + [p for p in upload.session_runs() + open_folder.session_runs() if p not in paths]
    if opened is not None:
        st.session_state[KEY_RUN] = opened
    if not paths:
        st.session_state.pop(_SELECTION, None)
        _no_runs(roots, bad)
        return None

    wanted = st.query_params.get("run")
    if wanted and KEY_RUN not in st.session_state:
        # A shared link (?run=NAME) opens that run on the first visit.
        st.session_state[KEY_RUN] = next((p for p in paths if wanted in (p, Path(p).name)), None)
    _keep_valid(KEY_RUN, paths, _default_run(paths))
    path = sb.selectbox(
        "Run",
        paths,
        format_func=_run_label,
        key=KEY_RUN,
        help="Embedded runs live in artifacts/; add your own with `-- --runs-dir DIR` or $RTL_RUNS_DIR.",
    )
    st.query_params["run"] = Path(path).name  # the address bar now links to this run
    mtime = data.run_mtime(path)
    run = data.get_run(path, mtime)
    facts = data.run_facts(path, mtime)
    levels_df = facts["levels"]

    _keep_valid(KEY_METHODS, run.methods, list(run.methods), multi=True)
    methods = sb.multiselect(
        "Methods",
        run.methods,
        key=KEY_METHODS,
        help="imp: one ticket for all data; rtl: one ticket per subset on a shared network; "
        "independent: one network per subset.",
    )
    if not methods:
        sb.caption("No method chosen: showing all.")
        methods = list(run.methods)
    methods = [m for m in run.methods if m in methods]

    chosen = levels_df[levels_df["method"].isin(methods)]
    level_options = sorted(int(lv) for lv in chosen["level"].unique())
    sparsity_of = chosen.groupby("level")["sparsity"].first()
    _keep_valid(KEY_LEVEL, level_options, level_options[min(len(level_options) - 1, len(level_options) // 2)])
    if len(level_options) > 1:
        level = sb.select_slider(
            "Level · sparsity",
            options=level_options,
            format_func=lambda lv: f"{lv} · {100 * sparsity_of[lv]:.1f} %",
            key=KEY_LEVEL,
            help="Pruning level L and the fraction of prunable weights removed at it.",
        )
    else:
        level = level_options[0]
        sb.caption(f"One level only: {level} · {100 * sparsity_of[level]:.1f} % sparsity.")

    all_tickets = [str(n) for n in run.manifest.get("partition", {}).get("names", [])]
    _keep_valid(KEY_TICKETS, all_tickets, [], multi=True)
    tickets = sb.multiselect(
        "Tickets",
        all_tickets,
        key=KEY_TICKETS,
        placeholder="all tickets",
        help="Subsets (one ticket each) shown on the per-ticket views; empty = all.",
    )
    tickets = [t for t in all_tickets if t in tickets] or all_tickets
    sb.caption(f"{len(paths)} run(s) found in " + ", ".join(f"`{Path(r).name}/`" for r in roots))
    _show_bad(bad)

    sel = Selection(
        path=path,
        mtime=mtime,
        methods=tuple(methods),
        level=int(level),
        tickets=tuple(tickets),
        all_tickets=tuple(all_tickets),
        levels=levels_df,
    )
    st.session_state[_SELECTION] = sel
    return sel


def selection() -> Selection | None:
    """The selection the sidebar stored in this run (None when no run is open)."""
    sel = st.session_state.get(_SELECTION)
    if sel is None:
        st.info(
            "No run to show. Train one with `python -m lottery train --preset smoke --out runs/smoke`, "
            "then start the app with `python -m streamlit run app/streamlit_app.py -- --runs-dir runs`."
        )
    return sel
