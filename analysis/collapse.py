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
      (all masks full, e.g. level 0). Both move with density even when the
      tickets are equally alike: the alarm does not read them.
    - ``mean_latent_corr``: the ticket's mean latent correlation to the other
      tickets (:mod:`analysis.latent`), the overlap measure that stays
      constant across densities when the tickets' pruning scores are equally
      correlated; NaN where every mask of a layer is full.
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
    - ``pred_entropy``: entropy (nats) of the histogram of a label-free
      prediction column: ``pred`` unless the method's default routing is the
      oracle (which routes by the true subset, i.e. by labels), then
      ``pred_max_score``, else ``pred_centroid``; NaN when there is none.
      ``pred_entropy_se``: its delta-method standard error,
      ``sqrt((sum p log^2 p - H^2) / n)``.

For a method with one ticket serving all subsets (``ticket_kind == "single"``)
the per-ticket rows are the per-subset detector metrics; its mask signals
appear in the aggregate rows only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import entropy
from scipy.stats import t as student_t

from analysis.latent import EXACT_FLOAT32, ticket_latent_correlation, ticket_latent_correlation_from_counts
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
    "label_free_prediction",
    "labelled_collapse_points",
    "level_signals",
    "logged_metric_rows",
    "mask_signals",
    "prediction_entropy",
    "prediction_entropy_se",
    "reference_rows",
]

CURVE_COLUMNS = ["level", "sparsity", "ticket", "signal", "value"]
ALARM_CRITERIA = ("overlap_rise", "empty_layer", "entropy_drop")
OUTCOMES = ("hit", "early", "late", "miss", "false_alarm", "true_negative")
# Routings that read no label at test time (``oracle`` routes by the true subset).
LABEL_FREE_ROUTINGS = ("max_score", "centroid")


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
    return mask_signal_rows(*_mask_counts(masks), per_ticket)


def _mask_counts(masks: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(kept (K, L), sizes (L,), union, intersection)`` of one level's masks: the mask rows' inputs."""
    from analysis.packed import PackedMasks, packed_mask_counts

    if isinstance(masks, PackedMasks):  # memory-mapped: popcounts layer by layer
        return packed_mask_counts(masks)
    if not masks:
        raise ValueError("no layers in masks")
    flat = {name: np.asarray(m, dtype=bool).reshape(np.shape(m)[0], -1) for name, m in masks.items()}
    ks = {m.shape[0] for m in flat.values()}
    if len(ks) != 1:
        raise ValueError(f"layers disagree on the number of tickets: {sorted(ks)}")
    kept = np.stack([m.sum(axis=1) for m in flat.values()], axis=1)  # (K, L)
    sizes = np.array([m.shape[1] for m in flat.values()])  # (L,)
    union = int(sum(m.any(axis=0).sum() for m in flat.values()))
    inter = int(sum(m.all(axis=0).sum() for m in flat.values()))
    return kept, sizes, union, inter


def mask_signal_rows(
    kept: np.ndarray, sizes: np.ndarray, union: int, inter: int, per_ticket: bool = True
) -> pd.DataFrame:
    """The rows of :func:`mask_signals` from a level's counts (shared by the in-memory and packed paths).

    Parameters
    ----------
    kept : ndarray of int, shape (K, L)
        Weights each ticket keeps in each layer.
    sizes : ndarray of int, shape (L,)
        Weights of each layer.
    union, inter : int
        Weights kept by at least one ticket, and by every ticket, over all layers.
    per_ticket : bool
        Emit the per-ticket rows.

    Returns
    -------
    DataFrame
        As :func:`mask_signals`.
    """
    return _long(*_mask_signal_lists(kept, sizes, union, inter, per_ticket))


def _mask_signal_lists(
    kept: np.ndarray, sizes: np.ndarray, union: int, inter: int, per_ticket: bool = True
) -> tuple[list, list, list]:
    """:func:`mask_signal_rows` as ``(ticket, signal, value)`` lists."""
    k = kept.shape[0]
    layer_density = kept / np.maximum(sizes, 1)  # (K, L)
    density = kept.sum(axis=1) / max(int(sizes.sum()), 1)  # (K,)
    min_layer = layer_density.min(axis=1)
    empty = (kept == 0).sum(axis=1).astype(np.float64)

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
    return ticket, signal, value


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


def prediction_entropy_se(pred: np.ndarray) -> float:
    """Delta-method standard error of :func:`prediction_entropy`.

    Parameters
    ----------
    pred : array-like, shape (n,)

    Returns
    -------
    float
        ``sqrt((sum_c p_c log^2 p_c - H^2) / n)``; NaN for n = 0.
    """
    _, counts = np.unique(np.asarray(pred), return_counts=True)
    n = counts.sum()
    if not n:
        return float("nan")
    p = counts / n
    h = -(p * np.log(p)).sum()
    return float(np.sqrt(max((p * np.log(p) ** 2).sum() - h**2, 0.0) / n))


def label_free_prediction(predictions: pd.DataFrame, default_routing: str | None) -> str | None:
    """The prediction column a label-free signal may read.

    Parameters
    ----------
    predictions : DataFrame
    default_routing : str or None
        The routing behind ``pred``; None for a method without routing (one
        ticket for all data: ``pred`` is its own argmax).

    Returns
    -------
    str or None
        ``"pred"`` when its routing reads no label, else the first stored
        ``pred_<r>`` of a label-free routing, else None.
    """
    if "pred" in predictions and (default_routing is None or default_routing in LABEL_FREE_ROUTINGS):
        return "pred"
    return next((f"pred_{r}" for r in LABEL_FREE_ROUTINGS if f"pred_{r}" in predictions), None)


def _pair_means(measure: np.ndarray) -> np.ndarray:
    """Each ticket's mean of a pair measure over the other tickets (NaN pairs skipped).

    Parameters
    ----------
    measure : ndarray of float64, shape (K, K), K >= 2
        Read above the diagonal (pair ``(a, b)``, ``a < b``).

    Returns
    -------
    ndarray of float64, shape (K,)
        :func:`analysis.similarity.ticket_similarity_summary`'s ``mean_jaccard``
        of the pair table, bit for bit (tested): the pairs summed in that
        table's order (``(t, t+1..K-1)`` then ``(0..t-1, t)``) with the
        compensated (Kahan) sum of pandas' group mean; NaN when no pair is defined.
    """
    k = measure.shape[0]
    rows = np.arange(k)[:, None]
    others = np.array(
        [np.r_[np.arange(t + 1, k), np.arange(t)] for t in range(k)], dtype=np.int64
    )  # (K, K-1)
    vals = measure[np.minimum(rows, others), np.maximum(rows, others)]  # (K, K-1)
    total, comp, n = np.zeros(k), np.zeros(k), np.zeros(k, dtype=np.int64)
    for j in range(k - 1):  # one pair per ticket at a time, vectorised over the tickets
        v = vals[:, j]
        ok = ~np.isnan(v)
        y = v - comp
        t = total + y
        c = t - total - y
        comp = np.where(ok, np.where(np.isnan(c), 0.0, c), comp)  # an infinite value: no compensation
        total = np.where(ok, t, total)
        n += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _similarity_rows(masks: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Each ticket's mean J, J* and latent correlation to the others: columns ``ticket, signal, value``."""
    return _long(*_similarity_lists(masks))


def _similarity_lists(masks: Mapping[str, np.ndarray]) -> tuple[list, list, list]:
    # Lazy: the similarity module is a sibling that may evolve independently.
    from analysis.pair_limits import pair_sample
    from analysis.similarity import jaccard_measures_from_counts, layer_overlap_counts

    k = next(iter(masks.values())).shape[0]
    idx = pair_sample(k)  # past the pairwise limit, a fixed sample of tickets (K x K memory)
    if len(idx) < k:
        masks = {n: m[idx] for n, m in masks.items()}
    if len(idx) < 2:  # K = 1: no other ticket to compare with
        return [], [], []
    # the pooled J and J* of similarity_frame(masks, layers=False), as (K, K) matrices
    counts = list(layer_overlap_counts(masks).values())
    measures = jaccard_measures_from_counts(counts)
    # the latent correlation from the same counts (no second pass over the masks), where they
    # give its float32 fractions exactly
    exact = all(c.n_weights <= EXACT_FLOAT32 for c in counts)
    latent = ticket_latent_correlation_from_counts(counts) if exact else ticket_latent_correlation(masks)
    t = [int(i) for i in idx]  # back to the run's ticket numbers
    return (
        t + t + t,
        ["mean_jaccard"] * len(t) + ["mean_jaccard_star"] * len(t) + ["mean_latent_corr"] * len(t),
        [*_pair_means(measures["jaccard"]), *_pair_means(measures["jaccard_star"]), *latent],
    )


def level_signals(
    masks: Mapping[str, np.ndarray],
    predictions: pd.DataFrame,
    ticket_kind: str,
    default_routing: str | None = None,
) -> pd.DataFrame:
    """All collapse signals of one level: labelled metrics, mask overlap and sizes.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)
    predictions : DataFrame
        The level's predictions (columns: :mod:`artifacts.run_format`).
    ticket_kind : {"detector", "expert", "single"}
    default_routing : str, optional
        The routing behind ``pred`` (``manifest["methods"][m]["default_routing"]``):
        decides which column the label-free ``pred_entropy`` reads.

    Returns
    -------
    DataFrame
        Columns ``ticket, signal, value`` (module docstring).
    """
    return _long(*_level_signal_lists(masks, predictions, ticket_kind, default_routing))


def _level_signal_lists(
    masks: Mapping[str, np.ndarray],
    predictions: pd.DataFrame,
    ticket_kind: str,
    default_routing: str | None,
) -> tuple[list, list, list]:
    """:func:`level_signals` as ``(ticket, signal, value)`` lists (one DataFrame per run, not per level)."""
    per_ticket = ticket_kind != "single"
    metrics = ticket_metrics(predictions, ticket_kind, default_routing=default_routing)
    ticket, signal, value = list(metrics["ticket"]), list(metrics["metric"]), list(metrics["value"])
    sim_t, sim_s, sim_v = _similarity_lists(masks) if per_ticket else ([], [], [])
    with warnings.catch_warnings():  # all-NaN latent correlation at the dense level
        warnings.simplefilter("ignore", RuntimeWarning)
        values = pd.Series(np.asarray(sim_v, dtype=np.float64), name="value")
        sim_mean = values.groupby(pd.Series(sim_s, dtype=object, name="signal"), sort=False).mean()
    col = label_free_prediction(predictions, default_routing)
    pred = predictions[col].to_numpy() if col else None
    for t, s, v in (
        (sim_t, sim_s, sim_v),
        ([None] * len(sim_mean), list(sim_mean.index), list(sim_mean.values)),
        _mask_signal_lists(*_mask_counts(masks), per_ticket),
        (
            [None, None],
            ["pred_entropy", "pred_entropy_se"],
            [prediction_entropy(pred), prediction_entropy_se(pred)] if col else [np.nan, np.nan],
        ),
    ):
        ticket += t
        signal += s
        value += v
    return ticket, signal, value


def logged_metric_rows(info: Mapping, n_tickets: int) -> pd.DataFrame:
    """Accuracies a source logged per ticket, as collapse-curve rows (see :func:`_logged_metric_lists`)."""
    return _long(*_logged_metric_lists(info, n_tickets))


def _logged_metric_lists(info: Mapping, n_tickets: int) -> tuple[list, list, list]:
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
    return tickets, signals, values


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


def collapse_curves(
    run: Run,
    methods: Sequence[str] | None = None,
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
) -> pd.DataFrame:
    """Collapse signals of every level of every method of a run.

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: all methods of the run.
    levels : sequence of int or mapping of str to sequence of int, optional
        Levels to compute (the same for every method, or per method; levels a
        method lacks are skipped). Default: every completed level.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity, ticket, signal, value`` (module docstring).
    """
    from analysis.packed import packed_masks

    ticket: list = []
    signal: list = []
    value: list = []
    keys: list[tuple[str, int, float]] = []  # (method, level, sparsity) of each level's rows
    sizes: list[int] = []
    for method in methods or run.methods:
        entry = run.manifest["methods"][method]
        kind = entry.get("ticket_kind", "detector")
        have = run.levels(method)
        if levels is not None:
            want = set(levels.get(method, []) if isinstance(levels, Mapping) else levels)
            have = [lv for lv in have if lv in want]
        for level in have:
            preds = run.predictions(method, level)
            t, s, v = _level_signal_lists(
                packed_masks(run, method, level), preds, kind, entry.get("default_routing")
            )
            if preds.empty:  # imported: the accuracy the source logged is the labelled signal
                lt, ls, lv_ = _logged_metric_lists(
                    run.level_info(method, level), len(run.ticket_names(method))
                )
                t, s, v = t + lt, s + ls, v + lv_
            ticket += t
            signal += s
            value += v
            keys.append((method, level, run.sparsity(method, level)))
            sizes.append(len(t))
    if not keys:
        return pd.DataFrame(columns=["method", *CURVE_COLUMNS])
    # One frame for every level: the rows pd.concat of one frame per level gave, with its dtypes.
    rows = _long(ticket, signal, value)
    rows.insert(0, "sparsity", np.repeat(np.array([k[2] for k in keys], dtype=np.float64), sizes))
    rows.insert(0, "level", np.repeat(np.array([k[1] for k in keys], dtype=np.int64), sizes))
    rows.insert(0, "method", np.repeat(np.array([k[0] for k in keys], dtype=object), sizes))  # str dtype
    return rows


# ----------------------------------------------------------------------------- the alarm


def _signal(curves: pd.DataFrame, name: str, aggregate: bool) -> pd.DataFrame:
    rows = curves[curves["signal"] == name]
    return rows[rows["ticket"].isna()] if aggregate else rows[rows["ticket"].notna()]


def _jackknife_se(d: np.ndarray) -> float:
    """Delete-one-ticket jackknife SE of the mean over ticket pairs, from per-ticket means ``d`` (K,).

    Ticket a's value is its mean over the K - 1 pairs it is part of, so the
    tickets' values share pairs and a bootstrap over tickets understates the
    noise of their mean (by about sqrt(2)). Deleting ticket a leaves the pair
    mean ``(K * mean(d) - 2 d_a) / (K - 2)``; the jackknife variance of those
    is ``(K - 1) / K * 4 / (K - 2)**2 * sum (d_a - mean(d))**2``.
    """
    k = d.size
    if k < 3:
        return float("nan")
    return float(np.sqrt((k - 1) / k * 4.0 / (k - 2) ** 2 * ((d - d.mean()) ** 2).sum()))


@dataclass
class CollapseAlarm:
    """A label-free collapse alarm on one method's curves (masks and unlabelled predictions).

    The alarm fires at the first level where at least one criterion holds:

    ``overlap_rise``
        The mean over tickets of ``signal`` (default ``mean_latent_corr``,
        the latent correlation of the tickets' pruning scores,
        :mod:`analysis.latent`, which stays constant across densities when
        the tickets are equally alike; J* does not, and rises from the first
        pruned level to the next in every sweep) rises clearly above its
        running minimum over the earlier pruned levels: with ``l*`` the
        earlier level of lowest mean (levels before any pruning and levels
        where the signal is NaN are skipped), it fires when
        ``mean(L) - mean(l*) > max(n_se * se, min_rise)``. ``se`` is the
        delete-one-ticket jackknife standard error of that paired difference
        (the same tickets at both levels), which accounts for tickets sharing
        pairs; with fewer than 3 tickets this criterion cannot fire.
    ``empty_layer``
        Some layer of some ticket has no weight left (``any_empty_layer``).
    ``entropy_drop``
        The entropy of the label-free predicted-label histogram
        (``pred_entropy``; never the oracle-routed prediction) falls below
        ``entropy_ratio`` times its value at the densest level, by more than
        ``n_se`` standard errors of the difference (``pred_entropy_se``).

    Parameters
    ----------
    alpha : float
        One-sided false-alarm rate per level of the overlap criterion under
        noise alone (sets ``t``).
    n_se : float
        Standard errors the entropy drop must exceed.
    min_rise : float
        Absolute floor on the rise of ``signal``, so that a drift too small to
        matter does not fire the alarm on a large layer whose SE is tiny.
    entropy_ratio : float
        Fraction of the dense prediction entropy below which the alarm fires.
    signal : str
        Per-ticket curve signal of the overlap criterion.

    Attributes
    ----------
    trace_ : DataFrame
        One row per level: ``level, sparsity, overlap (the mean of signal),
        running_min, rise, rise_se, threshold, overlap_rise, any_empty_layer,
        empty_layer, pred_entropy, entropy_fraction, entropy_drop, fired``.
    fired_ : bool
    level_ : int or None
        First level where the alarm fires.
    sparsity_ : float or None
    criteria_ : tuple of str
        Criteria that hold at ``level_`` (subset of :data:`ALARM_CRITERIA`).
    first_levels_ : dict of str to int or None
        First level at which each criterion holds.
    """

    alpha: float = 0.005
    n_se: float = 3.0
    min_rise: float = 0.02
    entropy_ratio: float = 0.5
    signal: str = "mean_latent_corr"
    trace_: pd.DataFrame | None = field(init=False, repr=False, default=None)
    fired_: bool = field(init=False, default=False)
    level_: int | None = field(init=False, default=None)
    sparsity_: float | None = field(init=False, default=None)
    criteria_: tuple[str, ...] = field(init=False, default=())
    first_levels_: dict = field(init=False, repr=False, default_factory=dict)

    def fit(self, curves: pd.DataFrame) -> CollapseAlarm:
        """Run the alarm over one method's curves.

        Only label-free signals are read: ``signal`` (per ticket),
        ``any_empty_layer``, ``pred_entropy`` and ``pred_entropy_se``
        (aggregate rows).

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
        per = _signal(curves, self.signal, aggregate=False)
        jmat = (
            per.pivot_table(index="level", columns="ticket", values="value", aggfunc="first", dropna=False)
            .reindex(levels)
            .to_numpy(dtype=np.float64)
            if len(per)
            else np.full((len(levels), 0), np.nan)
        )  # (n_levels, K)

        def agg(name: str) -> pd.Series:
            rows = _signal(curves, name, True).groupby("level")["value"].first()
            return rows.reindex(levels).astype(np.float64)

        empty, ent, ent_se = agg("any_empty_layer"), agg("pred_entropy"), agg("pred_entropy_se").fillna(0.0)

        rec = []
        best: int | None = None  # row index of the running minimum
        dense_entropy, dense_se = (ent.iloc[0], ent_se.iloc[0]) if len(ent) else (np.nan, 0.0)
        for i, level in enumerate(levels):
            row = jmat[i].copy()
            if i == 0 or not sparsity[i] > 0:  # before magnitude pruning: not tickets yet
                row[:] = np.nan
            mean_j = float(np.nanmean(row)) if np.isfinite(row).any() else np.nan
            run_min = rise = se = thr = np.nan
            j_fire = False
            if best is not None and np.isfinite(mean_j):
                ref = jmat[best]
                run_min = float(np.nanmean(ref))
                both = np.isfinite(row) & np.isfinite(ref)
                d = (row - ref)[both]
                rise = float(d.mean()) if d.size else np.nan
                se = _jackknife_se(d)
                if np.isfinite(se):
                    thr = max(float(student_t.ppf(1 - self.alpha, d.size - 1)) * se, self.min_rise)
                    j_fire = bool(rise > thr)
            if np.isfinite(mean_j) and (best is None or mean_j < np.nanmean(jmat[best])):
                best = i
            e_val = float(empty.iloc[i])
            h = float(ent.iloc[i])
            frac = h / dense_entropy if dense_entropy > 0 else np.nan
            noise = self.n_se * float(np.hypot(ent_se.iloc[i], dense_se))
            h_fire = bool(
                i > 0 and np.isfinite(frac) and frac < self.entropy_ratio and dense_entropy - h > noise
            )
            e_fire = bool(e_val > 0)
            rec.append(
                (level, sparsity[i], mean_j, run_min, rise, se, thr, j_fire, e_val, e_fire, h, frac, h_fire)
            )
        trace = pd.DataFrame(
            rec,
            columns=[
                "level",
                "sparsity",
                "overlap",
                "running_min",
                "rise",
                "rise_se",
                "threshold",
                "overlap_rise",
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


def _reference_values(reference: pd.DataFrame, metric: str) -> dict:
    """``{ticket (None = aggregate): value}`` of ``metric`` in the dense reference's rows.

    A routed metric of a ticket method (``subset_accuracy_oracle``) is read as the
    reference's unrouted one (``subset_accuracy``: the dense model on that subset).
    """
    signals = set(reference["signal"])
    names = [metric]
    for base in ("subset_accuracy", "accuracy"):
        if metric.startswith(base + "_"):
            names.append(base)
    name = next((n for n in names if n in signals), None)
    if name is None:
        return {}
    rows = reference[reference["signal"] == name]
    pairs = zip(rows["ticket"], rows["value"], strict=True)
    return {None if pd.isna(t) else int(t): float(v) for t, v in pairs}


def labelled_collapse_points(
    curves: pd.DataFrame,
    metric: str = "balanced_accuracy",
    margin: float = 0.05,
    dense_level: int = 0,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The labelled collapse point of each ticket and of the mean over tickets.

    The collapse point is the first level after ``dense_level`` where the
    metric falls more than ``margin`` (absolute) below its dense value:
    ``value < dense_value - margin``. The dense value is read from
    ``reference`` (the run's dense reference, :func:`analysis.levels.dense_reference`)
    when given, else from the method's own ``dense_level``.

    Parameters
    ----------
    curves : DataFrame
        One method's curves, columns ``level, sparsity, ticket, signal, value``.
    metric : str
        Signal to read, e.g. ``"balanced_accuracy"``, ``"accuracy_oracle"``.
    margin : float
        Absolute drop that counts as collapse.
    dense_level : int
        The method's unpruned level (level 0); collapse is looked for after it,
        and it is the dense value when ``reference`` is None.
    reference : DataFrame, optional
        The dense reference's curve rows at its level (columns ``ticket, signal,
        value``, e.g. IMP level 0). Each ticket is compared with the
        reference's value of the same ticket (per subset; the aggregate with the
        aggregate), a routed metric with the unrouted one (``subset_accuracy_oracle``
        with ``subset_accuracy``); a ticket the reference lacks falls back to the
        reference's aggregate, then to the method's own ``dense_level``.

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
    ref = _reference_values(reference, metric) if reference is not None else {}
    out = []
    for ticket, g in rows.groupby("ticket", dropna=False, sort=True):
        g = g.sort_values("level")
        key = None if pd.isna(ticket) else int(ticket)
        d = ref.get(key, ref.get(None, np.nan))
        if not np.isfinite(d):
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
    points: pd.DataFrame,
    alarm_level: int | None,
    alarm_sparsity: float | None,
    *,
    values: pd.DataFrame | None = None,
    margin: float = 0.05,
    window: int = 2,
) -> pd.DataFrame:
    """Score an alarm against labelled collapse points: a bounded lead, and what stopping at it costs.

    An alarm is useful when it fires shortly before the labelled collapse, not
    whenever it fires early: an alarm that always fires at the first level
    would catch every collapse and give up most of the sparsity.

    Parameters
    ----------
    points : DataFrame
        Output of :func:`labelled_collapse_points`.
    alarm_level : int or None
        Level at which the alarm fired (``CollapseAlarm.level_``), None if it never fired.
    alarm_sparsity : float or None
        Sparsity at that level.
    values : DataFrame, optional
        The labelled metric per level, columns ``ticket`` (Int64, ``<NA>`` =
        the mean), ``level``, ``sparsity``, ``value`` (the rows of the metric
        in the curves). Needed for the regret columns (NaN without it).
    margin : float
        The margin of :func:`labelled_collapse_points`.
    window : int
        Largest lead (levels) that still counts as a hit.

    Returns
    -------
    DataFrame
        ``points`` plus ``alarm_level`` (Int64), ``alarm_sparsity``,
        ``lead_levels`` (Int64) and ``lead_sparsity`` (collapse minus alarm:
        positive when the alarm fires before the drop; NA unless both exist),
        ``outcome``:

        - ``hit``: fired 1 to ``window`` levels before the drop;
        - ``early``: fired more than ``window`` levels before it;
        - ``late``: fired at the level of the drop or after it;
        - ``miss``: the metric dropped and the alarm never fired;
        - ``false_alarm``: fired and the metric never dropped (within the sweep);
        - ``true_negative``: neither;

        and the regret of stopping at the alarm (at the last level when it
        never fires): ``sparsity_given_up``, the sparsity of the last level
        before the drop (the last level of the sweep when nothing drops) minus
        the alarm's, when positive, else 0; ``metric_lost``, how far the metric
        at the stopping level lies below ``dense_value - margin``, when
        positive, else 0.
    """
    out = points.copy()
    fired = alarm_level is not None
    out["alarm_level"] = pd.array([alarm_level] * len(out), dtype="Int64")
    out["alarm_sparsity"] = float(alarm_sparsity) if fired and alarm_sparsity is not None else np.nan
    dropped = out["collapse_level"].notna().to_numpy()
    out["lead_levels"] = (out["collapse_level"] - out["alarm_level"]).astype("Int64")
    out["lead_sparsity"] = out["collapse_sparsity"] - out["alarm_sparsity"]
    lead = out["lead_levels"].astype("Float64").fillna(np.nan).to_numpy(dtype=float)
    if fired:
        timed = np.where(lead > window, "early", np.where(lead >= 1, "hit", "late"))
        outcome = np.where(dropped, timed, "false_alarm")
    else:
        outcome = np.where(dropped, "miss", "true_negative")
    out["outcome"] = pd.Series(outcome, index=out.index, dtype=object)
    given_up, lost = [], []
    for row in out.itertuples(index=False):
        if values is None:
            given_up.append(np.nan)
            lost.append(np.nan)
            continue
        t = row.ticket
        v = values[values["ticket"].isna()] if pd.isna(t) else values[values["ticket"] == t]
        v = v.sort_values("level")
        if v.empty:
            given_up.append(np.nan)
            lost.append(np.nan)
            continue
        by_level = v.set_index("level")
        stop = int(alarm_level) if fired else int(v["level"].iloc[-1])
        if pd.notna(row.collapse_level):
            safe = v[v["level"] < int(row.collapse_level)]
            best_sparsity = float(safe["sparsity"].iloc[-1]) if len(safe) else np.nan
        else:
            best_sparsity = float(v["sparsity"].iloc[-1])
        stop_sparsity = float(by_level["sparsity"].get(stop, np.nan))
        given_up.append(max(best_sparsity - stop_sparsity, 0.0) if np.isfinite(best_sparsity) else np.nan)
        at_stop = float(by_level["value"].get(stop, np.nan))
        lost.append(max(row.dense_value - margin - at_stop, 0.0) if np.isfinite(at_stop) else np.nan)
    out["sparsity_given_up"] = np.asarray(given_up, dtype=np.float64)
    out["metric_lost"] = np.asarray(lost, dtype=np.float64)
    return out


def alarm_summary(evaluation: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Counts of alarm outcomes, mean lead times and mean regret.

    Parameters
    ----------
    evaluation : DataFrame
        Output of :func:`evaluate_alarm` or :func:`collapse_evaluation`.
    by : list of str, optional
        Columns to group by (e.g. ``["method"]``); default: one overall row.

    Returns
    -------
    DataFrame
        Columns ``*by, n, hit, early, late, miss, false_alarm, true_negative,
        mean_lead_levels, mean_lead_sparsity`` (means over the alarms that
        fired and had a drop to lead; NaN when there are none),
        ``mean_sparsity_given_up``, ``mean_metric_lost`` (over all rows; NaN
        when the evaluation has no regret columns).
    """
    by = list(by or [])
    groups = evaluation.groupby(by, sort=False, dropna=False) if by else [((), evaluation)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        counts = g["outcome"].value_counts()
        detected = g[g["outcome"].isin(["hit", "early", "late"])]
        rows.append(
            (
                *key,
                len(g),
                *(int(counts.get(o, 0)) for o in OUTCOMES),
                float(detected["lead_levels"].astype(float).mean()) if len(detected) else np.nan,
                float(detected["lead_sparsity"].mean()) if len(detected) else np.nan,
                float(g["sparsity_given_up"].mean()) if "sparsity_given_up" in g else np.nan,
                float(g["metric_lost"].mean()) if "metric_lost" in g else np.nan,
            )
        )
    return pd.DataFrame(
        rows,
        columns=[
            *by,
            "n",
            *OUTCOMES,
            "mean_lead_levels",
            "mean_lead_sparsity",
            "mean_sparsity_given_up",
            "mean_metric_lost",
        ],
    )


def reference_rows(curves: pd.DataFrame, reference: tuple[str, int] | None) -> pd.DataFrame | None:
    """The rows of ``curves`` at the dense reference ``(method, level)``; None when it has none.

    Parameters
    ----------
    curves : DataFrame
        :func:`collapse_curves` output (``method`` column).
    reference : tuple of (str, int) or None
        :func:`analysis.levels.dense_reference` of the run.
    """
    if reference is None or "method" not in curves:
        return None
    rows = curves[(curves["method"] == reference[0]) & (curves["level"] == reference[1])]
    return rows if len(rows) else None


def collapse_evaluation(
    curves: pd.DataFrame,
    *,
    alarm: CollapseAlarm | None = None,
    metric: str = "balanced_accuracy",
    margin: float = 0.05,
    window: int = 2,
    reference: tuple[str, int] | pd.DataFrame | None = None,
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
    window : int
        See :func:`evaluate_alarm`.
    reference : tuple of (str, int) or DataFrame, optional
        The run's dense reference ``(method, level)``
        (:func:`analysis.levels.dense_reference`), read from ``curves``, or its
        rows already (:func:`reference_rows`); None (or a method ``curves``
        lacks): each method's own level 0.

    Returns
    -------
    DataFrame
        ``method`` then the columns of :func:`evaluate_alarm`, plus
        ``alarm_criteria`` (criteria that fired, joined by ``"+"``; ``""`` if none).
    """
    alarm = alarm or CollapseAlarm()
    ref_rows = reference if isinstance(reference, pd.DataFrame) else reference_rows(curves, reference)
    frames = []
    for method, c in curves.groupby("method", sort=False):
        a = replace(alarm).fit(c)  # a fresh copy: the caller's alarm is left unfitted
        values = c[c["signal"] == metric][["ticket", "level", "sparsity", "value"]]
        ev = evaluate_alarm(
            labelled_collapse_points(c, metric, margin, reference=ref_rows),
            a.level_,
            a.sparsity_,
            values=values,
            margin=margin,
            window=window,
        )
        ev.insert(0, "method", method)
        ev["alarm_criteria"] = "+".join(a.criteria_)
        frames.append(ev)
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- command line


def collapse_report(
    run: Run, metric: str = "balanced_accuracy", margin: float = 0.05, window: int = 2
) -> str:
    """The alarm of every classification method of a run, scored against the labelled drop, as markdown.

    Parameters
    ----------
    run : Run
    metric, margin, window
        See :func:`collapse_evaluation` (methods without ``metric`` fall back
        to ``accuracy``).

    Returns
    -------
    str
        Three markdown tables: where the alarm fired per method (with the mean
        over tickets' outcome and regret), the outcome counts over tickets,
        and the alarm's trace (signals per level).
    """
    from analysis.overview import alarm_overview, collapse_evaluation_by_method, method_capabilities

    caps = method_capabilities(run)
    methods = list(caps.loc[caps["classification"], "method"])
    if not methods:
        return f"{run.name}: no method records class predictions; the alarm is not scored."
    from analysis.levels import dense_reference

    curves = collapse_curves(run, methods)
    ref = dense_reference(run)
    ev = collapse_evaluation_by_method(curves, metric, margin, reference=ref)
    if window != 2:  # collapse_evaluation_by_method uses the default window
        ev = pd.concat(
            [
                collapse_evaluation(
                    c,
                    metric=str(ev[ev["method"] == m]["metric"].iloc[0]),
                    margin=margin,
                    window=window,
                    reference=reference_rows(curves, ref),
                )
                for m, c in curves.groupby("method", sort=False)
                if (ev["method"] == m).any()
            ],
            ignore_index=True,
        )
    over = alarm_overview(ev)
    summary = alarm_summary(ev[ev["ticket"].notna()], ["method"])
    traces = []
    for m, c in curves.groupby("method", sort=False):
        tr = CollapseAlarm().fit(c).trace_
        traces.append(
            tr[["level", "sparsity", "overlap", "rise", "threshold", "pred_entropy"]].assign(method=m)
        )
    trace = pd.concat(traces, ignore_index=True)
    trace = trace[["method", *[c for c in trace.columns if c != "method"]]]
    return (
        f"**{run.name}**: label-free collapse alarm against the labelled drop (margin {margin}, "
        f"hit window 1-{window} levels)\n\n" + _markdown(over) + "\n\nPer ticket:\n\n" + _markdown(summary)
    )


def _markdown(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return "–"
        if isinstance(v, float | np.floating):
            return f"{v:.3f}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def add_collapse_command(subparsers) -> None:
    """Register ``python -m analysis collapse RUN [--metric M] [--margin X] [--window W]``."""
    from pathlib import Path

    p = subparsers.add_parser("collapse", help="print where the collapse alarm fired and how it scores")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--metric", default="balanced_accuracy", help="labelled signal of the drop")
    p.add_argument("--margin", type=float, default=0.05, help="absolute drop that counts as collapse")
    p.add_argument("--window", type=int, default=2, help="largest lead (levels) that counts as a hit")

    def _run(args) -> int:
        from artifacts.run_format import load_run

        print(collapse_report(load_run(args.run), args.metric, args.margin, args.window))
        return 0

    p.set_defaults(func=_run)
