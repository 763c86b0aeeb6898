"""A small U-Net on the complex STFT that predicts a bounded complex mask.

Input: the mixture's STFT as two channels (real, imaginary), magnitude
compressed (``|X|^0.3`` with the phase kept) so that loud and quiet bins
are on one scale. Encoder: strided 3x3 convolutions (each halves frequency
and time); decoder: transposed 3x3 convolutions with skip connections; the
last one outputs two channels (mask real, imaginary) at full resolution.
The mask is bounded as in DCUNet: magnitude ``tanh(|M|)``, phase of M; the
enhanced spectrum is ``M * X`` (complex product with the UNcompressed X).

Prunable weights are the weights of every Conv2d and ConvTranspose2d;
biases stay dense (shared by all tickets). There is no normalisation layer:
batch statistics would be shared state across tickets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class STFTConfig:
    """Short-time Fourier transform settings (Hann window).

    Attributes
    ----------
    n_fft : int
        Window and FFT length in samples (512 = 32 ms at 16 kHz, 257 bins).
    hop : int
        Hop in samples (256 = 50 % overlap).
    """

    n_fft: int = 512
    hop: int = 256

    def window(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Periodic Hann window, shape (n_fft,)."""
        return torch.hann_window(self.n_fft, device=device)


def stft(wave: torch.Tensor, cfg: STFTConfig) -> torch.Tensor:
    """Complex STFT (centred, reflect-padded).

    Parameters
    ----------
    wave : tensor of float32, shape (B, n)

    Returns
    -------
    tensor of complex64, shape (B, n_fft // 2 + 1, 1 + n // hop)
    """
    return torch.stft(
        wave, cfg.n_fft, cfg.hop, window=cfg.window(wave.device), center=True, return_complex=True
    )


def istft(spec: torch.Tensor, cfg: STFTConfig, length: int) -> torch.Tensor:
    """Inverse of :func:`stft` (overlap-add, window-normalised).

    Parameters
    ----------
    spec : tensor of complex64, shape (B, F, T)
    length : int
        Samples of the output (the input length of :func:`stft`).

    Returns
    -------
    tensor of float32, shape (B, length)
    """
    return torch.istft(spec, cfg.n_fft, cfg.hop, window=cfg.window(spec.device), center=True, length=length)


def _fit(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop or zero-pad the last two axes of ``x`` to those of ``like`` (strided sizes differ by one)."""
    dh = like.shape[-2] - x.shape[-2]
    dw = like.shape[-1] - x.shape[-1]
    return F.pad(x, (0, max(dw, 0), 0, max(dh, 0)))[..., : like.shape[-2], : like.shape[-1]]


class UNet(nn.Module):
    """Complex-mask U-Net (module docstring).

    Parameters
    ----------
    channels : tuple of int
        Channels after each encoder stage, e.g. (16, 32, 64): three stages,
        each halving frequency and time.
    compress : float
        Magnitude compression exponent of the input features.
    stft_cfg : STFTConfig
    """

    def __init__(
        self, channels: tuple[int, ...] = (16, 32, 64), compress: float = 0.3, stft_cfg=STFTConfig()
    ):
        super().__init__()
        if not channels:
            raise ValueError("the U-Net needs at least one encoder stage")
        self.compress = compress
        self.stft_cfg = stft_cfg
        widths = [2, *channels]
        self.down = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.bottleneck = nn.Conv2d(channels[-1], channels[-1], 3, padding=1)
        # decoder step j goes up to the resolution of encoder input i = n-1-j; its output is
        # concatenated with that input (the skip) except at the last step, which emits the mask
        n = len(channels)
        ups = []
        for j in range(n):
            i = n - 1 - j
            c_in = channels[-1] if j == 0 else 2 * widths[i + 1]
            ups.append(nn.ConvTranspose2d(c_in, widths[i], 3, stride=2, padding=1))
        self.up = nn.ModuleList(ups)

    def mask(self, features: torch.Tensor) -> torch.Tensor:
        """Bounded complex mask from the input features.

        Parameters
        ----------
        features : tensor of float32, shape (B, 2, F, T)

        Returns
        -------
        tensor of complex64, shape (B, F, T)
        """
        skips = []
        x = features
        for conv in self.down:
            skips.append(x)
            x = F.leaky_relu(conv(x), 0.1)
        x = F.leaky_relu(self.bottleneck(x), 0.1)
        n = len(self.up)
        for j, deconv in enumerate(self.up):
            skip = skips[n - 1 - j]  # the input of the matching encoder stage
            x = _fit(deconv(x), skip)
            if j < n - 1:
                x = torch.cat([F.leaky_relu(x, 0.1), skip], dim=1)
        m = torch.complex(x[:, 0], x[:, 1])  # (B, F, T)
        mag = m.abs()
        return torch.tanh(mag) * m / (mag + 1e-8)

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """Compressed real / imaginary channels (B, 2, F, T) of a spectrum (B, F, T)."""
        mag = spec.abs()
        comp = spec * (mag + 1e-8) ** (self.compress - 1.0)
        return torch.stack([comp.real, comp.imag], dim=1)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Enhanced waveforms (B, n) from mixtures (B, n)."""
        spec = stft(mixture, self.stft_cfg)  # (B, F, T)
        enhanced = self.mask(self.features(spec)) * spec
        return istft(enhanced, self.stft_cfg, mixture.shape[-1])


def prunable_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the weights of every Conv2d / ConvTranspose2d, in module order."""
    return {
        f"{name}.weight": tuple(mod.weight.shape)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d)
    }
