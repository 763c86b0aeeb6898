"""Validated containers for imported tickets, and the checks every format shares.

A mask refuses values other than 0/1 and shapes that do not match its weight;
a weight refuses non-float dtypes and NaN/inf; tickets imported together must
cover the same layers with the same shapes at the same levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.errors import CheckpointError

# Format names recorded in manifest["source"]["format"].
TORCH_PRUNE = "torch_prune"  # torch.nn.utils.prune: <p>_orig + <p>_mask
SHRINKBENCH = "shrinkbench"  # <p> (masked) + <p>_mask
NNI = "nni"  # {module: {"weight": mask, "bias": mask}}
OPENLTH = "openlth"  # lottery_*/replicate_*/level_*/main/mask.pth
INFERRED = "state_dict"  # plain state dict; masks inferred as weight != 0
TORCH_AO = "torch_ao"  # torch.ao.pruning before squash_mask: parametrizations.<p>.original + sparsifier masks


def as_mask(value: Any, what: str) -> np.ndarray:
    """Validate a mask and return it as bool.

    Parameters
    ----------
    value : ndarray
        bool, integer or float array of any shape (ndim >= 1) holding only 0 and 1.
    what : str
        How to name the mask in error messages.

    Returns
    -------
    ndarray of bool, same shape as ``value``

    Raises
    ------
    CheckpointError
        If ``value`` is not an array, has another dtype, is a scalar, or holds
        any value other than 0 and 1 (NaN included).
    """
    if not isinstance(value, np.ndarray):
        raise CheckpointError(f"{what} is a {type(value).__name__}, not a tensor")
    if value.dtype.kind == "b":
        out = value.astype(bool, copy=False)
    elif value.dtype.kind in "iuf":
        bad = (value != 0) & (value != 1)
        if bad.any():
            example = value[bad].flat[0].item()
            raise CheckpointError(
                f"{what} is not binary: {int(bad.sum())} of {value.size} entries are neither "
                f"0 nor 1 (e.g. {example!r})"
            )
        out = value != 0
    else:
        raise CheckpointError(
            f"{what} has dtype {value.dtype}; a mask must be bool, integer or float with values 0 and 1"
        )
    if out.ndim == 0:
        raise CheckpointError(f"{what} is a scalar, not a mask over a weight tensor")
    return out


def as_weight(value: Any, what: str) -> np.ndarray:
    """Validate a weight tensor: floating point and finite.

    Parameters
    ----------
    value : ndarray of float16, float32 or float64
    what : str
        How to name the weight in error messages.

    Returns
    -------
    ndarray, ``value`` itself

    Raises
    ------
    CheckpointError
        If ``value`` is not a floating-point array or holds NaN or inf.
    """
    if not isinstance(value, np.ndarray):
        raise CheckpointError(f"{what} is a {type(value).__name__}, not a tensor")
    if value.dtype.kind != "f":
        raise CheckpointError(f"{what} has dtype {value.dtype}; weights must be floating point")
    finite = np.isfinite(value)
    if not finite.all():
        raise CheckpointError(f"{what} contains {int(value.size - finite.sum())} NaN or inf values")
    return value


def masked_weight(mask: np.ndarray, weight: np.ndarray, mask_what: str, weight_what: str) -> np.ndarray:
    """``weight * mask`` after checking that the shapes agree.

    Parameters
    ----------
    mask : ndarray of bool, shape S
    weight : ndarray of float, shape S
    mask_what, weight_what : str
        Names for error messages.

    Returns
    -------
    ndarray, shape S, dtype of ``weight``; zero wherever ``mask`` is False.
    """
    if mask.shape != weight.shape:
        raise CheckpointError(
            f"{mask_what} has shape {tuple(mask.shape)} but {weight_what} has shape {tuple(weight.shape)}"
        )
    return np.where(mask, weight, np.zeros((), weight.dtype))


@dataclass
class TicketLevel:
    """One ticket at one pruning level.

    Attributes
    ----------
    masks : dict of str to ndarray of bool, shape (*weight_shape)
    weights : dict of str to float ndarray, shape (*weight_shape), or None
        The masked weights (zero outside the mask) when the source has them.
    metrics : dict of str to float
        Metrics the source logged for this ticket and level (e.g. ``test_accuracy``).
    """

    masks: dict[str, np.ndarray]
    weights: dict[str, np.ndarray] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SourceTicket:
    """One ticket as read from its source, before tickets are stacked.

    Attributes
    ----------
    name : str
    format : str
        One of the format names of this module.
    path : str
        The file or folder it came from.
    levels : dict of int to TicketLevel
    inferred_masks : bool
        True when the masks were inferred from zero weights.
    """

    name: str
    format: str
    path: str
    levels: dict[int, TicketLevel]
    inferred_masks: bool = False


@dataclass(frozen=True)
class ImportedLevel:
    """All tickets at one level, stacked along a leading ticket axis.

    Attributes
    ----------
    masks : dict of str to ndarray of bool, shape (K, *weight_shape)
    weights : dict of str to float ndarray, shape (K, *weight_shape), or None
        Ticket k's masked weights in row k; None unless every ticket has them.
    ticket_metrics : tuple of dict of str to float, length K
    """

    masks: dict[str, np.ndarray]
    weights: dict[str, np.ndarray] | None
    ticket_metrics: tuple[dict[str, float], ...]

    def unpruned(self) -> np.ndarray:
        """Kept weights per ticket: int64 array, shape (K,)."""
        return np.sum([m.reshape(m.shape[0], -1).sum(axis=1) for m in self.masks.values()], axis=0)

    def ticket_sparsity(self) -> np.ndarray:
        """Fraction of prunable weights removed, per ticket: float64 array, shape (K,)."""
        total = sum(m[0].size for m in self.masks.values())
        return 1.0 - self.unpruned() / total

    def metrics(self) -> dict[str, float]:
        """Mean over tickets of each metric that every ticket logged."""
        common = set.intersection(*(set(m) for m in self.ticket_metrics)) if self.ticket_metrics else set()
        return {k: float(np.mean([m[k] for m in self.ticket_metrics])) for k in sorted(common)}


@dataclass(frozen=True)
class ImportedTickets:
    """Tickets read from checkpoints or a run tree, ready to be written as a run.

    Attributes
    ----------
    tickets : tuple of str, length K
    formats : tuple of str, length K
        Source format of each ticket.
    layers : dict of str to tuple of int
        Prunable layers and their weight shapes, in source order.
    levels : dict of int to ImportedLevel
        Ascending by level.
    paths : tuple of str
        The files and folders read.
    inferred_masks : bool
        True if any ticket's masks were inferred from zero weights.
    """

    tickets: tuple[str, ...]
    formats: tuple[str, ...]
    layers: dict[str, tuple[int, ...]]
    levels: dict[int, ImportedLevel]
    paths: tuple[str, ...]
    inferred_masks: bool

    @property
    def format(self) -> str:
        """The source format, or the formats joined by ``+`` if tickets differ."""
        return "+".join(sorted(set(self.formats)))


def _layer_shapes(masks: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(d) for d in m.shape) for name, m in masks.items()}


def check_same_layers(
    ref: Mapping[str, tuple[int, ...]], ref_what: str, other: Mapping[str, tuple[int, ...]], other_what: str
) -> None:
    """Raise on the first layer that is missing, extra or shaped differently.

    Parameters
    ----------
    ref, other : mapping of str to tuple of int
        Layer name to weight shape.
    ref_what, other_what : str
        How to name the two sides in the error message.
    """
    for name, shape in ref.items():
        if name not in other:
            raise CheckpointError(f"{other_what} has no layer {name!r} (present in {ref_what})")
        if other[name] != shape:
            raise CheckpointError(
                f"layer {name!r} has shape {shape} in {ref_what} but {other[name]} in {other_what}"
            )
    for name in other:
        if name not in ref:
            raise CheckpointError(f"{other_what} has layer {name!r} that {ref_what} lacks")


def stack_tickets(tickets: Sequence[SourceTicket], paths: Sequence[str]) -> ImportedTickets:
    """Check that tickets fit together and stack them level by level.

    Parameters
    ----------
    tickets : sequence of SourceTicket
        In the order they should appear in the run.
    paths : sequence of str
        The sources, recorded in the manifest.

    Returns
    -------
    ImportedTickets

    Raises
    ------
    CheckpointError
        No tickets, duplicate names, different level sets, or a layer missing or
        shaped differently in one ticket or level (the first mismatch is named).
    """
    if not tickets:
        raise CheckpointError("no tickets found")
    seen: dict[str, str] = {}
    for t in tickets:
        if t.name in seen:
            raise CheckpointError(
                f"two tickets are named {t.name!r} (from {seen[t.name]} and {t.path}); rename one"
            )
        seen[t.name] = t.path
    ref = tickets[0]
    ref_levels = sorted(ref.levels)
    if not ref_levels:
        raise CheckpointError(f"ticket {ref.name!r} ({ref.path}) has no levels")
    layers = _layer_shapes(ref.levels[ref_levels[0]].masks)
    if not layers:
        raise CheckpointError(f"ticket {ref.name!r} ({ref.path}) has no prunable layers")
    if sum(int(np.prod(s)) for s in layers.values()) == 0:
        raise CheckpointError(f"ticket {ref.name!r} ({ref.path}) has no prunable weights (all layers empty)")
    for t in tickets:
        if sorted(t.levels) != ref_levels:
            raise CheckpointError(
                f"ticket {t.name!r} has levels {sorted(t.levels)} but ticket {ref.name!r} has "
                f"{ref_levels}; tickets imported together must share their levels"
            )
        for lv in ref_levels:
            where = f"ticket {t.name!r}" + (f" level {lv}" if len(ref_levels) > 1 else "")
            ref_where = f"ticket {ref.name!r}" + (f" level {ref_levels[0]}" if len(ref_levels) > 1 else "")
            check_same_layers(layers, ref_where, _layer_shapes(t.levels[lv].masks), where)

    levels: dict[int, ImportedLevel] = {}
    for lv in ref_levels:
        per = [t.levels[lv] for t in tickets]
        masks = {name: np.stack([p.masks[name] for p in per]) for name in layers}  # (K, *shape)
        weights = None
        if all(p.weights is not None for p in per):
            weights = {name: np.stack([p.weights[name] for p in per]) for name in layers}  # type: ignore[index]
        levels[lv] = ImportedLevel(masks, weights, tuple(dict(p.metrics) for p in per))
    return ImportedTickets(
        tickets=tuple(t.name for t in tickets),
        formats=tuple(t.format for t in tickets),
        layers=layers,
        levels=levels,
        paths=tuple(paths),
        inferred_masks=any(t.inferred_masks for t in tickets),
    )
