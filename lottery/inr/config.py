"""The description of an INR run: images, regions, features, model, schedule; its hash names the run."""

from __future__ import annotations

from dataclasses import dataclass

from lottery.config import Described

METHODS = ("rtl", "imp")


@dataclass(frozen=True)
class INRDescription(Described):
    """Everything that determines an INR run.

    Attributes
    ----------
    images : tuple of str
        scikit-learn sample photographs; each is represented by its own INR (a separate experiment).
    size : int
        Side of the downsampled square images, in pixels.
    regions : int
        k-means regions per image, one ticket each (K = regions).
    position_weight : float
        Weight of pixel position against colour in the k-means.
    n_frequencies, sigma : int, float
        Gaussian Fourier features: F frequencies ~ N(0, sigma^2) per axis, 2F inputs.
    hidden, depth : int
        Hidden units and number of Linear layers of the MLP.
    embed_dim : int
        Width of the learned region embedding of the ``imp`` model.
    rounds : int
        Steps per ticket of a training phase; ``imp`` takes ``rounds * K``
        steps over all pixels, so both methods see the same number of pixels.
    batch_size : int
        Pixels per step.
    lr : float
        Adam learning rate.
    fraction, levels, scope : float, int, str
        Pruning: fraction p removed per level, levels after the dense one, per layer or global.
    methods : tuple of str
        Subset of ``("rtl", "imp")``.
    seed : int
    """

    images: tuple[str, ...] = ("china", "flower")
    size: int = 96
    regions: int = 8
    position_weight: float = 1.0
    n_frequencies: int = 64
    sigma: float = 8.0
    hidden: int = 128
    depth: int = 5
    embed_dim: int = 16
    rounds: int = 150
    batch_size: int = 512
    lr: float = 1e-3
    fraction: float = 0.2
    levels: int = 11
    scope: str = "layer"
    methods: tuple[str, ...] = METHODS
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown or self.methods}; choose from {METHODS}")
        if self.rounds < 1 or self.batch_size < 1 or self.levels < 0 or self.regions < 1:
            raise ValueError("rounds, batch_size and regions must be >= 1 and levels >= 0")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
