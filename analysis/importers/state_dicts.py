"""Tickets stored in a single checkpoint: torch.nn.utils.prune, ShrinkBench, NNI, plain.

Recognised layouts of a loaded checkpoint (a dict; numpy arrays at the leaves):

``torch.nn.utils.prune``
    ``<module>.<param>_orig`` + ``<module>.<param>_mask``; the weight is
    ``_orig * _mask``.
ShrinkBench
    ``<module>.weight`` (already masked) + ``<module>.weight_mask``, usually
    under ``model_state_dict`` (``checkpoints/checkpoint-<epoch>.pt``).

Only masks of weights (parameters whose name ends in ``weight``) are read:
bias masks, which both tools can hold, are skipped.
NNI mask file
    ``{module_name: {"weight": mask, "bias": mask}}``; only weight masks are
    prunable, there are no weights.
plain state dict
    only the zeros record the mask: masks are inferred as ``weight != 0`` for
    floating tensors of ndim >= 2 whose name ends in ``weight`` (conv, linear,
    embedding); biases and norms are excluded. Marked as inferred.

A checkpoint nesting its state dict under ``model_state_dict`` or ``state_dict``
is unwrapped first. A dict whose values are all such containers holds several
tickets, one per key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analysis.importers.errors import CheckpointError
from analysis.importers.tickets import (
    INFERRED,
    NNI,
    SHRINKBENCH,
    TORCH_PRUNE,
    SourceTicket,
    TicketLevel,
    as_mask,
    as_weight,
    masked_weight,
)

_WRAPPER_KEYS = ("model_state_dict", "state_dict")


def tickets_from_checkpoint(obj: Any, path: str, default_name: str) -> list[SourceTicket]:
    """Read the ticket(s) in one loaded checkpoint.

    Parameters
    ----------
    obj : object
        Output of :func:`analysis.importers.safe_load.load_checkpoint`.
    path : str
        The file, for messages and provenance.
    default_name : str
        Name of the ticket when the file holds one (the file stem).

    Returns
    -------
    list of SourceTicket
        One ticket at level 0, or one per key of a multi-ticket dict.

    Raises
    ------
    CheckpointError
        For an unrecognised layout or invalid masks/weights.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a dict of tensors")
    if not obj:
        raise CheckpointError(f"{path}: holds an empty dict")
    single = _single_ticket(obj, path, default_name)
    if single is not None:
        return [single]
    if all(isinstance(v, Mapping) for v in obj.values()):
        tickets = []
        for key, sub in obj.items():
            ticket = _single_ticket(sub, f"{path}[{key!r}]", str(key))
            if ticket is None:
                raise CheckpointError(
                    f"{path}: entry {key!r} is neither a state dict nor an NNI mask dict "
                    f"(keys: {_preview(sub)})"
                )
            tickets.append(ticket)
        return tickets
    raise CheckpointError(
        f"{path}: unrecognised layout (top-level keys: {_preview(obj)}); expected a state dict, "
        "a torch.nn.utils.prune / ShrinkBench checkpoint, an NNI mask dict, or a dict of those"
    )


def _is_weight_name(name: str) -> bool:
    """``conv.weight``, ``attn.in_proj_weight``: a parameter whose own name ends in ``weight``."""
    return name.rsplit(".", 1)[-1].endswith("weight")


def _preview(m: Any, n: int = 5) -> str:
    if not isinstance(m, Mapping):
        return type(m).__name__
    keys = [repr(k) for k in list(m)[:n]]
    return ", ".join(keys) + (", ..." if len(m) > n else "")


def _unwrap(obj: Mapping) -> Mapping:
    if not _has_arrays(obj):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def _has_arrays(m: Mapping) -> bool:
    return any(isinstance(v, np.ndarray) for v in m.values())


def _is_nni(m: Mapping) -> bool:
    """``{module: {"weight": mask, ...}}``: every value a dict of arrays, some with a weight mask."""
    if not m or not all(isinstance(v, Mapping) and v for v in m.values()):
        return False
    if not all(isinstance(x, np.ndarray) or x is None for v in m.values() for x in v.values()):
        return False
    return any("weight" in v for v in m.values())


def _single_ticket(obj: Any, where: str, name: str) -> SourceTicket | None:
    """Parse one ticket, or return None if ``obj`` is not a single-ticket container."""
    if not isinstance(obj, Mapping):
        return None
    sd = _unwrap(obj)
    if _has_arrays(sd):
        fmt, level, inferred = parse_state_dict(sd, where)
        return SourceTicket(name, fmt, where, {0: level}, inferred_masks=inferred)
    if _is_nni(sd):
        return SourceTicket(name, NNI, where, {0: parse_nni(sd, where)})
    return None


def parse_nni(masks: Mapping, where: str) -> TicketLevel:
    """Read an NNI mask dict ``{module: {"weight": mask, "bias": mask}}``.

    Parameters
    ----------
    masks : mapping of str to mapping of str to ndarray
    where : str
        Source, for messages.

    Returns
    -------
    TicketLevel
        Masks keyed ``<module>.weight`` (bool, the weight's shape); no weights.
    """
    out = {}
    for module, targets in masks.items():
        if "weight" in targets:
            out[f"{module}.weight"] = as_mask(targets["weight"], f"{where}: mask of {module!r} weight")
    return TicketLevel(out)


def parse_state_dict(sd: Mapping, where: str) -> tuple[str, TicketLevel, bool]:
    """Read masks (and masked weights) from a flat state dict.

    Parameters
    ----------
    sd : mapping of str to ndarray (other values ignored)
    where : str
        Source, for messages.

    Returns
    -------
    format : str
        ``torch_prune``, ``shrinkbench`` or ``state_dict`` (inferred).
    level : TicketLevel
        Masks (bool) and masked weights keyed by parameter name.
    inferred : bool
        True if the masks were inferred from zero weights.
    """
    keys = [k for k in sd if isinstance(k, str)]
    for k in keys:
        if k.endswith("_orig") and f"{k[:-5]}_mask" not in sd:
            raise CheckpointError(
                f"{where}: {k!r} has no matching {k[:-5] + '_mask'!r} (a torch.nn.utils.prune "
                "checkpoint stores both)"
            )
    # Only weight masks define a ticket (as for NNI); ShrinkBench's optional bias_mask is skipped.
    pairs = [
        k
        for k in keys
        if k.endswith("_mask") and _is_weight_name(k[:-5]) and (k[:-5] + "_orig" in sd or k[:-5] in sd)
    ]
    if pairs:
        masks, weights = {}, {}
        uses_orig = False
        for mk in pairs:
            layer = mk[:-5]
            wk = layer + "_orig" if layer + "_orig" in sd else layer
            uses_orig |= wk.endswith("_orig")
            mask = as_mask(sd[mk], f"{where}: mask {mk!r}")
            weight = as_weight(sd[wk], f"{where}: weight {wk!r}")
            masks[layer] = mask
            weights[layer] = masked_weight(mask, weight, f"{where}: mask {mk!r}", f"weight {wk!r}")
        return (TORCH_PRUNE if uses_orig else SHRINKBENCH), TicketLevel(masks, weights), False

    masks, weights = {}, {}
    for k in keys:
        v = sd[k]
        if not (isinstance(v, np.ndarray) and v.ndim >= 2 and _is_weight_name(k)):
            continue
        weight = as_weight(v, f"{where}: weight {k!r}")
        masks[k] = weight != 0
        weights[k] = weight
    if not masks:
        unmatched = [k for k in keys if k.endswith("_mask")]
        hint = f" ({unmatched[0]!r} has no matching weight)" if unmatched else ""
        raise CheckpointError(
            f"{where}: no masks found{hint}: no '<param>_mask' buffers with their weights, no NNI "
            "mask dict, and no weight tensors with 2 or more dimensions to infer masks from"
        )
    return INFERRED, TicketLevel(masks, weights), True
