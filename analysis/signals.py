"""Label-free candidate signals of subnetwork collapse, each with a noise band.

Every signal here is computed from masks and from the scores a run stores for
unlabelled inputs; none reads a label, a true subset, a group column or a
prediction that used them (oracle routing). They are the candidates a collapse
alarm may be built on (issue 14); the labelled collapse point is elsewhere
(:mod:`analysis.collapse`).

Signal table (:func:`run_signals`, :func:`mask_signal_table`, ...)
------------------------------------------------------------------
One row per (method, level, ticket, signal):

method : str
level : int
sparsity : float
    Fraction of prunable weights removed at that level (``level.json``), 0..1.
ticket : Int64
    Ticket index k; ``<NA>`` marks an aggregate row (the unweighted mean over
    tickets of a per-ticket signal, or a signal of the whole method).
signal : str
    Name (below).
value : float
    NaN where the signal is undefined (e.g. churn at the first level).
null : float
    Mask signals: the value expected under the null of random masks with the
    same per-layer densities (NaN for prediction signals).
low, high : float
    The noise band: for prediction signals the ``[alpha/2, 1 - alpha/2]``
    percentile interval of a bootstrap over the unlabelled samples (seeded,
    paired across levels and runs: the same resampled samples everywhere); for
    mask signals the central ``1 - alpha`` interval under the null (a normal
    approximation, see below). NaN where no band applies.
band : str
    ``"bootstrap"``, ``"null"``, ``"nominal"`` (``null`` holds the value nested
    pruning at the observed sizes would give; no band) or ``"none"`` (a
    deterministic function of the densities, such as ``min_layer_density``,
    has no noise to compare with).

Mask signals (any run; :func:`mask_signal_table`)
-------------------------------------------------
Per ticket (aggregate row = mean over tickets):

- ``mean_jaccard``, ``mean_jaccard_star``: mean Jaccard J, and chance-corrected
  J* = (J - E[J]) / (1 - E[J]), to the other tickets, all prunable weights
  pooled (weight-weighted: the largest layer dominates).
- ``mean_jaccard_layers``, ``mean_jaccard_star_layers``: the same per layer,
  then averaged with equal layer weights.
- ``min_layer_density``: the ticket's smallest per-layer kept fraction. In a
  layer disjoint by construction (below) the fraction is of the weights the
  ticket kept there at the first level (its own head row), not of the layer.
- ``mask_excess_removal``: of the ticket's kept weights at the previous level,
  the fraction removed beyond the nominal rate, ``(|m_L| - |m_L ∩ m_{L-1}|) /
  |m_{L-1}|`` (the weights that came back; 0 for nested IMP masks).
- ``mask_level_jaccard``: Jaccard between the ticket's masks at consecutive levels.
  For these two, ``null`` is the nominal value of nested pruning (excess 0,
  Jaccard ``|m_L| / |m_{L-1}|``): random masks are no useful reference here.

Aggregate only:

- ``union_growth``, ``core_growth``: relative change from the previous level of
  the union (weights kept by some ticket) and of the core (weights kept by
  every ticket), ``(|U_L| - |U_{L-1}|) / |U_{L-1}|``.

Layers in which the tickets' masks are pairwise disjoint at the method's first
level (one-vs-rest detector heads: one row per ticket) are left out of every
similarity (RTL.md section 6: disjoint by construction, no claim); the
similarity module's functions do the counting.

The null band of J: in a layer of ``N`` weights the intersection of random
masks of sizes ``a`` and ``b`` is hypergeometric; over layers the means and
variances add (:func:`analysis.similarity.hypergeometric_z_from_counts`). The
band maps ``E|A ∩ B| ± z sd`` through ``J = I / (a + b - I)``; for a ticket's
mean over the others, the pair bands are averaged (conservative: as if the
pairs were perfectly correlated). Union and core counts under the null are sums
of independent Bernoullis per weight (``1 - prod(1 - d_k)``, ``prod d_k``); the
band of a growth is the delta-method interval, left out (NaN) when fewer than
10 weights are expected at the previous level.

Prediction signals (classification runs; :func:`prediction_signal_table`)
-------------------------------------------------------------------------
Columns read (:func:`label_free_view`), per ``ticket_kind``:

- ``detector``: ``score_<k>`` (sigmoid of ticket k's logit), ``detect_<k>``
  (logit > 0), ``route_max_score`` (argmax of the logits; else the argmax of the
  stored scores). The label-free prediction is the routed ticket index.
- ``expert``: ``score_<k>`` (expert k's confidence, or on class and map
  partitions its mass on subset k's classes), ``confidence`` (the largest expert
  confidence, stored beside subset masses; else the max of ``score_<k>``),
  ``pred_max_score`` (the class predicted by the most confident expert; else the
  argmax ticket).
- ``single``: ``pred`` (the network's argmax class: no routing), ``confidence``
  (its max class probability; else the max of ``score_<k>``), ``score_<k>``.

Never read: ``label``, ``label_name``, ``subset``, the manifest's group columns,
``pred`` of a routed method, ``pred_oracle``/``route_oracle``,
``pred_centroid``/``route_centroid``. Methods of other kinds (regions,
environments: no class scores) have mask signals only.

Aggregate rows:

- ``fire_count``, ``fire_none``, ``fire_multi`` (detectors): mean number of
  detectors firing per sample; fraction of samples where none / more than one fires.
- ``margin``: mean gap between the largest and second-largest ticket score.
- ``confidence``: mean max confidence.
- ``pred_entropy``: entropy (nats) of the histogram of label-free predictions.
- ``churn``: fraction of samples whose label-free prediction differs from the
  previous level.
- ``dense_disagreement``: fraction differing from the method's own level 0, its
  dense network (for ``imp`` this is Hooker et al. 2019's dense model).
- ``imp_disagreement``: fraction differing from ``imp`` level 0, for methods
  whose label-free prediction is a class (``single``, ``expert``).
- ``seed_disagreement`` (:func:`seed_disagreement_table`, several runs): mean
  over run pairs of the fraction of samples two seeds predict differently at
  the same level (Jiang et al. 2022).
- ``atc_accuracy``: the ATC estimate (Garg et al. 2022) of the accuracy of the
  label-free prediction: the fraction of samples whose confidence exceeds a
  threshold ``t`` fitted on level 0 only (:func:`fit_atc_threshold`).

ATC and labels: ``t`` is fitted on the labelled rows of level 0 of the same
method (the dense network; the runs store no validation-split predictions,
so it is the test split's dense rows), so that the fraction of those rows above
``t`` equals the dense accuracy. This is the only place labels are read, and
only at level 0; every later level's estimate uses its confidences alone.
Without labels at level 0 (or with ``atc_threshold`` fixed by the caller, e.g.
from another run), no label is read at all.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import entropy, hypergeom, norm

from analysis.similarity import (
    OverlapCounts,
    chance_jaccard_from_counts,
    jaccard_from_counts,
    jaccard_star,
    layer_overlap_counts,
)

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "PREDICTION_KINDS",
    "SIGNAL_COLUMNS",
    "LabelFreeView",
    "add_signals_command",
    "atc_estimate",
    "bootstrap_band",
    "disjoint_layers",
    "entropy_band",
    "fit_atc_threshold",
    "has_class_predictions",
    "first_departures",
    "label_free_view",
    "mask_signal_table",
    "prediction_signal_table",
    "resample_counts",
    "run_signals",
    "seed_disagreement_table",
]

SIGNAL_COLUMNS = ["method", "level", "sparsity", "ticket", "signal", "value", "null", "low", "high", "band"]
PREDICTION_KINDS = ("detector", "expert", "single")
# Mask signals whose reference is not a random-mask null (module docstring).
_MASK_BANDS = {"min_layer_density": "none", "mask_excess_removal": "nominal", "mask_level_jaccard": "nominal"}
_MIN_NULL_COUNT = 10.0  # below this expected count the normal band of a growth is not drawn
_SCORE_RE = re.compile(r"^score_(\d+)$")


# ----------------------------------------------------------------------------- tidy rows


class _Rows:
    """Accumulates signal rows of one method and level."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(
        self,
        method: str,
        level: int,
        sparsity: float,
        ticket: int | None,
        signal: str,
        value: float,
        null: float = np.nan,
        low: float = np.nan,
        high: float = np.nan,
        band: str = "none",
    ) -> None:
        self.rows.append(
            (
                method,
                int(level),
                float(sparsity),
                ticket,
                signal,
                float(value),
                float(null),
                float(low),
                float(high),
                band,
            )
        )

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=SIGNAL_COLUMNS)
        df["ticket"] = pd.array([None if pd.isna(t) else int(t) for t in df["ticket"]], dtype="Int64")
        df["level"] = df["level"].astype(np.int64)
        for c in ("sparsity", "value", "null", "low", "high"):
            df[c] = df[c].astype(np.float64)
        return df


def _empty() -> pd.DataFrame:
    return _Rows().frame()


# ----------------------------------------------------------------------------- mask signals


def disjoint_layers(masks: Mapping[str, np.ndarray]) -> list[str]:
    """Layers in which no two tickets share a kept weight (and some ticket keeps one).

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)

    Returns
    -------
    list of str
        Empty when K < 2.
    """
    out = []
    for name, c in layer_overlap_counts(masks).items():
        if c.n_tickets < 2:
            return []
        off = c.intersection[~np.eye(c.n_tickets, dtype=bool)]
        if c.sizes.sum() > 0 and not off.any():
            out.append(name)
    return out


def _null_jaccard_band(per_layer: Sequence[OverlapCounts], z: float) -> tuple[np.ndarray, np.ndarray]:
    """Band of J for random masks of the observed per-layer sizes, each (K, K)."""
    mean = var = 0.0
    for c in per_layer:
        a = c.sizes
        m = np.full((a.size, a.size), c.n_weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu, v = hypergeom.stats(m, a[:, None], a[None, :], moments="mv")
        mean = mean + np.nan_to_num(np.asarray(mu, dtype=np.float64))
        var = var + np.where(m <= 1, 0.0, np.nan_to_num(np.asarray(v, dtype=np.float64)))
    sizes = sum(c.sizes for c in per_layer).astype(np.float64)
    total = sizes[:, None] + sizes[None, :]
    lo_i = np.clip(mean - z * np.sqrt(var), 0.0, np.minimum(sizes[:, None], sizes[None, :]))
    hi_i = np.clip(mean + z * np.sqrt(var), 0.0, np.minimum(sizes[:, None], sizes[None, :]))

    def j(i: np.ndarray) -> np.ndarray:
        den = total - i
        return np.divide(i, den, out=np.ones_like(i), where=den > 0)

    return j(lo_i), j(hi_i)


def _pair_signals(per_layer: Sequence[OverlapCounts], z: float) -> dict[str, np.ndarray]:
    """J, E[J], J*, and the null band of J and J*, each (K, K), layers pooled."""
    total = per_layer[0]
    for c in per_layer[1:]:
        total = total + c
    j = jaccard_from_counts(total)
    chance = chance_jaccard_from_counts(per_layer)
    lo, hi = _null_jaccard_band(per_layer, z)
    return {
        "j": j,
        "chance": chance,
        "star": jaccard_star(j, chance),
        "j_lo": lo,
        "j_hi": hi,
        "star_lo": jaccard_star(lo, chance),
        "star_hi": jaccard_star(hi, chance),
    }


def _mean_to_others(mat: np.ndarray) -> np.ndarray:
    k = mat.shape[0]
    off = ~np.eye(k, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.array(
            [np.nanmean(mat[i][off[i]]) if np.isfinite(mat[i][off[i]]).any() else np.nan for i in range(k)]
        )


def _nanmean0(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (no warning) where every entry is NaN."""
    ok = np.isfinite(x)
    n = ok.sum(axis=0)
    total = np.where(ok, x, 0.0).sum(axis=0)
    return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)


def _flat(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.asarray(m, dtype=bool).reshape(np.shape(m)[0], -1) for name, m in masks.items()}


def _union_core(flat: Mapping[str, np.ndarray], z: float) -> dict[str, tuple[float, float, float]]:
    """Observed count, null mean and null variance of the union and of the core."""
    out = {}
    u = sum(int(m.any(axis=0).sum()) for m in flat.values())
    c = sum(int(m.all(axis=0).sum()) for m in flat.values())
    u_mu = u_var = c_mu = c_var = 0.0
    for m in flat.values():
        n = m.shape[1]
        d = m.sum(axis=1) / max(n, 1)  # (K,)
        pu = 1.0 - np.prod(1.0 - d)
        pc = np.prod(d)
        u_mu += n * pu
        u_var += n * pu * (1 - pu)
        c_mu += n * pc
        c_var += n * pc * (1 - pc)
    out["union"] = (u, u_mu, u_var)
    out["core"] = (c, c_mu, c_var)
    return out


def _growth(now: tuple[float, float, float], before: tuple[float, float, float], z: float) -> tuple:
    """Relative change, its null expectation, and the null band (delta method)."""
    x, mu, var = now
    x0, mu0, var0 = before
    value = (x - x0) / x0 if x0 > 0 else np.nan
    if mu0 <= 0:
        return value, np.nan, np.nan, np.nan
    null = (mu - mu0) / mu0
    if mu0 < _MIN_NULL_COUNT:  # a handful of expected weights: no normal approximation
        return value, null, np.nan, np.nan
    sd = np.sqrt(var + var0) / mu0
    return value, null, null - z * sd, null + z * sd


def _level_change(prev: Mapping[str, np.ndarray], cur: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per ticket: excess removal and Jaccard between consecutive masks, and their nominal values.

    The nominal value is that of nested pruning at the observed sizes (the new
    mask inside the old one): excess ``max(|m_L| - |m_{L-1}|, 0) / |m_{L-1}|``
    (0 when the mask shrinks) and Jaccard ``min(a, b) / max(a, b)``.
    """
    names = [n for n in cur if n in prev]
    k = next(iter(cur.values())).shape[0]
    inter = np.zeros(k)
    a = np.zeros(k)  # |m_{L-1}|
    b = np.zeros(k)  # |m_L|
    for n in names:
        inter += (prev[n] & cur[n]).sum(axis=1)
        a += prev[n].sum(axis=1)
        b += cur[n].sum(axis=1)
    nan = np.full(k, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(a > 0, (b - inter) / a, np.nan)
        ex_nominal = np.where(a > 0, np.maximum(b - a, 0.0) / a, np.nan)
        union = a + b - inter
        lj = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)
        big = np.maximum(a, b)
        lj_nominal = np.where(big > 0, np.minimum(a, b) / np.where(big > 0, big, 1.0), 1.0)
    return {
        "mask_excess_removal": np.stack([excess, ex_nominal, nan, nan]),
        "mask_level_jaccard": np.stack([lj, lj_nominal, nan, nan]),
    }


def mask_signal_table(
    masks_by_level: Mapping[int, Mapping[str, np.ndarray]],
    sparsity: Mapping[int, float],
    method: str = "",
    *,
    exclude_layers: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Mask signals of one method's levels, with their values and bands under the null.

    Parameters
    ----------
    masks_by_level : mapping of int to (mapping of str to ndarray of bool, shape (K, *weight_shape))
        Masks of each level (the same layers and K at every level).
    sparsity : mapping of int to float
        Sparsity of each level.
    method : str
        Written into the ``method`` column.
    exclude_layers : sequence of str, optional
        Layers left out of the similarity signals; default: the layers disjoint
        at the first level (:func:`disjoint_layers`).
    alpha : float
        The null band is the central ``1 - alpha`` interval.

    Returns
    -------
    DataFrame
        Columns :data:`SIGNAL_COLUMNS` (module docstring).
    """
    levels = sorted(masks_by_level)
    if not levels:
        return _empty()
    z = float(norm.ppf(1 - alpha / 2))
    if exclude_layers is None:
        exclude_layers = disjoint_layers(masks_by_level[levels[0]])
    skip = set(exclude_layers)
    rows = _Rows()
    prev_flat: dict[str, np.ndarray] | None = None
    prev_uc: dict | None = None
    own: np.ndarray | None = None  # (K, L) weights each ticket may keep per layer
    for level in levels:
        s = float(sparsity[level])
        flat = _flat(masks_by_level[level])
        k = next(iter(flat.values())).shape[0]
        kept = np.stack([m.sum(axis=1) for m in flat.values()], axis=1)  # (K, L)
        sizes = np.array([m.shape[1] for m in flat.values()])  # (L,)
        if own is None:  # in a disjoint layer a ticket's own share (its head row) is its layer
            own = np.where([n in skip for n in flat], kept, sizes[None, :])  # (K, L)
        per_ticket: dict[str, np.ndarray] = {}  # signal -> (4, K): value, null, low, high
        per_ticket["min_layer_density"] = np.stack(
            [(kept / np.maximum(own, 1)).min(axis=1)] + [np.full(k, np.nan)] * 3
        )
        sim_layers = {n: m for n, m in flat.items() if n not in skip}
        if k >= 2 and sim_layers:
            counts = list(layer_overlap_counts(sim_layers).values())
            pooled = _pair_signals(counts, z)
            per = [_pair_signals([c], z) for c in counts]
            layered = {key: _nanmean0(np.stack([p[key] for p in per])) for key in pooled}
            for name, src in (("mean_jaccard", pooled), ("mean_jaccard_layers", layered)):
                per_ticket[name] = np.stack(
                    [_mean_to_others(src[x]) for x in ("j", "chance", "j_lo", "j_hi")]
                )
            for name, src in (("mean_jaccard_star", pooled), ("mean_jaccard_star_layers", layered)):
                per_ticket[name] = np.stack(
                    [
                        _mean_to_others(src["star"]),
                        np.zeros(k),
                        _mean_to_others(src["star_lo"]),
                        _mean_to_others(src["star_hi"]),
                    ]
                )
        if prev_flat is not None:
            per_ticket.update(_level_change(prev_flat, flat))
        for name, arr in per_ticket.items():
            band = _MASK_BANDS.get(name, "null")
            for t in range(k):
                rows.add(method, level, s, t, name, *arr[:, t], band=band)
            with np.errstate(invalid="ignore"):
                agg = [np.nanmean(x) if np.isfinite(x).any() else np.nan for x in arr]
            rows.add(method, level, s, None, name, *agg, band=band)
        uc = _union_core(flat, z)
        for name in ("union", "core"):
            if prev_uc is None:
                rows.add(method, level, s, None, f"{name}_growth", np.nan, band="null")
            else:
                rows.add(
                    method,
                    level,
                    s,
                    None,
                    f"{name}_growth",
                    *_growth(uc[name], prev_uc[name], z),
                    band="null",
                )
        prev_flat, prev_uc = flat, uc
    return rows.frame()


# ----------------------------------------------------------------------------- label-free predictions


class LabelFreeView:
    """What a classification level predicts without labels, aligned by sample.

    Attributes
    ----------
    sample : ndarray of int64, shape (n,)
        Sample ids, ascending.
    prediction : ndarray of int64, shape (n,)
        The label-free prediction (ticket index for detectors, class otherwise).
    confidence : ndarray of float64, shape (n,)
        The confidence the prediction is made with (max score).
    scores : ndarray of float64, shape (n, K) or None
        Ticket scores ``score_<k>``.
    fires : ndarray of bool, shape (n, K) or None
        Detector decisions ``detect_<k>`` (detectors only).
    columns : tuple of str
        The prediction columns that were read.
    """

    def __init__(self, sample, prediction, confidence, scores, fires, columns):
        self.sample = sample
        self.prediction = prediction
        self.confidence = confidence
        self.scores = scores
        self.fires = fires
        self.columns = columns


def _score_columns(df: pd.DataFrame) -> list[str]:
    cols = [(int(m.group(1)), c) for c in df.columns if (m := _SCORE_RE.match(str(c)))]
    return [c for _, c in sorted(cols)]


def label_free_view(predictions: pd.DataFrame, ticket_kind: str) -> LabelFreeView:
    """The label-free prediction and confidence of one level (columns: module docstring).

    Parameters
    ----------
    predictions : DataFrame
        A level's ``predictions.parquet``.
    ticket_kind : {"detector", "expert", "single"}

    Returns
    -------
    LabelFreeView
        Rows sorted by ``sample``.

    Raises
    ------
    ValueError
        For another ticket kind, or when the needed columns are missing.
    """
    if ticket_kind not in PREDICTION_KINDS:
        raise ValueError(f"no class predictions for ticket kind {ticket_kind!r} (known: {PREDICTION_KINDS})")
    df = predictions.sort_values("sample", kind="stable") if "sample" in predictions else predictions
    sample = df["sample"].to_numpy(np.int64) if "sample" in df else np.arange(len(df), dtype=np.int64)
    score_cols = _score_columns(df)
    scores = df[score_cols].to_numpy(np.float64) if score_cols else None
    fires = None
    used = list(score_cols)
    if ticket_kind == "single":
        if "pred" not in df:
            raise ValueError("a single-ticket level needs a 'pred' column")
        pred = df["pred"].to_numpy(np.int64)
        used.append("pred")
        if "confidence" in df:
            conf = df["confidence"].to_numpy(np.float64)
            used.append("confidence")
        elif scores is not None:
            conf = scores.max(axis=1)
        else:
            raise ValueError("a single-ticket level needs 'confidence' or score columns")
    else:
        if scores is None:
            raise ValueError(f"a {ticket_kind} level needs score_<k> columns")
        if ticket_kind == "expert" and "confidence" in df:  # score_<k> is a subset mass
            conf = df["confidence"].to_numpy(np.float64)
            used.append("confidence")
        else:
            conf = scores.max(axis=1)
        routed = (
            df["route_max_score"].to_numpy(np.int64) if "route_max_score" in df else scores.argmax(axis=1)
        )
        if "route_max_score" in df:
            used.append("route_max_score")
        if ticket_kind == "expert" and "pred_max_score" in df:
            pred = df["pred_max_score"].to_numpy(np.int64)
            used.append("pred_max_score")
        else:
            pred = routed
        if ticket_kind == "detector":
            det = [f"detect_{c[len('score_') :]}" for c in score_cols]
            fires = df[det].to_numpy(bool) if all(d in df for d in det) else scores >= 0.5
            used += [d for d in det if d in df]
    return LabelFreeView(sample, pred, conf, scores, fires, tuple(used))


def has_class_predictions(predictions: pd.DataFrame, ticket_kind: str) -> bool:
    """Whether a level stores what :func:`label_free_view` needs.

    Parameters
    ----------
    predictions : DataFrame
    ticket_kind : str

    Returns
    -------
    bool
        False for other ticket kinds (regions, environments) and for
        single-ticket levels without a ``pred`` column (e.g. speech enhancement).
    """
    if ticket_kind not in PREDICTION_KINDS:
        return False
    scores = bool(_score_columns(predictions))
    if ticket_kind == "single":
        return "pred" in predictions and ("confidence" in predictions or scores)
    return scores


def _align(ref: LabelFreeView, other: LabelFreeView) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``ref`` and ``other`` of their common samples."""
    _, ia, ib = np.intersect1d(ref.sample, other.sample, assume_unique=True, return_indices=True)
    return ia, ib


# ----------------------------------------------------------------------------- bootstrap


def _boot_index(n: int, n_boot: int, random_state: int, level: int) -> np.ndarray:
    """(n_boot, n) resampling indices, the same for every method at one level."""
    rng = np.random.default_rng([random_state, level])
    return rng.integers(0, n, size=(n_boot, n))


def resample_counts(index: np.ndarray) -> np.ndarray:
    """How many times each sample is drawn in each resample.

    Parameters
    ----------
    index : ndarray of int, shape (B, n)
        Resampling indices into n samples.

    Returns
    -------
    ndarray of float64, shape (B, n)
        Whole numbers summing to n per row. A resample's sum of whole-numbered
        per-sample values is ``counts @ x``: every partial sum is a whole number
        below 2**53, so it is exact in any order and equals the sum over
        ``x[index]`` bit for bit, without gathering B * n values.
    """
    b, n = index.shape
    flat = (index + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _exact_by_counts(x: np.ndarray) -> bool:
    """Whether ``counts @ x`` sums ``x`` exactly: whole, non-negative (no -0.0), small values."""
    return bool(
        x.size
        and np.isfinite(x).all()
        and not np.signbit(x).any()
        and (x == np.floor(x)).all()
        and float(x.max()) * x.size < 2.0**53
    )


def bootstrap_band(
    per_sample: np.ndarray, index: np.ndarray, alpha: float = 0.05, counts: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Mean of a per-sample quantity and its bootstrap percentile interval.

    Parameters
    ----------
    per_sample : ndarray of float, shape (n,)
    index : ndarray of int, shape (B, n)
        Resampling indices (rows drawn with replacement).
    alpha : float
        The interval is ``[alpha/2, 1 - alpha/2]``.
    counts : ndarray of float64, shape (B, n), optional
        :func:`resample_counts` of ``index``: whole-numbered quantities
        (indicators, counts) are then summed per resample by one product, with
        the same result bit for bit.

    Returns
    -------
    value, low, high : float
    """
    x = np.asarray(per_sample, dtype=np.float64)
    if x.size == 0:
        return np.nan, np.nan, np.nan
    if counts is not None and _exact_by_counts(x):
        boot = (counts @ x) / x.size  # (B,): exact sums, divided as np.mean divides
    else:
        boot = x[index].mean(axis=1)  # (B,)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(lo), float(hi)


def entropy_band(
    pred: np.ndarray, index: np.ndarray, alpha: float = 0.05, counts: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Entropy (nats) of the prediction histogram and its bootstrap percentile interval.

    Parameters
    ----------
    pred : ndarray of int, shape (n,)
    index : ndarray of int, shape (B, n)
    alpha : float
    counts : ndarray of float64, shape (B, n), optional
        :func:`resample_counts` of ``index``: the class histograms of the
        resamples are then one product (the same whole numbers).

    Returns
    -------
    value, low, high : float
        ``value`` equals ``scipy.stats.entropy`` of the class counts.
    """
    pred = np.asarray(pred)
    if pred.size == 0:
        return np.nan, np.nan, np.nan
    _, codes = np.unique(pred, return_inverse=True)
    c = int(codes.max()) + 1
    value = float(entropy(np.bincount(codes, minlength=c)))  # scipy's, the oracle
    b = index.shape[0]
    if counts is not None:
        onehot = np.zeros((pred.size, c))
        onehot[np.arange(pred.size), codes] = 1.0
        hist = np.rint(counts @ onehot).astype(np.int64)  # (B, c): exact whole-number sums
    else:
        hist = np.bincount((codes[index] + c * np.arange(b)[:, None]).ravel(), minlength=b * c).reshape(b, c)
    p = hist / hist.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.maximum(-np.where(p > 0, p * np.log(p), 0.0).sum(axis=1), 0.0)
    lo, hi = np.quantile(h, [alpha / 2, 1 - alpha / 2])
    return value, float(lo), float(hi)


# ----------------------------------------------------------------------------- ATC


def fit_atc_threshold(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ATC threshold: the fraction of confidences above it equals the accuracy.

    Parameters
    ----------
    confidence : ndarray of float, shape (n,)
        Max confidence on labelled (dense, level 0) samples.
    correct : ndarray of bool, shape (n,)
        Whether each prediction is right.

    Returns
    -------
    float
        ``t`` with ``mean(confidence > t) ≈ mean(correct)`` (the
        ``1 - accuracy`` quantile of the confidences; exact up to ties).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if conf.shape != correct.shape or conf.size == 0:
        raise ValueError("confidence and correct must be non-empty and of the same shape")
    acc = float(correct.mean())
    return float(np.quantile(conf, 1.0 - acc, method="inverted_cdf")) if acc < 1 else float(conf.min()) - 1.0


def atc_estimate(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Per-sample ATC indicator ``confidence > threshold`` (its mean estimates accuracy).

    Parameters
    ----------
    confidence : ndarray of float, shape (n,)
    threshold : float

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    return (np.asarray(confidence, dtype=np.float64) > threshold).astype(np.float64)


def _dense_correct(predictions: pd.DataFrame, ticket_kind: str) -> np.ndarray | None:
    """Correctness of the label-free prediction at level 0, or None without labels."""
    df = predictions.sort_values("sample", kind="stable") if "sample" in predictions else predictions
    view = label_free_view(df, ticket_kind)
    truth_col = "subset" if ticket_kind == "detector" else "label"
    if truth_col not in df:
        return None
    return view.prediction == df[truth_col].to_numpy(np.int64)


# ----------------------------------------------------------------------------- prediction signals


def _ticket_kind(run: Run, method: str) -> str:
    return str(run.manifest["methods"][method].get("ticket_kind", "detector"))


def _bootstrap_row(
    rows: _Rows,
    method: str,
    level: int,
    sparsity: float,
    idx: np.ndarray,
    name: str,
    per_sample: np.ndarray,
    n_boot: int,
    alpha: float,
    random_state: int,
    counts: np.ndarray | None = None,
) -> None:
    """Add the mean of a per-sample quantity with its bootstrap band (``counts``: of ``idx``)."""
    n = per_sample.size
    # Paired levels share samples; if a level lost some, resample the common ones.
    if n == idx.shape[1]:
        value, lo, hi = bootstrap_band(per_sample, idx, alpha, counts=counts)
    else:
        value, lo, hi = bootstrap_band(per_sample, _boot_index(n, max(n_boot, 1), random_state, level), alpha)
    band = "bootstrap" if n_boot > 0 else "none"
    if n_boot <= 0:
        lo = hi = np.nan
    rows.add(method, level, sparsity, None, name, value, low=lo, high=hi, band=band)


def prediction_signal_table(
    views: Mapping[int, LabelFreeView],
    sparsity: Mapping[int, float],
    ticket_kind: str,
    method: str = "",
    *,
    dense: LabelFreeView | None = None,
    atc_threshold: float | None = None,
    n_boot: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:
    """Prediction signals of one method's levels, with bootstrap bands over samples.

    Parameters
    ----------
    views : mapping of int to LabelFreeView
        Label-free predictions of each level (:func:`label_free_view`).
    sparsity : mapping of int to float
    ticket_kind : {"detector", "expert", "single"}
    method : str
    dense : LabelFreeView, optional
        The imp level-0 predictions, for ``imp_disagreement`` (class predictions only).
    atc_threshold : float, optional
        ATC threshold (:func:`fit_atc_threshold`); without it no ``atc_accuracy`` row.
    n_boot : int
        Bootstrap resamples of the samples (0: no band).
    alpha : float
        Percentile interval ``[alpha/2, 1 - alpha/2]``.
    random_state : int
        Seed; the resampling at a level depends only on it and the level, so
        every method and run is resampled the same way.

    Returns
    -------
    DataFrame
        Columns :data:`SIGNAL_COLUMNS`; aggregate rows (``ticket`` NA).
    """
    rows = _Rows()
    steps = _prediction_steps(
        rows,
        views,
        sparsity,
        ticket_kind,
        method,
        dense=dense,
        atc_threshold=atc_threshold,
        n_boot=n_boot,
        alpha=alpha,
        random_state=random_state,
    )
    _run_steps([steps], n_boot, random_state)
    return rows.frame()


def _prediction_steps(
    rows: _Rows,
    views: Mapping[int, LabelFreeView],
    sparsity: Mapping[int, float],
    ticket_kind: str,
    method: str,
    *,
    dense: LabelFreeView | None,
    atc_threshold: float | None,
    n_boot: int,
    alpha: float,
    random_state: int,
) -> Generator[tuple[int, int], tuple[np.ndarray, np.ndarray], None]:
    """The levels of :func:`prediction_signal_table`, one step per level, adding to ``rows``.

    Yields ``(level, n samples)`` and is sent that level's resampling index and
    :func:`resample_counts` (:func:`_run_steps` draws them), so that methods
    sharing a level and its samples share the draw: it depends on the level,
    ``n`` and the seed only.
    """
    levels = sorted(views)
    first = views[levels[0]] if levels else None
    prev: LabelFreeView | None = None
    for level in levels:
        v = views[level]
        s = float(sparsity[level])
        idx, counts = yield level, v.sample.size  # shared by the level's whole-numbered signals

        def add(name: str, per_sample: np.ndarray, at: tuple = (level, s, idx), counts=counts) -> None:
            _bootstrap_row(rows, method, *at, name, per_sample, n_boot, alpha, random_state, counts)

        if v.fires is not None:
            n_fire = v.fires.sum(axis=1)
            add("fire_count", n_fire)
            add("fire_none", n_fire == 0)
            add("fire_multi", n_fire > 1)
        if v.scores is not None and v.scores.shape[1] >= 2:
            top2 = np.sort(v.scores, axis=1)[:, -2:]
            add("margin", top2[:, 1] - top2[:, 0])
        add("confidence", v.confidence)
        h, lo, hi = entropy_band(v.prediction, idx, alpha, counts=counts)
        if n_boot <= 0:
            lo = hi = np.nan
        rows.add(
            method,
            level,
            s,
            None,
            "pred_entropy",
            h,
            low=lo,
            high=hi,
            band="bootstrap" if n_boot > 0 else "none",
        )
        for name, ref in (("churn", prev), ("dense_disagreement", first if level != levels[0] else v)):
            if ref is None:
                rows.add(method, level, s, None, name, np.nan, band="bootstrap")
                continue
            ia, ib = _align(v, ref)
            add(name, v.prediction[ia] != ref.prediction[ib])
        if dense is not None and ticket_kind in ("single", "expert"):
            ia, ib = _align(v, dense)
            add("imp_disagreement", v.prediction[ia] != dense.prediction[ib])
        if atc_threshold is not None:
            add("atc_accuracy", atc_estimate(v.confidence, atc_threshold))
        prev = v


def _run_steps(steps: Sequence[Generator], n_boot: int, random_state: int) -> None:
    """Run :func:`_prediction_steps` generators level by level, each draw made once per (level, n)."""
    pending: dict[int, tuple[int, int]] = {}
    for i, g in enumerate(steps):
        with contextlib.suppress(StopIteration):
            pending[i] = next(g)
    while pending:
        level = min(lv for lv, _ in pending.values())
        drawn: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # this level's draws, by n
        for i in sorted(pending):
            lv, n = pending[i]
            if lv != level:
                continue
            if n not in drawn:
                idx = _boot_index(n, max(n_boot, 1), random_state, level)
                drawn[n] = (idx, resample_counts(idx))
            try:
                pending[i] = steps[i].send(drawn[n])
            except StopIteration:
                del pending[i]


def seed_disagreement_table(
    runs: Sequence[Run],
    methods: Sequence[str] | None = None,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:
    """Disagreement between runs (seeds) at the same level (Jiang et al. 2022).

    For each method and level present in every run, the per-sample
    disagreement is averaged over the run pairs, on the samples all runs share;
    the value is its mean, the band a bootstrap over those samples.

    Parameters
    ----------
    runs : sequence of Run
        Two or more runs of one group (e.g. ``seed-0/``, ``seed-1/``).
    methods : sequence of str, optional
        Default: the methods every run has, with class predictions.
    n_boot, alpha, random_state
        As in :func:`prediction_signal_table`.

    Returns
    -------
    DataFrame
        Columns :data:`SIGNAL_COLUMNS`, signal ``seed_disagreement``; the
        ``sparsity`` is that of the first run.
    """
    runs = list(runs)
    if len(runs) < 2:
        raise ValueError("seed disagreement needs at least two runs")
    common = [m for m in runs[0].methods if all(m in r.methods for r in runs[1:])]
    methods = [
        m
        for m in (methods or common)
        if has_class_predictions(runs[0].predictions(m, runs[0].levels(m)[0]), _ticket_kind(runs[0], m))
    ]
    rows = _Rows()
    for method in methods:
        kind = _ticket_kind(runs[0], method)
        levels = sorted(set.intersection(*(set(r.levels(method)) for r in runs)))
        for level in levels:
            views = [label_free_view(r.predictions(method, level), kind) for r in runs]
            shared = views[0].sample
            for v in views[1:]:
                shared = np.intersect1d(shared, v.sample, assume_unique=True)
            preds = np.stack([v.prediction[np.searchsorted(v.sample, shared)] for v in views])  # (R, n)
            ia, ib = np.triu_indices(len(runs), 1)
            per_sample = (preds[ia] != preds[ib]).mean(axis=0)  # (n,)
            idx = _boot_index(shared.size, max(n_boot, 1), random_state, level)
            value, lo, hi = bootstrap_band(per_sample, idx, alpha)
            if n_boot <= 0:
                lo = hi = np.nan
            s = runs[0].sparsity(method, level)
            rows.add(
                method,
                level,
                s,
                None,
                "seed_disagreement",
                value,
                low=lo,
                high=hi,
                band="bootstrap" if n_boot > 0 else "none",
            )
    return rows.frame()


# ----------------------------------------------------------------------------- a whole run


def run_signals(
    run: Run,
    methods: Sequence[str] | None = None,
    *,
    seeds: Sequence[Run] | None = None,
    atc: bool = True,
    atc_threshold: float | Mapping[str, float] | None = None,
    n_boot: int = 200,
    alpha: float = 0.05,
    random_state: int = 0,
) -> pd.DataFrame:
    """Every label-free signal of every level of a run's methods.

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: all methods of the run.
    seeds : sequence of Run, optional
        Other seeds of the same run group: adds ``seed_disagreement`` (``run``
        and ``seeds`` together).
    atc : bool
        Add ``atc_accuracy``, its threshold fitted on each method's level 0
        (the only labels read; module docstring).
    atc_threshold : float or mapping of str to float, optional
        Fixed ATC threshold(s) per method: then no label is read at all.
    n_boot, alpha, random_state
        Bootstrap of the prediction signals (:func:`prediction_signal_table`);
        ``alpha`` also sets the mask signals' null band.

    Returns
    -------
    DataFrame
        Columns :data:`SIGNAL_COLUMNS`, sorted by method (run order), level,
        ticket (aggregate rows last), signal.
    """
    methods = list(methods or run.methods)
    dense = None
    if "imp" in run.methods and run.levels("imp")[0] == 0:
        p0 = run.predictions("imp", 0)
        if _ticket_kind(run, "imp") == "single" and has_class_predictions(p0, "single"):
            dense = label_free_view(p0, "single")
    frames: list[pd.DataFrame | _Rows] = []
    steps = []  # every method's prediction levels, run level by level: one draw per level
    for method in methods:
        levels = run.levels(method)
        sparsity = {lv: run.sparsity(method, lv) for lv in levels}
        masks = {lv: run.masks(method, lv) for lv in levels}
        frames.append(mask_signal_table(masks, sparsity, method, alpha=alpha))
        kind = _ticket_kind(run, method)
        preds = {lv: run.predictions(method, lv) for lv in levels}
        if not has_class_predictions(preds[levels[0]], kind):
            continue
        views = {lv: label_free_view(p, kind) for lv, p in preds.items()}
        threshold = atc_threshold.get(method) if isinstance(atc_threshold, Mapping) else atc_threshold
        if threshold is None and atc and levels[0] == 0:
            correct = _dense_correct(preds[0], kind)
            if correct is not None:
                threshold = fit_atc_threshold(views[0].confidence, correct)
        rows = _Rows()  # in the place of the method's prediction table
        frames.append(rows)
        steps.append(
            _prediction_steps(
                rows,
                views,
                sparsity,
                kind,
                method,
                dense=dense if method != "imp" else None,
                atc_threshold=threshold if atc or atc_threshold is not None else None,
                n_boot=n_boot,
                alpha=alpha,
                random_state=random_state,
            )
        )
    _run_steps(steps, n_boot, random_state)
    frames = [f.frame() if isinstance(f, _Rows) else f for f in frames]
    if seeds:
        frames.append(
            seed_disagreement_table(
                [run, *seeds], methods, n_boot=n_boot, alpha=alpha, random_state=random_state
            )
        )
    out = pd.concat([f for f in frames if len(f)], ignore_index=True) if frames else _empty()
    order = {m: i for i, m in enumerate(methods)}
    out = out.assign(_m=out["method"].map(order), _agg=out["ticket"].isna())
    out = out.sort_values(["_m", "level", "_agg", "ticket", "signal"], kind="stable").drop(
        columns=["_m", "_agg"]
    )
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- departures from noise


def first_departures(table: pd.DataFrame, reference_level: int = 1, tol: float = 1e-3) -> pd.DataFrame:
    """The first level at which each signal leaves the noise around its reference value.

    A signal departs at level ``L > reference_level`` when
    ``|value_L - value_ref| > h_L + h_ref``, with ``h = (high - low) / 2`` the
    half-width of the row's noise band (bootstrap or null): the two values'
    bands, centred on them, no longer overlap. Signals without a band
    (``band`` "none" or "nominal") depart at the first change larger than
    ``tol``. This is a description of the curves, not a calibrated alarm.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`run_signals` (columns :data:`SIGNAL_COLUMNS`).
    reference_level : int
        Level the later values are compared with (default 1, the first pruned
        level: level 0 is the dense network, where J* and churn are undefined).
    tol : float
        Absolute change that counts for signals without a band (rounding of
        pruned counts moves a nominal 0.8 by ~1e-5).

    Returns
    -------
    DataFrame
        Columns ``method, ticket, signal, reference_value, level, sparsity,
        value, direction`` (``+1`` up, ``-1`` down); ``level`` is ``<NA>`` and
        ``sparsity``/``value`` NaN when the signal never departs. One row per
        method, ticket (``<NA>`` = aggregate) and signal with a finite
        reference value.
    """
    half = ((table["high"] - table["low"]) / 2).where(table["band"].isin(["bootstrap", "null"]), 0.0)
    t = table.assign(_h=half.fillna(0.0))
    out = []
    for (method, ticket, signal), g in t.groupby(["method", "ticket", "signal"], dropna=False, sort=False):
        g = g.sort_values("level")
        ref = g[g["level"] == reference_level]
        if ref.empty or not np.isfinite(ref["value"].iloc[0]):
            continue
        v0, h0 = float(ref["value"].iloc[0]), float(ref["_h"].iloc[0])
        later = g[g["level"] > reference_level]
        dist = (later["value"] - v0).abs()
        moved = later[
            (dist > later["_h"] + h0 + np.where(later["_h"] + h0 > 0, 0.0, tol)) & np.isfinite(later["value"])
        ]
        if moved.empty:
            out.append((method, ticket, signal, v0, None, np.nan, np.nan, 0))
        else:
            r = moved.iloc[0]
            out.append(
                (
                    method,
                    ticket,
                    signal,
                    v0,
                    int(r["level"]),
                    r["sparsity"],
                    r["value"],
                    int(np.sign(r["value"] - v0)),
                )
            )
    df = pd.DataFrame(
        out,
        columns=["method", "ticket", "signal", "reference_value", "level", "sparsity", "value", "direction"],
    )
    df["ticket"] = pd.array(list(df["ticket"]), dtype="Int64")
    df["level"] = pd.array(list(df["level"]), dtype="Int64")
    return df


# ----------------------------------------------------------------------------- command line


def add_signals_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``signals RUN [--json] [--out CSV]`` on the ``python -m analysis`` parser."""
    p = subparsers.add_parser(
        "signals",
        help="label-free collapse signals of a run, with noise bands",
        description=(
            "Compute every label-free collapse signal (masks, unlabelled predictions) of every "
            "level of a run, each with its noise band. Prints the aggregate rows; --out and "
            "--json carry every row."
        ),
    )
    p.add_argument("run", type=Path, help="run folder (holding manifest.json)")
    p.add_argument("--json", action="store_true", help="print every row as JSON records")
    p.add_argument("--out", type=Path, default=None, help="also write every row to this CSV file")
    p.add_argument(
        "--method", action="append", default=None, help="method to compute (repeatable; default all)"
    )
    p.add_argument(
        "--seed-run", type=Path, action="append", default=None, help="another seed of the run (repeatable)"
    )
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--no-atc", action="store_true", help="skip ATC (then no label is read at all)")
    p.set_defaults(func=_run_signals_command)


def _run_signals_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from artifacts.run_format import load_run

    run = load_run(args.run)
    seeds = [load_run(p) for p in args.seed_run or []]
    methods = args.method or run.methods
    frames = []
    for method in tqdm(methods, desc="signals", unit="method", file=sys.stderr, disable=None):
        frames.append(
            run_signals(run, [method], seeds=seeds or None, atc=not args.no_atc, n_boot=args.n_boot)
        )
    table = pd.concat(frames, ignore_index=True)
    if args.out is not None:
        table.to_csv(args.out, index=False)
    if args.json:
        print(table.to_json(orient="records", double_precision=6))
    else:
        agg = table[table["ticket"].isna()].drop(columns=["ticket"])
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(agg.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0
