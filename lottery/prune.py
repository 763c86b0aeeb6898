"""Magnitude pruning of one ticket, per layer or globally."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def level_density(fraction: float, level: int) -> float:
    """Fraction of weights kept after ``level`` rounds that each remove ``fraction``: (1-p)^L."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"pruning fraction must be in [0, 1), got {fraction}")
    return (1.0 - fraction) ** level


def _keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask of the ``keep`` largest entries of ``scores`` (ties broken by position)."""
    flat = scores.flatten()
    if 0 < keep < flat.numel() and not flat.isnan().any():
        # the same set as the stable sort below, by selection (several times faster): everything
        # above the keep-th largest value, then the first of the entries tied with it
        threshold = torch.kthvalue(flat, flat.numel() - keep + 1).values
        above, tied = flat > threshold, flat == threshold
        room = keep - int(above.sum())
        return (above | (tied & (torch.cumsum(tied, 0) <= room))).view_as(scores)
    order = torch.argsort(flat, descending=True, stable=True)
    out = torch.zeros_like(flat, dtype=torch.bool)
    out[order[:keep]] = True
    return out.view_as(scores)


def magnitude_prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    density: float,
    scope: str = "layer",
) -> dict[str, torch.Tensor]:
    """Keep the largest-magnitude surviving weights so that ``density`` of all weights remain.

    Parameters
    ----------
    weights : mapping of str to tensor, shape (*weight_shape)
        Trained weights of one ticket.
    mask : mapping of str to bool tensor, shape (*weight_shape)
        The ticket's current mask; pruned weights never come back.
    density : float
        Target fraction of weights kept, ``(1 - p)^L`` at level L. The count kept
        is ``round(density * n)`` per layer (``scope="layer"``) or over all
        prunable weights (``scope="global"``), so the sparsity after L levels
        is exact to within one weight per layer.
    scope : {"layer", "global"}

    Returns
    -------
    dict of str to bool tensor, shape (*weight_shape)
        The new mask, a subset of ``mask``.
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    # pruned weights score -1 so they are never chosen over surviving ones
    scores = {n: torch.where(mask[n], weights[n].detach().abs(), torch.tensor(-1.0)) for n in mask}
    if scope == "layer":
        out = {}
        for n, s in scores.items():
            keep = min(int(round(density * s.numel())), int(mask[n].sum()))
            out[n] = _keep_top(s, keep)
        return out
    if scope == "global":
        names = list(scores)
        flat = torch.cat([scores[n].flatten() for n in names])
        total_alive = int(sum(int(mask[n].sum()) for n in names))
        keep = min(int(round(density * flat.numel())), total_alive)
        kept = _keep_top(flat, keep)
        out, start = {}, 0
        for n in names:
            size = scores[n].numel()
            out[n] = kept[start : start + size].view_as(scores[n])
            start += size
        return out
    raise ValueError(f"unknown pruning scope {scope!r}; choose layer or global")
