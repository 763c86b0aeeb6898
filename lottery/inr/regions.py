"""Regions of an image: k-means on colour and position, standing in for semantic classes.

The paper routes the pixels of a semantically segmented image to one ticket
per segmentation class. No segmentation ships with scikit-learn's photographs,
so a seeded k-means on (r, g, b, w * row, w * col) cuts each image into
compact regions of similar colour; ``w`` trades colour for compactness.
"""

from __future__ import annotations

import numpy as np


def segment_regions(
    image: np.ndarray, n_regions: int, *, position_weight: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Region id of every pixel, ids ordered by region size (0 = largest).

    Parameters
    ----------
    image : ndarray of float, shape (H, W, 3)
        RGB in [0, 1].
    n_regions : int
        Number of k-means clusters (every id in ``0..n_regions-1`` is used).
    position_weight : float
        Scale of the (row, col) coordinates, themselves in [0, 1], against colour.
    seed : int
        ``random_state`` of the k-means.

    Returns
    -------
    ndarray of int64, shape (H, W)
    """
    from sklearn.cluster import KMeans

    h, w, _ = image.shape
    if not 1 <= n_regions <= h * w:
        raise ValueError(f"n_regions must be in [1, {h * w}], got {n_regions}")
    rows, cols = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    feats = np.column_stack(
        [image.reshape(-1, 3), position_weight * rows.ravel(), position_weight * cols.ravel()]
    )
    labels = KMeans(n_clusters=n_regions, n_init=10, random_state=seed).fit_predict(feats)
    # relabel by size, ties by old label, so ids do not depend on k-means' arbitrary order
    counts = np.bincount(labels, minlength=n_regions)
    order = np.lexsort((np.arange(n_regions), -counts))
    rank = np.empty(n_regions, dtype=np.int64)
    rank[order] = np.arange(n_regions)
    return rank[labels].reshape(h, w)


def region_masks(regions: np.ndarray, n_regions: int) -> np.ndarray:
    """One boolean pixel mask per region.

    Parameters
    ----------
    regions : ndarray of int, shape (H, W)
    n_regions : int

    Returns
    -------
    ndarray of bool, shape (n_regions, H, W)
        ``out[r]`` is True where ``regions == r``; the masks partition the image.
    """
    return regions[None] == np.arange(n_regions)[:, None, None]
