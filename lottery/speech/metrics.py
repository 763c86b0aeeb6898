"""Scale-invariant SNR, and the weighted-SDR loss of DCUNet (Choi et al. 2019)."""

from __future__ import annotations

import torch

EPS = 1e-8


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB, per signal.

    Both signals are made zero-mean; the target part of the estimate is its
    projection on the target, ``s_t = (<e, s> / ||s||^2) s``, the rest is
    error: ``SI-SNR = 10 log10(||s_t||^2 / ||e - s_t||^2)``. Any rescaling of
    the estimate leaves it unchanged.

    Parameters
    ----------
    estimate, target : tensor, shape (..., n)

    Returns
    -------
    tensor, shape (...)
        dB; about ``10 log10(1 / eps)`` when the estimate is a scaled copy of the target.
    """
    e = estimate - estimate.mean(dim=-1, keepdim=True)
    s = target - target.mean(dim=-1, keepdim=True)
    scale = (e * s).sum(-1, keepdim=True) / ((s * s).sum(-1, keepdim=True) + eps)
    s_t = scale * s
    err = e - s_t
    return 10.0 * torch.log10(((s_t * s_t).sum(-1) + eps) / ((err * err).sum(-1) + eps))


def _neg_cosine(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return -(a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def wsdr_loss(
    mixture: torch.Tensor, estimate: torch.Tensor, clean: torch.Tensor, eps: float = EPS
) -> torch.Tensor:
    """Weighted SDR loss, mean over the batch (in [-1, 1]; -1 is perfect).

    With the noise ``z = x - y`` and its estimate ``z_hat = x - y_hat``,
    ``alpha = ||y||^2 / (||y||^2 + ||z||^2)`` and
    ``loss = alpha * (-cos(y, y_hat)) + (1 - alpha) * (-cos(z, z_hat))``:
    the clean speech and the removed noise are both scored, weighted by their energy.

    Parameters
    ----------
    mixture, estimate, clean : tensor, shape (B, n)

    Returns
    -------
    tensor, shape ()
    """
    noise = mixture - clean
    noise_hat = mixture - estimate
    e_clean = (clean * clean).sum(-1)
    e_noise = (noise * noise).sum(-1)
    alpha = e_clean / (e_clean + e_noise + eps)
    loss = alpha * _neg_cosine(clean, estimate, eps) + (1 - alpha) * _neg_cosine(noise, noise_hat, eps)
    return loss.mean()
