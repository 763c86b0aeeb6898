"""Subnetwork collapse: curves against sparsity, a label-free alarm, and its evaluation.

Past some sparsity the K tickets are forced onto the same weights, lose their
specialisation, and their accuracy drops. The paper reports that the mask
similarity rises before or with the drop but gives no rule; this module turns
that observation into an operational alarm that sees only masks and unlabelled
predictions, and scores it against the labelled drop.

Collapse curves (:func:`level_signals`, :func:`collapse_curves`)
----------------------------------------------------------------
A tidy long table, one row per (level, ticket, signal):

method : str
    Only in :func:`collapse_curves` (run tables).
level : int
sparsity : float
    Fraction of prunable weights removed, 0..1.
ticket : Int64
    Ticket (subset) index k; ``<NA>`` marks an aggregate row: the unweighted
    mean over tickets of a per-ticket signal, or a signal of the whole method.
signal : str
    Per ticket (and their mean in the aggregate row):

    - ``balanced_accuracy``, ``precision``, ``recall``, ``subset_accuracy_<routing>``:
      labelled metrics (:func:`analysis.metrics.ticket_metrics`).
    - For a level without predictions (an imported run), the accuracies the
      source logged per ticket instead (``level.json`` ``ticket_metrics``,
      e.g. OpenLTH's ``test_accuracy``; :func:`logged_metric_rows`).
    - ``mean_jaccard``, ``mean_jaccard_star``: the ticket's mean Jaccard, and
      chance-corrected Jaccard J*, to the other tickets, over all prunable
      weights (:mod:`analysis.similarity`). J* is NaN where it is undefined
      (all masks full, e.g. level 0).
    - ``density``: kept fraction of the ticket's prunable weights.
    - ``min_layer_density``: the ticket's smallest per-layer kept fraction.
    - ``empty_layers``: number of the ticket's layers with no weight left.

    Aggregate only:

    - ``accuracy``, ``accuracy_<routing>``: K-way accuracy over all samples.
    - ``union_size``: weights kept by at least one ticket (the RTL parameter
      count); ``union_fraction`` the same over all prunable weights.
    - ``intersection_size``: weights kept by every ticket.
    - ``core_fraction``: ``|∩ masks| / |∪ masks|`` (1 when the union is empty,
      the Jaccard convention for empty sets).
    - ``any_empty_layer``: 1.0 if some layer of some ticket is empty, else 0.0.
    - ``pred_entropy``: entropy (nats) of the histogram of the ``pred`` column,
      a label-free signal.

For a method with one ticket serving all subsets (``ticket_kind == "single"``)
the per-ticket rows are the per-subset detector metrics; its mask signals
appear in the aggregate rows only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import entropy

from analysis.metrics import ticket_metrics

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "ALARM_CRITERIA",
    "CURVE_COLUMNS",
    "CollapseAlarm",
    "alarm_summary",
    "collapse_curves",
    "collapse_evaluation",
    "evaluate_alarm",
    "labelled_collapse_points",
    "level_signals",
    "logged_metric_rows",
    "mask_signals",
    "prediction_entropy",
]

CURVE_COLUMNS = ["level", "sparsity", "ticket", "signal", "value"]
ALARM_CRITERIA = ("jaccard_rise", "empty_layer", "entropy_drop")
OUTCOMES = ("hit", "late", "miss", "false_alarm", "true_negative")


def _long(ticket: list, signal: list, value: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket": pd.array(ticket, dtype="Int64"),
            "signal": pd.Series(signal, dtype=object),
            "value": np.asarray(value, dtype=np.float64),
        }
    )


# ----------------------------------------------------------------------------- one level


def mask_signals(masks: Mapping[str, np.ndarray], per_ticket: bool = True) -> pd.DataFrame:
    """Size, density and overlap signals of one level's K masks.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)
        One entry per prunable layer.
    per_ticket : bool
        Emit the per-ticket rows (``density``, ``min_layer_density``,
        ``empty_layers``); their means are always in the aggregate rows.

    Returns
    -------
    DataFrame
        Columns ``ticket`` (Int64, ``<NA>`` = aggregate), ``signal``, ``value``;
        signals as in the module docstring.
    """
    if not masks:
        raise ValueError("no layers in masks")
    flat = {name: np.asarray(m, dtype=bool).reshape(np.shape(m)[0], -1) for name, m in masks.items()}
    ks = {m.shape[0] for m in flat.values()}
    if len(ks) != 1:
        raise ValueError(f"layers disagree on the number of tickets: {sorted(ks)}")
    k = ks.pop()
    kept = np.stack([m.sum(axis=1) for m in flat.values()], axis=1)  # (K, L)
    sizes = np.array([m.shape[1] for m in flat.values()])  # (L,)
    layer_density = kept / np.maximum(sizes, 1)  # (K, L)
    density = kept.sum(axis=1) / max(int(sizes.sum()), 1)  # (K,)
    min_layer = layer_density.min(axis=1)
    empty = (kept == 0).sum(axis=1).astype(np.float64)
    union = int(sum(m.any(axis=0).sum() for m in flat.values()))
    inter = int(sum(m.all(axis=0).sum() for m in flat.values()))

    ticket: list = []
    signal: list = []
    value: list = []
    if per_ticket:
        for name, v in (("density", density), ("min_layer_density", min_layer), ("empty_layers", empty)):
            ticket += list(range(k))
            signal += [name] * k
            value += list(v)
    agg = {
        "density": density.mean(),
        "min_layer_density": min_layer.mean(),
        "empty_layers": empty.mean(),
        "union_size": union,
        "union_fraction": union / max(int(sizes.sum()), 1),
        "intersection_size": inter,
        "core_fraction": inter / union if union else 1.0,
        "any_empty_layer": float(empty.sum() > 0),
    }
    ticket += [None] * len(agg)
    signal += list(agg)
    value += list(agg.values())
    return _long(ticket, signal, value)


def prediction_entropy(pred: np.ndarray) -> float:
    """Entropy in nats of the histogram of predicted labels.

    Parameters
    ----------
    pred : array-like of int or str, shape (n,)
        Predicted class per sample (no labels needed).

    Returns
    -------
    float
        ``scipy.stats.entropy`` of the class counts; 0 for a constant
        prediction, ``log(C)`` for C equally frequent classes, NaN for n = 0.
    """
    _, counts = np.unique(np.asarray(pred), return_counts=True)
    return float(entropy(counts)) if counts.size else float("nan")


def _similarity_rows(masks: Mapping[str, np.ndarray]) -> pd.DataFrame:
    # Lazy: the similarity module is a sibling that may evolve independently.
    from analysis.pair_limits import pair_sample
    from analysis.similarity import GLOBAL, similarity_frame, ticket_similarity_summary

    k = next(iter(masks.values())).shape[0]
    idx = pair_sample(k)  # past the pairwise limit, a fixed sample of tickets (K x K memory)
    if len(idx) < k:
        masks = {n: m[idx] for n, m in masks.items()}
    pairs = similarity_frame(masks, layers=False)
    if pairs.empty:  # K = 1: no other ticket to compare with
        return _long([], [], [])
    summary = ticket_similarity_summary(pairs)
    summary = summary[summary["layer"] == GLOBAL]
    t = [int(idx[int(i)]) for i in summary["ticket"]]
    rows = _long(
        t + t,
        ["mean_jaccard"] * len(t) + ["mean_jaccard_star"] * len(t),
        [*summary["mean_jaccard"], *summary["mean_jaccard_star"]],
    )
    return rows


def level_signals(
    masks: Mapping[str, np.ndarray], predictions: pd.DataFrame, ticket_kind: str
) -> pd.DataFrame:
    """All collapse signals of one level: labelled metrics, mask overlap and sizes.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)
    predictions : DataFrame
        The level's predictions (columns: :mod:`artifacts.run_format`).
    ticket_kind : {"detector", "expert", "single"}

    Returns
    -------
    DataFrame
        Columns ``ticket, signal, value`` (module docstring).
    """
    per_ticket = ticket_kind != "single"
    metrics = ticket_metrics(predictions, ticket_kind)
    metrics = _long(list(metrics["ticket"]), list(metrics["metric"]), list(metrics["value"]))
    sim = _similarity_rows(masks) if per_ticket else _long([], [], [])
    sim_mean = sim.groupby("signal", sort=False)["value"].mean()
    sim_agg = _long([None] * len(sim_mean), list(sim_mean.index), list(sim_mean.values))
    ent = _long([None], ["pred_entropy"], [prediction_entropy(predictions["pred"].to_numpy())])
    parts = [metrics, sim, sim_agg, mask_signals(masks, per_ticket=per_ticket), ent]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def logged_metric_rows(info: Mapping, n_tickets: int) -> pd.DataFrame:
    """Accuracies a source logged per ticket, as collapse-curve rows.

    Imported runs carry no predictions to score; their tools logged the
    accuracy of each ticket (OpenLTH's ``test_accuracy``, pytorch/examples'
    ``best_acc1``), which the importer keeps in ``level.json``.

    Parameters
    ----------
    info : mapping
        A level's ``level.json``: ``ticket_metrics`` (list of K dicts of str
        to float) and/or ``metrics`` (dict of str to float).
    n_tickets : int
        K, the method's number of tickets.

    Returns
    -------
    DataFrame
        Columns ``ticket, signal, value``: for every metric whose name
        contains ``acc`` (higher is better, so a drop means collapse) and that
        every ticket logged, one row per ticket and an aggregate row (ticket
        ``<NA>``, the unweighted mean); from ``metrics`` an aggregate row only
        when the tickets' own values are missing. Empty if nothing was logged.
    """
    per = info.get("ticket_metrics") or []
    if len(per) == n_tickets and all(isinstance(m, Mapping) for m in per):
        common = [k for k in per[0] if all(_is_number(m.get(k)) for m in per)] if per else []
    else:
        per, common = [], []
    tickets: list = []
    signals: list[str] = []
    values: list[float] = []
    for name in (k for k in common if "acc" in str(k).lower()):
        vals = [float(m[name]) for m in per]
        tickets += [*range(n_tickets), None]
        signals += [str(name)] * (n_tickets + 1)
        values += [*vals, float(np.mean(vals))]
    for name, value in (info.get("metrics") or {}).items():
        if "acc" in str(name).lower() and _is_number(value) and name not in signals:
            tickets.append(None)
            signals.append(str(name))
            values.append(float(value))
    return _long(tickets, signals, values)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


def collapse_curves(run: Run, methods: list[str] | None = None) -> pd.DataFrame:
    """Collapse signals of every level of every method of a run.

    Parameters
    ----------
    run : Run
    methods : list of str, optional
        Default: all methods of the run.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity, ticket, signal, value`` (module docstring).
    """
    frames = []
    for method in methods or run.methods:
        kind = run.manifest["methods"][method].get("ticket_kind", "detector")
        for level in run.levels(method):
            preds = run.predictions(method, level)
            df = level_signals(run.masks(method, level), preds, kind)
            if preds.empty:  # imported: the accuracy the source logged is the labelled signal
                logged = logged_metric_rows(run.level_info(method, level), len(run.ticket_names(method)))
                df = pd.concat([df, logged], ignore_index=True) if len(logged) else df
            df.insert(0, "sparsity", run.sparsity(method, level))
            df.insert(0, "level", level)
            df.insert(0, "method", method)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- the alarm


def _signal(curves: pd.DataFrame, name: str, aggregate: bool) -> pd.DataFrame:
    rows = curves[curves["signal"] == name]
    return rows[rows["ticket"].isna()] if aggregate else rows[rows["ticket"].notna()]


@dataclass
class CollapseAlarm:
    """A label-free collapse alarm on one method's curves (masks and unlabelled predictions).

    The alarm fires at the first level where at least one criterion holds:

    ``jaccard_rise``
        The mean over tickets of J* (``mean_jaccard_star``) rises clearly above
        its running minimum: with ``l*`` the earlier level of lowest mean J*
        (levels where J* is NaN are skipped, and so is the densest level of the
        sweep, before any magnitude pruning: its masks are still the dense
        network -- a detector's head row aside -- and the first pruning would
        always count as a rise),
        it fires when
        ``mean J*(L) - mean J*(l*) > max(n_se * se, min_rise)``. ``se`` is the
        bootstrap standard error of that difference over tickets: the K
        tickets are resampled with replacement ``n_boot`` times, paired across
        the two levels (the same tickets at both), seeded by ``random_state``.
        Tickets with NaN J* at either level are left out; with fewer than 2
        tickets this criterion cannot fire.
    ``empty_layer``
        Some layer of some ticket has no weight left (``any_empty_layer``).
    ``entropy_drop``
        The entropy of the predicted-label histogram (``pred_entropy``) falls
        below ``entropy_ratio`` times its value at the densest level.

    Parameters
    ----------
    n_se : float
        Standard errors the J* rise must exceed.
    entropy_ratio : float
        Fraction of the dense prediction entropy below which the alarm fires.
    n_boot : int
        Bootstrap resamples of the tickets.
    random_state : int
        Seed of the bootstrap.
    min_rise : float
        Absolute floor on the J* rise, so that round-off cannot fire the alarm
        when every ticket moves by the same amount (``se = 0``).

    Attributes
    ----------
    trace_ : DataFrame
        One row per level: ``level, sparsity, mean_jaccard_star, running_min,
        rise, rise_se, threshold, jaccard_rise, any_empty_layer, empty_layer,
        pred_entropy, entropy_fraction, entropy_drop, fired``.
    fired_ : bool
    level_ : int or None
        First level where the alarm fires.
    sparsity_ : float or None
    criteria_ : tuple of str
        Criteria that hold at ``level_`` (subset of :data:`ALARM_CRITERIA`).
    first_levels_ : dict of str to int or None
        First level at which each criterion holds.
    """

    n_se: float = 3.0
    entropy_ratio: float = 0.5
    n_boot: int = 1000
    random_state: int = 0
    min_rise: float = 1e-6
    trace_: pd.DataFrame | None = field(init=False, repr=False, default=None)
    fired_: bool = field(init=False, default=False)
    level_: int | None = field(init=False, default=None)
    sparsity_: float | None = field(init=False, default=None)
    criteria_: tuple[str, ...] = field(init=False, default=())
    first_levels_: dict = field(init=False, repr=False, default_factory=dict)

    def fit(self, curves: pd.DataFrame) -> CollapseAlarm:
        """Run the alarm over one method's curves.

        Only the label-free signals ``mean_jaccard_star`` (per ticket),
        ``any_empty_layer`` and ``pred_entropy`` (aggregate rows) are read.

        Parameters
        ----------
        curves : DataFrame
            Columns ``level, sparsity, ticket, signal, value`` (see
            :func:`level_signals`); a ``method`` column, if present, must hold
            a single method.

        Returns
        -------
        CollapseAlarm
            ``self``, with the fitted attributes set.
        """
        if "method" in curves and curves["method"].nunique() > 1:
            raise ValueError("curves hold several methods: fit the alarm on one method at a time")
        levels = np.sort(curves["level"].unique())
        sparsity = curves.groupby("level")["sparsity"].first().reindex(levels).to_numpy(dtype=float)
        jstar = (
            _signal(curves, "mean_jaccard_star", aggregate=False)
            .pivot_table(index="level", columns="ticket", values="value", aggfunc="first", dropna=False)
            .reindex(levels)
        )
        jmat = jstar.to_numpy(dtype=np.float64)  # (n_levels, K)
        empty = _signal(curves, "any_empty_layer", True).set_index("level")["value"].reindex(levels)
        ent = _signal(curves, "pred_entropy", True).set_index("level")["value"].reindex(levels)
        rng = np.random.default_rng(self.random_state)

        rec = []
        best: int | None = None  # row index of the running minimum of mean J*
        dense_entropy = ent.iloc[0] if len(ent) else np.nan
        for i, level in enumerate(levels):
            row = jmat[i] if jmat.size else np.empty(0)
            if i == 0 or not sparsity[i] > 0:  # before magnitude pruning: not tickets yet
                row = np.full_like(row, np.nan)
            mean_j = float(np.nanmean(row)) if np.isfinite(row).any() else np.nan
            run_min = rise = se = thr = np.nan
            j_fire = False
            if best is not None and np.isfinite(mean_j):
                run_min = float(np.nanmean(jmat[best]))
                rise = mean_j - run_min
                both = np.isfinite(row) & np.isfinite(jmat[best])
                d = (row - jmat[best])[both]
                if d.size >= 2:
                    idx = rng.integers(0, d.size, size=(self.n_boot, d.size))
                    se = float(d[idx].mean(axis=1).std(ddof=1))
                    thr = max(self.n_se * se, self.min_rise)
                    j_fire = bool(rise > thr)
            if np.isfinite(mean_j) and (best is None or mean_j < np.nanmean(jmat[best])):
                best = i
            e_val = float(empty.iloc[i]) if np.isfinite(empty.iloc[i]) else np.nan
            h = float(ent.iloc[i])
            frac = h / dense_entropy if dense_entropy > 0 else np.nan
            h_fire = bool(i > 0 and np.isfinite(frac) and frac < self.entropy_ratio)
            e_fire = bool(e_val > 0)
            rec.append(
                (level, sparsity[i], mean_j, run_min, rise, se, thr, j_fire, e_val, e_fire, h, frac, h_fire)
            )
        trace = pd.DataFrame(
            rec,
            columns=[
                "level",
                "sparsity",
                "mean_jaccard_star",
                "running_min",
                "rise",
                "rise_se",
                "threshold",
                "jaccard_rise",
                "any_empty_layer",
                "empty_layer",
                "pred_entropy",
                "entropy_fraction",
                "entropy_drop",
            ],
        )
        trace["fired"] = trace[list(ALARM_CRITERIA)].any(axis=1)
        self.trace_ = trace
        self.first_levels_ = {
            c: (int(trace.loc[trace[c], "level"].iloc[0]) if trace[c].any() else None) for c in ALARM_CRITERIA
        }
        self.fired_ = bool(trace["fired"].any())
        if self.fired_:
            first = trace[trace["fired"]].iloc[0]
            self.level_ = int(first["level"])
            self.sparsity_ = float(first["sparsity"])
            self.criteria_ = tuple(c for c in ALARM_CRITERIA if first[c])
        else:
            self.level_, self.sparsity_, self.criteria_ = None, None, ()
        return self


# ----------------------------------------------------------------------------- evaluation against labels


def labelled_collapse_points(
    curves: pd.DataFrame, metric: str = "balanced_accuracy", margin: float = 0.05, dense_level: int = 0
) -> pd.DataFrame:
    """The labelled collapse point of each ticket and of the mean over tickets.

    The collapse point is the first level after ``dense_level`` where the
    metric falls more than ``margin`` (absolute) below its value at
    ``dense_level``: ``value < dense_value - margin``.

    Parameters
    ----------
    curves : DataFrame
        One method's curves, columns ``level, sparsity, ticket, signal, value``.
    metric : str
        Signal to read, e.g. ``"balanced_accuracy"``, ``"accuracy_oracle"``.
    margin : float
        Absolute drop that counts as collapse.
    dense_level : int
        The dense reference level (level 0 is the unpruned model).

    Returns
    -------
    DataFrame
        Columns ``ticket`` (Int64, ``<NA>`` = the aggregate row), ``dense_value``,
        ``collapse_level`` (Int64, ``<NA>`` if it never drops), ``collapse_sparsity``,
        ``collapse_value`` (NaN if it never drops).
    """
    rows = curves[curves["signal"] == metric]
    if rows.empty:
        raise ValueError(f"no signal {metric!r} in the curves")
    if "method" in rows and rows["method"].nunique() > 1:
        raise ValueError("curves hold several methods: pass one method at a time")
    out = []
    for ticket, g in rows.groupby("ticket", dropna=False, sort=True):
        g = g.sort_values("level")
        dense = g[g["level"] == dense_level]["value"]
        if dense.empty:
            raise ValueError(f"no dense level {dense_level} for ticket {ticket}")
        d = float(dense.iloc[0])
        later = g[(g["level"] > dense_level) & (g["value"] < d - margin)]
        if later.empty:
            out.append((ticket, d, None, np.nan, np.nan))
        else:
            first = later.iloc[0]
            out.append((ticket, d, int(first["level"]), float(first["sparsity"]), float(first["value"])))
    df = pd.DataFrame(
        out, columns=["ticket", "dense_value", "collapse_level", "collapse_sparsity", "collapse_value"]
    )
    df["ticket"] = pd.array([None if pd.isna(t) else int(t) for t in df["ticket"]], dtype="Int64")
    df["collapse_level"] = df["collapse_level"].astype("Int64")
    return df


def evaluate_alarm(
    points: pd.DataFrame, alarm_level: int | None, alarm_sparsity: float | None
) -> pd.DataFrame:
    """Score an alarm against labelled collapse points.

    Parameters
    ----------
    points : DataFrame
        Output of :func:`labelled_collapse_points`.
    alarm_level : int or None
        Level at which the alarm fired (``CollapseAlarm.level_``), None if it never fired.
    alarm_sparsity : float or None
        Sparsity at that level.

    Returns
    -------
    DataFrame
        ``points`` plus ``alarm_level`` (Int64), ``alarm_sparsity``,
        ``lead_levels`` (Int64) and ``lead_sparsity`` (collapse minus alarm:
        positive when the alarm fires before the drop; NA unless both exist),
        and ``outcome``:

        - ``hit``: the alarm fired at or before the drop (lead >= 0);
        - ``late``: it fired after the drop;
        - ``miss``: the metric dropped and the alarm never fired;
        - ``false_alarm``: the alarm fired and the metric never dropped
          (within the levels of the sweep);
        - ``true_negative``: neither.
    """
    out = points.copy()
    fired = alarm_level is not None
    out["alarm_level"] = pd.array([alarm_level] * len(out), dtype="Int64")
    out["alarm_sparsity"] = float(alarm_sparsity) if fired and alarm_sparsity is not None else np.nan
    dropped = out["collapse_level"].notna()
    out["lead_levels"] = (out["collapse_level"] - out["alarm_level"]).astype("Int64")
    out["lead_sparsity"] = out["collapse_sparsity"] - out["alarm_sparsity"]
    outcome = np.where(
        dropped,
        np.where(fired, np.where(out["lead_levels"].fillna(0).to_numpy() >= 0, "hit", "late"), "miss"),
        np.where(fired, "false_alarm", "true_negative"),
    )
    out["outcome"] = pd.Series(outcome, index=out.index, dtype=object)
    return out


def alarm_summary(evaluation: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Counts of alarm outcomes and mean lead times.

    Parameters
    ----------
    evaluation : DataFrame
        Output of :func:`evaluate_alarm` or :func:`collapse_evaluation`.
    by : list of str, optional
        Columns to group by (e.g. ``["method"]``); default: one overall row.

    Returns
    -------
    DataFrame
        Columns ``*by, n, hit, late, miss, false_alarm, true_negative,
        mean_lead_levels, mean_lead_sparsity`` (means over hits and late
        alarms; NaN when there are none).
    """
    by = list(by or [])
    groups = evaluation.groupby(by, sort=False, dropna=False) if by else [((), evaluation)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        counts = g["outcome"].value_counts()
        detected = g[g["outcome"].isin(["hit", "late"])]
        rows.append(
            (
                *key,
                len(g),
                *(int(counts.get(o, 0)) for o in OUTCOMES),
                float(detected["lead_levels"].astype(float).mean()) if len(detected) else np.nan,
                float(detected["lead_sparsity"].mean()) if len(detected) else np.nan,
            )
        )
    return pd.DataFrame(rows, columns=[*by, "n", *OUTCOMES, "mean_lead_levels", "mean_lead_sparsity"])


def collapse_evaluation(
    curves: pd.DataFrame,
    *,
    alarm: CollapseAlarm | None = None,
    metric: str = "balanced_accuracy",
    margin: float = 0.05,
) -> pd.DataFrame:
    """Fit the alarm per method and score it against each ticket's labelled drop.

    Parameters
    ----------
    curves : DataFrame
        Output of :func:`collapse_curves` (with a ``method`` column).
    alarm : CollapseAlarm, optional
        Alarm parameters (default ``CollapseAlarm()``); refitted per method.
    metric, margin : str, float
        See :func:`labelled_collapse_points`.

    Returns
    -------
    DataFrame
        ``method`` then the columns of :func:`evaluate_alarm`, plus
        ``alarm_criteria`` (criteria that fired, joined by ``"+"``; ``""`` if none).
    """
    alarm = alarm or CollapseAlarm()
    frames = []
    for method, c in curves.groupby("method", sort=False):
        a = replace(alarm).fit(c)  # a fresh copy: the caller's alarm is left unfitted
        ev = evaluate_alarm(labelled_collapse_points(c, metric, margin), a.level_, a.sparsity_)
        ev.insert(0, "method", method)
        ev["alarm_criteria"] = "+".join(a.criteria_)
        frames.append(ev)
    return pd.concat(frames, ignore_index=True)
