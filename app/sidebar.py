"""The sidebar every page shares: run, methods, a sparsity target, tickets.

Methods reach a sparsity at different levels, so the sidebar carries a
sparsity target and each page asks :attr:`Selection.levels_at` for
``{method: level}``: each method's level nearest the target
(:func:`analysis.levels.levels_at`, the one place that rule is written).

The widgets are drawn by the entry point on every run, before the page, so
their values survive page switches. The resulting :class:`Selection` is put in
``st.session_state`` for the pages to read with :func:`selection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import Run, levels_at, nearest_level
from analysis.levels import reference_only_methods
from app import data, open_folder, upload

KEY_RUN = "sidebar.run"  # a run folder, or a run group folder (then KEY_SEED picks its run)
KEY_SEED = "sidebar.seed"
KEY_METHODS = "sidebar.methods"
KEY_SPARSITY = "sidebar.sparsity"
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
    sparsity : float
        The sparsity target, 0..1.
    levels_at : dict of str to int
        ``{method: level}``: each chosen method's level nearest the target.
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
    sparsity: float
    levels_at: dict[str, int]
    tickets: tuple[str, ...]
    all_tickets: tuple[str, ...]
    levels: pd.DataFrame

    @property
    def run(self) -> Run:
        """The run reader (cached)."""
        return data.get_run(self.path, self.mtime)

    @property
    def level(self) -> int:
        """The first chosen method's level at the target (for pages showing one level)."""
        return self.levels_at[self.methods[0]]

    def level_for(self, method: str) -> int:
        """The level of ``method`` nearest the sparsity target."""
        if method in self.levels_at:
            return self.levels_at[method]
        return nearest_level(self.levels, method, self.sparsity)

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


def target_options(levels: pd.DataFrame, methods: list[str] | tuple[str, ...]) -> list[float]:
    """Sparsity targets offered: every sparsity a chosen method reaches, to the percent.

    Methods on one schedule differ by a fraction of a percent (a detector's head
    row is never pruned), so their sparsities merge into one stop.
    """
    chosen = levels[levels["method"].isin(list(methods))]
    return sorted({round(float(v), 2) for v in chosen["sparsity"]})


def _run_label(path: str) -> str:
    p = Path(path)
    name = upload.uploaded_name(path)
    if name is not None:
        return f"{name}  ·  uploaded"
    where = "embedded" if p.parent == data.EMBEDDED_DIR else str(p.parent)
    return f"{p.name}  ·  {where}"


def _group_label(path: str, group: dict) -> str:
    p = Path(path)
    where = "embedded" if p.parent == data.EMBEDDED_DIR else str(p.parent)
    n = len(group["seeds"])
    return f"{group['name']} (group, {n} seed{'s' if n != 1 else ''})  ·  {where}"


def _link_name(path: str, member: dict[str, str]) -> str:
    """The ``?run=`` value of a run: its folder name, ``group/seed-k`` inside a group."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if path in member else p.name


def _entries(paths: list[str], groups: dict[str, dict]) -> tuple[list[str], dict[str, str]]:
    """Picker entries (runs outside groups, and groups with a readable run) and run -> group."""
    offered = set(paths)
    member = {r: g for g, info in groups.items() for r in info["runs"] if r in offered}
    entries: list[str] = []
    for p in paths:
        entry = member.get(p, p)
        if entry not in entries:
            entries.append(entry)
    return entries, member


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

    groups, bad_groups = data.discover_groups(tuple(roots))
    bad = bad + bad_groups
    entries, member = _entries(paths, groups)
    wanted = st.query_params.get("run")
    if wanted and KEY_RUN not in st.session_state:
        # A shared link (?run=NAME, or ?run=GROUP/seed-k) opens that run on the first visit.
        st.session_state[KEY_RUN] = next(
            (p for p in paths if wanted in (p, Path(p).name, _link_name(p, member))), None
        )
    if st.session_state.get(KEY_RUN) in member:
        # a run inside a group (a link, an older session, a test): open its group at that seed
        st.session_state[KEY_SEED] = st.session_state[KEY_RUN]
        st.session_state[KEY_RUN] = member[st.session_state[KEY_RUN]]
    _keep_valid(KEY_RUN, entries, _default_run(entries))
    entry = sb.selectbox(
        "Run",
        entries,
        format_func=lambda e: _group_label(e, groups[e]) if e in groups else _run_label(e),
        key=KEY_RUN,
        help="Embedded runs live in artifacts/; add your own with `-- --runs-dir DIR` or $RTL_RUNS_DIR. "
        "A group is a sweep's runs of one description, one per seed.",
    )
    path = entry
    if entry in groups:
        group = groups[entry]
        seed_of = dict(zip(group["runs"], group["seeds"], strict=True))
        seed_runs = [r for r in group["runs"] if r in member]
        _keep_valid(KEY_SEED, seed_runs, seed_runs[0])
        path = sb.selectbox(
            "Seed",
            seed_runs,
            format_func=lambda r: f"seed {seed_of[r]}",
            key=KEY_SEED,
            help="The group's run of this seed. Overview, Similarity and Collapse show the mean across seeds "
            "(checkbox 'Across seeds').",
        )
        if len(seed_runs) < len(group["runs"]):
            sb.caption(f"{len(seed_runs)} of {len(group['runs'])} seeds have a finished level so far.")
    st.query_params["run"] = _link_name(path, member)  # the address bar now links to this run
    mtime = data.run_mtime(path)
    run = data.get_run(path, mtime)
    facts = data.run_facts(path, mtime)
    levels_df = facts["levels"]

    # A one-level dense reference is a point to compare with, not a method to prune.
    reference = reference_only_methods(run)
    swept = [m for m in run.methods if m not in reference] or list(run.methods)
    _keep_valid(KEY_METHODS, run.methods, swept, multi=True)
    methods = sb.multiselect(
        "Methods",
        run.methods,
        key=KEY_METHODS,
        format_func=lambda m: f"{m} (reference)" if m in reference else m,
        help="imp: one ticket for all data; rtl: one ticket per subset on a shared network; "
        "independent: one network per subset; dense (reference): the dense model trained on all "
        "the data, one level, that every drop is measured from.",
    )
    if not methods:
        sb.caption("No method chosen: showing all.")
        methods = list(swept)
    methods = [m for m in run.methods if m in methods]

    options = target_options(levels_df, methods)
    # the slider opens mid-sweep of the first pruned method (methods have their own level counts)
    opener = next((m for m in methods if m not in reference), methods[0])
    first = levels_df[levels_df["method"] == opener]["sparsity"].round(2).tolist()
    _keep_valid(KEY_SPARSITY, options, first[min(len(first) - 1, len(first) // 2)])
    if len(options) > 1:
        target = sb.select_slider(
            "Sparsity",
            options=options,
            format_func=lambda v: f"{100 * v:.0f} %",
            key=KEY_SPARSITY,
            help="Fraction of prunable weights removed. Each method is shown at its level nearest "
            "this target (methods reach a sparsity at different levels).",
        )
    else:
        target = options[0]
        sb.caption(f"One sparsity only: {100 * target:.0f} %.")
    at = levels_at(levels_df, float(target), methods)
    if len(set(at.values())) > 1 or len(methods) > 1:
        sb.caption("Levels: " + ", ".join(f"{m} L{lv}" for m, lv in at.items()))
    else:
        sb.caption(f"Level {next(iter(at.values()))}")

    all_tickets = [str(n) for n in run.manifest.get("partition", {}).get("names", [])]
    if not all_tickets:  # imported runs have no partition: their tickets are the methods' own
        all_tickets = list(dict.fromkeys(str(t) for m in methods for t in run.ticket_names(m)))
    _keep_valid(KEY_TICKETS, all_tickets, [], multi=True)
    tickets = sb.multiselect(
        "Tickets",
        all_tickets,
        key=KEY_TICKETS,
        placeholder="all tickets",
        help="Subsets (one ticket each) shown on the per-ticket views; empty = all.",
    )
    tickets = [t for t in all_tickets if t in tickets] or all_tickets
    in_groups = f" ({len(member)} in {len(groups)} group(s))" if member else ""
    sb.caption(f"{len(paths)} run(s){in_groups} found in " + ", ".join(f"`{Path(r).name}/`" for r in roots))
    _show_bad(bad)

    sel = Selection(
        path=path,
        mtime=mtime,
        methods=tuple(methods),
        sparsity=float(target),
        levels_at=at,
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
