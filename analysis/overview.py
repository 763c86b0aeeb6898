"""What a run is and how its methods score: the tables of the dashboard's Overview page.

Every function reads a :class:`~artifacts.run_format.Run` (or a table made
from one) and returns a tidy :class:`pandas.DataFrame`; nothing here renders.

Results table (:func:`results_table`), one row per (method, level, metric):

method : str
level : int
sparsity : float
    Fraction of prunable weights removed at that level (mean over tickets), 0..1.
metric : str
    - the aggregate rows of :func:`analysis.metrics.ticket_metrics`:
      ``auroc``, ``average_precision`` (threshold-free, from the stored
      scores), ``balanced_accuracy`` (one threshold rule for every method,
      chosen on held-out samples), ``balanced_accuracy_prior``,
      ``balanced_accuracy_own``, ``precision``, ``recall`` (each method's own
      rule, as the paper reports them), all averaged over tickets;
    - ``accuracy``: K-way accuracy under the method's default routing;
      ``accuracy_<routing>`` under each routing the run recorded (for
      detectors not ``oracle``: that counts ``pooled_recall``);
    - ``params_union``: weights kept by at least one ticket (what a method
      whose tickets share one network stores); ``params_total``: the
      parameter count the run wrote for the method (``level.json``; for
      independent networks the sum over tickets).

    For other methods (e.g. an implicit neural representation scored by
    PSNR), and for imported runs, which hold no predictions, the numeric
    summary metrics the run wrote to ``level.json`` (an OpenLTH import's
    ``test_accuracy``: the mean over tickets of what the source logged), and
    the parameter counts.
value : float
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.levels import nearest_level
from analysis.levels import paper_levels as _paper_levels
from analysis.metrics import ticket_metrics
from analysis.table import METRIC_ORDER

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "RESULT_COLUMNS",
    "alarm_overview",
    "nm_structure_table",
    "overlap_table",
    "closest_level",
    "collapse_evaluation_by_method",
    "describe_run",
    "level_table",
    "method_capabilities",
    "method_table",
    "paper_levels",
    "paper_table",
    "results_table",
    "subset_table",
]

RESULT_COLUMNS = ["method", "level", "sparsity", "metric", "value"]
# Column order of the paper-style table: threshold-free, common threshold, the paper's own-rule rows, K-way.
_PAPER_ORDER = [m for m in METRIC_ORDER if m != "params"]
_PARAM_METRICS = ["params_union", "params_total"]
# Accuracies imported sources log (OpenLTH, pytorch/examples), tried when predictions are absent.
_LOGGED_ACCURACY = ("test_accuracy", "best_acc1", "val_accuracy")
EXPERT_METRIC = "subset_accuracy_oracle"


def _fmt_int(n: object) -> str:
    return f"{int(n):,}" if isinstance(n, int | np.integer) else str(n)


def describe_run(run: Run) -> pd.DataFrame:
    """What a run is: data, model, partition, methods, in plain words.

    Parameters
    ----------
    run : Run

    Returns
    -------
    DataFrame
        Columns ``section`` (``run``, ``data``, ``model``, ``partition``,
        ``methods``; an imported run has ``source`` in place of ``data`` and
        ``partition``), ``item`` and ``value`` (all str), one row per fact.
    """
    m = run.manifest
    data = m.get("dataset", {})
    model = m.get("model", {})
    part = m.get("partition", {})
    prunable = m.get("prunable", {})
    n_prunable = int(sum(int(np.prod(s)) for s in prunable.values()))
    rows: list[tuple[str, str, str]] = [
        ("run", "name", run.name),
        ("run", "folder", str(run.path)),
    ]
    for key in ("run_hash", "created", "git_commit"):
        if m.get(key):
            rows.append(("run", key, str(m[key])))
    source = m.get("source")
    if source and not data and not part:  # imported checkpoints: no data set, no partition
        return _describe_imported(run, source, n_prunable)
    rows.append(("data", "dataset", str(data.get("name", "?"))))
    classes = data.get("classes", [])
    if classes:
        rows.append(("data", "classes", f"{len(classes)}: {', '.join(map(str, classes))}"))
    for key in ("n_train", "n_val", "n_test"):
        if key in data:
            rows.append(("data", key, _fmt_int(data[key])))
    if "input_shape" in data:
        rows.append(("data", "input shape", " x ".join(map(str, data["input_shape"]))))
    rows.append(("data", "group columns", ", ".join(run.groups()) or "none"))
    name = str(model.get("name", "?"))
    rows.append(("model", "family", name))
    if name == "mlp" and "hidden" in model:
        rows.append(("model", "hidden", " - ".join(map(str, model["hidden"]))))
    elif name != "mlp":
        for key in ("dim", "depth", "heads", "patch", "mlp_ratio"):
            if key in model:
                rows.append(("model", key, str(model[key])))
    rows.append(("model", "prunable layers", str(len(prunable))))
    rows.append(("model", "prunable weights", _fmt_int(n_prunable)))
    rows.append(("partition", "kind", str(part.get("kind", "?"))))
    rows.append(("partition", "subsets (K)", str(part.get("k", len(part.get("names", []))))))
    if part.get("map"):
        rows.append(("partition", "class map", str(part["map"])))
    for method in run.methods:
        entry = m["methods"][method]
        levels = run.levels(method)
        rows.append(
            (
                "methods",
                method,
                f"{entry.get('description', '')} — {len(entry.get('tickets', []))} ticket(s), "
                f"levels {levels[0]}..{levels[-1]}, sparsity up to "
                f"{run.sparsity(method, levels[-1]):.1%}",
            )
        )
    return pd.DataFrame(rows, columns=["section", "item", "value"])


def _describe_imported(run: Run, source: Mapping, n_prunable: int) -> pd.DataFrame:
    """:func:`describe_run` of a run converted from other tools' checkpoints."""
    m = run.manifest
    rows: list[tuple[str, str, str]] = [("run", "name", run.name), ("run", "folder", str(run.path))]
    rows.append(("source", "format", str(source.get("format", "?"))))
    for path in source.get("paths", []):
        rows.append(("source", "path", str(path)))
    inferred = bool(source.get("inferred_masks"))
    rows.append(("source", "masks", "inferred from zero weights" if inferred else "read from the files"))
    rows.append(("model", "prunable layers", str(len(m.get("prunable", {})))))
    rows.append(("model", "prunable weights", _fmt_int(n_prunable)))
    for method in run.methods:
        tickets = [str(t) for t in m["methods"][method].get("tickets", [])]
        levels = run.levels(method)
        rows.append(
            (
                "methods",
                method,
                f"{len(tickets)} ticket(s): {', '.join(tickets)}; levels {levels[0]}..{levels[-1]}, "
                f"sparsity up to {run.sparsity(method, levels[-1]):.1%}",
            )
        )
    return pd.DataFrame(rows, columns=["section", "item", "value"])


def subset_table(run: Run) -> pd.DataFrame:
    """The K subsets of the partition: names, their classes, evaluation samples.

    Parameters
    ----------
    run : Run

    Returns
    -------
    DataFrame
        Columns ``subset`` (int), ``name`` (str), ``classes`` (str, comma-joined;
        empty for a k-means partition), ``n_test`` (int, evaluation samples
        routed to the subset by the oracle).
    """
    part = run.manifest.get("partition", {})
    names = [str(n) for n in part.get("names", [])]
    classes = part.get("classes") or [[] for _ in names]
    method = run.methods[0]
    pred = run.predictions(method, run.levels(method)[0])
    counts = pred["subset"].value_counts()
    return pd.DataFrame(
        {
            "subset": np.arange(len(names), dtype=np.int64),
            "name": names,
            "classes": [", ".join(map(str, c)) for c in classes],
            "n_test": [int(counts.get(k, 0)) for k in range(len(names))],
        }
    )


def method_table(run: Run) -> pd.DataFrame:
    """One row per method of the run: how its tickets are used and how far it was pruned.

    Parameters
    ----------
    run : Run

    Returns
    -------
    DataFrame
        Columns ``method``, ``description``, ``ticket_kind``, ``n_tickets``
        (int), ``tickets`` (str), ``routings`` (str), ``default_routing``
        (str), ``n_levels`` (int), ``max_sparsity`` (float, 0..1).
    """
    rows = []
    for method in run.methods:
        e = run.manifest["methods"][method]
        levels = run.levels(method)
        tickets = [str(t) for t in e.get("tickets", [])]
        rows.append(
            (
                method,
                str(e.get("description", "")),
                str(e.get("ticket_kind", "")),
                len(tickets),
                ", ".join(tickets),
                ", ".join(map(str, e.get("routings", []))),
                str(e.get("default_routing") or ""),
                len(levels),
                run.sparsity(method, levels[-1]),
            )
        )
    cols = [
        "method",
        "description",
        "ticket_kind",
        "n_tickets",
        "tickets",
        "routings",
        "default_routing",
        "n_levels",
        "max_sparsity",
    ]
    return pd.DataFrame(rows, columns=cols)


def level_table(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Sparsity and parameter counts of every completed level.

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: every method of the run.

    Returns
    -------
    DataFrame
        Columns ``method``, ``level`` (int), ``sparsity`` (float), ``params_union``,
        ``params_total`` (Int64, ``<NA>`` when the run did not record them),
        ``train_seconds`` (float, NaN when not recorded).
    """
    rows = []
    for method in methods or run.methods:
        for level in run.levels(method):
            info = run.level_info(method, level)
            rows.append(
                (
                    method,
                    level,
                    float(info["sparsity"]),
                    info.get("params_union"),
                    info.get("params_total"),
                    float(info.get("train_seconds", np.nan)),
                )
            )
    cols = ["method", "level", "sparsity", *_PARAM_METRICS, "train_seconds"]
    df = pd.DataFrame(rows, columns=cols)
    df["level"] = df["level"].astype(np.int64)
    for c in _PARAM_METRICS:
        df[c] = df[c].astype("Int64")
    return df


def closest_level(run: Run, method: str, sparsity: float) -> int:
    """The completed level of ``method`` nearest ``sparsity`` (:func:`analysis.levels.nearest_level`).

    Parameters
    ----------
    run : Run
    method : str
    sparsity : float
        Target fraction of weights removed, 0..1.

    Returns
    -------
    int
        Ties go to the denser (lower) level.
    """
    return nearest_level(run, method, sparsity)


def results_table(
    run: Run,
    methods: Sequence[str] | None = None,
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    *,
    curves: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The paper's metrics, K-way accuracies and parameter counts per method and level.

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: every method of the run.
    levels : sequence of int or mapping of str to sequence of int, optional
        Levels to score: the same for every method (levels a method lacks are
        skipped), or per method. Default: every completed level.
    curves : DataFrame, optional
        :func:`analysis.collapse.collapse_curves` of the run, if already
        computed: their aggregate rows hold the same
        :func:`analysis.metrics.ticket_metrics` means, so the predictions are
        not scored twice. Methods or levels missing from it are scored here.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity, metric, value`` (module docstring),
        sorted by method (run order), level, then metric order.
    """
    caps = method_capabilities(run)
    classification = set(caps.loc[caps["classification"], "method"])
    scored: dict[tuple[str, int], pd.DataFrame] = {}
    if curves is not None and len(curves):
        agg = curves[curves["ticket"].isna()]
        for (m, lv), g in agg.groupby(["method", "level"], sort=False):
            scored[(str(m), int(lv))] = g.rename(columns={"signal": "metric"})[["metric", "value"]]
    rows: list[tuple[str, int, float, str, float]] = []
    for method in methods or run.methods:
        kind = run.manifest["methods"][method].get("ticket_kind", "detector")
        have = run.levels(method)
        if levels is None:
            want = have
        elif isinstance(levels, Mapping):
            want = [lv for lv in levels.get(method, []) if lv in have]
        else:
            want = [lv for lv in levels if lv in have]
        for level in sorted(set(want)):
            info = run.level_info(method, level)
            sp = float(info["sparsity"])
            scored_here = False
            if method in classification:
                agg = scored.get((method, level))
                if agg is None:
                    routing = run.manifest["methods"][method].get("default_routing")
                    metrics = ticket_metrics(run.predictions(method, level), kind, default_routing=routing)
                    agg = metrics[metrics["ticket"].isna()]
                for name, value in zip(agg["metric"], agg["value"], strict=True):
                    if name in _PAPER_ORDER or name.startswith("accuracy_"):
                        rows.append((method, level, sp, str(name), float(value)))
                        scored_here = True
            if not scored_here:  # an INR's PSNR, or the accuracy an imported source logged
                for name, value in (info.get("metrics") or {}).items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        rows.append((method, level, sp, str(name), float(value)))
            for p in _PARAM_METRICS:
                if info.get(p) is not None:
                    rows.append((method, level, sp, p, float(info[p])))
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    df["level"] = df["level"].astype(np.int64)
    return df


def paper_table(results: pd.DataFrame) -> pd.DataFrame:
    """The results as the paper prints them: one row per method and sparsity.

    Parameters
    ----------
    results : DataFrame
        Output of :func:`results_table`.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity``, then the metrics in the order of
        :data:`analysis.table.METRIC_ORDER` (``auroc, average_precision,
        balanced_accuracy, balanced_accuracy_prior, balanced_accuracy_own,
        precision, recall, accuracy``, the K-way figures), any
        other metric (e.g. ``psnr``), and ``params_union, params_total`` (Int64;
        those present); a metric a method does not have is NaN (``<NA>`` for counts).
    """
    if results.empty:
        return pd.DataFrame(columns=["method", "level", "sparsity", *_PAPER_ORDER])
    methods = list(dict.fromkeys(results["method"]))
    wide = results.pivot_table(
        index=["method", "level", "sparsity"], columns="metric", values="value", aggfunc="first"
    )
    present = list(wide.columns)
    routed = sorted(c for c in present if c.startswith("accuracy_") and c not in _PAPER_ORDER)
    params = [c for c in _PARAM_METRICS if c in present]
    known = [c for c in _PAPER_ORDER if c in present] + routed
    others = [c for c in present if c not in known and c not in params]  # e.g. psnr
    order = known + others + params
    wide = wide[order].reset_index()
    wide.columns.name = None
    wide["method"] = pd.Categorical(wide["method"], categories=methods, ordered=True)
    wide = wide.sort_values(["method", "level"]).reset_index(drop=True)
    wide["method"] = wide["method"].astype(str)
    for c in params:  # counts: the pivot made them float
        wide[c] = wide[c].round().astype("Int64")
    return wide


def alarm_overview(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Where the label-free collapse alarm fired, per method, next to the labelled drop.

    Parameters
    ----------
    evaluation : DataFrame
        Output of :func:`analysis.collapse.collapse_evaluation` (one row per
        method and ticket, plus the aggregate row with ``ticket`` ``<NA>``).

    Returns
    -------
    DataFrame
        One row per method: ``method``, ``fired`` (bool), ``alarm_level``
        (Int64), ``alarm_sparsity``, ``alarm_criteria`` (str), then for the
        mean over tickets ``collapse_level`` (Int64), ``collapse_sparsity``,
        ``lead_levels`` (Int64), ``outcome`` (bounded lead:
        :func:`analysis.collapse.evaluate_alarm`), ``sparsity_given_up`` and
        ``metric_lost`` (the regret of stopping at the alarm; NaN when the
        evaluation has none); ``tickets_hit`` / ``tickets_early`` /
        ``tickets_missed`` (int): tickets whose own drop the alarm caught
        1-2 levels ahead (``hit``), far too early (``early``) or not in time
        (``late`` or ``miss``); and ``metric``, the
        labelled signal of the drop (``evaluation["metric"]`` if present, else
        ``"balanced_accuracy"``).
    """
    cols = [
        "method",
        "fired",
        "alarm_level",
        "alarm_sparsity",
        "alarm_criteria",
        "collapse_level",
        "collapse_sparsity",
        "lead_levels",
        "outcome",
        "sparsity_given_up",
        "metric_lost",
        "tickets_hit",
        "tickets_early",
        "tickets_missed",
        "metric",
    ]
    rows = []
    for method, g in evaluation.groupby("method", sort=False):
        agg = g[g["ticket"].isna()]
        per = g[g["ticket"].notna()]
        a = agg.iloc[0] if len(agg) else g.iloc[0]
        rows.append(
            (
                method,
                bool(pd.notna(a["alarm_level"])),
                a["alarm_level"],
                a["alarm_sparsity"],
                str(a.get("alarm_criteria", "")),
                a["collapse_level"] if len(agg) else pd.NA,
                a["collapse_sparsity"] if len(agg) else np.nan,
                a["lead_levels"] if len(agg) else pd.NA,
                str(a["outcome"]) if len(agg) else "",
                float(a["sparsity_given_up"]) if len(agg) and "sparsity_given_up" in a else np.nan,
                float(a["metric_lost"]) if len(agg) and "metric_lost" in a else np.nan,
                int((per["outcome"] == "hit").sum()),
                int((per["outcome"] == "early").sum()),
                int(per["outcome"].isin(["late", "miss"]).sum()),
                str(a["metric"]) if "metric" in g.columns else "balanced_accuracy",
            )
        )
    out = pd.DataFrame(rows, columns=cols)
    for c in ("alarm_level", "collapse_level", "lead_levels"):
        out[c] = out[c].astype("Int64")
    for c in ("alarm_sparsity", "collapse_sparsity", "sparsity_given_up", "metric_lost"):
        out[c] = out[c].astype(np.float64)
    return out


def paper_levels(
    levels: pd.DataFrame, methods: Sequence[str], targets: Sequence[float] = (0.25, 0.5, 0.75)
) -> list[int]:
    """Levels nearest to the paper's reporting sparsities (:func:`analysis.levels.paper_levels`).

    Parameters
    ----------
    levels : DataFrame
        Output of :func:`level_table` (``method, level, sparsity``).
    methods : sequence of str
        Methods whose levels count.
    targets : sequence of float
        Target sparsities, 0..1.

    Returns
    -------
    list of int
        Distinct levels, ascending: each method's level nearest each target;
        ties go to the lower level. Empty when ``methods`` have no level.
    """
    return _paper_levels(levels, [m for m in methods if (levels["method"] == m).any()], targets)


def method_capabilities(run: Run) -> pd.DataFrame:
    """What each method's records allow: class metrics, ticket comparisons, shared layers.

    Parameters
    ----------
    run : Run

    Returns
    -------
    DataFrame
        One row per method: ``method``, ``ticket_kind`` (str), ``n_tickets``
        (int), ``classification`` (bool: the predictions hold ``label``,
        ``pred`` and ``subset`` columns and the ticket kind is one
        :func:`analysis.metrics.ticket_metrics` scores), ``layers`` (str:
        the prunable layer shapes, equal for methods whose masks can be compared
        or mapped together).
    """
    from analysis.metrics import TICKET_KINDS

    rows = []
    for method in run.methods:
        entry = run.manifest["methods"][method]
        kind = str(entry.get("ticket_kind", "detector"))
        preds = run.predictions(method, run.levels(method)[0])
        classification = kind in TICKET_KINDS and {"label", "pred", "subset"} <= set(preds.columns)
        shapes = entry.get("prunable") or run.manifest.get("prunable") or {}
        layers = ";".join(f"{n}:{'x'.join(map(str, s))}" for n, s in shapes.items())
        rows.append((method, kind, len(entry.get("tickets", [])), classification, layers))
    return pd.DataFrame(rows, columns=["method", "ticket_kind", "n_tickets", "classification", "layers"])


def collapse_evaluation_by_method(
    curves: pd.DataFrame,
    metric: str = "balanced_accuracy",
    margin: float = 0.05,
    fallback: str = "accuracy",
    reference: tuple[str, int] | None = None,
) -> pd.DataFrame:
    """The collapse alarm scored per method, each against a labelled metric it has.

    :func:`analysis.collapse.collapse_evaluation` scores every method against
    one metric; expert tickets, asked for ``balanced_accuracy``, are scored
    against their accuracy on their own subset under oracle routing
    (``subset_accuracy_oracle``); a method without ``metric`` (e.g. one ticket over input clusters has no
    one-vs-rest detectors, hence no balanced accuracy) is scored against
    ``fallback`` instead of failing the whole run.

    Parameters
    ----------
    curves : DataFrame
        :func:`analysis.collapse.collapse_curves` output (``method`` column).
    metric : str
        Preferred labelled signal.
    margin : float
        Absolute drop that counts as collapse.
    fallback : str
        Signal used for methods without ``metric``.
    reference : tuple of (str, int), optional
        The run's dense reference (:func:`analysis.levels.dense_reference`):
        every method's drop is measured from its value there; None: each
        method's own level 0 (runs written before the protocol).

    Returns
    -------
    DataFrame
        The columns of :func:`analysis.collapse.collapse_evaluation` plus
        ``metric`` (the signal each method was scored against). Methods with
        neither signal, nor an accuracy their source logged (``test_accuracy``,
        ``best_acc1``), are left out.
    """
    from analysis.collapse import collapse_evaluation, reference_rows

    ref_rows = reference_rows(curves, reference)
    frames = []
    for _, c in curves.groupby("method", sort=False):
        signals = set(c["signal"])
        # An expert is a classifier of its own subset, not a detector: its collapse is the drop of its
        # accuracy there (its confidence as a subset detector is no measure of it).
        if metric == "balanced_accuracy" and EXPERT_METRIC in signals:
            used = EXPERT_METRIC
        else:
            used = metric if metric in signals else fallback if fallback in signals else None
        if used is None:  # an imported run: an accuracy its source logged (OpenLTH's test_accuracy)
            used = next((s for s in _LOGGED_ACCURACY if s in signals), None)
        if used is None:
            continue
        ev = collapse_evaluation(c, metric=used, margin=margin, reference=ref_rows)
        ev["metric"] = used
        frames.append(ev)
    if not frames:
        return pd.DataFrame(
            columns=["method", "ticket", "outcome", "alarm_level", "collapse_level", "metric"]
        )
    return pd.concat(frames, ignore_index=True)


def nm_structure_table(manifest: dict) -> pd.DataFrame:
    """N:M structure per layer, from a run manifest (written by the Hugging Face importer, ``ingest.hf``).

    Returns
    -------
    DataFrame
        Columns ``layer`` then one per ticket holding its pattern (``"2:4"``)
        or None; empty (no columns) for runs without N:M information.
    """
    nm = (manifest.get("source") or {}).get("nm_structure") or {}
    if not nm:
        return pd.DataFrame()
    tickets = list(nm)
    layers = list(nm[tickets[0]])
    return pd.DataFrame([{"layer": n, **{t: nm[t].get(n) for t in tickets}} for n in layers])


def overlap_table(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """How many tickets share each kept weight, per level (``level.json`` ``overlap``).

    In joint retraining a weight kept by c tickets moves c times per round, so
    the mean c is the factor by which its effective learning rate exceeds a
    single ticket's (``rtl.overlap_scaling="count"`` divides it out).

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: every method; levels without an ``overlap`` record are left out.

    Returns
    -------
    DataFrame
        One row per method and level: ``method, level, sparsity, overlap_scaling``
        (``"none"`` when not recorded), ``mean_c``, ``max_c``, ``kept`` (weights
        kept by at least one ticket) and ``c=1 .. c=K``: the fraction of kept
        weights kept by exactly c tickets (rows sum to 1).
    """
    rows = []
    for method in methods or run.methods:
        for level in run.levels(method):
            info = run.level_info(method, level)
            rec = info.get("overlap")
            if not isinstance(rec, Mapping) or not isinstance(rec.get("histogram"), list):
                continue
            hist = np.asarray(rec["histogram"], dtype=np.float64)  # (K,): weights kept by c = 1..K
            kept = float(hist.sum())
            row = {
                "method": method,
                "level": int(level),
                "sparsity": float(run.sparsity(method, level)),
                "overlap_scaling": str(info.get("overlap_scaling", "none")),
                "mean_c": float(rec.get("mean", np.nan)),
                "max_c": int(rec.get("max", 0)),
                "kept": int(kept),
            }
            row.update({f"c={c}": (h / kept if kept else np.nan) for c, h in enumerate(hist, start=1)})
            rows.append(row)
    cols = ["method", "level", "sparsity", "overlap_scaling", "mean_c", "max_c", "kept"]
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*cols, *(k for r in rows for k in r)])))
