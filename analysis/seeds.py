"""Views across seeds: any per-run table, per seed, as a mean and a 95 % interval.

A sweep writes one run per seed of one run description (a run group,
:class:`~artifacts.run_format.RunGroup`). Every tidy per-run table of this
package (results, similarity, collapse curves, fairness gaps, attention
entropy) can be computed per seed and reduced here to a mean and a Student-t
interval across seeds.

Seeds are aligned by pruning level: runs of one description prune the same
fraction per level, so level L has the same sparsity in every seed. That is
checked (:func:`check_aligned`); runs whose sparsities differ at a level are
refused rather than silently averaged.

Across-seed table columns (:func:`across_seeds`, :func:`seed_table`)
--------------------------------------------------------------------
<keys> :
    The columns that identify a row within one seed (e.g. ``method, level,
    metric``), as the per-run table has them.
sparsity : float
    Sparsity of the level (equal across seeds), when the per-run table has it.
measure : str
    Name of the per-run column that was aggregated (``value``, ``jaccard``, ...).
mean : float
    Mean over the seeds that have a finite value.
ci_low, ci_high : float
    Student-t interval of the mean, ``mean -/+ t_{(1+ci)/2, n-1} s / sqrt(n)``
    with ``s`` the sample standard deviation of the n seed values (as
    ``scipy.stats.t.interval(ci, n - 1, mean, s / sqrt(n))``). NaN for one seed.
half_width : float
    ``ci_high - mean``; NaN for one seed.
std : float
    Sample standard deviation across seeds (ddof 1); NaN for one seed.
n_seeds : int
    Number of seeds with a finite value in this row.
seeds_label : str
    ``"1 seed"`` or ``"n seeds"``, for captions.

Null control (:func:`null_similarity_table`)
--------------------------------------------
The same description on a ``random`` partition (K random subsets of the real
subsets' sizes, same theta_0 per seed) measures how alike tickets are from the
shared initialisation and the density alone. Real and null are compared per
level on the mean pairwise Jaccard J and chance-corrected J*, pooled over all
weights (``__global__``) and with equal layer weights (``__layer_mean__``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.attention_sweep import SUMMARY_COLUMNS as ATTENTION_SUMMARY_COLUMNS
from analysis.attention_sweep import attention_level_summary, attention_probe_tables, attention_unavailable
from analysis.collapse import CURVE_COLUMNS, collapse_curves
from analysis.fairness import GAP_COLUMNS, run_fairness_gaps
from analysis.levels import dense_reference
from analysis.overview import RESULT_COLUMNS, results_table
from analysis.similarity import GLOBAL, LAYER_MEAN, level_similarity_summary, similarity_table
from artifacts.run_format import Run, RunFormatError, RunGroup, find_groups, load_group

__all__ = [
    "SEED_COLUMNS",
    "SEED_TABLES",
    "SeedAlignmentError",
    "across_seeds",
    "attention_skipped",
    "check_aligned",
    "find_null_control",
    "is_null_control",
    "mean_pm_table",
    "null_long",
    "null_similarity_table",
    "per_seed",
    "pm_cell",
    "seed_runs",
    "seed_table",
    "seeds_label",
    "t_interval",
]

SEED_COLUMNS = ["measure", "mean", "ci_low", "ci_high", "half_width", "std", "n_seeds", "seeds_label"]
SPARSITY_ATOL = 1e-3  # sparsities of one level across seeds may differ by rounding only
NULL_PARTITION = "random"
# What a random-partition control may describe differently from its real sweep
# (lottery.presets' "<name>-null" presets: partition, methods, a fixed level count).
_IGNORED_TOP = {"seed", "methods", "probe_size", "keep_weights"}
_IGNORED_FIELDS = {"data": ("partition", "null_of"), "prune": ("levels", "until_collapse", "extra_levels")}

Source = RunGroup | Run | Sequence[Run] | str | Path


class SeedAlignmentError(ValueError):
    """Runs that cannot be aligned level by level (different sparsity at one level)."""


def seeds_label(n: int) -> str:
    """``"1 seed"`` or ``"n seeds"``."""
    return f"{int(n)} seed" if int(n) == 1 else f"{int(n)} seeds"


# ----------------------------------------------------------------------------- intervals


def t_interval(values: np.ndarray, ci: float = 0.95) -> tuple[np.ndarray, ...]:
    """Mean and Student-t interval across seeds, row by row, ignoring NaN.

    Parameters
    ----------
    values : ndarray of float, shape (rows, n_seeds)
        NaN where a seed has no value.
    ci : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    mean, ci_low, ci_high, std : ndarray of float, shape (rows,)
        ``ci_low``, ``ci_high`` and ``std`` are NaN where fewer than two seeds
        have a value; the interval has zero width when the seeds agree exactly.
    n : ndarray of int, shape (rows,)
        Seeds with a finite value.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    x = np.asarray(values, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D (rows, seeds), got shape {x.shape}")
    ok = np.isfinite(x)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, x, 0.0).sum(axis=1) / n
        dev = np.where(ok, x - mean[:, None], 0.0)
        std = np.sqrt((dev**2).sum(axis=1) / (n - 1))
        q = stats.t.ppf((1 + ci) / 2, np.maximum(n - 1, 1))
        half = q * std / np.sqrt(n)
    mean = np.where(n > 0, mean, np.nan)
    std = np.where(n > 1, std, np.nan)
    half = np.where(n > 1, half, np.nan)
    return mean, mean - half, mean + half, std, n


def _welch_interval(a: np.ndarray, b: np.ndarray, ci: float) -> tuple[float, float, float]:
    """Mean of ``a - b`` and Welch's t interval for two independent samples (NaN if either has < 2)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return np.nan, np.nan, np.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, np.nan, np.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    if se == 0:
        return d, d, d
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    q = float(stats.t.ppf((1 + ci) / 2, dof))
    return d, d - q * se, d + q * se


# ----------------------------------------------------------------------------- runs per seed


def seed_runs(source: Source) -> list[tuple[int, Run]]:
    """``(seed, run)`` pairs of a group, a group folder, a run or a list of runs.

    Parameters
    ----------
    source : RunGroup, Run, sequence of Run, str or Path
        A run group (its finished runs, in seed order), a group or run folder,
        or runs (their seed is ``description.seed`` of the manifest, else their
        position).

    Returns
    -------
    list of (int, Run)

    Raises
    ------
    RunFormatError
        When no run can be opened, or two runs carry the same seed.
    """
    from artifacts.run_format import is_group, load_run

    if isinstance(source, str | Path):
        source = load_group(source) if is_group(source) else load_run(source)
    if isinstance(source, RunGroup):
        pairs = []
        for seed, name in zip(source.seeds, source.run_names, strict=True):
            try:
                pairs.append((int(seed), load_run(source.path / name)))
            except RunFormatError:  # an unstarted or unfinished seed of a running sweep
                continue
        if not pairs:
            raise RunFormatError(f"{source.path}: no run of the group has a finished level")
        return pairs
    runs = [source] if isinstance(source, Run) else list(source)
    if not runs:
        raise RunFormatError("no run given")
    pairs = []
    for i, run in enumerate(runs):
        seed = (run.manifest.get("description") or {}).get("seed")
        pairs.append((int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else i, run))
    seeds = [s for s, _ in pairs]
    if len(set(seeds)) != len(seeds):
        raise RunFormatError(f"runs repeat a seed: {seeds}")
    return pairs


def per_seed(source: Source, table: Callable[..., pd.DataFrame], *args: Any, **kwargs: Any) -> pd.DataFrame:
    """A per-run table computed for every seed, stacked with a leading ``seed`` column.

    Parameters
    ----------
    source : RunGroup, Run, sequence of Run, str or Path
        See :func:`seed_runs`.
    table : callable
        ``table(run, *args, **kwargs) -> DataFrame``.

    Returns
    -------
    DataFrame
        ``seed`` then the columns of ``table``.
    """
    frames = []
    for seed, run in seed_runs(source):
        df = table(run, *args, **kwargs)
        df = df.copy()
        df.insert(0, "seed", seed)
        frames.append(df)
    # a seed without rows (none of the methods asked for) must not turn the other seeds' ints into objects
    return pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)


def check_aligned(
    stacked: pd.DataFrame, by: Sequence[str] = ("method",), *, atol: float = SPARSITY_ATOL
) -> pd.DataFrame:
    """Check that every level has one sparsity across seeds; returns it per (``by``, level).

    Parameters
    ----------
    stacked : DataFrame
        Columns ``seed, level, sparsity`` and ``by`` (those present are used).
    by : sequence of str
        Columns that key a level besides ``level`` (a method's level L is not another method's).
    atol : float
        Largest difference of sparsity tolerated between seeds at one level.

    Returns
    -------
    DataFrame
        Columns ``*by, level, sparsity`` (the mean over seeds).

    Raises
    ------
    SeedAlignmentError
        When some level's sparsity differs by more than ``atol`` between seeds
        (runs of different descriptions, or of another pruning schedule).
    """
    keys = [c for c in by if c in stacked.columns] + ["level"]
    per = stacked.groupby([*keys, "seed"], sort=False, dropna=False)["sparsity"].first().reset_index()
    g = per.groupby(keys, sort=False, dropna=False)["sparsity"]
    spread = (g.max() - g.min()).reset_index(name="spread")
    bad = spread[spread["spread"] > atol]
    if len(bad):
        row = bad.iloc[0]
        where = ", ".join(f"{k}={row[k]}" for k in keys)
        hit = np.ones(len(per), dtype=bool)
        for k in keys:
            hit &= (per[k] == row[k]).to_numpy()
        seen = per[hit]
        detail = ", ".join(
            f"seed {s}: {100 * v:.3f} %" for s, v in zip(seen["seed"], seen["sparsity"], strict=True)
        )
        raise SeedAlignmentError(
            f"the seeds do not prune alike at {where} ({detail}): runs of one description have the same "
            "sparsity at every level; compare runs of one preset and pruning schedule"
        )
    return g.mean().reset_index()


def across_seeds(
    stacked: pd.DataFrame,
    keys: Sequence[str],
    values: Sequence[str] = ("value",),
    *,
    ci: float = 0.95,
    atol: float = SPARSITY_ATOL,
) -> pd.DataFrame:
    """Mean and Student-t interval across seeds of a stacked per-seed table.

    Parameters
    ----------
    stacked : DataFrame
        Output of :func:`per_seed`: a ``seed`` column, ``keys``, ``values`` and,
        when the table is per level, ``level`` and ``sparsity``.
    keys : sequence of str
        Columns identifying a row within one seed (must include ``level`` when
        the table has one). Missing values (e.g. the ``<NA>`` ticket of an
        aggregate row) are a key of their own.
    values : sequence of str
        Numeric columns to aggregate, one output row each (``measure``).
    ci : float
        Interval coverage.
    atol : float
        Sparsity tolerance of :func:`check_aligned`.

    Returns
    -------
    DataFrame
        Columns ``*keys, [sparsity,] measure, mean, ci_low, ci_high, half_width,
        std, n_seeds, seeds_label`` (module docstring); per measure, rows in the
        order they first appear in ``stacked``.

    Raises
    ------
    SeedAlignmentError
        When the seeds' sparsities differ at some level.
    KeyError
        When a key or value column is missing.
    """
    keys = list(keys)
    missing = [c for c in [*keys, *values, "seed"] if c not in stacked.columns]
    if missing:
        raise KeyError(f"columns missing from the per-seed table: {missing}")
    has_sparsity = "sparsity" in stacked.columns and "level" in keys
    if has_sparsity:
        level_keys = [k for k in keys if k != "level" and k in ("method",)]
        sparsity = check_aligned(stacked, level_keys, atol=atol)
    frames = []
    seeds = sorted(stacked["seed"].unique())
    for value in values:
        wide = stacked.groupby([*keys, "seed"], sort=False, dropna=False)[value].mean().unstack("seed")
        wide = wide.reindex(columns=seeds)
        mean, lo, hi, std, n = t_interval(wide.to_numpy(dtype=float), ci)
        out = wide.index.to_frame(index=False)
        out["measure"] = value
        out["mean"], out["ci_low"], out["ci_high"] = mean, lo, hi
        out["half_width"], out["std"], out["n_seeds"] = hi - mean, std, n.astype(np.int64)
        frames.append(out)
    out = pd.concat(frames, ignore_index=True)
    out["seeds_label"] = [seeds_label(n) for n in out["n_seeds"]]
    if has_sparsity:
        out = out.merge(sparsity, on=[*level_keys, "level"], how="left")
        out = out[[*keys, "sparsity", *SEED_COLUMNS]]
    else:
        out = out[[*keys, *SEED_COLUMNS]]
    for k in keys:  # restore the per-run dtypes (pivot may turn ints into floats)
        if stacked[k].dtype != out[k].dtype:
            try:
                out[k] = out[k].astype(stacked[k].dtype)
            except (TypeError, ValueError):
                pass
    return out.reset_index(drop=True)  # rows in first-seen order (the per-run table's)


# ----------------------------------------------------------------------------- named per-run tables


def _similarity_curves(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean pair measures per method, level and scope (pooled and equal layer weight)."""
    frames = []
    for method in methods or run.methods:
        if method not in run.methods or len(run.ticket_names(method)) < 2:
            continue  # a control without this method, or a single ticket: no pairs
        summary = level_similarity_summary(similarity_table(run, method))
        summary = summary[summary["layer"].isin([GLOBAL, LAYER_MEAN])]
        summary.insert(0, "method", method)
        frames.append(summary)
    if not frames:
        return pd.DataFrame(columns=["method", "level", "sparsity", "layer", "jaccard", "jaccard_star"])
    return pd.concat(frames, ignore_index=True)


def _run_has(run: Run, methods: Sequence[str] | None) -> list[str] | None:
    """The requested methods this seed's run has (a seed of a running sweep may lack one); None: all."""
    return [m for m in methods if m in run.methods] if methods else None


def _collapse(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    have = _run_has(run, methods)
    if have == []:
        return pd.DataFrame(columns=["method", *CURVE_COLUMNS])
    return collapse_curves(run, have or None)


def _results(run: Run, methods: Sequence[str] | None = None) -> pd.DataFrame:
    have = _run_has(run, methods)
    if have == []:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    return results_table(run, have)


def _fairness(
    run: Run, methods: Sequence[str] | None = None, *, group_by: str, **kwargs: Any
) -> pd.DataFrame:
    have = _run_has(run, methods)
    if have == []:
        return pd.DataFrame(columns=["method", *GAP_COLUMNS])
    return run_fairness_gaps(run, group_by, have, **kwargs)


def attention_skipped(run: Run, methods: Sequence[str] | None = None) -> dict[str, str]:
    """The methods of ``run`` whose attention cannot be probed, with the reason.

    Parameters
    ----------
    run : Run
    methods : sequence of str, optional
        Default: every method of the run; methods the run lacks are left out.

    Returns
    -------
    dict of str to str
        ``method -> reason`` (:func:`analysis.attention_sweep.attention_unavailable`:
        not a transformer, imported checkpoints, no level kept its weights, no
        probe batch); empty when every method can be probed.
    """
    have = _run_has(run, methods)
    out = {}
    for method in run.methods if have is None else have:
        reason = attention_unavailable(run, method)
        if reason is not None:
            out[method] = reason
    return out


def _attention(
    run: Run, methods: Sequence[str] | None = None, *, tickets: Sequence[int] | None = None
) -> pd.DataFrame:
    """Attention entropy per method, level, ticket, image set and layer (``"all layers"`` included).

    The per-level summary the Attention page and the single-run report show
    (:func:`analysis.attention_sweep.attention_level_summary` over probe images,
    ``entropy_change`` against the run's dense reference), with a leading
    ``method`` column. Methods that cannot be probed (:func:`attention_skipped`)
    give no rows; ``tickets`` (indices, default all) limits the tickets probed.
    """
    have = _run_has(run, methods)
    skipped = attention_skipped(run, have)
    frames = []
    for method in run.methods if have is None else have:
        if method in skipped:
            continue
        k = len(run.ticket_names(method))
        chosen = list(range(k)) if tickets is None else [int(t) for t in tickets if 0 <= int(t) < k]
        tables = attention_probe_tables(run, method, chosen, reference=dense_reference(run, method))
        summary = attention_level_summary(tables["heads"], tables["images"], reference=tables["reference"])
        summary.insert(0, "method", method)
        frames.append(summary)
    if not frames:
        return pd.DataFrame(columns=["method", *ATTENTION_SUMMARY_COLUMNS])
    return pd.concat(frames, ignore_index=True)


# name -> (per-run table, keys, values). Each table takes (run, methods=None, **kwargs).
SEED_TABLES: dict[str, tuple[Callable[..., pd.DataFrame], list[str], list[str]]] = {
    "results": (_results, ["method", "level", "metric"], ["value"]),
    "similarity": (
        _similarity_curves,
        ["method", "level", "layer"],
        ["jaccard", "jaccard_chance", "jaccard_star", "iomin", "phi"],
    ),
    "collapse": (_collapse, ["method", "level", "ticket", "signal"], ["value"]),
    "fairness": (_fairness, ["method", "level", "group_by", "metric", "statistic"], ["value"]),
    "attention": (
        _attention,
        ["method", "level", "ticket", "images", "layer"],
        ["mean_entropy", "entropy_change"],
    ),
}


def seed_table(
    source: Source,
    name: str,
    methods: Sequence[str] | None = None,
    *,
    ci: float = 0.95,
    stacked: pd.DataFrame | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """One of the named per-run tables, as mean and interval across seeds.

    Parameters
    ----------
    source : RunGroup, Run, sequence of Run, str or Path
        See :func:`seed_runs`.
    name : {"results", "similarity", "collapse", "fairness", "attention"}
        - ``results``: :func:`analysis.overview.results_table`, keyed by
          ``method, level, metric``;
        - ``similarity``: :func:`analysis.similarity.level_similarity_summary`
          of multi-ticket methods, layers ``__global__`` and ``__layer_mean__``,
          keyed by ``method, level, layer``, measures ``jaccard,
          jaccard_chance, jaccard_star, iomin, phi``;
        - ``collapse``: :func:`analysis.collapse.collapse_curves`, keyed by
          ``method, level, ticket, signal``;
        - ``fairness``: :func:`analysis.fairness.run_fairness_gaps` (pass
          ``group_by=``), keyed by ``method, level, group_by, metric,
          statistic``; the per-seed bootstrap intervals and worst-group names
          are not carried over;
        - ``attention``: :func:`analysis.attention_sweep.attention_level_summary`
          of every method whose tickets can be probed (a ViT run that kept
          weights and a probe batch; others give no rows, see
          :func:`attention_skipped`), keyed by ``method, level, ticket, images,
          layer`` (``layer`` includes ``"all layers"``), measures
          ``mean_entropy`` (each seed's mean over its probe images) and
          ``entropy_change`` (against the run's dense reference); pass
          ``tickets=`` (indices) to probe fewer tickets.
    methods : sequence of str, optional
        Default: every method of each run.
    ci : float
    stacked : DataFrame, optional
        The per-seed table, if already computed (:func:`per_seed`).
    **kwargs
        Passed to the per-run table.

    Returns
    -------
    DataFrame
        Columns of :func:`across_seeds`.
    """
    if name not in SEED_TABLES:
        raise ValueError(f"unknown table {name!r}; choose one of {sorted(SEED_TABLES)}")
    fn, keys, values = SEED_TABLES[name]
    if stacked is None:
        stacked = per_seed(source, fn, methods, **kwargs)
    values = [v for v in values if v in stacked.columns]
    return across_seeds(stacked, keys, values, ci=ci)


# ----------------------------------------------------------------------------- the null control


def _description(manifest: Mapping) -> dict:
    desc = dict(manifest.get("description") or {})
    desc.pop("seed", None)
    return desc


def _partition(desc: Mapping) -> str | None:
    data = desc.get("data")
    return data.get("partition") if isinstance(data, Mapping) else None


def is_null_control(control: Mapping, real: Mapping) -> bool:
    """Whether the manifest ``control`` describes the random-partition control of ``real``.

    Parameters
    ----------
    control, real : mapping
        Group manifests (``group.json``) or run manifests; both carry ``description``.

    Returns
    -------
    bool
        True when ``control``'s ``data.partition`` is ``"random"``, ``real``'s is
        not, the control's ``data.null_of`` (when it has one) names ``real``'s
        partition, and the two describe the same data, model, training and
        pruning rate. Not compared: the seed, ``methods`` (a control drops the
        single-ticket baseline), ``probe_size``, ``keep_weights``, the number of
        levels and stopping rule (``prune.levels``, ``until_collapse``,
        ``extra_levels``: a control runs a fixed schedule covering the real
        sweep's), and fields only one side has (older runs).
    """
    a, b = _description(control), _description(real)
    if not a or not b or _partition(a) != NULL_PARTITION or _partition(b) in (None, NULL_PARTITION):
        return False
    null_of = a["data"].get("null_of")
    if null_of is not None and null_of != _partition(b):
        return False
    for key in set(a) & set(b):
        if key in _IGNORED_TOP:
            continue
        va, vb = a[key], b[key]
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            skip = _IGNORED_FIELDS.get(key, ())
            if any(va[f] != vb[f] for f in set(va) & set(vb) if f not in skip):
                return False
        elif va != vb:
            return False
    return True


def find_null_control(group: RunGroup | str | Path, *roots: str | Path) -> Path | None:
    """The random-partition control group of ``group``, looked for beside it.

    Parameters
    ----------
    group : RunGroup, str or Path
    *roots : str or Path
        Further folders to search (default: the group's parent folder only).

    Returns
    -------
    Path or None
        The first matching group (:func:`is_null_control`) in sorted order, None
        when there is none.
    """
    g = group if isinstance(group, RunGroup) else load_group(group)
    for path in find_groups(g.path.parent, *roots):
        if path.resolve() == g.path.resolve():
            continue
        try:
            other = load_group(path)
        except RunFormatError:
            continue
        if is_null_control(other.manifest, g.manifest):
            return path
    return None


NULL_MEASURES = ("jaccard", "jaccard_star")


def null_similarity_table(
    real: Source,
    null: Source,
    methods: Sequence[str] | None = None,
    *,
    ci: float = 0.95,
    measures: Sequence[str] = NULL_MEASURES,
    real_stacked: pd.DataFrame | None = None,
    null_stacked: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean pairwise J and J* of the real tickets against their random-partition null, per level.

    Parameters
    ----------
    real, null : RunGroup, Run, sequence of Run, str or Path
        The real runs and their control (same description with
        ``data.partition = "random"``), one run per seed each.
    methods : sequence of str, optional
        Default: multi-ticket methods both have.
    ci : float
    measures : sequence of str
        Pair measures of :func:`analysis.similarity.level_similarity_summary`.
    real_stacked, null_stacked : DataFrame, optional
        Per-seed similarity tables, if already computed (``per_seed(...,
        SEED_TABLES["similarity"][0])``).

    Returns
    -------
    DataFrame
        One row per ``method, level, layer, measure`` (layer ``__global__``:
        pooled over all weights; ``__layer_mean__``: equal layer weights), with
        ``sparsity``, then for ``real`` and ``null`` each ``<side>_mean,
        <side>_ci_low, <side>_ci_high, <side>_n_seeds`` (Student-t across seeds),
        then ``diff_mean, diff_ci_low, diff_ci_high`` for real minus null and
        ``diff_interval``: ``"paired t"`` over the seeds both have (a control
        shares theta_0 with the real run of its seed), else ``"Welch t"``;
        ``"none"`` where neither side has a value.
        Intervals are NaN with one seed (or one pair).

    Raises
    ------
    SeedAlignmentError
        When a level's sparsity differs between seeds or between real and null.
    """
    fn = SEED_TABLES["similarity"][0]
    r = real_stacked if real_stacked is not None else per_seed(real, fn, methods)
    n = null_stacked if null_stacked is not None else per_seed(null, fn, methods)
    both = sorted(set(r["method"]) & set(n["method"]))
    if methods is not None:
        both = [m for m in both if m in set(methods)]
    r, n = r[r["method"].isin(both)], n[n["method"].isin(both)]
    sp_r, sp_n = check_aligned(r), check_aligned(n)
    sp = sp_r.merge(sp_n, on=["method", "level"], suffixes=("_real", "_null"))
    off = sp[(sp["sparsity_real"] - sp["sparsity_null"]).abs() > SPARSITY_ATOL]
    if len(off):
        row = off.iloc[0]
        raise SeedAlignmentError(
            f"real and null runs do not prune alike: {row['method']} level {row['level']} is "
            f"{100 * row['sparsity_real']:.3f} % sparse in the real runs, {100 * row['sparsity_null']:.3f} % "
            "in the control; the control must be the same description with data.partition=random"
        )
    keys = ["method", "level", "layer"]
    rows = []
    for measure in measures:
        wr = r.groupby([*keys, "seed"])[measure].mean().unstack("seed")
        wn = n.groupby([*keys, "seed"])[measure].mean().unstack("seed")
        common = wr.index.intersection(wn.index)
        wr, wn = wr.loc[common], wn.loc[common]
        mr, lr, hr, _, nr = t_interval(wr.to_numpy(float), ci)
        mn, ln, hn, _, nn = t_interval(wn.to_numpy(float), ci)
        for i, key in enumerate(common):
            a, b = wr.iloc[i].dropna(), wn.iloc[i].dropna()
            if not len(a) and not len(b):  # undefined on both sides (J* of full masks)
                diff, kind = (np.nan, np.nan, np.nan), "none"
            elif len(a) and set(a.index) == set(b.index):  # paired by seed: a control shares theta_0
                d = (a - b.reindex(a.index)).to_numpy(float)
                dm, dl, dh, _, _ = t_interval(d[None, :], ci)
                diff, kind = (float(dm[0]), float(dl[0]), float(dh[0])), "paired t"
            else:
                diff, kind = _welch_interval(a.to_numpy(float), b.to_numpy(float), ci), "Welch t"
            rows.append(
                (*key, measure, mr[i], lr[i], hr[i], int(nr[i]), mn[i], ln[i], hn[i], int(nn[i]), *diff, kind)
            )
    cols = [
        *keys,
        "measure",
        "real_mean",
        "real_ci_low",
        "real_ci_high",
        "real_n_seeds",
        "null_mean",
        "null_ci_low",
        "null_ci_high",
        "null_n_seeds",
        "diff_mean",
        "diff_ci_low",
        "diff_ci_high",
        "diff_interval",
    ]
    out = pd.DataFrame(rows, columns=cols)
    out["level"] = out["level"].astype(np.int64)
    out = out.merge(sp_r, on=["method", "level"], how="left")
    out = out[[*keys[:2], "sparsity", *cols[2:]]]
    return out.sort_values(["method", "measure", "layer", "level"], kind="stable", ignore_index=True)


# ----------------------------------------------------------------------------- presentation tables


def pm_cell(
    mean: float, half: float, n: int, fmt: Callable[[float], str] = "{:.3f}".format, missing: str = "—"
) -> str:
    """One across-seed cell as text: ``mean ± half-width``, or the mean marked ``(1 seed)``.

    Parameters
    ----------
    mean, half : float
        Mean and interval half-width across seeds (:func:`across_seeds`).
    n : int
        Seeds with a value.
    fmt : callable
        Formats one number (the mean and the half-width alike).
    missing : str
        Shown when the mean is not finite.

    Returns
    -------
    str
        ``missing``; ``fmt(mean) (1 seed)`` for one seed; ``fmt(mean)`` when no
        seed count is known (n = 0) or the half-width is not finite;
        else ``fmt(mean) ± fmt(half)``.
    """
    if not np.isfinite(mean):
        return missing
    if n < 2 or not np.isfinite(half):
        return f"{fmt(mean)} (1 seed)" if n == 1 else fmt(mean)
    return f"{fmt(mean)} ± {fmt(half)}"


def _pm(mean: float, half: float, n: int, digits: int) -> str:
    return pm_cell(mean, half, n, f"{{:.{digits}f}}".format)


def mean_pm_table(
    table: pd.DataFrame, index: Sequence[str] = ("method", "level", "sparsity"), column: str = "metric"
) -> pd.DataFrame:
    """An across-seed table as text cells ``mean ± half-width``, one column per ``column`` value.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`across_seeds` (one ``measure``).
    index : sequence of str
        Row keys of the output.
    column : str
        Key whose values become columns (``metric`` of the results table).

    Returns
    -------
    DataFrame of str
        ``*index``, one column per ``column`` value (first-seen order), and
        ``seeds`` (``"n seeds"``, the fewest seeds of the row). Counts
        (``params_*``) are shown with no decimals, rates with 3; a one-seed
        cell reads ``0.812 (1 seed)``.
    """
    index = list(index)
    df = table.copy()
    cells = [
        _pm(m, h, int(n), 0 if str(c).startswith("params") else 3)
        for m, h, n, c in zip(df["mean"], df["half_width"], df["n_seeds"], df[column], strict=True)
    ]
    df["cell"] = cells
    order = list(dict.fromkeys(df[column]))
    wide = df.pivot_table(index=index, columns=column, values="cell", aggfunc="first", sort=False)
    wide = wide.reindex(columns=order).reset_index()
    wide.columns.name = None
    n = df.groupby(index, sort=False)["n_seeds"].min().reset_index(name="_n")
    wide = wide.merge(n, on=index, how="left")
    wide["seeds"] = [seeds_label(v) for v in wide.pop("_n")]
    return wide.reset_index(drop=True)


def null_long(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`null_similarity_table` as two across-seed style tables stacked, with a ``side`` column.

    Returns
    -------
    DataFrame
        Columns ``method, level, sparsity, layer, measure, side`` (``"real"``,
        ``"null"``), ``mean, ci_low, ci_high, n_seeds``: the shape
        :func:`analysis.figures.seeds.seed_band_figure` draws.
    """
    base = ["method", "level", "sparsity", "layer", "measure"]
    frames = []
    for side in ("real", "null"):
        part = table[base + [f"{side}_{c}" for c in ("mean", "ci_low", "ci_high", "n_seeds")]].copy()
        part.columns = [*base, "mean", "ci_low", "ci_high", "n_seeds"]
        part.insert(len(base), "side", side)
        frames.append(part)
    return pd.concat(frames, ignore_index=True)
