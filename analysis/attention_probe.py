"""Rebuild a ViT ticket from a run and read out its attention maps (the one torch user in analysis).

Kept apart from :mod:`analysis.attention` so that ``import analysis`` never
imports torch; the app imports this module only on the page that probes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = ["probe_attention"]


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
    import torch

    from artifacts.run_format import RunFormatError
    from models import ModelConfig, build_model, load_state_numpy

    spec = dict(run.manifest.get("model") or {})
    if spec.get("name") != "vit":
        raise ValueError(f"run model is {spec.get('name')!r}, not a ViT: it has no attention to probe")
    for field in ("input_shape", "hidden"):
        if field in spec:
            spec[field] = tuple(spec[field])
    cfg = ModelConfig(**spec)
    if not run.has_weights(method, level):
        raise RunFormatError(f"{method} level {level} kept no trained weights (slimmed run?)")
    masks = run.masks(method, level)
    k = len(run.ticket_names(method))
    if not 0 <= ticket < k:
        raise ValueError(f"ticket {ticket} out of range: {method} has {k} tickets")
    if inputs is None:
        if not run.has_extra(extra):
            raise ValueError(f"no inputs given and the run stores no extra {extra!r}")
        inputs = run.extra(extra)[key]

    state = dict(run.weights(method, level))
    for name, m in masks.items():
        if name not in state:
            raise ValueError(f"mask layer {name!r} has no weight in the level's state")
        state[name] = state[name] * m[ticket]  # ticket k's subnetwork of the stored weights
    model = build_model(cfg)
    load_state_numpy(model, state)
    model.eval()
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    maps: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            _, per_block = model(x[start : start + batch_size], return_attention=True)
            maps.append([p.numpy() for p in per_block])  # each (b, H, T, T)
    return [np.concatenate(block, axis=0) for block in zip(*maps, strict=True)]
