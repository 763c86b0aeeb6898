"""Attention entropy of transformer tickets: how focused each head's attention is.

For an attention row ``p`` over the valid keys, ``H = -sum p log p`` (nats);
normalised by ``log(n_valid_keys)`` it lies in [0, 1]: 0 for attention on one
token, 1 for uniform attention. Pruned tickets tend to focus attention (lower
entropy). Only numpy here: the torch probe that produces the attention maps
lives in :mod:`analysis.attention_probe`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ATTENTION_COLUMNS",
    "attention_entropy",
    "attention_entropy_table",
    "entropy_table_from_rows",
    "image_entropy",
    "image_entropy_from_rows",
    "mean_interval",
    "row_entropies",
    "entropy_columns_from_rows",
]

ATTENTION_COLUMNS = [
    "layer",
    "head",
    "mean_entropy",
    "mean_entropy_nats",
    "effective_tokens",
    "dense_entropy",
    "entropy_change",
    "near_one_hot",
    "near_uniform",
    "n_rows",
]
# Default thresholds of the ``near_one_hot`` / ``near_uniform`` flags (mean normalised entropy).
ONE_HOT_BELOW = 0.1
UNIFORM_ABOVE = 0.95


def attention_entropy(
    probs: np.ndarray, key_mask: np.ndarray | None = None, normalize: bool = True
) -> np.ndarray:
    """Entropy of each attention row over its valid keys.

    Parameters
    ----------
    probs : ndarray of float, shape (..., T_query, T_key)
        Attention probabilities (non-negative; each row is renormalised over
        its valid keys, as ``scipy.stats.entropy`` does).
    key_mask : ndarray of bool, optional
        True for real keys, False for padding. A mask with fewer dimensions
        than ``probs`` is read as (..., T_key), the leading axes of ``probs``
        without T_query, and applied to every query row; a mask with as many
        dimensions is broadcast to (..., T_query, T_key) as it is. Default:
        all keys valid.
    normalize : bool
        Divide by ``log(n_valid_keys)`` so the result lies in [0, 1].

    Returns
    -------
    ndarray of float64, shape (..., T_query)
        Entropy in nats (or normalised). Equals
        ``scipy.stats.entropy(probs[..., q, valid])`` for each row. A row with
        a single valid key has entropy 0 (and normalised entropy 0); a row
        with no valid key or zero total mass is NaN.
    """
    h, n_valid = _entropy_nats(probs, key_mask)
    return _normalised(h, n_valid) if normalize else h


def _entropy_nats(probs: np.ndarray, key_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Entropy in nats of each row over its valid keys, and the number of valid keys.

    Parameters
    ----------
    probs : ndarray of float, shape (..., T_query, T_key)
    key_mask : ndarray of bool, optional
        As in :func:`attention_entropy`.

    Returns
    -------
    h : ndarray of float64, shape (..., T_query)
        NaN for a row with no valid key or zero mass.
    n_valid : ndarray of int, shape (..., T_query)
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 2:
        raise ValueError(f"probs must have shape (..., T_query, T_key), got {p.shape}")
    if np.any(p < 0):
        raise ValueError("attention probabilities must be non-negative")
    if key_mask is None:
        valid = np.ones(p.shape[-1:], dtype=bool)
    else:
        valid = np.asarray(key_mask, dtype=bool)
        if valid.ndim < p.ndim:
            valid = valid[..., None, :]  # (..., 1, T_key): same keys for every query
        p = np.where(np.broadcast_to(valid, p.shape), p, 0.0)
    total = p.sum(axis=-1, keepdims=True)
    q = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    plogp = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    h = -plogp.sum(axis=-1)
    h = np.where(total[..., 0] > 0, h, np.nan)
    # counted on the mask before broadcasting over the query rows (the same counts)
    n_valid = np.broadcast_to(valid.sum(axis=-1), h.shape)
    return h, n_valid


def _normalised(h: np.ndarray, n_valid: np.ndarray) -> np.ndarray:
    """``h / log(n_valid)`` as :func:`attention_entropy` normalises it (0 for one valid key, NaN for none)."""
    log_n = np.log(np.maximum(n_valid, 1))
    # One valid key: the attention is necessarily one-hot, normalised entropy 0.
    out = np.divide(h, log_n, out=np.zeros_like(h), where=log_n > 0)
    return np.where(np.isnan(h) | (n_valid == 0), np.nan, out)


def row_entropies(probs: np.ndarray, key_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Entropy in nats and valid-key count of every attention row of one block: the one pass over its maps.

    Each row depends on its own map only, so the rows of a subset of images are
    these arrays indexed by the images (``h[rows]``): the per-head table
    (:func:`entropy_table_from_rows`) and the per-image entropies
    (:func:`image_entropy_from_rows`) of any image set are then computed
    without reading the maps again, with the numbers the map-based functions give.

    Parameters
    ----------
    probs : ndarray of float, shape (B, H, T, T)
        One block's attention maps.
    key_mask : ndarray of bool, shape (B, T), optional
        True for real tokens.

    Returns
    -------
    h_nats : ndarray of float64, shape (B, H, T)
        NaN for a row with no valid key or zero mass.
    n_valid : ndarray of int, shape (B, H, T)
    """
    p = np.asarray(probs)
    if p.ndim != 4 or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"attention maps must have shape (B, H, T, T), got {p.shape}")
    return _entropy_nats(p, _query_mask(key_mask, p.shape))


def _query_mask(key_mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``key_mask`` (B, T) as (B, 1, T), or None."""
    b, _, t = shape[0], shape[1], shape[-1]
    return None if key_mask is None else np.asarray(key_mask, dtype=bool).reshape(b, 1, t)


def _valid_rows(h_nats: np.ndarray, km: np.ndarray | None) -> np.ndarray:
    """(B, H, T) True for the rows of the sequence (not padded, finite entropy)."""
    rows = np.ones(h_nats.shape, dtype=bool) if km is None else np.broadcast_to(km, h_nats.shape)
    return rows & np.isfinite(h_nats)  # padded queries are not rows of the sequence


def _layer_stats(
    h_nats: np.ndarray, n_valid: np.ndarray, key_mask: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    """Per-head mean normalised entropy, mean entropy (nats), mean exp(H), row count.

    From one block's :func:`row_entropies` (each of shape (B, H, T)); four arrays of shape (H,).
    """
    n_heads = h_nats.shape[1]
    h_norm = _normalised(h_nats, n_valid)
    rows = _valid_rows(h_nats, _query_mask(key_mask, h_nats.shape))
    count = rows.sum(axis=(0, 2))  # (H,)

    def mean(x: np.ndarray) -> np.ndarray:
        s = np.where(rows, x, 0.0).sum(axis=(0, 2))
        return np.divide(s, count, out=np.full(n_heads, np.nan), where=count > 0)

    return mean(h_norm), mean(h_nats), mean(np.exp(h_nats)), count


def _layer_names(layer_names: Sequence[str] | None, n_layers: int) -> list[str]:
    """The blocks' names (default ``"0", "1", ...``); refuses a count mismatch and no blocks."""
    names = [str(i) for i in range(n_layers)] if layer_names is None else [str(n) for n in layer_names]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    if not n_layers:
        raise ValueError("no attention maps")
    return names


def attention_entropy_table(
    attention: Sequence[np.ndarray],
    key_mask: np.ndarray | None = None,
    dense: Sequence[np.ndarray] | pd.DataFrame | None = None,
    dense_key_mask: np.ndarray | None = None,
    layer_names: Sequence[str] | None = None,
    one_hot_below: float = ONE_HOT_BELOW,
    uniform_above: float = UNIFORM_ABOVE,
) -> pd.DataFrame:
    """Per layer and head entropy summary, and its change against the dense model.

    Parameters
    ----------
    attention : sequence of ndarray of float, shape (B, H, T, T)
        One attention map per transformer block (self-attention: queries and
        keys are the same T tokens).
    key_mask : ndarray of bool, shape (B, T), optional
        True for real tokens. Padded tokens are excluded as keys and their
        query rows are left out of the means.
    dense : sequence of ndarray (B, H, T, T), or DataFrame, optional
        The dense model's maps on the same inputs, or its table from this
        function; gives ``dense_entropy`` and ``entropy_change``.
    dense_key_mask : ndarray of bool, shape (B, T), optional
        Padding mask of ``dense`` maps (default: ``key_mask``).
    layer_names : sequence of str, optional
        Default ``"0", "1", ...``.
    one_hot_below, uniform_above : float
        Thresholds on the mean normalised entropy for the flags.

    Returns
    -------
    DataFrame
        One row per (layer, head), columns:
        ``layer`` (str), ``head`` (int), ``mean_entropy`` (mean normalised
        entropy over valid query rows, 0..1), ``mean_entropy_nats``,
        ``effective_tokens`` (mean over rows of ``exp(H)``, the effective number
        of attended tokens), ``dense_entropy`` and ``entropy_change``
        (``mean_entropy - dense_entropy``; NaN without ``dense``),
        ``near_one_hot`` (``mean_entropy < one_hot_below``), ``near_uniform``
        (``mean_entropy > uniform_above``), ``n_rows`` (query rows averaged).
    """
    names = _layer_names(layer_names, len(attention))
    if dense is not None and not isinstance(dense, pd.DataFrame):
        dmask = key_mask if dense_key_mask is None else dense_key_mask
        dense = attention_entropy_table(dense, dmask, layer_names=names)
    rows = [row_entropies(probs, key_mask) for probs in attention]
    return entropy_table_from_rows(rows, key_mask, dense, names, one_hot_below, uniform_above)


def entropy_table_from_rows(
    rows: Sequence[tuple[np.ndarray, np.ndarray]],
    key_mask: np.ndarray | None = None,
    dense: pd.DataFrame | None = None,
    layer_names: Sequence[str] | None = None,
    one_hot_below: float = ONE_HOT_BELOW,
    uniform_above: float = UNIFORM_ABOVE,
) -> pd.DataFrame:
    """:func:`attention_entropy_table` from the row entropies of each block (:func:`row_entropies`).

    Parameters
    ----------
    rows : sequence of (ndarray of float64, ndarray of int), each of shape (B, H, T)
        Per block: entropy in nats and valid-key count of every row.
    key_mask : ndarray of bool, shape (B, T), optional
        The mask the rows were computed with.
    dense : DataFrame, optional
        The dense model's table (this function's or :func:`attention_entropy_table`'s).
    layer_names : sequence of str, optional
    one_hot_below, uniform_above : float
        As in :func:`attention_entropy_table`.

    Returns
    -------
    DataFrame
        :data:`ATTENTION_COLUMNS`, the numbers :func:`attention_entropy_table` gives on the maps.
    """
    out = pd.DataFrame(entropy_columns_from_rows(rows, key_mask, layer_names))
    if dense is None:
        out["dense_entropy"] = np.nan
    else:
        same_rows = (
            len(dense) == len(out)
            and (dense["layer"].to_numpy() == out["layer"].to_numpy()).all()
            and (dense["head"].to_numpy() == out["head"].to_numpy()).all()
        )
        if same_rows:  # the usual case: the dense table of the same layers, row for row
            out["dense_entropy"] = dense["mean_entropy"].to_numpy()
        else:
            ref = dense.set_index(["layer", "head"])["mean_entropy"]
            out["dense_entropy"] = ref.reindex(pd.MultiIndex.from_frame(out[["layer", "head"]])).to_numpy()
    out["entropy_change"] = out["mean_entropy"] - out["dense_entropy"]
    out["near_one_hot"] = out["mean_entropy"] < one_hot_below
    out["near_uniform"] = out["mean_entropy"] > uniform_above
    return out[ATTENTION_COLUMNS]


def entropy_columns_from_rows(
    rows: Sequence[tuple[np.ndarray, np.ndarray]],
    key_mask: np.ndarray | None = None,
    layer_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The per-head columns of :func:`entropy_table_from_rows` as arrays (no dense comparison, no flags).

    For callers that stack many tables: one DataFrame built at the end instead
    of one per table.

    Parameters
    ----------
    rows : sequence of (ndarray of float64, ndarray of int), each of shape (B, H, T)
        Per block: :func:`row_entropies`.
    key_mask : ndarray of bool, shape (B, T), optional
        The mask the rows were computed with.
    layer_names : sequence of str, optional
        Default ``"0", "1", ...``.

    Returns
    -------
    dict of str to ndarray, each of shape (sum of heads over blocks,)
        ``layer`` (object, str), ``head`` (int), ``mean_entropy``,
        ``mean_entropy_nats``, ``effective_tokens`` (float64) and ``n_rows``
        (int64), in :data:`ATTENTION_COLUMNS`' order.
    """
    names = _layer_names(layer_names, len(rows))
    stats = [_layer_stats(h, n, key_mask) for h, n in rows]  # per layer: 4 arrays (H,)
    heads = [len(st[0]) for st in stats]
    col = {
        name: np.concatenate([st[i] for st in stats])
        for i, name in enumerate(("mean_entropy", "mean_entropy_nats", "effective_tokens", "n_rows"))
    }
    return {
        "layer": np.repeat(np.asarray(names, dtype=object), heads),
        "head": np.concatenate([np.arange(h) for h in heads]),
        "mean_entropy": col["mean_entropy"],
        "mean_entropy_nats": col["mean_entropy_nats"],
        "effective_tokens": col["effective_tokens"],
        "n_rows": col["n_rows"].astype(np.int64),
    }


def image_entropy(probs: np.ndarray, key_mask: np.ndarray | None = None) -> np.ndarray:
    """Mean normalised entropy of each image's attention rows (over heads and valid queries).

    The unit an interval over probe images resamples.

    Parameters
    ----------
    probs : ndarray of float, shape (B, H, T, T)
        One block's attention maps.
    key_mask : ndarray of bool, shape (B, T), optional
        True for real tokens (padded queries and keys are left out).

    Returns
    -------
    ndarray of float64, shape (B,)
        NaN for an image with no valid row.
    """
    return image_entropy_from_rows(*row_entropies(probs, key_mask), key_mask)


def image_entropy_from_rows(
    h_nats: np.ndarray, n_valid: np.ndarray, key_mask: np.ndarray | None = None
) -> np.ndarray:
    """:func:`image_entropy` from one block's row entropies (:func:`row_entropies`).

    Parameters
    ----------
    h_nats : ndarray of float64, shape (B, H, T)
    n_valid : ndarray of int, shape (B, H, T)
    key_mask : ndarray of bool, shape (B, T), optional
        The mask the rows were computed with.

    Returns
    -------
    ndarray of float64, shape (B,)
        NaN for an image with no valid row.
    """
    b = h_nats.shape[0]
    h = _normalised(h_nats, n_valid)  # (B, H, T)
    rows = _valid_rows(h, _query_mask(key_mask, h_nats.shape))
    count = rows.sum(axis=(1, 2))
    total = np.where(rows, h, 0.0).sum(axis=(1, 2))
    return np.divide(total, count, out=np.full(b, np.nan), where=count > 0)


def mean_interval(values: np.ndarray, ci: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of per-image values and its Student-t interval.

    Parameters
    ----------
    values : ndarray of float, shape (N,)
        NaNs are dropped.
    ci : float
        Coverage.

    Returns
    -------
    mean, low, high : float
        NaN bounds with fewer than two values.
    n : int
        Values used.
    """
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(v.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(student_t.ppf(1 - (1 - ci) / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n
