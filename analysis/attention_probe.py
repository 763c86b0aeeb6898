"""Rebuild a ViT ticket from a run and read out its attention maps (the one torch user in analysis).

Kept apart from :mod:`analysis.attention` so that ``import analysis`` never
imports torch; the app imports this module only on the page that probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from artifacts.run_format import Run

__all__ = ["build_probe_model", "probe_attention", "probe_attention_tickets"]


def _vit_config(run: Run):
    """The run's ``ModelConfig``; ValueError when its model is not a ViT."""
    from models import ModelConfig

    spec = dict(run.manifest.get("model") or {})
    if spec.get("name") != "vit":
        raise ValueError(f"run model is {spec.get('name')!r}, not a ViT: it has no attention to probe")
    for field in ("input_shape", "hidden"):
        if field in spec:
            spec[field] = tuple(spec[field])
    return ModelConfig(**spec)


def build_probe_model(run: Run) -> torch.nn.Module:
    """A ViT of the run's architecture, for :func:`probe_attention_tickets` to load tickets into.

    Its own weights (drawn from torch's global RNG) are all overwritten by each
    load, so one model serves every ticket and level of the run.

    Parameters
    ----------
    run : Run

    Returns
    -------
    torch.nn.Module
        In eval mode.

    Raises
    ------
    ValueError
        If the run's model is not a ViT.
    """
    from models import build_model

    return build_model(_vit_config(run)).eval()


def probe_attention_tickets(
    run: Run,
    method: str,
    level: int,
    tickets: Sequence[int],
    inputs: np.ndarray | None = None,
    *,
    extra: str = "probe",
    key: str = "x",
    batch_size: int = 64,
    model: torch.nn.Module | None = None,
) -> list[list[np.ndarray]]:
    """Attention maps of several tickets of one level: the level's weights and masks read once.

    Each ticket's subnetwork is loaded into one model in turn (every parameter
    is overwritten), so the maps are those :func:`probe_attention` gives for
    each ticket alone.

    Parameters
    ----------
    run : Run
    method : str
    level : int
    tickets : sequence of int
        Ticket indices k.
    inputs : ndarray of float, shape (N, C, H, W), optional
        As in :func:`probe_attention`.
    extra, key : str
        Where the default probe batch is stored.
    batch_size : int
        Images per forward pass.
    model : torch.nn.Module, optional
        A :func:`build_probe_model` of the run, reused across calls; default: a new one.

    Returns
    -------
    list of (list of ndarray of float32, shape (N, H, T, T))
        Per ticket (in the order given), one attention map per transformer block.

    Raises
    ------
    ValueError
        If the run's model is not a ViT, a ticket does not exist, or no inputs
        are given and the run stores no probe batch.
    artifacts.run_format.RunFormatError
        If the level kept no weights.
    """
    import torch

    from artifacts.run_format import RunFormatError
    from models import build_model, load_state_numpy

    cfg = _vit_config(run)
    if not run.has_weights(method, level):
        raise RunFormatError(f"{method} level {level} kept no trained weights (slimmed run?)")
    masks = run.masks(method, level)
    k = len(run.ticket_names(method))
    for ticket in tickets:
        if not 0 <= ticket < k:
            raise ValueError(f"ticket {ticket} out of range: {method} has {k} tickets")
    if inputs is None:
        if not run.has_extra(extra):
            raise ValueError(f"no inputs given and the run stores no extra {extra!r}")
        inputs = run.extra(extra)[key]

    weights = run.weights(method, level)
    for name in masks:
        if name not in weights:
            raise ValueError(f"mask layer {name!r} has no weight in the level's state")
    model = (build_model(cfg) if model is None else model).eval()
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    out = []
    for ticket in tickets:
        state = dict(weights)
        for name, m in masks.items():
            state[name] = weights[name] * m[ticket]  # ticket k's subnetwork of the stored weights
        load_state_numpy(model, state)
        maps: list[list[np.ndarray]] = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                _, per_block = model(x[start : start + batch_size], return_attention=True)
                maps.append([p.numpy() for p in per_block])  # each (b, H, T, T)
        out.append([np.concatenate(block, axis=0) for block in zip(*maps, strict=True)])
    return out


def probe_attention(
    run: Run,
    method: str,
    level: int,
    ticket: int,
    inputs: np.ndarray | None = None,
    *,
    extra: str = "probe",
    key: str = "x",
    batch_size: int = 64,
) -> list[np.ndarray]:
    """Attention maps of one ticket of a ViT run on a probe batch.

    The model is rebuilt from ``manifest["model"]``, loaded with the level's
    trained weights (``weights.safetensors``, one state dict of the model), and
    every prunable weight is multiplied by the ticket's mask: for RTL that is
    ticket k's subnetwork of the shared weights, for IMP the ticket itself.

    Parameters
    ----------
    run : Run
    method : str
    level : int
    ticket : int
        Ticket index k (0 for a single ticket).
    inputs : ndarray of float, shape (N, C, H, W), optional
        Images to probe with; default: array ``key`` of the run's extra
        ``extra`` (``extra/<extra>.safetensors``).
    extra, key : str
        Where the default probe batch is stored.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    list of ndarray of float32, shape (N, H, T, T)
        One attention map per transformer block, T = 1 + number of patches.

    Raises
    ------
    ValueError
        If the run's model is not a ViT, the ticket does not exist, or no inputs
        are given and the run stores no probe batch.
    artifacts.run_format.RunFormatError
        If the level kept no weights.
    """
    maps = probe_attention_tickets(
        run, method, level, [ticket], inputs, extra=extra, key=key, batch_size=batch_size
    )
    return maps[0]
