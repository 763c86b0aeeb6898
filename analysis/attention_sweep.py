"""Attention entropy of a run's transformer tickets over levels: probe, tabulate, summarise.

Glue between the probe (:mod:`analysis.attention_probe`, torch) and the
entropy tables (:mod:`analysis.attention`): which levels can be probed, the
per-head table of every probed ticket and level, per-image entropies, their
mean over images with an interval, and the trend against sparsity. torch is
imported only when a probe actually runs.

Each ticket is probed on two image sets: ``"own subset"``, the probe images of
the subset the ticket was drawn for (ticket k <-> subset k; a single-ticket
method has no own subset), and ``"all images"``. An expert ticket sees only its
own subset in training and in oracle routing, so its attention elsewhere
describes inputs it never handles.

Sweep table columns (:func:`attention_sweep`)
---------------------------------------------
level : int
sparsity : float
ticket : str
    Ticket name.
images : str
    ``"own subset"`` or ``"all images"``.
n_images : int
layer, head, mean_entropy, ... : see :data:`analysis.attention.ATTENTION_COLUMNS`
    ``dense_entropy`` / ``entropy_change`` compare with the same ticket on the
    same images at ``dense_level`` (NaN when that level kept no weights).

Image table columns (:func:`attention_probe_tables`)
----------------------------------------------------
level, sparsity, ticket, images, layer, image, entropy
    ``entropy``: the image's mean normalised entropy over heads and query rows
    (:func:`analysis.attention.image_entropy`); ``image`` is the probe row.

Summary columns (:func:`attention_level_summary`)
-------------------------------------------------
level, sparsity, ticket, images, layer, mean_entropy, ci_low, ci_high, n_images, entropy_change
    ``layer`` is a block name or ``"all layers"``; the interval is Student-t over
    probe images (NaN without the image table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.attention import (
    ATTENTION_COLUMNS,
    ONE_HOT_BELOW,
    UNIFORM_ABOVE,
    entropy_columns_from_rows,
    entropy_table_from_rows,
    image_entropy_from_rows,
    mean_interval,
    row_entropies,
)

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "ALL_IMAGES",
    "ALL_LAYERS",
    "OWN_IMAGES",
    "attention_level_summary",
    "attention_probe_tables",
    "attention_sweep",
    "attention_trend",
    "attention_unavailable",
    "attention_verdict",
    "probe_levels",
]

ALL_LAYERS = "all layers"
OWN_IMAGES = "own subset"
ALL_IMAGES = "all images"
PROBE_EXTRA = "probe"
SWEEP_KEYS = ["level", "sparsity", "ticket", "images", "n_images"]
IMAGE_COLUMNS = ["level", "sparsity", "ticket", "images", "layer", "image", "entropy"]
SUMMARY_COLUMNS = [
    "level",
    "sparsity",
    "ticket",
    "images",
    "layer",
    "mean_entropy",
    "ci_low",
    "ci_high",
    "n_images",
    "entropy_change",
]
TREND_COLUMNS = [
    "ticket",
    "images",
    "layer",
    "first_sparsity",
    "first",
    "first_low",
    "first_high",
    "last_sparsity",
    "last",
    "last_low",
    "last_high",
    "change",
    "rho",
    "p_value",
    "direction",
]


def probe_levels(run: Run, method: str) -> list[int]:
    """Levels of ``method`` that kept their trained weights (the only ones a probe can rebuild).

    Parameters
    ----------
    run : Run
    method : str

    Returns
    -------
    list of int
        Ascending.
    """
    return [lv for lv in run.levels(method) if run.has_weights(method, lv)]


def attention_unavailable(run: Run, method: str) -> str | None:
    """Why the attention of ``method``'s tickets cannot be probed, or None if it can.

    Parameters
    ----------
    run : Run
    method : str

    Returns
    -------
    str or None
        A sentence for the user: the model has no attention, the run kept no
        weights, or it stores no probe batch.
    """
    model = run.manifest.get("model") or {}
    if not model and run.manifest.get("source"):  # imported checkpoints: masks and weights, no model
        return (
            "This run was imported from checkpoints: it holds masks (and weights) but no model "
            "description to rebuild the network and run it, so attention entropy cannot be read."
        )
    if model.get("name") != "vit":
        return (
            f"The model of this run is `{model.get('name', '?')}`, which has no attention layers: "
            "attention entropy exists only for transformer (ViT) runs such as `fashion-vit-cluster`."
        )
    if not probe_levels(run, method):
        return (
            f"`{method}` kept no trained weights at any level (the run was slimmed), so its tickets "
            "cannot be rebuilt to read their attention."
        )
    if not run.has_extra(PROBE_EXTRA):
        return "The run stores no probe batch (`extra/probe.safetensors`) to read attention on."
    return None


def _image_sets(
    run: Run, method: str, n_inputs: int, subsets: np.ndarray | None
) -> dict[int, dict[str, np.ndarray]]:
    """For each ticket index, the probe rows of each image set."""
    k = len(run.ticket_names(method))
    everything = np.arange(n_inputs)
    out = {}
    for t in range(k):
        sets = {}
        if subsets is not None and k > 1:
            own = np.flatnonzero(np.asarray(subsets) == t)
            if own.size:
                sets[OWN_IMAGES] = own
        sets[ALL_IMAGES] = everything
        out[t] = sets
    return out


def attention_probe_tables(
    run: Run,
    method: str,
    tickets: Sequence[int],
    levels: Sequence[int] | None = None,
    *,
    dense_level: int = 0,
    reference: tuple[str, int] | None = None,
    inputs: np.ndarray | None = None,
    subsets: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Probe the chosen tickets at the chosen levels: per-head and per-image entropy tables.

    Each ticket and level is probed once on every probe image; the image sets
    (module docstring) are subsets of those rows.

    Parameters
    ----------
    run : Run
        A ViT run (see :func:`attention_unavailable`).
    method : str
    tickets : sequence of int
        Ticket indices.
    levels : sequence of int, optional
        Default: every level with weights (:func:`probe_levels`); levels
        without weights are skipped.
    dense_level : int
        Reference for ``entropy_change`` (the unpruned model) when ``reference`` is None.
    reference : tuple of (str, int), optional
        The run's dense reference ``(method, level)``
        (:func:`analysis.levels.dense_reference`), a one-ticket model probed
        once: every ticket's ``entropy_change`` compares with it on the same
        images. Ignored (own ``dense_level`` instead) when that level kept no weights.
    inputs : ndarray of float, shape (N, C, H, W), optional
        Probe images; default: the run's stored probe batch.
    subsets : ndarray of int, shape (N,), optional
        Subset of each probe image; default: the stored batch's ``subset``
        (None with custom ``inputs``: only ``"all images"``).
    progress : callable, optional
        Called with a short message before each probe.

    Returns
    -------
    dict
        ``"heads"``: the sweep table (:func:`attention_sweep`); ``"images"``:
        the image table (module docstring); ``"reference"``: the image table of
        the dense reference on each ticket's image sets (``ticket`` names the
        ticket it is compared with; empty without an outside reference), for
        :func:`attention_level_summary`; ``"dense"``: ``(method, level)`` compared with.
    """
    from analysis.attention_probe import build_probe_model, probe_attention_tickets

    if inputs is None and run.has_extra(PROBE_EXTRA):
        stored = run.extra(PROBE_EXTRA)
        if subsets is None and "subset" in stored:
            subsets = np.asarray(stored["subset"])
        inputs = stored["x"]
    if inputs is None:
        raise ValueError("no inputs given and the run stores no probe batch")
    if subsets is not None and len(subsets) != len(inputs):
        raise ValueError(f"{len(subsets)} subset ids for {len(inputs)} probe images")
    have = probe_levels(run, method)
    wanted = have if levels is None else [lv for lv in levels if lv in have]
    names = run.ticket_names(method)
    sets = _image_sets(run, method, len(inputs), subsets)
    outside = reference is not None and tuple(reference) != (method, dense_level)
    if outside and reference[1] not in probe_levels(run, reference[0]):
        outside = False  # its weights were not kept: the method's own unpruned level instead
    models: list = []  # one model for every probe (each load overwrites all its weights)

    def probe(m: str, level: int, ts: list[int]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        if not models:
            models.append(build_probe_model(run))
        maps = probe_attention_tickets(run, m, level, ts, inputs, model=models[0])
        return [[row_entropies(b) for b in per_block] for per_block in maps]

    # Every map is read once: its rows' entropies (B, H, T) per block, then sliced per image set
    # (each row's entropy depends on its own map only: the numbers of the map-based functions).
    ref_rows = None
    if outside:
        if progress is not None:
            progress(f"dense reference {reference[0]} level {reference[1]}")
        ref_rows = probe(reference[0], reference[1], [0])[0]
        ref_sp = run.sparsity(reference[0], reference[1])
    sparsity = {lv: run.sparsity(method, lv) for lv in wanted}
    # Level by level, every chosen ticket at once: a level's weights and masks are read once.
    tickets = [int(t) for t in tickets]
    probed = list(dict.fromkeys(tickets))
    own_dense = ref_rows is None and dense_level in have and dense_level not in wanted
    rows_of: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for level in dict.fromkeys(([dense_level] if own_dense else []) + list(wanted)):
        if not probed:
            break
        if progress is not None:
            progress(f"{method} level {level}, tickets {', '.join(names[t] for t in probed)}")
        for t, rows in zip(probed, probe(method, level, probed), strict=True):
            rows_of[t, level] = rows

    def sliced(rows_by_layer: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray) -> list:
        return [(h[rows], n[rows]) for h, n in rows_by_layer]

    # The tables of every (ticket, image set, level), in that order, stacked once at the end.
    heads = _Stack()
    images = _Stack()
    ref_images = _Stack()
    ref_by_rows: dict[bytes, tuple[dict[str, np.ndarray], list[np.ndarray]]] = {}  # per image set
    for t in tickets:
        for image_set, rows in sets[t].items():
            dense = None
            if ref_rows is not None:
                key = rows.tobytes()
                if key not in ref_by_rows:  # the same images for another ticket: the same table
                    part = sliced(ref_rows, rows)
                    ref_by_rows[key] = (
                        entropy_columns_from_rows(part),
                        [image_entropy_from_rows(*r) for r in part],
                    )
                dense, ref_entropy = ref_by_rows[key]
                for i, entropy in enumerate(ref_entropy):
                    ref_images.add(
                        (reference[1], ref_sp, names[t], image_set, str(i)), image=rows, entropy=entropy
                    )
            elif (t, dense_level) in rows_of:
                dense = entropy_columns_from_rows(sliced(rows_of[t, dense_level], rows))
            for level in wanted:
                part = sliced(rows_of[t, level], rows)
                sp = sparsity[level]
                heads.add((level, sp, names[t], image_set, len(rows)), **_head_columns(part, dense))
                for i, r in enumerate(part):
                    images.add(
                        (level, sp, names[t], image_set, str(i)),
                        image=rows,
                        entropy=image_entropy_from_rows(*r),
                    )
    return {
        "heads": heads.frame(SWEEP_KEYS)
        if heads
        else pd.DataFrame(columns=[*SWEEP_KEYS, *ATTENTION_COLUMNS]),
        "images": images.frame(IMAGE_COLUMNS[:5]) if images else pd.DataFrame(columns=IMAGE_COLUMNS),
        "reference": ref_images.frame(IMAGE_COLUMNS[:5])
        if ref_images
        else pd.DataFrame(columns=IMAGE_COLUMNS),
        "dense": (reference[0], int(reference[1])) if outside else (method, dense_level),
    }


def _head_columns(
    part: list[tuple[np.ndarray, np.ndarray]], dense: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """:data:`ATTENTION_COLUMNS` of one table as arrays: :func:`entropy_table_from_rows` with ``dense``.

    ``dense`` is the dense table's :func:`entropy_columns_from_rows`; a dense
    table of other layers or heads goes through the DataFrame path instead.
    """
    col = entropy_columns_from_rows(part)
    same_rows = dense is not None and (
        len(dense["head"]) == len(col["head"])
        and (dense["layer"] == col["layer"]).all()
        and (dense["head"] == col["head"]).all()
    )
    if dense is not None and not same_rows:
        table = entropy_table_from_rows(part, dense=pd.DataFrame(dense))
        return {c: table[c].to_numpy() for c in ATTENTION_COLUMNS}
    col["dense_entropy"] = dense["mean_entropy"] if dense is not None else np.full(len(col["head"]), np.nan)
    col["entropy_change"] = col["mean_entropy"] - col["dense_entropy"]
    col["near_one_hot"] = col["mean_entropy"] < ONE_HOT_BELOW
    col["near_uniform"] = col["mean_entropy"] > UNIFORM_ABOVE
    return {c: col[c] for c in ATTENTION_COLUMNS}


class _Stack:
    """Tables of equal columns gathered as arrays and built into one DataFrame at the end.

    Each :meth:`add` is one table: scalar key values (repeated over its rows)
    and array columns; :meth:`frame` gives what ``pd.concat`` of the tables,
    each built as a DataFrame, gives (the same values, dtypes and order),
    without building a DataFrame per table.
    """

    def __init__(self) -> None:
        self.keys: list[tuple] = []
        self.sizes: list[int] = []
        self.columns: dict[str, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: tuple, **columns: np.ndarray) -> None:
        n = {len(v) for v in columns.values()}
        if len(n) != 1:
            raise ValueError(f"columns of unequal lengths {sorted(n)}")
        self.keys.append(keys)
        self.sizes.append(n.pop())
        for name, values in columns.items():
            self.columns.setdefault(name, []).append(np.asarray(values))

    def frame(self, key_names: Sequence[str]) -> pd.DataFrame:
        data = {}
        for i, name in enumerate(key_names):
            values = [k[i] for k in self.keys]
            data[name] = np.repeat(
                np.asarray(values, dtype=object if isinstance(values[0], str) else None), self.sizes
            )
        data.update({name: np.concatenate(parts) for name, parts in self.columns.items()})
        return pd.DataFrame(data)


def attention_sweep(
    run: Run,
    method: str,
    tickets: Sequence[int],
    levels: Sequence[int] | None = None,
    *,
    dense_level: int = 0,
    inputs: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per layer and head attention entropy of the chosen tickets at the chosen levels.

    Parameters
    ----------
    run : Run
        A ViT run (see :func:`attention_unavailable`).
    method : str
    tickets : sequence of int
        Ticket indices.
    levels : sequence of int, optional
        Default: every level with weights (:func:`probe_levels`).
    dense_level : int
        Reference for ``entropy_change`` (the unpruned model).
    inputs : ndarray of float, shape (N, C, H, W), optional
        Probe images; default: the run's stored probe batch.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity, ticket, images, n_images`` then
        :data:`analysis.attention.ATTENTION_COLUMNS` (module docstring).
    """
    return attention_probe_tables(run, method, tickets, levels, dense_level=dense_level, inputs=inputs)[
        "heads"
    ]


def attention_level_summary(
    sweep: pd.DataFrame,
    images: pd.DataFrame | None = None,
    *,
    dense_level: int = 0,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean entropy per level, ticket, image set and layer (and over all layers), with intervals.

    Parameters
    ----------
    sweep : DataFrame
        Output of :func:`attention_sweep` (an ``images`` column is optional).
    images : DataFrame, optional
        The image table of :func:`attention_probe_tables`; gives means over
        images with a Student-t interval over probe images.
    dense_level : int
        Reference level of ``entropy_change`` when ``images`` is given.
    reference : DataFrame, optional
        The ``"reference"`` image table of :func:`attention_probe_tables` (the
        run's dense reference); when not empty, ``entropy_change`` compares with
        it instead of ``dense_level``.

    Returns
    -------
    DataFrame
        Columns :data:`SUMMARY_COLUMNS`. Without ``images``: means over heads,
        NaN intervals. ``entropy_change`` is the mean minus the same ticket's
        on the same images at the dense level (mean over heads of the sweep's
        ``entropy_change`` when no image table is given).
    """
    sweep = sweep if "images" in sweep else sweep.assign(images=ALL_IMAGES)
    keys = ["level", "sparsity", "ticket", "images"]
    if images is None or images.empty:
        cols = ["mean_entropy", "entropy_change"]
        per_layer = sweep.groupby([*keys, "layer"], sort=False)[cols].mean().reset_index()
        overall = sweep.groupby(keys, sort=False)[cols].mean().reset_index()
        overall.insert(4, "layer", ALL_LAYERS)
        out = pd.concat([overall, per_layer], ignore_index=True)
        out["ci_low"] = out["ci_high"] = np.nan
        n = sweep.groupby(keys, sort=False)["n_images"].first() if "n_images" in sweep else None
        out["n_images"] = (
            out.set_index(keys).index.map(n).to_numpy() if n is not None else np.full(len(out), np.nan)
        )
        return out[SUMMARY_COLUMNS]
    per_image_all = images.groupby([*keys, "image"], sort=False)["entropy"].mean().reset_index()
    per_image_all.insert(4, "layer", ALL_LAYERS)
    both = pd.concat([per_image_all, images[[*keys, "layer", "image", "entropy"]]], ignore_index=True)
    rows = []
    for key, g in both.groupby([*keys, "layer"], sort=False):
        mean, lo, hi, n = mean_interval(g["entropy"].to_numpy())
        rows.append((*key, mean, lo, hi, n))
    out = pd.DataFrame(rows, columns=[*keys, "layer", "mean_entropy", "ci_low", "ci_high", "n_images"])
    if reference is not None and len(reference):
        per_ref = reference.groupby(["ticket", "images", "image"], sort=False)["entropy"].mean().reset_index()
        per_ref.insert(2, "layer", ALL_LAYERS)
        ref_both = pd.concat([per_ref, reference[["ticket", "images", "layer", "image", "entropy"]]])
        ref = ref_both.groupby(["ticket", "images", "layer"], sort=False)["entropy"].mean()
    else:
        ref = out[out["level"] == dense_level].set_index(["ticket", "images", "layer"])["mean_entropy"]
    out["entropy_change"] = (
        out["mean_entropy"].to_numpy()
        - ref.reindex(pd.MultiIndex.from_frame(out[["ticket", "images", "layer"]])).to_numpy()
    )
    return out[SUMMARY_COLUMNS]


def attention_trend(summary: pd.DataFrame, layer: str = ALL_LAYERS, alpha: float = 0.05) -> pd.DataFrame:
    """Does attention entropy rise or fall with sparsity? One row per ticket and image set.

    Parameters
    ----------
    summary : DataFrame
        :func:`attention_level_summary` output.
    layer : str
        A block name or ``"all layers"``.
    alpha : float
        Level of the Spearman test (``scipy.stats.spearmanr``) against sparsity.

    Returns
    -------
    DataFrame
        Columns :data:`TREND_COLUMNS`: the first and last probed level's mean
        and interval, ``change = last - first``, Spearman ``rho`` and
        ``p_value`` of mean entropy against sparsity, and ``direction``:
        ``"rises"`` / ``"falls"`` when the test is significant and the first
        and last intervals do not overlap (or, without intervals, when it is
        significant), else ``"no clear trend"``.
    """
    from scipy.stats import spearmanr

    rows = []
    sub = summary[summary["layer"] == layer].sort_values("sparsity", kind="stable")
    for (ticket, image_set), g in sub.groupby(["ticket", "images"], sort=False):
        a, b = g.iloc[0], g.iloc[-1]
        rho, p = (np.nan, np.nan)
        if len(g) >= 3 and g["mean_entropy"].nunique() > 1:
            res = spearmanr(g["sparsity"], g["mean_entropy"])
            rho, p = float(res.statistic), float(res.pvalue)
        separated = not (np.isfinite(a["ci_high"]) and np.isfinite(b["ci_low"]))
        if not separated:
            separated = b["ci_low"] > a["ci_high"] or b["ci_high"] < a["ci_low"]
        direction = "no clear trend"
        if np.isfinite(p) and p <= alpha and separated:
            direction = "rises" if rho > 0 else "falls"
        rows.append(
            (
                ticket,
                image_set,
                layer,
                a["sparsity"],
                a["mean_entropy"],
                a["ci_low"],
                a["ci_high"],
                b["sparsity"],
                b["mean_entropy"],
                b["ci_low"],
                b["ci_high"],
                b["mean_entropy"] - a["mean_entropy"],
                rho,
                p,
                direction,
            )
        )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def attention_verdict(trend: pd.DataFrame, images: str = OWN_IMAGES) -> str:
    """One plain sentence on the direction of attention entropy with sparsity.

    Parameters
    ----------
    trend : DataFrame
        :func:`attention_trend` output.
    images : str
        Image set to speak about (falls back to ``"all images"`` when absent).

    Returns
    -------
    str
    """
    rows = trend[trend["images"] == images]
    if rows.empty:
        images = ALL_IMAGES
        rows = trend[trend["images"] == images]
    if rows.empty:
        return "No ticket was probed at enough levels to tell a trend."
    n = len(rows)
    counts = rows["direction"].value_counts()
    up, down = int(counts.get("rises", 0)), int(counts.get("falls", 0))
    detail = "; ".join(
        f"{r.ticket} {r.first:.3f} at {r.first_sparsity:.1%} to {r.last:.3f} at {r.last_sparsity:.1%}"
        for r in rows.itertuples()
    )
    on = f"on {'each ticket' + chr(39) + 's own subset' if images == OWN_IMAGES else 'all probe images'}"
    if up > n / 2:
        head = (
            f"Attention entropy rises with sparsity ({up} of {n} tickets, {on}): pruned tickets attend "
            "more uniformly, not more sharply, contrary to the claim that pruning focuses attention."
        )
    elif down > n / 2:
        head = (
            f"Attention entropy falls with sparsity ({down} of {n} tickets, {on}): pruning focuses attention."
        )
    else:
        head = (
            f"No consistent trend of attention entropy with sparsity {on} ({up} of {n} tickets rise, "
            f"{down} fall)."
        )
    return f"{head} Mean normalised entropy: {detail}."
