"""The INR: a 5-layer ReLU MLP on Fourier features, optionally conditioned on a region embedding.

``depth`` counts Linear layers: depth 5 with 128 hidden units is
``2F -> 128 -> 128 -> 128 -> 128 -> 3``. The prunable weights are those of
the five Linear layers; biases and the region embedding stay dense.

theta_0 is shared by the methods of a run. The conditioned model (``imp``)
reads ``[gamma(v), e(region)]``, so its first layer is wider: its first
``2F`` input columns are the unconditioned model's first-layer weights
exactly (:func:`conditioned_theta0`), and only the ``embed_dim`` extra
columns and the embedding table are drawn anew.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

FIRST = "layers.0.weight"  # the one parameter whose shape differs between the two models
EMBED = "embed.weight"


class INR(nn.Module):
    """Coordinate MLP: RGB of a pixel from its Fourier features (and region id).

    Parameters
    ----------
    in_features : int
        Width of the Fourier features, 2F.
    hidden : int
        Units per hidden layer.
    depth : int
        Number of Linear layers (>= 2).
    n_out : int
        Output channels (3 for RGB); the output is linear, clipped only when scored.
    n_regions, embed_dim : int
        With both > 0, a learned ``(n_regions, embed_dim)`` embedding of the
        region id is appended to the input.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int = 128,
        depth: int = 5,
        n_out: int = 3,
        n_regions: int = 0,
        embed_dim: int = 0,
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth counts Linear layers and must be >= 2, got {depth}")
        self.conditioned = n_regions > 0 and embed_dim > 0
        self.embed = nn.Embedding(n_regions, embed_dim) if self.conditioned else None
        width_in = in_features + (embed_dim if self.conditioned else 0)
        widths = [width_in] + [hidden] * (depth - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Linear(hidden, n_out)

    def forward(self, features: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """RGB (N, n_out) from features (N, 2F) and, if conditioned, region ids (N,) int64."""
        if self.embed is not None:
            if region is None:
                raise ValueError("a region-conditioned INR needs the region ids")
            features = torch.cat([features, self.embed(region)], dim=1)  # (N, 2F + E)
        x = features
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def conditioned_theta0(
    theta0: Mapping[str, np.ndarray], n_regions: int, embed_dim: int, seed: int
) -> dict[str, np.ndarray]:
    """theta_0 of the region-conditioned INR, extending the unconditioned theta_0.

    Every shared parameter is copied; the first layer gains ``embed_dim`` input
    columns drawn like PyTorch's default Linear init for the shared columns,
    U(-1/sqrt(2F), 1/sqrt(2F)), and the embedding table is N(0, 1) like
    ``nn.Embedding``. Both come from a generator seeded by ``seed``, not from
    the global RNG, so the common part is bit-identical across methods.

    Parameters
    ----------
    theta0 : mapping of str to ndarray of float32
        Parameters of the unconditioned INR; ``layers.0.weight`` has shape (H, 2F).
    n_regions, embed_dim : int
    seed : int

    Returns
    -------
    dict of str to ndarray of float32
        With ``layers.0.weight`` of shape (H, 2F + embed_dim) and ``embed.weight``
        of shape (n_regions, embed_dim).
    """
    out = {k: np.array(v, copy=True) for k, v in theta0.items()}
    w0 = out[FIRST]  # (H, 2F)
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(w0.shape[1])
    extra = rng.uniform(-bound, bound, size=(w0.shape[0], embed_dim)).astype(np.float32)
    out[FIRST] = np.concatenate([w0, extra], axis=1)
    out[EMBED] = rng.standard_normal((n_regions, embed_dim)).astype(np.float32)
    return out
