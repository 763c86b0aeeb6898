"""Mixtures, masked training of speech tickets, joint retraining, and routed enhancement.

Parameters live in a plain dict ``{name: leaf tensor}``; the U-Net runs with
``torch.func.functional_call`` on ``theta * m_k``, so one dense theta serves K
tickets. Ticket k's step goes through
:class:`lottery.ticket_optim.TicketOptimizer` (its own Adam moments; masked
gradient and masked update), so weights outside m_k stay bit-identical on
k's steps, as in the classification and INR tickets.

Training mixtures are drawn on the fly: a random crop of the training speech,
a random circular crop of one environment's training-noise loop, mixed at an
SNR drawn uniformly from a range. Every stream draws from a numpy generator
the caller seeds per (seed, method, level, ticket), so a resumed run replays
exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from lottery.sampling import interleaved_order
from lottery.speech.audio import mix_at_snr, rms
from lottery.speech.metrics import si_snr, wsdr_loss
from lottery.ticket_optim import leaf_params, masked_numpy, masked_weights, step_tickets

Batch = tuple[torch.Tensor, torch.Tensor]  # (mixture (B, n), clean (B, n))


def numpy_rng(*parts: int | str) -> np.random.Generator:
    """A numpy generator seeded from ``parts`` (e.g. seed, method, level, ticket)."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little"))


@dataclass
class MixtureSampler:
    """Random training mixtures of one split.

    Attributes
    ----------
    speech : ndarray of float32, shape (S,)
        All training speech of the split, concatenated (silences trimmed).
    noise : list of ndarray of float32, shape (M_k,)
        One crossfaded noise loop per environment (read circularly).
    length : int
        Samples per mixture.
    snr_db : tuple of float
        (low, high) of the uniform SNR draw.
    """

    speech: np.ndarray
    noise: list[np.ndarray]
    length: int
    snr_db: tuple[float, float]

    def __post_init__(self) -> None:
        if len(self.speech) < self.length:
            raise ValueError(f"only {len(self.speech)} speech samples for crops of {self.length}")
        self._noise_rms = [rms(n) for n in self.noise]

    def noise_crop(self, env: int, rng: np.random.Generator) -> np.ndarray:
        """A circular crop of environment ``env``'s loop, redrawn (up to 10 times) if nearly silent.

        One-shot effects have silent stretches; mixing a silent crop at a
        fixed SNR would blow up its noise floor.
        """
        loop = self.noise[env]
        for _ in range(10):
            start = int(rng.integers(len(loop)))
            idx = (start + np.arange(self.length)) % len(loop)
            crop = loop[idx]
            if rms(crop) > 0.1 * self._noise_rms[env]:
                break
        return crop

    def batch(self, envs: Sequence[int], rng: np.random.Generator) -> Batch:
        """Mixtures and their clean speech for a batch of environment ids, shapes (B, n)."""
        b = len(envs)
        starts = rng.integers(0, len(self.speech) - self.length + 1, size=b)
        clean = np.stack([self.speech[s : s + self.length] for s in starts])  # (B, n)
        noise = np.stack([self.noise_crop(int(e), rng) for e in envs])  # (B, n)
        snr = rng.uniform(self.snr_db[0], self.snr_db[1], size=b)
        mixture, _ = mix_at_snr(clean, noise, snr)
        return torch.from_numpy(mixture), torch.from_numpy(clean.astype(np.float32))


def fit(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    batches: Callable[[int], Batch],
    schedule: Sequence[int],
    lr: float,
) -> list[float]:
    """One masked Adam step per entry of ``schedule`` (a ticket id), in order, on the wSDR loss.

    Parameters
    ----------
    model : nn.Module
        Only its structure is used; the weights come from ``params``.
    params : mapping of str to leaf tensor
        Updated in place.
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    batches : callable
        ``batches(k)`` gives ticket k's next (mixture, clean) batch, shapes (B, n).
    schedule : sequence of int
        Ticket of each step.
    lr : float

    Returns
    -------
    list of float
        The loss of every step.
    """

    def loss(k: int, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        mixture, clean = batches(k)
        return wsdr_loss(mixture, functional_call(model, weights, (mixture,)), clean)

    return step_tickets(params, masks, schedule, lr, loss)


def train_ticket(
    model: nn.Module,
    state: Mapping[str, np.ndarray],
    mask: Mapping[str, torch.Tensor],
    sampler: MixtureSampler,
    envs: Sequence[int],
    steps: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Train one ticket from ``state`` on mixtures of ``envs`` (IMP's training phase).

    Parameters
    ----------
    mask : mapping of str to bool tensor, shape (*param_shape)
    envs : sequence of int
        Environments the ticket learns: its own (an RTL / independent ticket)
        or all of them (``imp``: each mixture's environment drawn uniformly).

    Returns
    -------
    dict of str to ndarray of float32
        Trained parameters; pruned weights exactly 0.
    """
    params = leaf_params(state)
    masks = {n: m[None] for n, m in mask.items()}
    pool = np.asarray(envs)

    def batches(_: int) -> Batch:
        return sampler.batch(rng.choice(pool, size=batch_size), rng)

    fit(model, params, masks, batches, [0] * steps, lr)
    return masked_numpy(params, mask)


def train_joint(
    model: nn.Module,
    state: Mapping[str, np.ndarray],
    masks: Mapping[str, torch.Tensor],
    sampler: MixtureSampler,
    rounds: int,
    batch_size: int,
    lr: float,
    seed_parts: tuple,
) -> dict[str, np.ndarray]:
    """Joint retraining of K environment tickets over one shared theta (RTL step 3).

    Each round takes one step per ticket in a fresh random order; ticket k's
    step sees mixtures of environment k only and moves only the weights of
    m_k (and the dense biases).

    Parameters
    ----------
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    seed_parts : tuple
        Seeds the ticket order and one mixture stream per ticket.

    Returns
    -------
    dict of str to ndarray of float32
        The shared theta; weights outside the union of the masks set to 0.
    """
    k = next(iter(masks.values())).shape[0]
    params = leaf_params(state)
    order_gen = torch.Generator().manual_seed(int(numpy_rng(*seed_parts, "order").integers(2**62)))
    schedule = interleaved_order(k, rounds, order_gen).tolist()
    rngs = [numpy_rng(*seed_parts, j) for j in range(k)]

    def batches(j: int) -> Batch:
        return sampler.batch([j] * batch_size, rngs[j])

    fit(model, params, masks, batches, schedule, lr)
    return masked_numpy(params, {n: m.any(0) for n, m in masks.items()})


@torch.no_grad()
def enhance(
    model: nn.Module,
    states: Sequence[Mapping[str, np.ndarray]],
    masks: Mapping[str, torch.Tensor],
    mixtures: torch.Tensor,
    routes: torch.Tensor,
    batch_size: int = 32,
) -> torch.Tensor:
    """Enhanced waveforms, each mixture through the ticket its route names.

    Parameters
    ----------
    states : sequence of mapping
        One parameter set per ticket (K separate networks), or a single shared
        theta used by every ticket.
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    mixtures : tensor of float32, shape (N, n)
    routes : tensor of int64, shape (N,)
        Ticket of every mixture (its environment for RTL / independent, 0 for one shared ticket).

    Returns
    -------
    tensor of float32, shape (N, n)
    """
    k = next(iter(masks.values())).shape[0]
    if len(routes) and (int(routes.min()) < 0 or int(routes.max()) >= k):
        raise ValueError(f"routes must lie in [0, {k}), got [{int(routes.min())}, {int(routes.max())}]")
    model.eval()
    out = torch.empty_like(mixtures)
    for j in range(k):
        idx = torch.nonzero(routes == j).squeeze(1)
        if len(idx) == 0:
            continue
        state = states[j] if len(states) > 1 else states[0]
        params = {n: torch.as_tensor(np.asarray(v)) for n, v in state.items()}
        w = masked_weights(params, {n: m[j].float() for n, m in masks.items()})
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            out[chunk] = functional_call(model, w, (mixtures[chunk],))
    return out


def score(enhanced: torch.Tensor, clean: torch.Tensor) -> np.ndarray:
    """SI-SNR (dB) of every enhanced waveform against its clean speech, shape (N,), float64."""
    return si_snr(enhanced.double(), clean.double()).numpy()
