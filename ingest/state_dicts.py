"""Tickets stored in a single checkpoint: torch.nn.utils.prune, ShrinkBench, NNI, plain.

Recognised layouts of a loaded checkpoint (a dict; numpy arrays at the leaves):

``torch.nn.utils.prune``
    ``<module>.<param>_orig`` + ``<module>.<param>_mask``; the weight is
    ``_orig * _mask``.
ShrinkBench
    ``<module>.weight`` (already masked) + ``<module>.weight_mask``, usually
    under ``model_state_dict`` (``checkpoints/checkpoint-<epoch>.pt``).

Only masks of weights (parameters whose name ends in ``weight``, and the
``weight_ih_l<k>`` / ``weight_hh_l<k>`` / ``weight_hr_l<k>`` of ``nn.LSTM``,
``nn.GRU`` and ``nn.RNN``) are read: bias masks, which both tools can hold,
are skipped.
``torch.ao.pruning`` before ``squash_mask``
    ``<module>.parametrizations.weight.original`` (the dense weight); the mask
    is read from the sparsifier's ``state_dict()`` saved beside it
    (``{"state": {"<module>.weight": {"mask": ...}}, "groups": [...]}``) or from
    ``<module>.parametrizations.weight.0.mask``; a file without it is refused.
    A sparsifier's ``state_dict()`` saved alone holds masks only.
NNI mask file
    ``{module_name: {"weight": mask, "bias": mask}}``; only weight masks are
    prunable, there are no weights.
plain state dict
    only the zeros record the mask: masks are inferred as ``weight != 0`` for
    floating tensors of ndim >= 2 whose name ends in ``weight`` (conv, linear,
    embedding); biases and norms are excluded. Marked as inferred.

A checkpoint nesting its state dict under ``model_state_dict``, ``state_dict``
or ``model`` is unwrapped first (training scripts save
``{"epoch", "state_dict", "best_acc1", "optimizer", ...}``); numeric scalars
beside it (``best_acc1``) become the ticket's metrics. A dict whose values are
all such containers holds several tickets, one per key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ingest.errors import CheckpointError
from ingest.tickets import (
    INFERRED,
    NNI,
    SHRINKBENCH,
    TORCH_AO,
    TORCH_PRUNE,
    SourceTicket,
    TicketLevel,
    as_mask,
    as_weight,
    masked_weight,
)

_WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
# nn.LSTM / nn.GRU / nn.RNN weights: weight_ih_l0, weight_hh_l1_reverse, weight_hr_l0 (proj_size).
_RNN_WEIGHT_RE = re.compile(r"^weight_(ih|hh|hr)_l\d+(_reverse)?$")
# torch.ao.pruning / torch.nn.utils.parametrize: <module>.parametrizations.<param>.original
_PARAMETRIZED_RE = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.original$")


def tickets_from_checkpoint(obj: Any, path: str, default_name: str) -> list[SourceTicket]:
    """Read the ticket(s) in one loaded checkpoint.

    Parameters
    ----------
    obj : object
        Output of :func:`ingest.safe_load.load_checkpoint`.
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
    """``conv.weight``, ``attn.in_proj_weight``, ``lstm.weight_hh_l0``: a prunable weight's name."""
    own = name.rsplit(".", 1)[-1]
    return own.endswith("weight") or bool(_RNN_WEIGHT_RE.match(own))


def _preview(m: Any, n: int = 5) -> str:
    if not isinstance(m, Mapping):
        return type(m).__name__
    keys = [repr(k) for k in list(m)[:n]]
    return ", ".join(keys) + (", ..." if len(m) > n else "")


def _unwrap(obj: Mapping) -> Mapping:
    """The state dict a training checkpoint nests under a wrapper key, else ``obj``.

    Scalars beside it (``best_acc1``, ``epoch``) do not stop the unwrapping;
    tensors of one or more dimensions at the top level mean ``obj`` is the
    state dict itself. ``model`` counts only when no other entry is a state
    dict too (``{"model": ..., "teacher": ...}`` holds two tickets).
    """
    if any(isinstance(v, np.ndarray) and v.ndim >= 1 for v in obj.values()):
        return obj
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if not isinstance(inner, Mapping):
            continue
        if key == "model" and any(
            k != key and isinstance(v, Mapping) and _has_arrays(v) and not _sparsifier_masks(v)
            for k, v in obj.items()
        ):
            continue
        return inner
    return obj


def _scalar_metrics(obj: Mapping, sd: Mapping) -> dict[str, float]:
    """Float scalars saved beside an unwrapped state dict (``best_acc1``), as ticket metrics."""
    if sd is obj:
        return {}
    out = {}
    for k, v in obj.items():
        if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind == "f":
            v = float(v)
        if isinstance(k, str) and isinstance(v, float) and math.isfinite(v):
            out[k] = v
    return out


def _sparsifier_masks(m: Any) -> dict[str, Any] | None:
    """``{tensor_fqn: mask}`` of a ``torch.ao.pruning`` sparsifier's ``state_dict()``, else None."""
    if not isinstance(m, Mapping) or not isinstance(m.get("state"), Mapping) or "groups" not in m:
        return None
    state = m["state"]
    if not state or not all(isinstance(v, Mapping) and "mask" in v for v in state.values()):
        return None
    return {str(k): v["mask"] for k, v in state.items()}


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
        if any(isinstance(k, str) and _PARAMETRIZED_RE.match(k) for k in sd):
            sparsifier = next((s for v in obj.values() if (s := _sparsifier_masks(v)) is not None), None)
            level = parse_torch_ao(sd, sparsifier, where)
            level.metrics.update(_scalar_metrics(obj, sd))
            return SourceTicket(name, TORCH_AO, where, {0: level})
        fmt, level, inferred = parse_state_dict(sd, where)
        level.metrics.update(_scalar_metrics(obj, sd))
        return SourceTicket(name, fmt, where, {0: level}, inferred_masks=inferred)
    if _is_nni(sd):
        return SourceTicket(name, NNI, where, {0: parse_nni(sd, where)})
    sparsifier = _sparsifier_masks(sd)
    if sparsifier is not None:  # torch.save(sparsifier.state_dict()): masks only, like NNI
        masks = {k: as_mask(v, f"{where}: mask of {k!r}") for k, v in sparsifier.items()}
        return SourceTicket(name, TORCH_AO, where, {0: TicketLevel(masks)})
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


def parse_torch_ao(sd: Mapping, sparsifier: Mapping[str, Any] | None, where: str) -> TicketLevel:
    """Read a ``torch.ao.pruning`` model saved before ``squash_mask``.

    Parameters
    ----------
    sd : mapping of str to ndarray
        The model's state dict: ``<module>.parametrizations.<param>.original``
        holds the dense weight, shape S.
    sparsifier : mapping of str to ndarray, optional
        ``{"<module>.<param>": mask}`` from the sparsifier's saved state.
    where : str
        Source, for messages.

    Returns
    -------
    TicketLevel
        Masks (bool, shape S) and masked weights keyed ``<module>.<param>``, for
        every parametrized weight.

    Raises
    ------
    CheckpointError
        A parametrized weight whose mask the file does not hold (the
        sparsifier keeps its masks out of the model's state dict).
    """
    masks, weights = {}, {}
    for key in sd:
        m = _PARAMETRIZED_RE.match(key) if isinstance(key, str) else None
        if m is None or not _is_weight_name(m.group(2)):
            continue
        base = f"{m.group(1)}." if m.group(1) else ""
        layer = base + m.group(2)
        raw = (sparsifier or {}).get(layer)
        if raw is None:
            raw = sd.get(f"{base}parametrizations.{m.group(2)}.0.mask")
        if raw is None:
            raise CheckpointError(
                f"{where}: {key!r} is a parametrized weight, as torch.ao.pruning leaves it before "
                "squash_mask(), and the file holds no mask for it (the sparsifier keeps its masks out "
                "of model.state_dict()). "
                "Call sparsifier.squash_mask() before saving, or save the sparsifier's state with the "
                "model: torch.save({'model': model.state_dict(), 'sparsifier': sparsifier.state_dict()}, ...)"
            )
        mask = as_mask(raw, f"{where}: mask of {layer!r}")
        weight = as_weight(sd[key], f"{where}: weight {key!r}")
        masks[layer] = mask
        weights[layer] = masked_weight(mask, weight, f"{where}: mask of {layer!r}", f"weight {key!r}")
    if not masks:
        raise CheckpointError(f"{where}: parametrized tensors but no parametrized weight to read a mask of")
    return TicketLevel(masks, weights)


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
        others = [k for k in keys if isinstance(sd[k], np.ndarray) and sd[k].ndim >= 2]
        what = (
            f"and none of its tensors of 2 or more dimensions ({', '.join(map(repr, others[:3]))}"
            f"{', ...' if len(others) > 3 else ''}) is named as a weight"
            if others
            else "and no weight tensors with 2 or more dimensions to infer masks from"
        )
        raise CheckpointError(
            f"{where}: no masks found{hint}: no '<param>_mask' buffers with their weights, no NNI "
            f"mask dict, {what}"
        )
    return INFERRED, TicketLevel(masks, weights), True
