"""The description of a speech-enhancement run; its hash names the run."""

from __future__ import annotations

from dataclasses import dataclass

from lottery.config import Described
from lottery.speech.sources import ENVIRONMENTS

METHODS = ("rtl", "imp", "independent")


@dataclass(frozen=True)
class SpeechDescription(Described):
    """Everything that determines a speech run (the corpus is recorded in the manifest).

    Attributes
    ----------
    environments : tuple of str
        Noise environments of the corpus, one ticket each (K = len).
    segment_seconds : float
        Length of a training mixture (random crops, mixed on the fly).
    train_snr_db : tuple of float
        (low, high): training SNRs are drawn uniformly in this range.
    test_snr_db : tuple of float
        Fixed SNRs of the held-out mixtures.
    test_per_snr : int
        Held-out mixtures per environment and SNR.
    test_seconds : float
        Length of a held-out mixture.
    n_fft, hop : int
        STFT window / hop in samples at 16 kHz.
    channels : tuple of int
        U-Net encoder widths.
    compress : float
        Magnitude compression of the input features.
    rounds : int
        Steps per ticket of a training phase: ticket extraction trains each
        ticket ``rounds`` steps on its environment, joint retraining takes
        ``rounds`` steps per ticket (interleaved), ``imp`` takes
        ``rounds * K`` steps on all environments, as many mixtures as each of
        RTL's two phases.
    batch_size : int
        Mixtures per step.
    lr : float
        Adam learning rate.
    fraction, levels, scope : float, int, str
        Pruning: fraction p removed per level, levels after the dense one, per layer or global.
    methods : tuple of str
        Subset of ``("rtl", "imp", "independent")``.
    example_seconds : float
        Length of the stored listening examples (one per environment).
    example_methods : tuple of str
        Methods whose enhanced examples are stored at every level.
    seed : int
    """

    environments: tuple[str, ...] = ENVIRONMENTS
    segment_seconds: float = 1.0
    train_snr_db: tuple[float, float] = (-5.0, 10.0)
    test_snr_db: tuple[float, ...] = (-5.0, 0.0, 5.0)
    test_per_snr: int = 40
    test_seconds: float = 2.0
    n_fft: int = 512
    hop: int = 256
    channels: tuple[int, ...] = (16, 32, 64)
    compress: float = 0.3
    rounds: int = 200
    batch_size: int = 8
    lr: float = 3e-3
    fraction: float = 0.2
    levels: int = 7
    scope: str = "layer"
    methods: tuple[str, ...] = METHODS
    example_seconds: float = 2.0
    example_methods: tuple[str, ...] = ("rtl", "imp")
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown or self.methods}; choose from {METHODS}")
        if not self.environments:
            raise ValueError("at least one environment is needed")
        if self.rounds < 1 or self.batch_size < 1 or self.levels < 0 or self.test_per_snr < 1:
            raise ValueError("rounds, batch_size and test_per_snr must be >= 1 and levels >= 0")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
        if self.train_snr_db[0] > self.train_snr_db[1]:
            raise ValueError(f"train_snr_db must be (low, high), got {self.train_snr_db}")

    @property
    def k(self) -> int:
        """Number of tickets (environments)."""
        return len(self.environments)
