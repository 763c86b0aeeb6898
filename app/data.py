"""Every cached accessor of the dashboard: the one module that touches st.cache_*.

Each accessor is keyed by a run's folder and its modification time
(:meth:`Run.mtime`), plus plain choices (method, level, column names), never
by arrays: a run that gains a level gets a new mtime and fresh results, and
two users looking at the same run share one computation. The analysis itself
lives in :mod:`analysis`; these functions only call it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import Run, RunFormatError, find_groups, find_runs, load_group, load_run
from analysis import alarm as _alarm
from analysis import collapse as _collapse
from analysis import levels as _levels
from analysis import overview as _overview
from analysis import similarity as _similarity
from artifacts.run_format import run_version

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_DIR = REPO / "artifacts"
ENV_VAR = "RTL_RUNS_DIR"
# The embedded run a first visit opens (if present).
DEFAULT_RUN = "fashion-mlp-class-sweep"  # a run group: opened at its first seed


# ----------------------------------------------------------------------------- finding runs


def runs_dir_argument(argv: list[str] | None = None) -> str | None:
    """The ``--runs-dir`` script argument (``streamlit run app/streamlit_app.py -- --runs-dir X``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs-dir", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args.runs_dir


def run_roots() -> list[str]:
    """Folders searched for runs: ``artifacts/``, ``--runs-dir`` and ``$RTL_RUNS_DIR``."""
    roots = [str(EMBEDDED_DIR)]
    for extra in (runs_dir_argument(), os.environ.get(ENV_VAR)):
        for part in (extra or "").split(os.pathsep):
            if part and str(Path(part).expanduser().resolve()) not in roots:
                roots.append(str(Path(part).expanduser().resolve()))
    return roots


@st.cache_data(ttl=5, show_spinner=False)
def discover_runs(roots: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str]]]:
    """Readable runs under ``roots``, and the unreadable ones with the reason.

    A short time-to-live lets a run that another process is writing appear
    without a restart.
    """
    good: list[str] = []
    bad: list[tuple[str, str]] = []
    for path in find_runs(*[r for r in roots if Path(r).exists()]):
        try:
            checked_run(path)
        except RunFormatError as e:
            bad.append((str(path), str(e)))
        else:
            good.append(str(path))
    return good, bad


@st.cache_data(ttl=5, show_spinner=False)
def discover_groups(roots: tuple[str, ...]) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """Run groups (sweeps) under ``roots``, and the unreadable ones with the reason.

    Returns ``{group folder: {"name": str, "seeds": [int], "runs": [run folder]}}``
    (``runs`` aligned with ``seeds``; a run of a group is offered once it is
    readable, like any other run).
    """
    groups: dict[str, dict] = {}
    bad: list[tuple[str, str]] = []
    for path in find_groups(*[r for r in roots if Path(r).exists()]):
        try:
            group = load_group(path)
        except RunFormatError as e:
            bad.append((str(path), str(e)))
        else:
            groups[str(path)] = {
                "name": group.name,
                "seeds": list(group.seeds),
                "runs": [str(group.path / n) for n in group.run_names],
            }
    return groups, bad


def checked_run(path: str | Path) -> Run:
    """The run at ``path``, opened and validated once per version of its files.

    Discovery, the group and the null-control lookups all ask whether a run
    opens; opening one checks every level against the schema (tens of
    milliseconds), so the answer is kept while :func:`artifacts.run_format.run_version`
    (no file read) stays the same.

    Raises
    ------
    RunFormatError
        As :func:`analysis.load_run` (an error is not kept: the next call checks again).
    """
    return _checked_run(str(path), run_version(path))


@st.cache_resource(show_spinner=False, max_entries=512)
def _checked_run(path: str, version: int) -> Run:
    return load_run(path)


def run_mtime(path: str) -> float:
    """Current modification time of a run (the second half of every cache key).

    Read from the disk on every call (a new level changes it); the reader that
    lists the run's methods and levels is reused while the manifest is unchanged.
    """
    return _current_reader(path).mtime()


@st.cache_resource(show_spinner=False, max_entries=128)
def _reader(path: str, manifest_mtime: float) -> Run:
    """A :class:`Run` reader per manifest version, for :func:`run_mtime` and :func:`run_methods`.

    Opening a run validates every level (tens of milliseconds), which these two
    would otherwise pay on every rerun for every run of a group.
    """
    return load_run(path)


def run_methods(path: str) -> list[str]:
    """The methods of a run (from its manifest)."""
    return list(_current_reader(path).methods)


def _current_reader(path: str) -> Run:
    """:func:`_reader` of the run's manifest as it is on disk now."""
    from artifacts.run_format import MANIFEST

    return _reader(str(path), (Path(path) / MANIFEST).stat().st_mtime)


@st.cache_resource(show_spinner=False, max_entries=32)
def get_run(path: str, mtime: float) -> Run:
    """The :class:`Run` reader of a folder (shared, read-only).

    Its level predictions go through :func:`_prediction_store`: the pages'
    computations that read the same level (the Collapse page's curves and its
    frozen alarm) read the file once.
    """
    return _StoredPredictionsRun(path)  # opened and checked as load_run opens it


class _StoredPredictionsRun(Run):
    """A :class:`Run` whose :meth:`predictions` are kept in :func:`_prediction_store` (a copy per call)."""

    def predictions(self, method: str, level: int) -> pd.DataFrame:
        """:meth:`Run.predictions`, read once per version of the level's files while the store keeps it."""
        return _prediction_store().read(self, method, level)


class _PredictionStore:
    """Level predictions already read, up to ``budget`` bytes (least recently used dropped first).

    Keyed by the run, method, level and the version (``artifacts.run_format.file_version``)
    of the level's predictions file and of the run's shared samples file, so a
    rewritten file is read again. The stored frames are never handed out: every
    call gets its own copy (pandas copy-on-write: a caller's change copies the
    data it changes, and never reaches the stored frame).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.frames: OrderedDict[tuple, tuple[pd.DataFrame, int]] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def read(self, run: Run, method: str, level: int) -> pd.DataFrame:
        from artifacts.run_format import PREDICTIONS, SHARED_SAMPLES, file_version, level_dir

        try:
            files = [level_dir(run.path, method, int(level)) / PREDICTIONS, Path(run.path) / SHARED_SAMPLES]
            ids = tuple(file_version(f) for f in files if f.exists())
        except OSError:
            ids = None
        key = None if ids is None else (str(run.path), method, int(level), ids)
        with self.lock:
            hit = self.frames.get(key) if key is not None else None
            if hit is not None:
                self.frames.move_to_end(key)
                return hit[0].copy(deep=False)
        frame = Run.predictions(run, method, level)  # the plain read (its checks and errors)
        if key is None:
            return frame
        nbytes = int(frame.memory_usage(deep=True).sum())
        if nbytes <= self.budget:
            with self.lock:
                if key not in self.frames:
                    self.frames[key] = (frame, nbytes)
                    self.size += nbytes
                while self.size > self.budget:
                    _, (_, n) = self.frames.popitem(last=False)
                    self.size -= n
        return frame.copy(deep=False)


# Bytes of predictions kept for reuse (a level of the embedded runs is 1-2 MB).
PREDICTION_STORE_BYTES = 128 * 2**20


@st.cache_resource(show_spinner=False)
def _prediction_store() -> _PredictionStore:
    """The process's :class:`_PredictionStore` (a cache resource: cleared with the others)."""
    return _PredictionStore(PREDICTION_STORE_BYTES)


# ----------------------------------------------------------------------------- overview


@st.cache_data(show_spinner="Reading the run…", max_entries=32)
def run_facts(path: str, mtime: float) -> dict[str, pd.DataFrame]:
    """Description, subsets, methods and levels tables of a run."""
    run = get_run(path, mtime)
    return {
        "describe": _overview.describe_run(run),
        "subsets": _overview.subset_table(run),
        "methods": _overview.method_table(run),
        "levels": _overview.level_table(run),
    }


@st.cache_data(show_spinner=False, max_entries=32)
def capabilities(path: str, mtime: float) -> pd.DataFrame:
    """:func:`analysis.overview.method_capabilities`: class metrics or not, tickets, layer shapes."""
    return _overview.method_capabilities(get_run(path, mtime))


def classification_methods(path: str, mtime: float) -> list[str]:
    """Methods whose predictions carry class labels (the labelled collapse and fairness views)."""
    caps = capabilities(path, mtime)
    return list(caps.loc[caps["classification"], "method"])


@st.cache_data(show_spinner="Scoring the tickets at every level…", max_entries=16)
def results(path: str, mtime: float) -> pd.DataFrame:
    """:func:`analysis.overview.results_table` of every method at every level.

    The class metrics are read from the collapse curves (same numbers, scored once).
    """
    return _overview.results_table(get_run(path, mtime), curves=collapse_curves(path, mtime))


@st.cache_data(show_spinner="Scoring the tickets at every level…", max_entries=32)
def _scored_results(path: str, mtime: float) -> pd.DataFrame:
    """:func:`results` scored from the predictions alone, without the collapse curves.

    The same table (tested on every shipped run): the curves' aggregate rows are
    :func:`analysis.metrics.ticket_metrics` means too. For the other seeds of a
    group, whose collapse curves the Overview page does not need, this skips the
    mask and latent signals.
    """
    return _overview.results_table(get_run(path, mtime))


@st.cache_data(show_spinner=False, max_entries=64)
def paper_table(
    path: str, mtime: float, methods: tuple[str, ...], targets: tuple[float, ...]
) -> pd.DataFrame:
    """The paper-style results table: each chosen method at its level nearest each target sparsity."""
    from analysis.levels import levels_at

    levels = run_facts(path, mtime)["levels"]
    want: dict[str, set[int]] = {m: set() for m in methods}
    for t in targets:
        for m, lv in levels_at(levels, t, methods).items():
            want[m].add(lv)
    res = results(path, mtime)
    keep = pd.Series(
        [lv in want.get(m, ()) for m, lv in zip(res["method"], res["level"], strict=True)], index=res.index
    )
    return _overview.paper_table(res[keep])


@st.cache_data(show_spinner=False, max_entries=64)
def paper_levels(path: str, mtime: float, methods: tuple[str, ...]) -> list[int]:
    """Levels nearest to 25 / 50 / 75 % sparsity."""
    return _overview.paper_levels(run_facts(path, mtime)["levels"], methods)


# ----------------------------------------------------------------------------- collapse


@st.cache_data(show_spinner="Computing collapse signals for every level…", max_entries=16)
def collapse_curves(path: str, mtime: float) -> pd.DataFrame:
    """:func:`analysis.collapse.collapse_curves` of every classification method of the run.

    Assembled from :func:`method_collapse_curves` (the same rows in the same
    order), so a view that needs one method computes only that one.
    """
    methods = classification_methods(path, mtime)
    frames = [f for f in (method_collapse_curves(path, mtime, m) for m in methods) if len(f)]
    if not frames:
        return pd.DataFrame(columns=["method", *_collapse.CURVE_COLUMNS])
    return pd.concat(frames, ignore_index=True)


@st.cache_data(show_spinner="Computing collapse signals for every level…", max_entries=64)
def method_collapse_curves(path: str, mtime: float, method: str) -> pd.DataFrame:
    """:func:`analysis.collapse.collapse_curves` of one method (with its ``method`` column)."""
    return _collapse.collapse_curves(get_run(path, mtime), [method])


@st.cache_data(show_spinner="Running the collapse alarm…", max_entries=64)
def collapse_evaluation(path: str, mtime: float, metric: str, margin: float) -> pd.DataFrame:
    """The alarm fitted per method and scored against each ticket's labelled drop."""
    ref = _levels.dense_reference(get_run(path, mtime))  # one dense model for every method
    curves = collapse_curves(path, mtime)
    return _overview.collapse_evaluation_by_method(curves, metric, margin, reference=ref)


@st.cache_data(show_spinner=False, max_entries=64)
def overlap(path: str, mtime: float) -> pd.DataFrame:
    """:func:`analysis.overview.overlap_table`: tickets per kept weight, per rtl level."""
    return _overview.overlap_table(get_run(path, mtime))


@st.cache_data(show_spinner=False, max_entries=64)
def alarm_summary(
    path: str, mtime: float, metric: str, margin: float, methods: tuple[str, ...]
) -> pd.DataFrame:
    """:func:`analysis.collapse.alarm_summary` per method of the chosen methods."""
    ev = collapse_evaluation(path, mtime, metric, margin)
    return _collapse.alarm_summary(ev[ev["method"].isin(methods)], ["method"])


@st.cache_data(show_spinner="Running the collapse alarm…", max_entries=64)
def alarm_trace(path: str, mtime: float, method: str) -> dict:
    """The fitted label-free alarm of one method: its per-level trace and where it fired."""
    curves = collapse_curves(path, mtime)
    alarm = _collapse.CollapseAlarm().fit(curves[curves["method"] == method])
    return {
        "trace": alarm.trace_,
        "fired": alarm.fired_,
        "level": alarm.level_,
        "sparsity": alarm.sparsity_,
        "criteria": alarm.criteria_,
        "first_levels": alarm.first_levels_,
    }


@st.cache_data(show_spinner=False, max_entries=64)
def alarm_overview(path: str, mtime: float, metric: str, margin: float) -> pd.DataFrame:
    """One row per method: where the alarm fired and where the labelled metric dropped."""
    return _overview.alarm_overview(collapse_evaluation(path, mtime, metric, margin))


@st.cache_data(show_spinner="Running the frozen label-free alarm…", max_entries=16)
def frozen_alarm(path: str, mtime: float, methods: tuple[str, ...]) -> dict:
    """The frozen alarm (:func:`analysis.alarm.run_alarm`) of a run: rule, per-ticket levels, signals read."""
    run = get_run(path, mtime)
    params = _alarm.load_alarm_params()
    table = _alarm.alarm_signal_table(run, list(methods))
    return {
        "rule": params.description,
        "fallback": " or ".join(r.name for r in params.fallback),
        "created": params.created,
        "calibration": [c["name"] for c in params.calibration],
        "alarm": _alarm.run_alarm(run, params, methods=list(methods), table=table),
        "signals": table,
    }


@st.cache_data(show_spinner=False, max_entries=64)
def frozen_alarm_evidence(path: str, mtime: float, methods: tuple[str, ...], method: str, ticket: int | None):
    """:func:`analysis.alarm.alarm_evidence` of one method (and ticket)."""
    return _alarm.alarm_evidence(frozen_alarm(path, mtime, methods)["signals"], method, ticket=ticket)


@st.cache_data(show_spinner=False, ttl=60)
def alarm_evaluation() -> pd.DataFrame:
    """The committed held-out evaluation of the frozen alarm and its rivals (labelled: other sweeps)."""
    return _alarm.load_alarm_evaluation()


# ----------------------------------------------------------------------------- similarity


@st.cache_data(show_spinner="Comparing ticket masks at every level…", max_entries=32)
def similarity(path: str, mtime: float, method: str) -> pd.DataFrame:
    """:func:`analysis.similarity.similarity_table` (global and per layer) of one method."""
    return _similarity.similarity_table(get_run(path, mtime), method, layers=True)


@st.cache_data(show_spinner=False, max_entries=32)
def similarity_by_level(path: str, mtime: float, method: str) -> pd.DataFrame:
    """Mean pair measures per level and layer (similarity against sparsity)."""
    return _similarity.level_similarity_summary(similarity(path, mtime, method))


@st.cache_data(show_spinner=False, max_entries=32)
def similarity_summary(path: str, mtime: float, methods: tuple[str, ...]) -> pd.DataFrame:
    """:func:`level_similarity_summary` of several methods, with a leading ``method`` column."""
    frames = []
    for method in methods:
        df = similarity_by_level(path, mtime, method).copy()
        df.insert(0, "method", method)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@st.cache_data(show_spinner=False, max_entries=32)
def disjoint_layers(path: str, mtime: float, method: str) -> list[str]:
    """Layers whose rows are disjoint by construction (detector heads), left out of the layer mean."""
    run = get_run(path, mtime)
    return _similarity.disjoint_layers(_similarity.method_shared_rows(run, method))


@st.cache_data(show_spinner=False, max_entries=32)
def layer_shares(path: str, mtime: float, method: str) -> dict[str, float]:
    """Each prunable layer's share of the weights (:func:`analysis.similarity.layer_shares`)."""
    run = get_run(path, mtime)
    return _similarity.layer_shares(run.masks(method, run.levels(method)[0]))


@st.cache_data(show_spinner=False, max_entries=128)
def similarity_matrix(
    path: str, mtime: float, method: str, level: int, layer: str, value: str, tickets: tuple[str, ...]
) -> dict:
    """One ticket x ticket matrix of a pair measure, its mean chance level and a colour range.

    Returns
    -------
    dict
        ``matrix`` (DataFrame K x K over ``tickets``), ``chance`` (mean
        ``jaccard_chance`` over the pairs shown), ``pairs`` (the pair rows),
        ``zmin`` / ``zmax`` (the range of the off-diagonal values, so the
        diagonal's 1 does not flatten the contrast between pairs).
    """
    from analysis.pair_limits import check_pair_count, max_pair_tickets

    check_pair_count(len(tickets), "chosen tickets", limit=max_pair_tickets())  # K x K: bounded
    table = similarity(path, mtime, method)
    names = get_run(path, mtime).ticket_names(method)
    chosen = [t for t in tickets if t in names]
    if len(names) > max_pair_tickets() and not set(chosen) <= set(table["ticket_a"]) | set(table["ticket_b"]):
        # Past the limit the cached table holds a sample: compare exactly the chosen tickets.
        table = _similarity.similarity_table(get_run(path, mtime), method, [level], tickets=chosen)
    rows = table[(table["level"] == level) & (table["layer"] == layer)]
    rows = rows[rows["ticket_a"].isin(tickets) & rows["ticket_b"].isin(tickets)]
    matrix = _similarity.pair_matrix(rows, value, level=level, layer=layer, tickets=list(tickets))
    lo, hi = rows[value].min(), rows[value].max()
    if pd.isna(lo) or pd.isna(hi):
        lo, hi = 0.0, 1.0
    elif hi - lo < 1e-6:  # all pairs alike: a small window around the common value
        lo, hi = lo - 0.05, hi + 0.05
    return {
        "matrix": matrix,
        "chance": float(rows["jaccard_chance"].mean()),
        "pairs": rows.reset_index(drop=True),
        "zmin": float(lo),
        "zmax": float(hi),
    }


# ----------------------------------------------------------------------------- collapse, per method


@st.cache_data(show_spinner=False, max_entries=64)
def method_curves(path: str, mtime: float, method: str) -> pd.DataFrame:
    """Collapse curves of one method (without the ``method`` column)."""
    curves = collapse_curves(path, mtime)
    return curves[curves["method"] == method].drop(columns="method").reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=64)
def curve_signals(path: str, mtime: float, method: str, ticket: int | None) -> dict[str, list[str]]:
    """Signals present for one ticket (None: the aggregate rows), split into label-free and labelled."""
    from analysis.figures.ticket_collapse import LABEL_FREE_SIGNALS

    curves = method_curves(path, mtime, method)
    rows = curves[curves["ticket"].isna()] if ticket is None else curves[curves["ticket"] == ticket]
    present = list(dict.fromkeys(rows["signal"]))
    free = [s for s in LABEL_FREE_SIGNALS if s in present]
    return {"label_free": free, "labelled": [s for s in present if s not in LABEL_FREE_SIGNALS]}


@st.cache_data(show_spinner=False, max_entries=64)
def chance_band(path: str, mtime: float, method: str, ticket: str | None) -> pd.DataFrame:
    """:func:`analysis.chance.chance_band` of one method's pairs (of one ticket, or all)."""
    from analysis.chance import chance_band as _band

    return _band(similarity(path, mtime, method), ticket)


@st.cache_data(show_spinner=False, max_entries=64)
def labelled_points(path: str, mtime: float, method: str, metric: str, margin: float) -> pd.DataFrame:
    """Each ticket's labelled collapse point (first level ``margin`` below its dense value)."""
    run = get_run(path, mtime)
    ref = _levels.dense_reference(run, method)
    rows = None if ref is None else method_curves(path, mtime, ref[0])
    rows = None if rows is None else rows[rows["level"] == ref[1]]
    curves = method_curves(path, mtime, method)
    return _collapse.labelled_collapse_points(curves, metric, margin, reference=rows)


# ----------------------------------------------------------------------------- fairness


def fairness_metrics(path: str, mtime: float) -> list[str]:
    """Metrics the per-group views offer: the binary ones too when the task has two classes."""
    from analysis.fairness import BINARY_METRICS, METRICS

    classes = get_run(path, mtime).manifest.get("dataset", {}).get("classes", [])
    return [*METRICS, *(BINARY_METRICS if len(classes) == 2 else ())]


@st.cache_data(show_spinner="Bootstrapping per-group intervals…", max_entries=64)
def group_table(
    path: str,
    mtime: float,
    method: str,
    level: int,
    group_by: tuple[str, ...],
    pred_col: str,
    min_count: int,
    metric: str,
) -> pd.DataFrame:
    """:func:`analysis.fairness.group_metrics` of one metric, one method, one level (1000 resamples)."""
    from analysis.fairness import group_metrics

    preds = get_run(path, mtime).predictions(method, level)
    return group_metrics(
        preds, list(group_by), pred_col=pred_col, min_count=min_count, n_boot=1000, metrics=[metric]
    )


@st.cache_data(show_spinner="Computing group gaps of one method at every level…", max_entries=128)
def _method_gaps(
    path: str, mtime: float, method: str, group_by: tuple[str, ...], min_count: int, metric: str
) -> pd.DataFrame:
    from analysis.fairness import run_fairness_gaps

    return run_fairness_gaps(
        get_run(path, mtime), list(group_by), [method], min_count=min_count, metrics=[metric]
    )


def fairness_gaps(
    path: str, mtime: float, methods: tuple[str, ...], group_by: tuple[str, ...], min_count: int, metric: str
) -> pd.DataFrame:
    """:func:`analysis.fairness.run_fairness_gaps` of one metric, cached per method."""
    return pd.concat(
        [_method_gaps(path, mtime, m, group_by, min_count, metric) for m in methods], ignore_index=True
    )


@st.cache_data(show_spinner="Computing each group's drop at every level…", max_entries=32)
def group_drops(
    path: str, mtime: float, method: str, group_by: tuple[str, ...], min_count: int, metric: str
) -> pd.DataFrame:
    """:func:`analysis.fairness.run_group_drops` of one metric and one method."""
    from analysis.fairness import run_group_drops

    return run_group_drops(
        get_run(path, mtime), list(group_by), [method], min_count=min_count, metrics=[metric]
    )


@st.cache_data(show_spinner=False, max_entries=64)
def prediction_columns(path: str, mtime: float, method: str, level: int) -> list[str]:
    """The ``pred`` / ``pred_<routing>`` columns of a level's predictions."""
    from analysis.metrics import routing_columns

    preds = get_run(path, mtime).predictions(method, level)
    return ["pred", *[c for c in routing_columns(preds).values() if c != "pred"]]


# ----------------------------------------------------------------------------- projection

_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None
_warm_now = threading.Event()  # set by the Projection page: compile now, idle or not


def warm_up_projection(path: str) -> None:
    """Start, once per server process, a background UMAP fit on a run's tickets.

    UMAP's numba kernels compile on their first use on a machine (10-20 s on a
    small one; later processes import umap and load them from numba's disk cache,
    :func:`analysis.projection.import_umap`); doing it while the
    user reads the first page keeps the Projection page quick. The fit waits until the server is idle
    (:func:`_wait_until_idle`: no page computing), so that it does not take the
    CPU from the page the user opens next; the Projection page starts it at
    once (:func:`wait_for_warm_up`). The result is discarded; errors are left
    to the page.
    """
    global _warm_thread
    with _warm_lock:
        if _warm_thread is not None:
            return

        def work() -> None:
            _wait_until_idle()
            try:
                from analysis.projection import ticket_map_table

                run = load_run(path)
                ticket_map_table(run, run.methods, None, joint=True)
            except Exception:  # noqa: BLE001 - a warm-up only; the page reports real errors
                pass

        _warm_thread = threading.Thread(target=work, name="umap-warm-up", daemon=True)
        _warm_thread.start()


def _wait_until_idle(quiet: float = 1.0, busy_share: float = 0.25) -> None:
    """Return once the process used under ``busy_share`` of a CPU for ``quiet`` seconds, or when asked.

    The process CPU time counts every thread (every session's page runs); the
    Projection page's request (:data:`_warm_now`) ends the wait at once.
    """
    while True:
        cpu = time.process_time()
        if _warm_now.wait(quiet) or time.process_time() - cpu < busy_share * quiet:
            return


def wait_for_warm_up() -> None:
    """Wait (with a spinner) for :func:`warm_up_projection` to finish compiling (starting it if it waits)."""
    _warm_now.set()
    thread = _warm_thread
    if thread is not None and thread.is_alive():
        with st.spinner("Loading UMAP (compiled once per machine)…"):
            thread.join()


@st.cache_data(show_spinner="Laying out the tickets (UMAP)…", max_entries=32)
def ticket_map(path: str, mtime: float, methods: tuple[str, ...], levels: tuple[int, ...] | None) -> dict:
    """:func:`analysis.projection.ticket_map_table`: one joint map of the chosen tickets.

    Only methods whose prunable layers have the same shapes can share a map: the
    method with the most tickets sets the layer shapes, the others are left out.

    Returns
    -------
    dict
        ``table`` (the map) and ``left_out`` (list of methods with other layers).
    """
    from analysis.projection import ticket_map_table

    caps = capabilities(path, mtime).set_index("method").loc[list(methods)]
    lead = caps["n_tickets"].idxmax()
    same = [m for m in methods if caps.loc[m, "layers"] == caps.loc[lead, "layers"]]
    run = get_run(path, mtime)
    table = ticket_map_table(run, same, None if levels is None else list(levels), joint=True)
    return {"table": table, "left_out": [m for m in methods if m not in same]}


@st.cache_data(show_spinner="Testing semantic alignment (Mantel permutations)…", max_entries=32)
def alignment(path: str, mtime: float, method: str) -> pd.DataFrame | None:
    """:func:`analysis.projection.alignment_table` against the shipped class similarity.

    None when the method's tickets are not the classes of that reference (e.g.
    cluster tickets or another data set).
    """
    from analysis.projection import alignment_table

    try:
        return alignment_table(get_run(path, mtime), method)
    except KeyError:
        return None


@st.cache_data(show_spinner=False, max_entries=32)
def alignment_facts(path: str, mtime: float, method: str) -> dict:
    """:func:`analysis.projection.alignment_facts`: layers left out, the control's strength, a verdict."""
    from analysis.projection import alignment_facts as _facts

    return _facts(get_run(path, mtime), method, alignment(path, mtime, method))


# ----------------------------------------------------------------------------- coding cost


@st.cache_data(show_spinner="Counting mask coding costs…", max_entries=32)
def coding(path: str, mtime: float, method: str) -> pd.DataFrame:
    """:func:`analysis.coding.coding_table` of one method at every level."""
    from analysis.coding import coding_table

    return coding_table(get_run(path, mtime), method)


@st.cache_data(show_spinner=False, max_entries=32)
def coding_summary(path: str, mtime: float, method: str) -> pd.DataFrame:
    """Mean per-ticket costs per level (:func:`analysis.coding.coding_level_summary`)."""
    from analysis.coding import coding_level_summary

    return coding_level_summary(coding(path, mtime, method))


@st.cache_data(show_spinner="Counting joint mask patterns…", max_entries=32)
def joint_coding(path: str, mtime: float, method: str) -> pd.DataFrame:
    """:func:`analysis.coding.joint_coding_table` of one method at every level."""
    from analysis.coding import joint_coding_table

    return joint_coding_table(get_run(path, mtime), method)


# ----------------------------------------------------------------------------- attention


@st.cache_data(show_spinner=False, max_entries=64)
def attention_status(path: str, mtime: float, method: str) -> dict:
    """Whether the tickets of ``method`` can be probed (``reason`` None) and at which levels."""
    from analysis.attention_sweep import attention_unavailable, probe_levels

    run = get_run(path, mtime)
    reason = attention_unavailable(run, method)
    return {"reason": reason, "levels": probe_levels(run, method) if reason is None else []}


@st.cache_data(show_spinner="Probing the tickets' attention (rebuilding each ViT ticket)…", max_entries=32)
def attention(path: str, mtime: float, method: str, tickets: tuple[int, ...]) -> dict:
    """Per-head entropy of the chosen tickets at every probed level, its mean over probe images
    with intervals, the trend against sparsity, and a one-sentence verdict per image set."""
    from analysis.attention_sweep import (
        ALL_IMAGES,
        OWN_IMAGES,
        attention_level_summary,
        attention_probe_tables,
        attention_trend,
        attention_verdict,
    )

    run = get_run(path, mtime)
    ref = _levels.dense_reference(run, method)  # the dense model trained on all the data
    tables = attention_probe_tables(run, method, list(tickets), reference=ref)
    summary = attention_level_summary(tables["heads"], tables["images"], reference=tables["reference"])
    trend = attention_trend(summary)
    return {
        "dense": tables["dense"],
        "sweep": tables["heads"],
        "summary": summary,
        "trend": trend,
        "verdict": {s: attention_verdict(trend, s) for s in (OWN_IMAGES, ALL_IMAGES)},
    }


# ----------------------------------------------------------------------------- reconstruction (INR)


@st.cache_data(show_spinner=False, max_entries=32)
def is_inr_run(path: str, mtime: float) -> bool:
    """:func:`analysis.reconstruction.is_inr_run`."""
    from analysis.reconstruction import is_inr_run as _is

    return _is(get_run(path, mtime))


@st.cache_data(show_spinner=False, max_entries=32)
def inr_methods(path: str, mtime: float) -> pd.DataFrame:
    """:func:`analysis.reconstruction.inr_methods`: one row per method (image, base)."""
    from analysis.reconstruction import inr_methods as _methods

    return _methods(get_run(path, mtime))


@st.cache_data(show_spinner="Scoring the reconstructions (PSNR per region)…", max_entries=32)
def psnr_table(path: str, mtime: float, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """:func:`analysis.reconstruction.psnr_table` of the given methods (all when None)."""
    from analysis.reconstruction import psnr_table as _table

    return _table(get_run(path, mtime), None if methods is None else list(methods))


@st.cache_data(show_spinner=False, max_entries=32)
def region_gaps(path: str, mtime: float, methods: tuple[str, ...]) -> pd.DataFrame:
    """:func:`analysis.reconstruction.region_gaps` of :func:`psnr_table`."""
    from analysis.reconstruction import region_gaps as _gaps

    return _gaps(psnr_table(path, mtime, methods))


@st.cache_resource(show_spinner=False, max_entries=8)
def run_images(path: str, mtime: float) -> dict:
    """:func:`analysis.reconstruction.run_images` (shared, read-only arrays)."""
    from analysis.reconstruction import run_images as _images

    return _images(get_run(path, mtime))


@st.cache_resource(show_spinner=False, max_entries=64)
def reconstruction(path: str, mtime: float, method: str, level: int):
    """The reconstructed image of a method at a level (shared, read-only uint8 array)."""
    from analysis.reconstruction import reconstruction as _rec

    return _rec(get_run(path, mtime), method, level)


@st.cache_data(show_spinner="Comparing region masks…", max_entries=32)
def psnr_similarity(path: str, mtime: float, sparsity: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`analysis.reconstruction.psnr_similarity_correlation` at a sparsity."""
    from analysis.reconstruction import psnr_similarity_correlation

    return psnr_similarity_correlation(get_run(path, mtime), sparsity)


@st.cache_data(show_spinner=False, max_entries=32)
def reconstruction_paper_table(path: str, mtime: float) -> pd.DataFrame:
    """Whole-image PSNR at the levels nearest the paper's sparsities, next to the paper's figures."""
    from analysis.reconstruction import paper_comparison, paper_table

    return paper_table(paper_comparison(psnr_table(path, mtime)))


# ----------------------------------------------------------------------------- denoising (speech)


@st.cache_data(show_spinner=False, max_entries=32)
def is_speech_run(path: str, mtime: float) -> bool:
    """:func:`analysis.denoising.is_speech_run`."""
    from analysis.denoising import is_speech_run as _is

    return _is(get_run(path, mtime))


@st.cache_data(show_spinner="Bootstrapping SI-SNRi intervals at every level…", max_entries=32)
def denoising_table(path: str, mtime: float, methods: tuple[str, ...]) -> pd.DataFrame:
    """:func:`analysis.denoising.denoising_table` (1000 resamples, once per run and methods)."""
    from analysis.denoising import denoising_table as _table

    return _table(get_run(path, mtime), list(methods))


@st.cache_data(show_spinner=False, max_entries=32)
def denoising_paper(path: str, mtime: float, methods: tuple[str, ...]) -> pd.DataFrame:
    """:func:`analysis.denoising.paper_comparison` of :func:`denoising_table`."""
    from analysis.denoising import paper_comparison

    return paper_comparison(denoising_table(path, mtime, methods))


@st.cache_data(show_spinner="Loading the listening examples…", max_entries=32)
def listening_examples(path: str, mtime: float, levels: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    """:func:`analysis.denoising.listening_examples` at ``{method: level}`` (given as pairs)."""
    from analysis.denoising import listening_examples as _clips

    level_of = dict(levels)
    return _clips(get_run(path, mtime), list(level_of), level_of)


# ----------------------------------------------------------------------------- report


@st.cache_data(show_spinner=False, max_entries=4)
def report_html(path: str, mtime: float) -> str:
    """:func:`analysis.report.build_report` of a run (built when the download is clicked)."""
    from analysis.report import build_report

    return build_report(get_run(path, mtime))


# ----------------------------------------------------------------------------- run groups: across seeds
#
# Keyed by the group folder and the tuple of its finished runs' mtimes (a seed
# that gains a level, or a new finished seed, changes the key). The per-seed
# tables come from the per-run accessors above, so a seed already opened alone
# is not recomputed.


@st.cache_data(ttl=5, show_spinner=False)
def group_of(path: str) -> dict | None:
    """The run group a run belongs to: ``{"path", "name", "seeds", "runs"}`` of its finished runs.

    ``runs`` are the folders of the group's readable runs, ``seeds`` their seeds
    (aligned). None when ``path`` is not a run of a group.
    """
    from artifacts.run_format import is_group

    parent = Path(path).parent
    if not is_group(parent):
        return None
    try:
        group = load_group(parent)
    except RunFormatError:
        return None
    members = dict(zip(group.run_names, group.seeds, strict=True))
    if Path(path).name not in members:
        return None
    runs, seeds = [], []
    for name, seed in members.items():
        try:
            checked_run(group.path / name)
        except RunFormatError:  # a seed a running sweep has not finished a level of yet
            continue
        runs.append(str(group.path / name))
        seeds.append(int(seed))
    partition = ((group.manifest.get("description") or {}).get("data") or {}).get("partition")
    return {
        "path": str(group.path),
        "name": group.name,
        "seeds": seeds,
        "runs": runs,
        "partition": partition,
        "opened": str(group.path / Path(path).name),
    }


def group_mtimes(group: dict) -> tuple[float, ...]:
    """Current modification times of a group's runs (the second half of the across-seed cache keys)."""
    return tuple(run_mtime(p) for p in group["runs"])


def _stacked(group: dict, mtimes: tuple[float, ...], table) -> pd.DataFrame:
    frames = []
    for path, mtime, seed in zip(group["runs"], mtimes, group["seeds"], strict=True):
        df = table(path, mtime).copy()
        df.insert(0, "seed", seed)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _group_arg(path: str, runs: tuple[str, ...], seeds: tuple[int, ...]) -> dict:
    return {"path": path, "runs": list(runs), "seeds": list(seeds)}


@st.cache_data(show_spinner="Scoring every seed…", max_entries=16)
def seed_results(
    path: str,
    runs: tuple[str, ...],
    seeds: tuple[int, ...],
    mtimes: tuple[float, ...],
    opened: str | None = None,
) -> pd.DataFrame:
    """:func:`analysis.seeds.across_seeds` of the results table (keys ``method, level, metric``).

    The opened run's table is :func:`results` (already computed for its own
    rows); the other seeds' are :func:`_scored_results` (the same numbers).
    """
    from analysis.seeds import SEED_TABLES, across_seeds

    def table(p: str, m: float) -> pd.DataFrame:
        return results(p, m) if p == opened else _scored_results(p, m)

    stacked = _stacked(_group_arg(path, runs, seeds), mtimes, table)
    _, keys, values = SEED_TABLES["results"]
    return across_seeds(stacked, keys, values)


def seed_results_pm(
    group: dict, methods: tuple[str, ...], levels: tuple[tuple[str, int], ...]
) -> pd.DataFrame:
    """Results across seeds as ``mean ± half-width`` cells, for the (method, level) pairs given."""
    from analysis.seeds import mean_pm_table

    res = seed_results(
        group["path"], tuple(group["runs"]), tuple(group["seeds"]), group_mtimes(group), group.get("opened")
    )
    pairs = set(levels)
    keep = [(m, int(lv)) in pairs and m in methods for m, lv in zip(res["method"], res["level"], strict=True)]
    return mean_pm_table(res[keep])


def _similarity_stack(path: str, mtime: float, methods: tuple[str, ...]) -> pd.DataFrame:
    from analysis.similarity import GLOBAL, LAYER_MEAN

    df = similarity_summary(path, mtime, methods)
    return df[df["layer"].isin([GLOBAL, LAYER_MEAN])]


@st.cache_data(show_spinner="Comparing ticket masks of every seed…", max_entries=16)
def seed_similarity_stacked(
    path: str,
    runs: tuple[str, ...],
    seeds: tuple[int, ...],
    mtimes: tuple[float, ...],
    methods: tuple[str, ...],
) -> pd.DataFrame:
    """Per-seed mean pair measures (pooled and equal layer weight), stacked with a ``seed`` column."""
    group = _group_arg(path, runs, seeds)
    return _stacked(group, mtimes, lambda p, m: _similarity_stack(p, m, methods))


def seed_similarity(group: dict, methods: tuple[str, ...]) -> pd.DataFrame:
    """:func:`analysis.seeds.across_seeds` of the similarity curves (keys ``method, level, layer``)."""
    from analysis.seeds import SEED_TABLES, across_seeds

    stacked = seed_similarity_stacked(
        group["path"], tuple(group["runs"]), tuple(group["seeds"]), group_mtimes(group), methods
    )
    _, keys, values = SEED_TABLES["similarity"]
    return across_seeds(stacked, keys, [v for v in values if v in stacked.columns])


@st.cache_data(show_spinner="Computing collapse signals of every seed…", max_entries=16)
def seed_collapse(
    path: str, runs: tuple[str, ...], seeds: tuple[int, ...], mtimes: tuple[float, ...]
) -> pd.DataFrame:
    """:func:`analysis.seeds.across_seeds` of the collapse curves (keys ``method, level, ticket, signal``)."""
    from analysis.seeds import SEED_TABLES, across_seeds

    stacked = _stacked(_group_arg(path, runs, seeds), mtimes, collapse_curves)
    _, keys, values = SEED_TABLES["collapse"]
    return across_seeds(stacked, keys, values)


def seed_method_curves(group: dict, method: str) -> pd.DataFrame:
    """Collapse curves across seeds of one method, computing that method only.

    The rows are those of :func:`seed_collapse` for the method (tested),
    possibly in another order: the all-method table orders its (level,
    ticket, signal) blocks by their first appearance in any method. The band
    figures sort by sparsity, so they draw the same lines. When the seeds
    disagree on having the method, the all-method table is read instead.
    """
    key = (group["path"], tuple(group["runs"]), tuple(group["seeds"]), group_mtimes(group))
    out = _seed_one_method(*key, method)
    if out is None:
        out = seed_collapse(*key)
        out = out[out["method"] == method].reset_index(drop=True)
    return out


@st.cache_data(show_spinner="Computing collapse signals of every seed…", max_entries=32)
def _seed_one_method(
    path: str, runs: tuple[str, ...], seeds: tuple[int, ...], mtimes: tuple[float, ...], method: str
) -> pd.DataFrame | None:
    from analysis.seeds import SEED_COLUMNS, SEED_TABLES, across_seeds

    _, keys, values = SEED_TABLES["collapse"]
    has = [method in classification_methods(p, m) for p, m in zip(runs, mtimes, strict=True)]
    if not any(has):
        return pd.DataFrame(columns=[*keys, "sparsity", *SEED_COLUMNS])
    if not all(has):
        return None
    stacked = _stacked(
        _group_arg(path, runs, seeds), mtimes, lambda p, m: method_collapse_curves(p, m, method)
    )
    return across_seeds(stacked, keys, values)


@st.cache_data(ttl=5, show_spinner=False)
def null_control(group_path: str) -> dict | None:
    """The random-partition control group beside ``group_path`` (:func:`analysis.seeds.find_null_control`).

    Returns ``{"path", "name", "seeds", "runs"}`` of its finished runs, or None.
    """
    from analysis.seeds import find_null_control

    found = find_null_control(group_path)
    if found is None:
        return None
    group = load_group(found)
    runs, seeds = [], []
    for name, seed in zip(group.run_names, group.seeds, strict=True):
        try:
            checked_run(group.path / name)
        except RunFormatError:
            continue
        runs.append(str(group.path / name))
        seeds.append(int(seed))
    if not runs:
        return None
    return {"path": str(group.path), "name": group.name, "seeds": seeds, "runs": runs}


@st.cache_data(show_spinner="Comparing with the random-partition control…", max_entries=16)
def _null_similarity(real: tuple, null: tuple, methods: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    from analysis.seeds import null_long, null_similarity_table

    r = seed_similarity_stacked(*real, methods)
    n = seed_similarity_stacked(*null, methods)
    table = null_similarity_table(None, None, methods, real_stacked=r, null_stacked=n)
    return {"table": table, "long": null_long(table)}


def null_similarity(group: dict, null: dict, methods: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """:func:`analysis.seeds.null_similarity_table` (``table``) and its long form (``long``)."""

    def key(g: dict) -> tuple:
        return (g["path"], tuple(g["runs"]), tuple(g["seeds"]), group_mtimes(g))

    def methods_of(g: dict) -> set[str]:
        return set.intersection(*(set(run_methods(p)) for p in g["runs"]))

    both = methods_of(group) & methods_of(null)  # a control drops the single-ticket baseline
    return _null_similarity(key(group), key(null), tuple(m for m in methods if m in both))


def _attention_rows(path: str, mtime: float, method: str, tickets: tuple[int, ...]) -> pd.DataFrame:
    """One seed's rows of :data:`analysis.seeds.SEED_TABLES` ``"attention"``, from the per-run cache."""
    df = attention(path, mtime, method, tickets)["summary"].copy()
    df.insert(0, "method", method)
    return df


@st.cache_data(show_spinner="Probing the tickets' attention in every seed…", max_entries=16)
def _seed_attention(
    path: str,
    runs: tuple[str, ...],
    seeds: tuple[int, ...],
    mtimes: tuple[float, ...],
    method: str,
    tickets: tuple[int, ...],
) -> dict:
    from analysis.seeds import SEED_TABLES, across_seeds

    skipped, ok = {}, []
    for run, seed, mtime in zip(runs, seeds, mtimes, strict=True):
        reason = attention_status(run, mtime, method)["reason"]
        if reason is None:
            ok.append((run, seed, mtime))
        else:
            skipped[seed] = reason
    if not ok:
        return {"table": None, "seeds": [], "skipped": skipped}
    use = _group_arg(path, tuple(r for r, _, _ in ok), tuple(s for _, s, _ in ok))
    stacked = _stacked(use, tuple(m for _, _, m in ok), lambda p, m: _attention_rows(p, m, method, tickets))
    _, keys, values = SEED_TABLES["attention"]
    return {"table": across_seeds(stacked, keys, values), "seeds": use["seeds"], "skipped": skipped}


def seed_attention(group: dict, method: str, tickets: tuple[int, ...]) -> dict:
    """Attention entropy of ``method``'s chosen tickets across the group's seeds.

    Returns ``{"table", "seeds", "skipped"}``: :func:`analysis.seeds.across_seeds`
    of the per-level summary (keys ``method, level, ticket, images, layer``,
    measures ``mean_entropy`` and ``entropy_change``; None when no seed can be
    probed), the seeds it averages, and ``{seed: reason}`` of the seeds left
    out (no weights kept, no probe batch).
    """
    return _seed_attention(
        group["path"],
        tuple(group["runs"]),
        tuple(group["seeds"]),
        group_mtimes(group),
        method,
        tuple(int(t) for t in tickets),
    )


@st.cache_data(show_spinner="Computing group gaps of every seed…", max_entries=16)
def _seed_fairness(
    path: str,
    runs: tuple[str, ...],
    seeds: tuple[int, ...],
    mtimes: tuple[float, ...],
    methods: tuple[str, ...],
    group_by: tuple[str, ...],
    min_count: int,
    metric: str,
) -> pd.DataFrame:
    from analysis.seeds import SEED_TABLES, across_seeds

    stacked = _stacked(
        _group_arg(path, runs, seeds),
        mtimes,
        lambda p, m: fairness_gaps(p, m, methods, group_by, min_count, metric),
    )
    _, keys, values = SEED_TABLES["fairness"]
    return across_seeds(stacked, keys, values)


def seed_fairness_gaps(
    group: dict, methods: tuple[str, ...], group_by: tuple[str, ...], min_count: int, metric: str
) -> pd.DataFrame:
    """Fairness gap statistics across seeds (keys ``method, level, group_by, metric, statistic``)."""
    return _seed_fairness(
        group["path"],
        tuple(group["runs"]),
        tuple(group["seeds"]),
        group_mtimes(group),
        methods,
        group_by,
        min_count,
        metric,
    )
