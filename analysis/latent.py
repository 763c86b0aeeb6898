"""Latent correlation of two magnitude-pruned masks: an overlap measure that does not move with density.

Jaccard and its chance correction J* change with density even when the
tickets' pruning scores are equally alike at every level: magnitude pruning
first drops the weights nearest zero, where two correlated scores agree least,
so J* of masks whose scores have a constant correlation rises from the first
pruned level to the next (by 0.01 to 0.14 for correlations 0.3 to 0.9 at 20 %
pruning per level) and keeps moving after. A collapse alarm reading J* "sees"
that rise in every sweep.

Model: ticket a keeps weight i when ``|z_ai| > t_a``, where ``(z_a, z_b)`` is
standard bivariate normal with correlation ``rho`` (a Gaussian copula on the
weights' pruning scores; any symmetric score distribution maps to it by its
ranks) and ``t_a = Phi^-1(1 - d_a / 2)`` is set by the density ``d_a``. Then

    P(both keep) = d_a + d_b - 1 + P(|z_a| <= t_a, |z_b| <= t_b; rho),

which increases with ``rho**2``. :func:`latent_correlation` inverts it: given
the two densities and the observed co-kept fraction, the ``rho >= 0`` that
reproduces it (0 when the masks overlap no more than chance, as the model
cannot express less). For masks drawn from this model the estimate is the
same at every density, up to sampling noise of order ``1 / sqrt(n)``.

The probability is a 1-D integral, computed by Gauss-Legendre quadrature and
inverted by bisection, vectorised over pairs (no per-pair Python loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr, ndtri

if TYPE_CHECKING:
    from analysis.similarity import OverlapCounts

__all__ = [
    "latent_correlation",
    "pairwise_latent_correlation",
    "pairwise_latent_correlation_from_counts",
    "ticket_latent_correlation",
    "ticket_latent_correlation_from_counts",
]

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
_BISECTIONS = 40
EXACT_FLOAT32 = 2**24  # whole numbers up to this are exact in float32, and so are their sums


def _both_small(ta: np.ndarray, tb: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``P(|z_a| <= ta, |z_b| <= tb)`` of standard bivariate normals, correlation ``rho``; (P,)."""
    # integrand symmetric in x: 2 * int_0^ta phi(x) [Phi((tb - rho x)/s) - Phi((-tb - rho x)/s)] dx
    x = 0.5 * ta[:, None] * (_NODES[None, :] + 1.0)  # (P, N) nodes on [0, ta]
    w = 0.5 * ta[:, None] * _WEIGHTS[None, :]
    s = np.sqrt(np.maximum(1.0 - rho**2, 1e-12))[:, None]
    r = rho[:, None]
    phi = np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    inner = ndtr((tb[:, None] - r * x) / s) - ndtr((-tb[:, None] - r * x) / s)
    return 2.0 * (w * phi * inner).sum(axis=1)


def latent_correlation(d_a: np.ndarray, d_b: np.ndarray, p_both: np.ndarray) -> np.ndarray:
    """Latent score correlation of mask pairs from their densities and co-kept fraction.

    Parameters
    ----------
    d_a, d_b : array-like of float, shape (P,)
        Kept fractions of the two masks of each pair, in (0, 1).
    p_both : array-like of float, shape (P,)
        Fraction of weights kept by both.

    Returns
    -------
    ndarray of float, shape (P,)
        ``rho`` in [0, 1) (see the module docstring); NaN where a density is
        0 or 1 (a full or empty mask says nothing about its scores).
    """
    d_a, d_b, p_both = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (d_a, d_b, p_both))
    d_a, d_b, p_both = np.broadcast_arrays(d_a, d_b, p_both)
    out = np.full(d_a.shape, np.nan)
    ok = (d_a > 0) & (d_a < 1) & (d_b > 0) & (d_b < 1)
    if not ok.any():
        return out
    ta, tb = ndtri(1 - d_a[ok] / 2), ndtri(1 - d_b[ok] / 2)
    target = p_both[ok] - (d_a[ok] + d_b[ok] - 1.0)  # observed P(both small)
    # _both_small(ta, tb, mid) at every step: its nodes and weighted density do not depend on
    # rho, so they are computed once (the same operations on the same values: the same bits).
    x = 0.5 * ta[:, None] * (_NODES[None, :] + 1.0)  # (P, N)
    w = 0.5 * ta[:, None] * _WEIGHTS[None, :]
    w_phi = w * (np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi))  # (P, N)
    upper, lower = tb[:, None], -tb[:, None]
    lo, hi = np.zeros(ta.shape), np.full(ta.shape, 0.9999)
    for _ in range(_BISECTIONS):  # P(both small) increases with rho on [0, 1)
        mid = 0.5 * (lo + hi)
        s = np.sqrt(np.maximum(1.0 - mid**2, 1e-12))[:, None]
        rx = mid[:, None] * x
        inner = ndtr((upper - rx) / s) - ndtr((lower - rx) / s)
        above = 2.0 * (w_phi * inner).sum(axis=1) < target
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    out[ok] = 0.5 * (lo + hi)
    return out


def pairwise_latent_correlation(masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Latent correlation of every ticket pair, combined over layers.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)

    Returns
    -------
    ndarray of float, shape (K, K)
        Per pair, the mean over layers of the per-layer estimate, weighted by
        the layer's number of weights (layers where either mask is full or
        empty are left out); NaN on the diagonal and where no layer counts.
    """
    flat = [np.asarray(m, dtype=bool).reshape(np.shape(m)[0], -1) for m in masks.values()]
    if not flat:
        raise ValueError("no layers in masks")
    k = flat[0].shape[0]
    ia, ib = np.triu_indices(k, 1)
    layers = []  # (n, co-kept fraction (P,), density (K,)) of each non-empty layer
    for m in flat:
        n = m.shape[1]
        if n == 0:
            continue
        f = m.astype(np.float32)
        layers.append((n, (f @ f.T)[ia, ib] / n, f.mean(axis=1)))
    return _combine_layers(k, layers)


def pairwise_latent_correlation_from_counts(counts: Sequence[OverlapCounts]) -> np.ndarray:
    """:func:`pairwise_latent_correlation` from each layer's integer overlap counts (no mask read again).

    Parameters
    ----------
    counts : sequence of OverlapCounts
        One per layer (:func:`analysis.similarity.layer_overlap_counts`), the same K.

    Returns
    -------
    ndarray of float, shape (K, K)
        What :func:`pairwise_latent_correlation` gives on the masks, bit for bit
        (tested): its float32 fractions are formed here from the exact counts,
        which its float32 sums equal for layers of up to 2**24 weights. Larger
        layers are refused (ValueError): use the masks.
    """
    counts = list(counts)
    if not counts:
        raise ValueError("no layers in masks")
    if any(c.n_weights > EXACT_FLOAT32 for c in counts):
        raise ValueError(f"a layer has more than {EXACT_FLOAT32} weights: float32 counts are not exact")
    k = counts[0].n_tickets
    ia, ib = np.triu_indices(k, 1)
    layers = []
    for c in counts:
        n = int(c.n_weights)
        if n == 0:
            continue
        # the float32 operations of the mask path: a float32 array over a Python int, and
        # np.mean's float32 sum divided by its item count (np.intp)
        kept = np.asarray(c.sizes).astype(np.float32)
        dens = np.true_divide(kept, np.intp(n), out=kept, casting="unsafe")
        layers.append((n, np.asarray(c.intersection).astype(np.float32)[ia, ib] / n, dens))
    return _combine_layers(k, layers)


def _combine_layers(k: int, layers: list[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    """The (K, K) size-weighted mean over layers of the per-layer estimates.

    ``layers``: per non-empty layer, its weight count, co-kept fractions of the
    pairs ``triu_indices(k, 1)`` (P,) and ticket densities (K,).
    """
    ia, ib = np.triu_indices(k, 1)
    num, den = np.zeros(ia.size), np.zeros(ia.size)
    sizes = [n for n, _, _ in layers]
    d_a = [dens[ia] for _, _, dens in layers]
    d_b = [dens[ib] for _, _, dens in layers]
    co = [c for _, c, _ in layers]
    # One bisection for the pairs of every layer (it is elementwise: the same estimates as
    # layer by layer, without a Python loop of 40 small steps per layer).
    rhos = np.split(latent_correlation(*map(np.concatenate, (d_a, d_b, co))), len(sizes)) if sizes else []
    for n, rho in zip(sizes, rhos, strict=True):
        good = np.isfinite(rho)
        num[good] += n * rho[good]
        den[good] += n
    out = np.full((k, k), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    out[ia, ib] = vals
    out[ib, ia] = vals
    return out


def ticket_latent_correlation(masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each ticket's mean latent correlation to the other tickets.

    Parameters
    ----------
    masks : mapping of str to ndarray of bool, shape (K, *weight_shape)

    Returns
    -------
    ndarray of float, shape (K,)
        NaN for K = 1 or where no pair is defined.
    """
    return _ticket_means(pairwise_latent_correlation(masks))


def ticket_latent_correlation_from_counts(counts: Sequence[OverlapCounts]) -> np.ndarray:
    """:func:`ticket_latent_correlation` from each layer's overlap counts.

    Parameters
    ----------
    counts : sequence of OverlapCounts
        As in :func:`pairwise_latent_correlation_from_counts` (layers of up to 2**24 weights).

    Returns
    -------
    ndarray of float, shape (K,)
        :func:`ticket_latent_correlation` of the masks, bit for bit.
    """
    return _ticket_means(pairwise_latent_correlation_from_counts(counts))


def _ticket_means(r: np.ndarray) -> np.ndarray:
    """Each ticket's mean of the (K, K) pair matrix ``r`` over the others (NaN skipped); (K,)."""
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(r, axis=1) if r.shape[0] > 1 else np.full(r.shape[0], np.nan)
