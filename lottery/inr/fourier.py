"""Fourier features of pixel coordinates (Tancik et al. 2020, "Fourier Features Let Networks...").

gamma(v) = [cos(2 pi B v), sin(2 pi B v)] with v = (row, col) in [0, 1]^2 and B
a fixed (not trained) matrix of n frequencies drawn from N(0, sigma^2): a
Gaussian random Fourier feature mapping. sigma sets the bandwidth the MLP can
represent; with 64 x 64 pixels the Nyquist frequency is 32 cycles per unit.
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_frequencies(n: int, sigma: float, seed: int) -> np.ndarray:
    """The frequency matrix B, shape (n, 2) float32, entries ~ N(0, sigma^2), seeded."""
    if n < 1 or sigma <= 0:
        raise ValueError(f"need n >= 1 and sigma > 0, got n={n}, sigma={sigma}")
    return (np.random.default_rng(seed).standard_normal((n, 2)) * sigma).astype(np.float32)


def pixel_coordinates(height: int, width: int) -> np.ndarray:
    """(row, col) of every pixel, row-major, scaled to [0, 1]: shape (H * W, 2) float32."""
    rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    return np.column_stack([rows.ravel(), cols.ravel()]).astype(np.float32)


def fourier_features(coords: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """gamma(v) = [cos(2 pi B v), sin(2 pi B v)].

    Parameters
    ----------
    coords : tensor of float, shape (N, 2)
    frequencies : tensor of float, shape (F, 2)

    Returns
    -------
    tensor of float, shape (N, 2F)
        The F cosines, then the F sines.
    """
    phase = 2 * torch.pi * coords @ frequencies.T  # (N, F)
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)
