"""Copy numpy arrays (a run's ``weights.safetensors``) into a torch model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["load_state_numpy"]


def load_state_numpy(model: nn.Module, state: Mapping[str, np.ndarray]) -> None:
    """Copy numpy parameters into ``model`` (names and shapes must match).

    Parameters
    ----------
    model : torch.nn.Module
    state : mapping of str to ndarray
        One array per named parameter of ``model`` (extra keys are ignored).

    Raises
    ------
    ValueError
        If a parameter is missing or has another shape.
    """
    params = dict(model.named_parameters())
    missing = set(params) - set(state)
    if missing:
        raise ValueError(f"state lacks parameters {sorted(missing)}")
    with torch.no_grad():
        for name, p in params.items():
            arr = torch.as_tensor(np.asarray(state[name]), dtype=p.dtype)
            if arr.shape != p.shape:
                raise ValueError(
                    f"parameter {name!r}: state shape {tuple(arr.shape)} != model {tuple(p.shape)}"
                )
            p.copy_(arr)
