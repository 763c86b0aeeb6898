"""Pairwise similarity of ticket masks: Jaccard, IoMin, phi, and their chance levels.

Every measure here is a function of three integer counts per ticket pair, taken
layer by layer: the intersection ``|A ∩ B|``, the sizes ``|A|`` and ``|B|``, and
the number of weights ``N``. One counting core (:func:`packed_overlap`) produces
them from bit-packed masks with ``np.bitwise_count``; the masks are packed and
counted chunk by chunk, so the extra memory stays near one packed chunk whatever
the network size. Everything else is arithmetic on those counts.

Conventions
-----------
- Two empty masks have Jaccard 1, as ``1 - scipy.spatial.distance.pdist(...,
  "jaccard")`` (scipy defines their distance as 0).
- IoMin ``|A ∩ B| / min(|A|, |B|)`` is NaN when either mask is empty.
- phi (the Pearson correlation of the two 0/1 vectors) is NaN when either mask
  is constant (all kept or all pruned), as ``np.corrcoef``. This is the case of
  every ticket at level 0, before any pruning.
- The chance level ``E[J]`` is that of independent random masks with the same
  per-layer densities; ``J* = (J - E[J]) / (1 - E[J])`` is NaN when
  ``E[J] = 1`` (both masks full, or both empty), where no excess over chance is
  measurable.

Layer weighting and structurally disjoint rows
----------------------------------------------
``"__global__"`` pools every weight, so it follows the largest layer (88 % of
LeNet-300-100's prunable weights sit in ``layers.0``). ``"__layer_mean__"`` is
the mean of the per-layer measures with equal layer weights. Output rows that at
most one ticket can use by construction (one-vs-rest detector heads: ticket k
owns row k of the head) have Jaccard 0 whatever the training does; given the
``shared`` rows (:func:`shared_rows` of the unpruned masks, as
:func:`similarity_table` does), per-layer measures count only rows that two
tickets or more can use, and a layer with no such row (a detector head) is left
out of ``"__layer_mean__"`` (its own rows keep the raw values). The global
measure stays the paper's: every weight, unrestricted.

Tidy table columns (:func:`similarity_frame`, :func:`similarity_table`)
-----------------------------------------------------------------------
level : int
    Pruning level (run tables only).
sparsity : float
    Fraction of prunable weights removed at that level, 0..1 (run tables only).
ticket_a, ticket_b : str
    The two tickets; each unordered pair appears once, ``ticket_a`` before
    ``ticket_b`` in ticket order.
layer : str
    Layer name, ``"__global__"`` for all prunable layers pooled, or
    ``"__layer_mean__"`` for the equal-weight mean over the comparable layers
    (its ``z`` is Stouffer's ``sum z_l / sqrt(L)``).
jaccard : float
    ``|A ∩ B| / |A ∪ B|``.
jaccard_chance : float
    ``E[J]`` of independent random masks with the same per-layer densities,
    ``E|A ∩ B| / E|A ∪ B|`` with ``E|A ∩ B| = sum_l N_l a_l b_l``.
jaccard_star : float
    Chance-corrected Jaccard ``(J - E[J]) / (1 - E[J])``: 0 at chance, 1 for
    identical masks.
iomin : float
    ``|A ∩ B| / min(|A|, |B|)``: 1 when one mask is inside the other.
phi : float
    Pearson correlation of the two binary vectors.
z : float
    ``(|A ∩ B| - mean) / sd`` under the null that each mask is a uniformly random
    subset of its layer with its observed size: per layer the intersection is
    hypergeometric; over several layers it is a sum of independent
    hypergeometrics (means and variances add). NaN when the variance is 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import hypergeom

from analysis.pair_limits import check_pair_count, pair_sample

if TYPE_CHECKING:
    from artifacts.run_format import Run

GLOBAL = "__global__"
# Equal-weight mean over layers of the per-layer measures (each layer counts once,
# whatever its size), next to GLOBAL, which pools weights and so follows the largest layer.
LAYER_MEAN = "__layer_mean__"
PAIR_COLUMNS = [
    "ticket_a",
    "ticket_b",
    "layer",
    "jaccard",
    "jaccard_chance",
    "jaccard_star",
    "iomin",
    "phi",
    "z",
]
METRICS = ["jaccard", "jaccard_chance", "jaccard_star", "iomin", "phi", "z"]
LAYER_GROUPS = ("shallow", "middle", "deep")

# Bool bytes unpacked per chunk (over all K tickets). 8 MiB keeps the packed chunk
# (1 MiB) in cache while it is ANDed K times, and bounds the temporaries.
DEFAULT_CHUNK_BYTES = 1 << 23

Masks = np.ndarray | Mapping[str, np.ndarray]


# ----------------------------------------------------------------------------- counting core


@dataclass(frozen=True)
class OverlapCounts:
    """Integer overlap counts of K masks over ``n_weights`` weights.

    Attributes
    ----------
    intersection : ndarray of int64, shape (K, K)
        ``|A_i ∩ A_j|``; its diagonal is ``sizes``.
    sizes : ndarray of int64, shape (K,)
        ``|A_i|``, the number of kept weights of each ticket.
    n_weights : int
        Number of weights the masks range over.
    """

    intersection: np.ndarray
    sizes: np.ndarray
    n_weights: int

    def __add__(self, other: OverlapCounts) -> OverlapCounts:
        """Counts over the union of two disjoint sets of weights."""
        return OverlapCounts(
            self.intersection + other.intersection,
            self.sizes + other.sizes,
            self.n_weights + other.n_weights,
        )

    @property
    def n_tickets(self) -> int:
        """Number of tickets K."""
        return int(self.sizes.shape[0])


def packed_overlap(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersection counts and sizes of bit-packed masks (the shared counting core).

    Parameters
    ----------
    packed : ndarray of uint8, shape (K, B)
        Masks packed with ``np.packbits(..., axis=1)``. Padding bits must be 0
        (as ``np.packbits`` writes them), so chunks of any length can be counted
        separately and summed.

    Returns
    -------
    intersection : ndarray of int64, shape (K, K)
        Popcount of ``packed[i] & packed[j]``.
    sizes : ndarray of int64, shape (K,)
        Popcount of ``packed[i]``.
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ValueError(f"packed masks must be uint8 of shape (K, B), got {packed.dtype} {packed.shape}")
    k, b = packed.shape
    pad = (-b) % 8
    if pad:
        # 64-bit words: 8x fewer popcount calls than bytes.
        packed = np.pad(packed, ((0, 0), (0, pad)))
    packed = np.ascontiguousarray(packed)  # a view as uint64 needs C order
    words = packed.view(np.uint64)  # (K, ceil(B / 8))
    inter = np.empty((k, k), dtype=np.int64)
    buf = np.empty_like(words)
    for i in range(k):
        both = np.bitwise_and(words[i], words[i:], out=buf[: k - i])  # (K - i, W)
        row = np.bitwise_count(both).sum(axis=1, dtype=np.int64)
        inter[i, i:] = row
        inter[i:, i] = row
    return inter, np.diagonal(inter).copy()


def _as_bool_2d(name: str, m: np.ndarray) -> np.ndarray:
    m = np.asarray(m)
    if m.ndim < 2:
        raise ValueError(f"masks {name!r} must have shape (K, *weight_shape), got {m.shape}")
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.integer) and np.isin(m, (0, 1)).all()):
            raise ValueError(f"masks {name!r} must be bool (or 0/1 integers), got {m.dtype}")
        m = m.astype(bool)
    return m.reshape(m.shape[0], -1)


def _layers(masks: Masks) -> list[tuple[str, np.ndarray]]:
    """Normalise masks to ``[(layer, bool (K, N_l))]``; an array is one layer named GLOBAL."""
    if isinstance(masks, Mapping):
        if not masks:
            raise ValueError("no layers in masks")
        out = [(str(name), _as_bool_2d(str(name), m)) for name, m in masks.items()]
    else:
        out = [(GLOBAL, _as_bool_2d("masks", masks))]
    ks = {m.shape[0] for _, m in out}
    if len(ks) != 1:
        raise ValueError(f"layers disagree on the number of tickets: {sorted(ks)}")
    if ks.pop() < 1:
        raise ValueError("masks hold no ticket (K = 0)")
    return out


def _count_layer(m: np.ndarray, chunk_bytes: int) -> OverlapCounts:
    """Overlap counts of one (K, N) bool layer, packing ``chunk_bytes`` bools at a time."""
    k, n = m.shape
    step = max(64, (chunk_bytes // k) // 64 * 64)
    inter = np.zeros((k, k), dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for start in range(0, n, step):
        i, s = packed_overlap(np.packbits(m[:, start : start + step], axis=1))
        inter += i
        sizes += s
    return OverlapCounts(inter, sizes, n)


def layer_overlap_counts(masks: Masks, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict[str, OverlapCounts]:
    """Overlap counts per layer.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N), or mapping of str to ndarray of bool, shape (K, *shape)
        K tickets' masks; an array counts as one layer named ``"__global__"``.
    chunk_bytes : int
        Bools packed at a time (over all tickets); bounds the extra memory.

    Returns
    -------
    dict of str to OverlapCounts
        In the input's layer order.

    Raises
    ------
    PairLimitError
        For more than :func:`analysis.pair_limits.max_pair_tickets` tickets (K x K memory).
    """
    from analysis.packed import PackedMasks, layer_overlap_counts_packed

    if isinstance(masks, PackedMasks):  # memory-mapped: counted layer by layer, never unpacked
        check_pair_count(masks.n_tickets)
        return layer_overlap_counts_packed(masks)
    layers = _layers(masks)
    check_pair_count(layers[0][1].shape[0])
    return {name: _count_layer(m, chunk_bytes) for name, m in layers}


def overlap_counts(masks: Masks, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> OverlapCounts:
    """Overlap counts over all weights of all layers (see :func:`layer_overlap_counts`)."""
    per_layer = layer_overlap_counts(masks, chunk_bytes=chunk_bytes)
    return _total(per_layer.values())


def _total(counts: Iterable[OverlapCounts]) -> OverlapCounts:
    it = iter(counts)
    total = next(it)
    for c in it:
        total = total + c
    return total


# ----------------------------------------------------------------------------- measures from counts


def _divide(num: np.ndarray, den: np.ndarray, where_zero: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), where_zero, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def jaccard_from_counts(c: OverlapCounts) -> np.ndarray:
    """Jaccard ``|A ∩ B| / |A ∪ B|``, shape (K, K) float64; two empty masks give 1."""
    union = c.sizes[:, None] + c.sizes[None, :] - c.intersection
    # 1 - distance, as scipy computes it, so results match pdist bit for bit.
    return 1.0 - _divide(union - c.intersection, union, 0.0)


def iomin_from_counts(c: OverlapCounts) -> np.ndarray:
    """IoMin ``|A ∩ B| / min(|A|, |B|)``, shape (K, K) float64; NaN if a mask is empty."""
    smaller = np.minimum(c.sizes[:, None], c.sizes[None, :])
    return _divide(c.intersection, smaller, np.nan)


def phi_from_counts(c: OverlapCounts) -> np.ndarray:
    """Phi coefficient (Pearson r of the 0/1 vectors), shape (K, K) float64.

    ``n11 n00 - n10 n01`` simplifies to ``N |A ∩ B| - |A| |B|``. NaN where a mask
    is constant (all 0 or all 1), as ``np.corrcoef``.
    """
    n = float(c.n_weights)
    a = c.sizes.astype(np.float64)
    num = n * c.intersection - a[:, None] * a[None, :]
    var = a * (n - a)  # n^2 times the variance of each 0/1 vector
    return _divide(num, np.sqrt(var[:, None] * var[None, :]), np.nan)


def chance_jaccard_from_counts(per_layer: Iterable[OverlapCounts]) -> np.ndarray:
    """Expected Jaccard of independent random masks with the same per-layer densities.

    ``E[J] ≈ E|A ∩ B| / E|A ∪ B|`` with ``E|A ∩ B| = sum_l n_a,l n_b,l / N_l`` and
    ``E|A ∪ B| = sum_l (n_a,l + n_b,l) - E|A ∩ B|``. For one layer and equal
    densities ``d`` this is ``d / (2 - d)``. An empty expected union (both masks
    empty) gives 1, the Jaccard convention for empty masks.

    Parameters
    ----------
    per_layer : iterable of OverlapCounts
        One entry per layer (a single entry for one layer).

    Returns
    -------
    ndarray of float64, shape (K, K)
    """
    e_inter, e_sum = 0.0, 0.0
    for c in per_layer:
        a = c.sizes.astype(np.float64)
        e_inter = e_inter + _divide(a[:, None] * a[None, :], np.float64(c.n_weights), 0.0)
        e_sum = e_sum + (a[:, None] + a[None, :])
    return _divide(e_inter, e_sum - e_inter, 1.0)


def jaccard_star(jaccard: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """Chance-corrected Jaccard ``(J - E[J]) / (1 - E[J])``; NaN where ``E[J] = 1``.

    Parameters
    ----------
    jaccard, chance : ndarray of float, same shape

    Returns
    -------
    ndarray of float64, same shape
    """
    jaccard = np.asarray(jaccard, dtype=np.float64)
    chance = np.asarray(chance, dtype=np.float64)
    # Float round-off can leave 1 - E[J] at ~1e-16 for full masks: treat as no room.
    return _divide(jaccard - chance, np.where(np.isclose(chance, 1.0), 0.0, 1.0 - chance), np.nan)


def hypergeometric_z_from_counts(per_layer: Iterable[OverlapCounts]) -> np.ndarray:
    """z-score of the intersection against fixed-size random masks, shape (K, K).

    In a layer of ``N`` weights, the intersection of uniformly random subsets of
    sizes ``n_a`` and ``n_b`` is ``hypergeom(M=N, n=n_a, N=n_b)``; over layers the
    total is a sum of independent hypergeometrics, so means and variances add.
    NaN where the variance is 0 (e.g. a mask that is full or empty in every layer).
    """
    inter = mean = var = 0.0
    for c in per_layer:
        a = c.sizes
        m = np.full((a.size, a.size), c.n_weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu, v = hypergeom.stats(m, a[:, None], a[None, :], moments="mv")
        # scipy divides by N - 1: a one-weight layer is deterministic, not NaN.
        v = np.where(m <= 1, 0.0, np.asarray(v, dtype=np.float64))
        inter = inter + c.intersection
        mean = mean + np.asarray(mu, dtype=np.float64)
        var = var + v
    sd = np.sqrt(np.maximum(var, 0.0))
    return _divide(np.asarray(inter, dtype=np.float64) - mean, np.where(var > 1e-12, sd, 0.0), np.nan)


def measures_from_counts(per_layer: Sequence[OverlapCounts]) -> dict[str, np.ndarray]:
    """All pair measures from per-layer counts (layers pooled).

    Parameters
    ----------
    per_layer : sequence of OverlapCounts
        One entry per layer; the chance level and z use the per-layer densities.

    Returns
    -------
    dict of str to ndarray of float64, shape (K, K)
        Keys ``jaccard, jaccard_chance, jaccard_star, iomin, phi, z``.
    """
    total = _total(per_layer)
    return {
        **jaccard_measures_from_counts(per_layer, total),
        "iomin": iomin_from_counts(total),
        "phi": phi_from_counts(total),
        "z": hypergeometric_z_from_counts(per_layer),
    }


def jaccard_measures_from_counts(
    per_layer: Sequence[OverlapCounts], total: OverlapCounts | None = None
) -> dict[str, np.ndarray]:
    """The Jaccard measures of :func:`measures_from_counts` alone (J, its chance level, J*).

    For callers that read no other measure (the collapse curves): the z-score's
    hypergeometric moments are the costly part of the full set.

    Parameters
    ----------
    per_layer : sequence of OverlapCounts
        One entry per layer.
    total : OverlapCounts, optional
        Their sum, when the caller has it.

    Returns
    -------
    dict of str to ndarray of float64, shape (K, K)
        Keys ``jaccard, jaccard_chance, jaccard_star``, equal to those of
        :func:`measures_from_counts`.
    """
    j = jaccard_from_counts(_total(per_layer) if total is None else total)
    chance = chance_jaccard_from_counts(per_layer)
    return {"jaccard": j, "jaccard_chance": chance, "jaccard_star": jaccard_star(j, chance)}


# ----------------------------------------------------------------------------- matrices from masks


def pairwise_jaccard(masks: Masks, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Exact pairwise Jaccard similarity of K masks.

    Equal to ``1 - squareform(pdist(flat, "jaccard"))`` with ``flat`` the masks'
    layers concatenated, including scipy's convention that two empty masks have
    Jaccard 1 (distance 0).

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N), or mapping of str to ndarray of bool, shape (K, *shape)
        One row per ticket, or ``{layer: masks}`` (layers are pooled).
    chunk_bytes : int
        Bools packed at a time; the extra memory is about ``chunk_bytes / 4``.

    Returns
    -------
    ndarray of float64, shape (K, K)
        Symmetric, diagonal 1.
    """
    return jaccard_from_counts(overlap_counts(masks, chunk_bytes=chunk_bytes))


def pairwise_iomin(masks: Masks) -> np.ndarray:
    """Pairwise ``|A ∩ B| / min(|A|, |B|)``, shape (K, K) float64 (NaN with an empty mask)."""
    return iomin_from_counts(overlap_counts(masks))


def pairwise_phi(masks: Masks) -> np.ndarray:
    """Pairwise phi coefficient, shape (K, K) float64; equals ``np.corrcoef`` of the 0/1 rows."""
    return phi_from_counts(overlap_counts(masks))


def chance_jaccard(masks: Masks) -> np.ndarray:
    """Expected Jaccard of random masks with the masks' per-layer densities, shape (K, K).

    See :func:`chance_jaccard_from_counts`.
    """
    return chance_jaccard_from_counts(layer_overlap_counts(masks).values())


def hypergeometric_z(masks: Masks) -> np.ndarray:
    """Intersection z-score against per-layer random masks of the same sizes, shape (K, K).

    See :func:`hypergeometric_z_from_counts`.
    """
    return hypergeometric_z_from_counts(list(layer_overlap_counts(masks).values()))


def similarity_matrices(masks: Masks) -> dict[str, np.ndarray]:
    """All pair measures over all layers, from one counting pass.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N), or mapping of str to ndarray of bool, shape (K, *shape)

    Returns
    -------
    dict of str to ndarray of float64, shape (K, K)
        Keys ``jaccard, jaccard_chance, jaccard_star, iomin, phi, z`` (module docstring).
    """
    return measures_from_counts(list(layer_overlap_counts(masks).values()))


# ----------------------------------------------------------------------------- tidy tables


def _ticket_names(k: int, tickets: Sequence[str] | None) -> list[str]:
    if tickets is None:
        return [str(i) for i in range(k)]
    tickets = [str(t) for t in tickets]
    if len(tickets) != k:
        raise ValueError(f"{len(tickets)} ticket names for {k} tickets")
    return tickets


def _empty_pairs(extra: Sequence[str] = ()) -> pd.DataFrame:
    cols = [*extra, *PAIR_COLUMNS]
    df = pd.DataFrame(
        {c: pd.Series(dtype=object if c in ("ticket_a", "ticket_b", "layer") else float) for c in cols}
    )
    if "level" in df:
        df["level"] = df["level"].astype(np.int64)
    return df


def shared_rows(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Output rows that at least two tickets keep a weight in (rows two tickets *can* share).

    Apply it to the unpruned masks (level 0): there a row kept by one ticket only
    is disjoint by construction (ticket k of a one-vs-rest detector set owns row
    k of the head), not by pruning.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, rows, ...)
        A layer of shape (K, N) has one weight per row.

    Returns
    -------
    dict of str to ndarray of bool, shape (rows,)
        True where two tickets or more keep a weight. With K = 1 every row is True.
    """
    out = {}
    for name, m in masks.items():
        m = np.asarray(m)
        if m.ndim < 2:
            raise ValueError(f"masks {name!r} must have shape (K, rows, ...), got {m.shape}")
        k = m.shape[0]
        rows = m.reshape(k, m.shape[1], -1).astype(bool).any(axis=2)  # (K, rows)
        out[str(name)] = np.ones(rows.shape[1], dtype=bool) if k < 2 else rows.sum(axis=0) >= 2
    return out


def disjoint_layers(shared: Mapping[str, np.ndarray]) -> list[str]:
    """Layers in which no row is shared (:func:`shared_rows`): disjoint by construction."""
    return [name for name, rows in shared.items() if not np.asarray(rows).any()]


def _restricted_counts(
    masks: Mapping[str, np.ndarray], shared: Mapping[str, np.ndarray] | None
) -> tuple[dict[str, OverlapCounts], list[str]]:
    """Per-layer counts over the shared rows, and the comparable layers.

    A layer whose rows are all shared, or which ``shared`` does not name, is
    counted whole; one with no shared row is counted whole (raw values) but is
    not comparable.
    """
    counts: dict[str, OverlapCounts] = {}
    comparable: list[str] = []
    for name, m in masks.items():
        arr = np.asarray(m)
        rows = None if shared is None else shared.get(name)
        if rows is not None:
            rows = np.asarray(rows, dtype=bool)
            if arr.ndim < 2 or rows.shape != (arr.shape[1],):
                raise ValueError(f"shared rows of {name!r}: shape {rows.shape} for masks {arr.shape}")
        if rows is None or rows.all():
            counts.update(layer_overlap_counts({name: arr}))
            comparable.append(name)
        elif rows.any():
            counts.update(layer_overlap_counts({name: arr[:, rows]}))
            comparable.append(name)
        else:
            counts.update(layer_overlap_counts({name: arr}))
    return counts, comparable


def layer_mean_measures(per_layer: Sequence[OverlapCounts]) -> dict[str, np.ndarray]:
    """Pair measures averaged over layers with equal weights (each layer counts once).

    Parameters
    ----------
    per_layer : sequence of OverlapCounts
        One entry per layer.

    Returns
    -------
    dict of str to ndarray of float64, shape (K, K)
        Keys as :func:`measures_from_counts`: the mean over the layers where a
        measure is defined (NaN where it is defined in none); ``z`` combines the
        layers' z-scores by Stouffer's ``sum z_l / sqrt(L)``.
    """
    if not per_layer:
        raise ValueError("no layer to average")
    each = [measures_from_counts([c]) for c in per_layer]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN, as documented
        for key in METRICS:
            stack = np.stack([m[key] for m in each])  # (L, K, K)
            if key == "z":
                out[key] = stack.sum(axis=0) / np.sqrt(stack.shape[0])
            else:
                out[key] = np.nanmean(stack, axis=0)
    return out


def similarity_frame(
    masks: Masks,
    tickets: Sequence[str] | None = None,
    *,
    layers: bool = True,
    shared: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Pair measures of one set of masks, globally and per layer, as a tidy table.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N), or mapping of str to ndarray of bool, shape (K, *shape)
    tickets : sequence of str, optional
        Ticket names, length K (default ``"0", "1", ...``).
    layers : bool
        Also emit one row per pair and layer, and the equal-weight layer mean
        ``"__layer_mean__"`` (a plain array has no layers).
    shared : mapping of str to ndarray of bool, shape (rows,), optional
        Rows that two tickets can share (:func:`shared_rows` of the unpruned
        masks). Per-layer rows and the layer mean then count only those rows, and
        leave out layers that have none (module docstring). Default: every row.

    Returns
    -------
    DataFrame
        Columns ``ticket_a, ticket_b, layer, jaccard, jaccard_chance, jaccard_star,
        iomin, phi, z`` (module docstring); one row per unordered pair and layer
        (``"__global__"`` first, then the layers, then ``"__layer_mean__"``).
        Empty, with these columns, when K = 1.
    """
    per_layer = layer_overlap_counts(masks)
    k = next(iter(per_layer.values())).n_tickets
    names = _ticket_names(k, tickets)
    if k < 2:
        return _empty_pairs()
    ia, ib = np.triu_indices(k, 1)
    pooled = measures_from_counts(list(per_layer.values()))
    scopes: list[tuple[str, dict[str, np.ndarray]]] = [(GLOBAL, pooled)]
    if layers and isinstance(masks, Mapping):
        restricted, comparable = _restricted_counts(masks, shared)
        scopes += [(name, measures_from_counts([c])) for name, c in restricted.items()]
        if comparable:
            scopes.append((LAYER_MEAN, layer_mean_measures([restricted[n] for n in comparable])))
    frames = []
    for layer, measures in scopes:
        frames.append(
            pd.DataFrame(
                {
                    "ticket_a": [names[i] for i in ia],
                    "ticket_b": [names[j] for j in ib],
                    "layer": layer,
                    **{key: measures[key][ia, ib] for key in METRICS},
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[PAIR_COLUMNS]


def layer_shares(masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each layer's share of the prunable weights (what it weighs in the pooled measures).

    Parameters
    ----------
    masks : mapping of str to ndarray, shape (K, *shape)

    Returns
    -------
    dict of str to float
        Fractions summing to 1, in the masks' layer order.
    """
    sizes = {str(n): int(np.prod(np.shape(m)[1:])) for n, m in masks.items()}
    total = sum(sizes.values())
    if total == 0:
        raise ValueError("the masks hold no weight")
    return {n: v / total for n, v in sizes.items()}


def method_shared_rows(run: Run, method: str) -> dict[str, np.ndarray]:
    """:func:`shared_rows` of a method's tickets at its first (unpruned) level.

    Parameters
    ----------
    run : Run
    method : str

    Returns
    -------
    dict of str to ndarray of bool, shape (rows,)
    """
    from analysis.packed import packed_masks  # memory-mapped: one layer unpacked at a time

    levels = run.levels(method)
    if not levels:
        return {}
    return shared_rows(packed_masks(run, method, min(levels)))


def similarity_table(
    run: Run,
    method: str,
    levels: Sequence[int] | None = None,
    *,
    layers: bool = True,
    tickets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Pair measures of a method's tickets at every level (or the given levels).

    Parameters
    ----------
    run : Run
    method : str
    levels : sequence of int, optional
        Default: all completed levels.
    layers : bool
        Include per-layer rows next to the ``"__global__"`` ones.
    tickets : sequence of str, optional
        Compare only these tickets (at most :func:`analysis.pair_limits.max_pair_tickets`).
        Default: all of them, or past that limit a fixed seeded sample of that many
        (:func:`analysis.pair_limits.pair_sample`), so memory stays bounded.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity`` then those of :func:`similarity_frame`.
        Per-layer rows and ``"__layer_mean__"`` leave out rows that are disjoint
        by construction (:func:`method_shared_rows`).
    """
    from analysis.packed import packed_masks

    levels = run.levels(method) if levels is None else list(levels)
    names = run.ticket_names(method)
    if tickets is None:
        idx = pair_sample(len(names))
    else:
        idx = np.array([names.index(t) for t in tickets], dtype=np.int64)
    tickets = [names[i] for i in idx]
    shared = method_shared_rows(run, method) if layers else None
    frames = []
    for level in levels:
        masks = packed_masks(run, method, level)
        if len(idx) < len(names):  # a sample of the tickets: only those rows, layer by layer
            masks = {n: np.asarray(masks[n])[idx] for n in masks}
        df = similarity_frame(masks, tickets, layers=layers, shared=shared)
        df.insert(0, "sparsity", run.sparsity(method, level))
        df.insert(0, "level", level)
        frames.append(df)
    if not frames or all(f.empty for f in frames):
        return _empty_pairs(("level", "sparsity"))
    return pd.concat([f for f in frames if not f.empty], ignore_index=True)


def _both_orientations(table: pd.DataFrame) -> pd.DataFrame:
    swapped = table.rename(columns={"ticket_a": "ticket_b", "ticket_b": "ticket_a"})
    return pd.concat([table, swapped], ignore_index=True).rename(columns={"ticket_a": "ticket"})


def ticket_similarity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Each ticket's mean similarity to the other tickets (the paper's per-ticket score).

    Parameters
    ----------
    table : DataFrame
        Output of :func:`similarity_table` or :func:`similarity_frame`.

    Returns
    -------
    DataFrame
        Columns ``[level, sparsity,] layer, ticket, mean_jaccard, mean_jaccard_star,
        n_others``: one row per ticket (and level and layer). Empty for K = 1.
    """
    keys = [c for c in ("level", "sparsity") if c in table.columns] + ["layer", "ticket"]
    long = _both_orientations(table)
    out = (
        long.groupby(keys, sort=False)
        .agg(
            mean_jaccard=("jaccard", "mean"),
            mean_jaccard_star=("jaccard_star", "mean"),
            n_others=("ticket_b", "size"),
        )
        .reset_index()
    )
    out["n_others"] = out["n_others"].astype(np.int64)
    return out


def level_similarity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean pair measures per level and layer (similarity against sparsity).

    Parameters
    ----------
    table : DataFrame
        Output of :func:`similarity_table`.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity, layer, jaccard, jaccard_chance, jaccard_star,
        iomin, phi, jaccard_std, n_pairs``: means over ticket pairs (``jaccard_std``
        their standard deviation). Empty for K = 1.
    """
    g = table.groupby(["level", "sparsity", "layer"], sort=False)
    out = g[["jaccard", "jaccard_chance", "jaccard_star", "iomin", "phi"]].mean()
    out["jaccard_std"] = g["jaccard"].std(ddof=0)
    out["n_pairs"] = g.size().astype(np.int64)
    return out.reset_index()


def pair_matrix(
    table: pd.DataFrame,
    value: str = "jaccard",
    *,
    level: int | None = None,
    layer: str = GLOBAL,
    tickets: Sequence[str] | None = None,
    diagonal: float = 1.0,
) -> pd.DataFrame:
    """A square ticket-by-ticket matrix of one pair measure, from a tidy pair table.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`similarity_table` (then ``level`` is required) or
        :func:`similarity_frame`.
    value : str
        Measure column, e.g. ``"jaccard"`` or ``"jaccard_star"``.
    level : int, optional
        Level to take when the table has a ``level`` column.
    layer : str
        Layer name or ``"__global__"``.
    tickets : sequence of str, optional
        Row/column order; default: order of first appearance.
    diagonal : float
        Value on the diagonal (1 for Jaccard-like similarities).

    Returns
    -------
    DataFrame of float64, shape (K, K)
        Symmetric, index = columns = ticket names.
    """
    rows = table[table["layer"] == layer]
    if "level" in table.columns:
        if level is None:
            raise ValueError("the table has several levels: pass level=")
        rows = rows[rows["level"] == level]
    if tickets is None:
        tickets = list(dict.fromkeys([*rows["ticket_a"], *rows["ticket_b"]]))
    tickets = [str(t) for t in tickets]
    pos = {t: i for i, t in enumerate(tickets)}
    mat = np.full((len(tickets), len(tickets)), np.nan)
    np.fill_diagonal(mat, diagonal)
    ia = rows["ticket_a"].map(pos).to_numpy()
    ib = rows["ticket_b"].map(pos).to_numpy()
    v = rows[value].to_numpy(dtype=np.float64)
    mat[ia, ib] = v
    mat[ib, ia] = v
    return pd.DataFrame(mat, index=pd.Index(tickets, name="ticket"), columns=tickets)


def layer_groups(layers: Iterable[str]) -> dict[str, list[str]]:
    """Split ordered layer names into shallow / middle / deep thirds.

    Layer ``i`` of ``L`` goes to third ``floor(3 (i + 1/2) / L)``, i.e. by the
    position of its centre, so groups differ in size by at most one and are
    symmetric: with 2 layers the first is shallow and the last deep (middle
    empty); with 1 layer it is the middle one.

    Parameters
    ----------
    layers : iterable of str
        Prunable layer names in network order (input to output), e.g. the keys
        of a run's masks, which the writer keeps in module order.

    Returns
    -------
    dict of str to list of str
        Keys ``"shallow", "middle", "deep"`` (always all three; a group may be
        empty when there are fewer than 3 layers).
    """
    names = list(layers)
    n = len(names)
    groups: dict[str, list[str]] = {g: [] for g in LAYER_GROUPS}
    for i, name in enumerate(names):
        groups[LAYER_GROUPS[(3 * (2 * i + 1)) // (2 * n)]].append(name)
    return groups


def cluster_order(similarity: pd.DataFrame) -> list[str]:
    """Ticket order that puts similar tickets next to each other (for heatmaps).

    The leaves of an average-linkage hierarchical clustering of ``1 - similarity``
    (``scipy.cluster.hierarchy.leaves_list``, optimal leaf ordering).

    Parameters
    ----------
    similarity : DataFrame of float, shape (K, K)
        Symmetric similarity in [0, 1] (e.g. :func:`pair_matrix`); NaN counts as
        no similarity.

    Returns
    -------
    list of str
        The index labels, reordered.
    """
    labels = [str(t) for t in similarity.index]
    if len(labels) < 3:
        return labels
    d = 1.0 - np.nan_to_num(similarity.to_numpy(dtype=np.float64), nan=0.0)
    d = np.clip((d + d.T) / 2, 0.0, None)
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(d, checks=False), method="average", optimal_ordering=True)
    return [labels[i] for i in leaves_list(z)]
