"""What a ticket's mask costs to store, against what pruning saves.

A mask of density ``d`` over ``N`` weights costs at best ``N * H2(d)`` bits
(``H2`` the binary entropy), ``N`` bits as a raw bitmap, and
``n_kept * ceil(log2 N)`` bits as a flat index list; a per-row CSR layout costs
``n_kept * ceil(log2 row_len) + (rows + 1) * ceil(log2(n_kept + 1))``. A ticket
only compresses if the weights it drops (``(N - n_kept) * 32`` bits at fp32,
``* 16`` at fp16) save more than its mask costs.

K tickets over one network can also be coded jointly: each weight carries a
K-bit pattern (which tickets keep it); the empirical entropy of the patterns
times ``N`` is the joint cost. Coding each ticket alone costs the sum of their
``N * H2(d_k)``; the difference is the (empirical) total correlation of the
masks, zero for independent masks and large for overlapping ones.

Per-ticket table columns (:func:`coding_frame`, :func:`coding_table`)
---------------------------------------------------------------------
level, sparsity : int, float
    Run tables only.
ticket : str
layer : str
    Layer name, or ``"__global__"`` (sums over layers, each layer coded with its
    own density).
n_weights, n_kept : int
density : float
    ``n_kept / n_weights``.
h2 : float
    Best cost in bits per weight: ``H2(density)`` for a layer; for
    ``"__global__"`` the layer-wise cost divided by all weights.
entropy_bits : float
    ``n_weights * H2(density)`` summed over layers.
bitmap_bits, index_bits, csr_bits : int
    Raw bitmap, flat index list, per-row CSR (rows = first weight axis).
dropped_bits_fp32, dropped_bits_fp16 : int
    Storage saved by the removed weights, ``(n_weights - n_kept) * 32`` or ``* 16``.

Joint table columns (:func:`joint_coding_frame`, :func:`joint_coding_table`)
---------------------------------------------------------------------------
level, sparsity : int, float
    Run tables only.
layer : str
    Layer name or ``"__global__"`` (sums over layers).
n_weights, n_tickets, n_patterns : int
    ``n_patterns``: distinct K-bit patterns present (summed over layers for global).
n_union : int
    Weights kept by at least one ticket (the shared tensor's parameters).
bitmap_bits : int
    K raw bitmaps, ``K * n_weights``.
independent_bits : float
    Sum over tickets of ``n_weights * H2(d_k)``.
joint_bits : float
    ``n_weights *`` empirical entropy of the K-bit patterns.
total_correlation_bits : float
    ``independent_bits - joint_bits`` (>= 0): what joint coding saves.
dropped_bits_fp32, dropped_bits_fp16 : int
    Storage saved by weights outside the union, ``(n_weights - n_union) * 32`` or ``* 16``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import entr

from analysis.similarity import GLOBAL

if TYPE_CHECKING:
    from artifacts.run_format import Run

TICKET_COLUMNS = [
    "ticket",
    "layer",
    "n_weights",
    "n_kept",
    "density",
    "h2",
    "entropy_bits",
    "bitmap_bits",
    "index_bits",
    "csr_bits",
    "dropped_bits_fp32",
    "dropped_bits_fp16",
]
JOINT_COLUMNS = [
    "layer",
    "n_weights",
    "n_tickets",
    "n_patterns",
    "n_union",
    "bitmap_bits",
    "independent_bits",
    "joint_bits",
    "total_correlation_bits",
    "dropped_bits_fp32",
    "dropped_bits_fp16",
]
_INT_SUMS = ["n_weights", "n_kept", "bitmap_bits", "index_bits", "csr_bits"]

Masks = np.ndarray | Mapping[str, np.ndarray]


def binary_entropy(p: np.ndarray | float) -> np.ndarray:
    """Binary entropy ``H2(p) = -p log2 p - (1 - p) log2 (1 - p)`` in bits.

    Parameters
    ----------
    p : array_like of float in [0, 1]

    Returns
    -------
    ndarray of float64, same shape (0 at p = 0 and p = 1)
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return (entr(p) + entr(1.0 - p)) / np.log(2.0)


def _bits_for(n_values: int) -> int:
    """``ceil(log2 n_values)``: bits to tell ``n_values`` values apart (0 for one value)."""
    return (max(int(n_values), 1) - 1).bit_length()


def _layers(masks: Masks) -> list[tuple[str, np.ndarray]]:
    """``[(layer, bool (K, *weight_shape))]``; a plain (K, N) array is one layer named GLOBAL."""
    items = masks.items() if isinstance(masks, Mapping) else [(GLOBAL, masks)]
    out = []
    for name, m in items:
        m = np.asarray(m)
        if m.dtype != np.bool_ or m.ndim < 2:
            raise ValueError(
                f"masks {name!r} must be bool of shape (K, *weight_shape), got {m.dtype} {m.shape}"
            )
        out.append((str(name), m))
    if not out:
        raise ValueError("no layers in masks")
    if len({m.shape[0] for _, m in out}) != 1:
        raise ValueError("layers disagree on the number of tickets")
    return out


def _tickets(k: int, tickets: Sequence[str] | None) -> list[str]:
    names = [str(i) for i in range(k)] if tickets is None else [str(t) for t in tickets]
    if len(names) != k:
        raise ValueError(f"{len(names)} ticket names for {k} tickets")
    return names


def coding_frame(masks: Masks, tickets: Sequence[str] | None = None) -> pd.DataFrame:
    """Mask coding costs per ticket and layer, and per ticket over all layers.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N), or mapping of str to ndarray of bool, shape (K, *shape)
        A plain array is one layer of one row (its CSR cost equals a one-row CSR).
    tickets : sequence of str, optional
        Ticket names, length K.

    Returns
    -------
    DataFrame
        Columns ``ticket, layer, n_weights, n_kept, density, h2, entropy_bits,
        bitmap_bits, index_bits, csr_bits, dropped_bits_fp32, dropped_bits_fp16``
        (module docstring); per-layer rows (if the input has layers) then one
        ``"__global__"`` row per ticket.
    """
    from analysis.packed import PackedMasks, coding_frame_packed

    if isinstance(masks, PackedMasks):  # memory-mapped: popcounts layer by layer
        return coding_frame_packed(masks, tickets)
    layers = _layers(masks)
    names = _tickets(layers[0][1].shape[0], tickets)
    counts = [(layer, m.shape, m.reshape(m.shape[0], -1).sum(axis=1, dtype=np.int64)) for layer, m in layers]
    return coding_table_from_counts(names, counts, with_global=isinstance(masks, Mapping))


def coding_table_from_counts(
    names: Sequence[str],
    counts: Sequence[tuple[str, tuple[int, ...], np.ndarray]],
    with_global: bool = True,
) -> pd.DataFrame:
    """Finish :func:`coding_frame` from kept counts (in-memory and packed paths alike).

    Parameters
    ----------
    names : sequence of str
        Ticket names, length K.
    counts : sequence of (layer, shape, kept)
        Per layer: its name, the masks' shape ``(K, *weight_shape)`` and the
        weights each ticket keeps, int array of shape (K,).
    with_global : bool
        Append one ``"__global__"`` row per ticket (sums over layers).

    Returns
    -------
    DataFrame
        Columns :data:`TICKET_COLUMNS`.
    """
    rows = []
    for layer, full_shape, kept in counts:
        k, shape = full_shape[0], full_shape[1:]
        n = int(np.prod(shape))
        n_rows = shape[0] if len(shape) > 1 else 1
        row_len = n // max(n_rows, 1)
        density = kept / n if n else np.zeros(k)
        h2 = binary_entropy(density)
        for t, nk, d, h in zip(names, kept, density, h2, strict=True):
            nk = int(nk)
            rows.append(
                {
                    "ticket": t,
                    "layer": layer,
                    "n_weights": n,
                    "n_kept": nk,
                    "density": float(d),
                    "h2": float(h),
                    "entropy_bits": float(n * h),
                    "bitmap_bits": n,
                    "index_bits": nk * _bits_for(n),
                    "csr_bits": nk * _bits_for(row_len) + (n_rows + 1) * _bits_for(nk + 1),
                }
            )
    df = pd.DataFrame(rows)
    if with_global:
        glob = df.groupby("ticket", sort=False)[[*_INT_SUMS, "entropy_bits"]].sum().reset_index()
        glob["layer"] = GLOBAL
        glob["density"] = glob["n_kept"] / glob["n_weights"].where(glob["n_weights"] > 0)
        glob["h2"] = glob["entropy_bits"] / glob["n_weights"].where(glob["n_weights"] > 0)
        df = pd.concat([df, glob], ignore_index=True)
    removed = df["n_weights"] - df["n_kept"]
    df["dropped_bits_fp32"] = removed * 32
    df["dropped_bits_fp16"] = removed * 16
    for c in [*_INT_SUMS, "dropped_bits_fp32", "dropped_bits_fp16"]:
        df[c] = df[c].astype(np.int64)
    return df[TICKET_COLUMNS]


def pattern_counts(masks: np.ndarray) -> np.ndarray:
    """How often each K-bit keep/prune pattern occurs across the weights.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N) or (K, *weight_shape)

    Returns
    -------
    ndarray of int64, shape (n_patterns,)
        Counts of the distinct patterns present (order unspecified); sums to N.
    """
    m = np.asarray(masks, dtype=bool)
    m = m.reshape(m.shape[0], -1)
    codes = np.ascontiguousarray(np.packbits(m, axis=0).T)  # (N, ceil(K / 8)) uint8
    nb = codes.shape[1]
    if nb <= 8:
        # One uint64 per weight: np.unique sorts integers much faster than bytes.
        codes = np.pad(codes, ((0, 0), (0, 8 - nb))).view(np.uint64).ravel()
    else:
        codes = codes.view(np.dtype((np.void, nb))).ravel()
    _, counts = np.unique(codes, return_counts=True)
    return counts.astype(np.int64)


def joint_entropy_bits(masks: np.ndarray) -> float:
    """Empirical joint cost ``N * H(pattern)`` in bits of K masks over N weights.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N) or (K, *weight_shape)

    Returns
    -------
    float
    """
    counts = pattern_counts(masks)
    n = counts.sum()
    if n == 0:
        return 0.0
    p = counts / n
    return float(n * entr(p).sum() / np.log(2.0))


def joint_coding_frame(masks: Masks) -> pd.DataFrame:
    """Joint against independent coding of all tickets' masks, per layer and globally.

    Parameters
    ----------
    masks : ndarray of bool, shape (K, N), or mapping of str to ndarray of bool, shape (K, *shape)

    Returns
    -------
    DataFrame
        Columns ``layer, n_weights, n_tickets, n_patterns, n_union, bitmap_bits,
        independent_bits, joint_bits, total_correlation_bits, dropped_bits_fp32,
        dropped_bits_fp16`` (module docstring); per-layer rows then ``"__global__"``.
    """
    from analysis.packed import PackedMasks, joint_coding_frame_packed

    if isinstance(masks, PackedMasks):  # memory-mapped: subset popcounts layer by layer
        return joint_coding_frame_packed(masks)
    rows = []
    for layer, m in _layers(masks):
        flat = m.reshape(m.shape[0], -1)
        k, n = flat.shape
        density = flat.sum(axis=1, dtype=np.int64) / n if n else np.zeros(k)
        counts = pattern_counts(flat)
        rows.append(
            {
                "layer": layer,
                "n_weights": n,
                "n_tickets": k,
                "n_patterns": counts.size,
                "n_union": int(flat.any(axis=0).sum()),
                "bitmap_bits": k * n,
                "independent_bits": float(n * binary_entropy(density).sum()),
                "joint_bits": joint_entropy_bits(flat),
            }
        )
    return joint_coding_table_from_rows(rows, with_global=isinstance(masks, Mapping))


def joint_coding_table_from_rows(rows: list[dict], with_global: bool = True) -> pd.DataFrame:
    """Finish :func:`joint_coding_frame` from its per-layer rows (in-memory and packed paths alike).

    Parameters
    ----------
    rows : list of dict
        Per layer: ``layer, n_weights, n_tickets, n_patterns, n_union, bitmap_bits,
        independent_bits, joint_bits``.
    with_global : bool
        Append the ``"__global__"`` row (sums over layers).

    Returns
    -------
    DataFrame
        Columns :data:`JOINT_COLUMNS`.
    """
    df = pd.DataFrame(rows)
    if with_global:
        glob = df.drop(columns=["layer", "n_tickets"]).sum().to_frame().T
        glob.insert(0, "layer", GLOBAL)
        glob["n_tickets"] = df["n_tickets"].iloc[0]
        df = pd.concat([df, glob], ignore_index=True)
    # Plug-in entropies obey joint <= independent exactly; clip float round-off.
    df["total_correlation_bits"] = (df["independent_bits"] - df["joint_bits"]).clip(lower=0.0)
    df["dropped_bits_fp32"] = (df["n_weights"] - df["n_union"]) * 32
    df["dropped_bits_fp16"] = (df["n_weights"] - df["n_union"]) * 16
    for c in [
        "n_weights",
        "n_tickets",
        "n_patterns",
        "n_union",
        "bitmap_bits",
        "dropped_bits_fp32",
        "dropped_bits_fp16",
    ]:
        df[c] = df[c].astype(np.int64)
    for c in ["independent_bits", "joint_bits", "total_correlation_bits"]:
        df[c] = df[c].astype(np.float64)
    return df[JOINT_COLUMNS]


def _over_levels(run: Run, method: str, levels: Sequence[int] | None, frame) -> pd.DataFrame:
    from analysis.packed import packed_masks

    levels = run.levels(method) if levels is None else list(levels)
    frames = []
    for level in levels:
        df = frame(packed_masks(run, method, level))
        df.insert(0, "sparsity", run.sparsity(method, level))
        df.insert(0, "level", level)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def coding_table(run: Run, method: str, levels: Sequence[int] | None = None) -> pd.DataFrame:
    """:func:`coding_frame` of a method's tickets at every level (or the given levels).

    Returns
    -------
    DataFrame
        Columns ``level, sparsity`` then those of :func:`coding_frame`.
    """
    tickets = run.ticket_names(method)
    return _over_levels(run, method, levels, lambda m: coding_frame(m, tickets))


def joint_coding_table(run: Run, method: str, levels: Sequence[int] | None = None) -> pd.DataFrame:
    """:func:`joint_coding_frame` of a method at every level (or the given levels).

    Returns
    -------
    DataFrame
        Columns ``level, sparsity`` then those of :func:`joint_coding_frame`.
    """
    return _over_levels(run, method, levels, joint_coding_frame)


def coding_level_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean per-ticket global coding costs per level (costs against sparsity).

    Parameters
    ----------
    table : DataFrame
        Output of :func:`coding_table`.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity, density, entropy_bits, bitmap_bits, index_bits,
        csr_bits, dropped_bits_fp32, dropped_bits_fp16``: means over tickets of
        their ``"__global__"`` rows.
    """
    cols = [
        "density",
        "entropy_bits",
        "bitmap_bits",
        "index_bits",
        "csr_bits",
        "dropped_bits_fp32",
        "dropped_bits_fp16",
    ]
    glob = table[table["layer"] == GLOBAL]
    return glob.groupby(["level", "sparsity"], sort=True)[cols].mean().reset_index()
