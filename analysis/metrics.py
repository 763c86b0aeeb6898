"""Labelled per-ticket metrics from a level's predictions table.

The paper scores every ticket as a one-vs-rest detector of its own subset and
reports balanced accuracy, precision and recall averaged over tickets. A
decision threshold decides much of that comparison (detectors fire at
logit > 0 after class-balanced training; one ticket for all data "detects" a
subset by its argmax), so this module reports, for every method alike:

- threshold-free figures from the stored scores ``score_<k>``: AUROC and
  average precision (:func:`sklearn.metrics.roc_auc_score`,
  :func:`sklearn.metrics.average_precision_score`);
- balanced accuracy at one threshold rule shared by every method: the
  threshold maximising balanced accuracy (Youden's J on the ROC curve) chosen
  on held-out samples: the run's validation split when it stores one
  (``validation=``), otherwise 2-fold cross-fitting on the evaluation samples
  (stratified by subset, fixed seed: the threshold is chosen on one half and
  scored on the other, then the halves swap and the two scores are averaged);
- balanced accuracy at the class prior (``score_<k> >= pi_k``, pi_k the share
  of subset k in the evaluation split): the Bayes rule for balanced accuracy
  when a score is a calibrated probability under the natural prior, as IMP's
  class-mass scores are; class-balanced detectors are calibrated to 0.5
  instead, which this rule does not know;
- balanced accuracy, precision and recall at each method's own decision rule
  (``detect_<k>``: a detector's logit > 0; for one ticket serving all subsets,
  "the predicted class lies in subset k"; for experts, "max-score routing sends
  the sample to k").

K-way figures are named for what they count. A detector under oracle routing
predicts its class when it fires and abstains otherwise, so its "accuracy" is
the pooled recall of the detectors (a set of always-firing detectors would
score 1.0): it is reported as ``pooled_recall`` and never as an accuracy.
Expert tickets under oracle routing predict among their subset's classes; one
ticket for all data gets the same oracle, its argmax restricted to the true
subset's classes (``accuracy_oracle``; see :func:`single_oracle_accuracy`).

Output contract (:func:`ticket_metrics`), one row per (ticket, metric):

ticket : Int64
    Subset / ticket index k (the ``k`` of ``score_<k>``); ``<NA>`` marks an
    aggregate row.
metric : str
    Per ticket (one-vs-rest, ``subset == k`` is the positive class):
    ``auroc``, ``average_precision`` (from ``score_<k>``),
    ``balanced_accuracy`` (common held-out threshold), ``balanced_accuracy_prior``,
    ``balanced_accuracy_own``, ``precision``, ``recall`` (own rule);
    ``subset_accuracy_<routing>`` (accuracy on subset k's samples under that
    routing; experts and single tickets only), ``subset_accuracy`` (single).
    Aggregate only: ``accuracy`` (K-way accuracy of ``pred``),
    ``accuracy_<routing>`` (of ``pred_<routing>``; for detectors not under
    oracle routing), ``pooled_recall`` (detectors: share of samples whose own
    detector fires), ``accuracy_oracle`` for single tickets, or
    ``accuracy_oracle_low`` / ``accuracy_oracle_high`` when the stored
    records only bound it.
value : float
n : int
    Samples behind the value (subset size for a ticket row, all samples for an
    aggregate row).

Aggregate rows (``ticket`` is ``<NA>``) hold the unweighted mean over tickets
of each per-ticket metric (as the paper reports), and the K-way figures.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    roc_auc_score,
)

__all__ = [
    "TICKET_KINDS",
    "balanced_accuracy_at",
    "crossfit_balanced_accuracy",
    "detector_columns",
    "routing_columns",
    "score_columns",
    "single_oracle_accuracy",
    "ticket_metrics",
    "youden_threshold",
]

TICKET_KINDS = ("detector", "expert", "single", "imported")
_DETECT_RE = re.compile(r"^detect_(\d+)$")
_SCORE_RE = re.compile(r"^score_(\d+)$")
_PRED_RE = re.compile(r"^pred_(.+)$")
CROSSFIT_SEED = 0


def detector_columns(predictions: pd.DataFrame) -> dict[int, str]:
    """Map ticket index k to its ``detect_<k>`` column, sorted by k.

    Parameters
    ----------
    predictions : DataFrame
        A level's predictions table (columns: :mod:`artifacts.run_format`).

    Returns
    -------
    dict of int to str
    """
    found = {int(m.group(1)): c for c in predictions.columns if (m := _DETECT_RE.match(str(c)))}
    return dict(sorted(found.items()))


def score_columns(predictions: pd.DataFrame) -> dict[int, str]:
    """Map ticket index k to its ``score_<k>`` column, sorted by k.

    Parameters
    ----------
    predictions : DataFrame

    Returns
    -------
    dict of int to str
    """
    found = {int(m.group(1)): c for c in predictions.columns if (m := _SCORE_RE.match(str(c)))}
    return dict(sorted(found.items()))


def routing_columns(predictions: pd.DataFrame) -> dict[str, str]:
    """Map routing name to its ``pred_<routing>`` column, in column order.

    Parameters
    ----------
    predictions : DataFrame

    Returns
    -------
    dict of str to str
    """
    return {m.group(1): c for c in predictions.columns if (m := _PRED_RE.match(str(c)))}


def _quiet(fn, *args, **kwargs) -> float:
    # A ticket that never fires, or a subset absent from the split, makes
    # sklearn warn on every level; the zero_division choice is documented.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        return float(fn(*args, **kwargs))


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.any() and not y.all())


def youden_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """The score threshold that maximises balanced accuracy (Youden's J = TPR - FPR).

    Parameters
    ----------
    y_true : ndarray of bool, shape (n,)
    score : ndarray of float, shape (n,)

    Returns
    -------
    float
        Decide positive when ``score >= threshold``; NaN unless both classes
        are present; ``+inf`` (never positive) when no threshold beats J = 0.
        Ties between thresholds go to the highest one. The ROC points are
        those of :func:`sklearn.metrics.roc_curve` (tested), counted directly
        because this runs for every ticket, level and fold.
    """
    y = np.asarray(y_true, dtype=bool)
    if not _both_classes(y):
        return float("nan")
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    return _youden_sorted(y[order], s[order])


def _youden_sorted(y: np.ndarray, s: np.ndarray) -> float:
    """:func:`youden_threshold` of samples sorted by descending score (ties in any order), both classes in."""
    last = np.r_[s[1:] != s[:-1], True]  # the last sample of each run of tied scores
    tpr = np.cumsum(y)[last] / y.sum()
    fpr = np.cumsum(~y)[last] / (~y).sum()
    j = tpr - fpr
    best = int(np.argmax(j))
    return float(s[last][best]) if j[best] > 0 else float("inf")


def balanced_accuracy_at(y_true: np.ndarray, score: np.ndarray, threshold: float) -> float:
    """Balanced accuracy of the decision ``score >= threshold``.

    Parameters
    ----------
    y_true : ndarray of bool, shape (n,)
    score : ndarray of float, shape (n,)
    threshold : float

    Returns
    -------
    float
        As :func:`sklearn.metrics.balanced_accuracy_score` (the mean recall
        over the classes present; tested equal), counted directly because it
        runs for every ticket, level and fold. NaN when ``threshold`` is NaN
        or the split is empty.
    """
    y = np.asarray(y_true, dtype=bool)
    if np.isnan(threshold) or y.size == 0:  # +inf is a valid threshold: never positive
        return float("nan")
    d = np.asarray(score) >= threshold
    recalls = [
        r
        for r in (d[y].mean() if y.any() else None, (~d[~y]).mean() if (~y).any() else None)
        if r is not None
    ]
    return float(np.mean(recalls))


def crossfit_balanced_accuracy(
    y_true: np.ndarray, score: np.ndarray, strata: np.ndarray | None = None, seed: int = CROSSFIT_SEED
) -> float:
    """Balanced accuracy at a threshold chosen on held-out samples, by 2-fold cross-fitting.

    Parameters
    ----------
    y_true : ndarray of bool, shape (n,)
    score : ndarray of float, shape (n,)
    strata : ndarray, shape (n,), optional
        Stratify the halves by this column (e.g. the subset); default ``y_true``.
    seed : int
        Seed of the split (fixed: the same halves for every method scored on
        the same samples).

    Returns
    -------
    float
        Mean over the two halves of the balanced accuracy on one half at the
        :func:`youden_threshold` of the other; NaN when a half lacks a class.
    """
    y = np.asarray(y_true, dtype=bool)
    return _crossfit(y, score, _crossfit_fold(y if strata is None else strata, seed))


def _crossfit_fold(strata: np.ndarray, seed: int = CROSSFIT_SEED) -> np.ndarray:
    """The first half of :func:`crossfit_balanced_accuracy`'s split, bool (n,): half of each stratum.

    It depends on the strata and the seed only, so one level's tickets (same
    subsets) share it.
    """
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    fold = np.zeros(strata.size, dtype=bool)
    for v in np.unique(strata):
        idx = np.flatnonzero(strata == v)
        idx = idx[rng.permutation(idx.size)]
        fold[idx[: idx.size // 2]] = True
    return fold


def _crossfit(y: np.ndarray, score: np.ndarray, fold: np.ndarray) -> float:
    """:func:`crossfit_balanced_accuracy` on a given split ``fold`` (bool, shape (n,))."""
    s = np.asarray(score, dtype=np.float64)
    out = []
    for fit in (fold, ~fold):
        thr = youden_threshold(y[fit], s[fit])
        held = ~fit
        if not _both_classes(y[held]):
            return float("nan")
        out.append(balanced_accuracy_at(y[held], s[held], thr))
    return float(np.mean(out))


def _accuracy(label: np.ndarray, pred: np.ndarray) -> float:
    """``sklearn.metrics.accuracy_score(label, pred)`` (the mean of ``label == pred``; tested equal).

    Parameters
    ----------
    label, pred : ndarray, shape (n,), n > 0
        Class labels of one kind (sklearn refuses mixed kinds; the run format stores ints).
    """
    label, pred = np.asarray(label), np.asarray(pred)
    if label.dtype.kind not in "biu" or pred.dtype.kind not in "biu" or label.shape != pred.shape:
        return float(accuracy_score(label, pred))  # its checks and messages
    return float(np.average(label == pred))


def _ranked_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, highest score first.

    Parameters
    ----------
    y : ndarray of bool, shape (n,)
        Sorted by descending ``s``.
    s : ndarray of float64, shape (n,)
        Finite, sorted in descending order.

    Returns
    -------
    tps, fps : ndarray of float64, shape (n_distinct,)
        The counts of ``sklearn.metrics._ranking.confusion_matrix_at_thresholds``
        (whole numbers, so the order of tied samples does not matter).
    """
    idx = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y, dtype=np.float64)[idx]
    return tps, 1 + idx.astype(np.float64) - tps


def _auroc_sorted(y: np.ndarray, s: np.ndarray) -> float:
    """``sklearn.metrics.roc_auc_score`` of samples sorted by descending finite score, both classes in."""
    tps, fps = _ranked_counts(y, s)
    if fps.shape[0] > 2:  # sklearn's drop_intermediate: collinear points do not change the area
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[keep], fps[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return float(trapezoid(tps / tps[-1], fps / fps[-1]))


def _average_precision_sorted(y: np.ndarray, s: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score`` of samples sorted by descending finite score."""
    tps, fps = _ranked_counts(y, s)
    ps = tps + fps
    precision = np.r_[np.flip(np.where(ps != 0, np.divide(tps, ps), 0.0)), 1.0]
    recall = np.r_[np.flip(tps / tps[-1]), 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """``sklearn.metrics.roc_auc_score(y, s)`` (bit for bit, tested) without its input checks.

    Parameters
    ----------
    y : ndarray of bool, shape (n,)
        Both classes present.
    s : ndarray of float64, shape (n,)
    """
    if not np.isfinite(s).all():  # sklearn's own error
        return _quiet(roc_auc_score, y, s)
    order = np.argsort(-s, kind="stable")
    return _auroc_sorted(y[order], s[order])


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score(y, s)`` (bit for bit, tested) without its input checks.

    Parameters
    ----------
    y : ndarray of bool, shape (n,)
        At least one positive.
    s : ndarray of float64, shape (n,)
    """
    if not np.isfinite(s).all():
        return _quiet(average_precision_score, y, s)
    order = np.argsort(-s, kind="stable")
    return _average_precision_sorted(y[order], s[order])


def _ranking_metrics(y: np.ndarray, s: np.ndarray, fold: np.ndarray | None) -> tuple[float, float, float]:
    """AUROC, average precision and the cross-fitted balanced accuracy of one ticket, from one sort.

    Parameters
    ----------
    y : ndarray of bool, shape (n,)
    s : ndarray of float64, shape (n,)
    fold : ndarray of bool, shape (n,), or None
        The cross-fitting split (:func:`_crossfit_fold`); None: not computed (NaN).

    Returns
    -------
    auroc, average_precision, balanced_accuracy : float
        Equal to :func:`sklearn.metrics.roc_auc_score`,
        :func:`sklearn.metrics.average_precision_score` and
        :func:`crossfit_balanced_accuracy` (NaN where :func:`_one_vs_rest` leaves them undefined).
    """
    both, any_pos = _both_classes(y), bool(y.any())
    if not np.isfinite(s).all():  # the plain calls (sklearn raises on them)
        return (
            _quiet(roc_auc_score, y, s) if both else np.nan,
            _quiet(average_precision_score, y, s) if any_pos else np.nan,
            _crossfit(y, s, fold) if both and fold is not None else np.nan,
        )
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    auroc = _auroc_sorted(ys, ss) if both else np.nan
    ap = _average_precision_sorted(ys, ss) if any_pos else np.nan
    if not both or fold is None:
        return auroc, ap, np.nan
    out = []
    in_fit = fold[order]
    for fit, sorted_fit in ((fold, in_fit), (~fold, ~in_fit)):
        # youden_threshold(y[fit], s[fit]) on the already sorted samples of the half
        thr = _youden_sorted(ys[sorted_fit], ss[sorted_fit]) if _both_classes(y[fit]) else float("nan")
        held = ~fit
        if not _both_classes(y[held]):
            return auroc, ap, float("nan")
        out.append(balanced_accuracy_at(y[held], s[held], thr))
    return auroc, ap, float(np.mean(out))


def single_oracle_accuracy(predictions: pd.DataFrame) -> dict[str, float]:
    """Oracle-routed K-way accuracy of one ticket for all data: argmax within the true subset's classes.

    An expert routed by the oracle chooses among its subset's classes; the
    same oracle given to a single K-way classifier is its argmax restricted to
    those classes. The stored records hold the unrestricted argmax ``pred``:

    - when ``pred_oracle`` is stored, it is used;
    - when the subset is not a function of the label (input-space clusters,
      environments), every subset holds every class and the restriction
      changes nothing: ``pred``;
    - otherwise the restricted argmax is ``pred`` where ``pred`` lies in the
      true subset, the label where the subset has a single class, and unknown
      elsewhere (a cross-subset error of the unrestricted argmax): the result
      is exact when no sample is unknown, else a lower bound (unknown = wrong)
      and an upper bound (unknown = right);
    - with one class per subset (class partitions) the restricted argmax is
      the label: nothing is reported (a detector's analogue is its pooled recall).

    Parameters
    ----------
    predictions : DataFrame
        Columns ``label``, ``subset``, ``pred`` (and optionally ``pred_oracle``).

    Returns
    -------
    dict of str to float
        ``{"accuracy_oracle": v}`` when exact, else
        ``{"accuracy_oracle_low": lo, "accuracy_oracle_high": hi}``; empty for
        no samples.
    """
    if predictions.empty:
        return {}
    label = predictions["label"].to_numpy()
    if "pred_oracle" in predictions:
        return {"accuracy_oracle": float(accuracy_score(label, predictions["pred_oracle"].to_numpy()))}
    subset = predictions["subset"].to_numpy()
    pred = predictions["pred"].to_numpy()
    per_label = predictions.groupby("label")["subset"].nunique()
    if (per_label > 1).any():  # subsets are not sets of classes: no restriction
        return {"accuracy_oracle": float(accuracy_score(label, pred))}
    subset_of = dict(zip(per_label.index, predictions.groupby("label")["subset"].first(), strict=True))
    n_classes = pd.Series(subset_of).value_counts()
    if (n_classes == 1).all():  # one class per subset: the restricted argmax is the label itself
        return {}
    pred_subset = np.array([subset_of.get(p, -1) for p in pred])
    inside = pred_subset == subset
    single = np.array([n_classes.get(s, 0) == 1 for s in subset])
    right = np.where(inside, pred == label, single)
    unknown = ~inside & ~single
    lo = float(right[~unknown].sum() / len(label))
    if not unknown.any():
        return {"accuracy_oracle": lo}
    return {"accuracy_oracle_low": lo, "accuracy_oracle_high": lo + float(unknown.mean())}


def _one_vs_rest(
    y_true: np.ndarray,
    score: np.ndarray | None,
    decision: np.ndarray | None,
    fold: np.ndarray,
    prior: float,
    validation: tuple[np.ndarray, np.ndarray] | None,
) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    n_k = int(y_true.sum())
    both = _both_classes(y_true)
    if score is not None:
        # fold: the split of crossfit_balanced_accuracy(y_true, score, strata=subset)
        auroc, ap, common = _ranking_metrics(y_true, score, None if validation is not None else fold)
        rows.append(("auroc", auroc))
        rows.append(("average_precision", ap))
        if validation is not None:
            thr = youden_threshold(*validation)
            common = balanced_accuracy_at(y_true, score, thr) if both else np.nan
        rows.append(("balanced_accuracy", common))
        rows.append(
            ("balanced_accuracy_prior", balanced_accuracy_at(y_true, score, prior) if len(y_true) else np.nan)
        )
    if decision is not None:  # counted directly (equal to sklearn's, tested): runs per ticket and level
        d, n = decision.astype(bool), len(y_true)
        fired = int(d.sum())
        rows.append(("balanced_accuracy_own", balanced_accuracy_at(y_true, d, 0.5) if n else np.nan))
        rows.append(("precision", (float((d & y_true).sum() / fired) if fired else 0.0) if n else np.nan))
        rows.append(("recall", float(d[y_true].mean()) if n_k else np.nan))
    return rows


def ticket_metrics(
    predictions: pd.DataFrame,
    ticket_kind: str,
    *,
    default_routing: str | None = None,
    validation: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One-vs-rest metrics per ticket (threshold-free and thresholded), K-way figures, and their means.

    Parameters
    ----------
    predictions : DataFrame
        One row per sample with ``label``, ``subset``, ``pred``, ``pred_<routing>``,
        ``score_<k>`` and ``detect_<k>`` columns (see :mod:`artifacts.run_format`).
    ticket_kind : {"detector", "expert", "single", "imported"}
        How the method's tickets are used (``manifest["methods"][m]["ticket_kind"]``).
        Imported tickets carry no per-sample records: the table is empty.
    default_routing : str, optional
        The routing behind ``pred`` (``manifest["methods"][m]["default_routing"]``).
        For detectors under ``"oracle"``, ``pred`` counts the pooled recall and
        no ``accuracy`` row is written.
    validation : DataFrame, optional
        The same method's predictions on a validation split (same columns):
        the common threshold is chosen there instead of by cross-fitting.

    Returns
    -------
    DataFrame
        Columns ``ticket`` (Int64, ``<NA>`` = aggregate), ``metric``, ``value``
        (float), ``n`` (int); see the module docstring.

    Notes
    -----
    Precision of a ticket that never fires is 0 (sklearn ``zero_division=0``).
    A ticket whose subset has no sample in the table gets ``n = 0`` and NaN
    recall, AUROC, average precision and subset accuracy (undefined), and is
    left out of the means. ``balanced_accuracy_own`` follows sklearn: the
    mean recall over the classes present in the truth.
    Without ``score_<k>`` / ``detect_<k>`` columns (one ticket for all data
    over an input-space partition) only accuracies are reported.
    """
    if ticket_kind not in TICKET_KINDS:
        raise ValueError(f"ticket_kind must be one of {TICKET_KINDS}, got {ticket_kind!r}")
    columns = ["ticket", "metric", "value", "n"]
    if ticket_kind == "imported" or predictions.empty:
        return pd.DataFrame({"ticket": pd.array([], dtype="Int64"), "metric": [], "value": [], "n": []})[
            columns
        ]
    detect = detector_columns(predictions)
    scores = score_columns(predictions)
    subset = predictions["subset"].to_numpy()
    label = predictions["label"].to_numpy()
    routings = routing_columns(predictions)

    rows: list[tuple[int | None, str, float, int]] = []
    tickets = sorted(set(detect) | set(scores)) or sorted(int(k) for k in np.unique(subset))
    fold = _crossfit_fold(subset) if scores else None  # the cross-fitting split: shared by the tickets
    for k in tickets:
        y_true = subset == k
        n_k = int(y_true.sum())
        score = predictions[scores[k]].to_numpy(dtype=np.float64) if k in scores else None
        decision = predictions[detect[k]].to_numpy().astype(bool) if k in detect else None
        val = None
        if validation is not None and k in scores and scores[k] in validation:
            val = (validation["subset"].to_numpy() == k, validation[scores[k]].to_numpy(dtype=np.float64))
        prior = float(y_true.mean()) if len(y_true) else np.nan
        rows += [(k, m, v, n_k) for m, v in _one_vs_rest(y_true, score, decision, fold, prior, val)]
        if ticket_kind == "single" and n_k:
            acc = _accuracy(label[y_true], predictions["pred"].to_numpy()[y_true])
            rows.append((k, "subset_accuracy", float(acc), n_k))
        if ticket_kind != "detector":
            for r, rcol in routings.items():
                pr = predictions[rcol].to_numpy()[y_true]
                acc = _accuracy(label[y_true], pr) if n_k else np.nan
                rows.append((k, f"subset_accuracy_{r}", float(acc), n_k))

    per_ticket = pd.DataFrame(rows, columns=columns)
    means = (
        per_ticket.dropna(subset=["value"])
        .groupby("metric", sort=False)["value"]
        .mean()
        .reindex(per_ticket["metric"].unique())
    )
    n_all = len(predictions)
    agg = [(None, m, float(v), n_all) for m, v in means.items()]
    kway = []
    if ticket_kind == "detector":
        if not (default_routing == "oracle"):
            kway.append(("accuracy", "pred"))
        kway += [(f"accuracy_{r}", c) for r, c in routings.items() if r != "oracle"]
        if detect:
            own = np.zeros(n_all, dtype=bool)
            for k, c in detect.items():
                own |= (subset == k) & predictions[c].to_numpy().astype(bool)
            agg.append((None, "pooled_recall", float(own.mean()), n_all))
    else:
        kway = [("accuracy", "pred"), *((f"accuracy_{r}", c) for r, c in routings.items())]
    for name, col in kway:
        if col in predictions and n_all:
            agg.append((None, name, _accuracy(label, predictions[col].to_numpy()), n_all))
    if ticket_kind == "single" and "oracle" not in routings:
        agg += [(None, m, v, n_all) for m, v in single_oracle_accuracy(predictions).items()]
    out = pd.concat([per_ticket, pd.DataFrame(agg, columns=per_ticket.columns)], ignore_index=True)
    out["ticket"] = out["ticket"].astype("Int64")
    out["value"] = out["value"].astype(float)
    out["n"] = out["n"].astype(int)
    return out
