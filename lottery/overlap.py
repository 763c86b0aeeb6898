"""How many tickets keep each weight, and the ``rtl.overlap_scaling="count"`` update rule.

In joint retraining a weight kept by c tickets is moved by each of their steps,
so one round of K steps moves it c times. As the masks thin out over a sweep,
the mean c falls (about 8 at level 1 to about 2 at the last level of
fashion-mlp-class), and with it the effective learning rate of the shared
weights. ``overlap_scaling="none"`` (the paper) keeps that; ``"count"`` divides
each ticket's update of a weight by the weight's c, so a round moves a shared
weight by about the mean of the tickets' updates rather than their sum.

Only the prunable (masked) weights are scaled: biases, norms and embeddings are
kept by every ticket at every level (c = K throughout), so their rate does not
drift across the sweep and they keep the paper's rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

MODES = ("none", "count")


def keep_counts(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The count c per weight: how many tickets keep it in their mask.

    Parameters
    ----------
    masks : mapping of str to tensor, shape (K, *weight_shape)
        Bool or 0/1 masks of the K tickets.

    Returns
    -------
    dict of str to int64 tensor, shape (*weight_shape)
    """
    return {n: (m != 0).sum(0) for n, m in masks.items()}


def overlap_record(masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The distribution of c over the weights kept by at least one ticket (``level.json`` ``overlap``).

    Returns
    -------
    dict
        ``histogram``: list of K ints, entry c-1 the number of weights kept by exactly
        c tickets; ``mean``: mean c over those weights (NaN-free: 0.0 if none is kept);
        ``max``: the largest c.
    """
    counts = keep_counts(masks)
    k = int(next(iter(masks.values())).shape[0])
    hist = np.zeros(k + 1, dtype=np.int64)
    for c in counts.values():
        hist += np.bincount(c.flatten().cpu().numpy(), minlength=k + 1)[: k + 1]
    kept = hist[1:]
    n = int(kept.sum())
    mean = float((np.arange(1, k + 1) * kept).sum() / n) if n else 0.0
    top = int(np.flatnonzero(kept)[-1] + 1) if n else 0
    return {"histogram": kept.tolist(), "mean": mean, "max": top}


def update_scales(masks: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """1 / c per masked weight (1 where no ticket keeps it), for :func:`scale_updates`.

    Returns
    -------
    dict of str to tensor, shape (*weight_shape), of ``dtype``
    """
    return {n: 1.0 / c.clamp(min=1).to(dtype) for n, c in keep_counts(masks).items()}


@torch.no_grad()
def scale_updates(
    params: Sequence[torch.Tensor], before: Sequence[torch.Tensor], scales: Sequence[torch.Tensor]
) -> None:
    """Divide the update just applied to ``params`` by c, in place: ``p = before + (p - before) / c``.

    Weights with c = 1 keep the optimiser's value exactly (no round trip through
    the subtraction), and a weight the step did not move stays bit-identical.

    Parameters
    ----------
    params : sequence of tensor
        The masked parameters after the step (updated in place).
    before : sequence of tensor
        Copies of them before the step.
    scales : sequence of tensor
        :func:`update_scales` of each, same shapes.
    """
    for p, b, s in zip(params, before, scales, strict=True):
        p.copy_(torch.where(s < 1, b + (p - b) * s, p))
