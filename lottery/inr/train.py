"""Training of INR tickets: routing, one ticket on its pixels, joint retraining, prediction.

Parameters live in a plain dict ``{name: leaf tensor}`` and the model is run
with ``torch.func.functional_call`` on ``theta * m_k``, so one dense theta can
serve K tickets: the gradient reaching theta is already zero outside m_k, and
the per-ticket Adam of :class:`lottery.ticket_optim.TicketOptimizer` (one
state per ticket, masked gradient and masked update) keeps the update there
at exactly zero. Batches come from :func:`lottery.sampling.index_stream`
(reshuffled passes, so a small region is cycled more often) and the joint
ticket order from :func:`lottery.sampling.interleaved_order`, the same
primitives as the classification RTL. Every run of steps draws from a
generator the caller seeds per (seed, method, image, level, ticket), so a
resumed run replays exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from lottery.sampling import index_stream, interleaved_order
from lottery.ticket_optim import leaf_params, masked_numpy, masked_weights, step_tickets


@dataclass(frozen=True)
class Pixels:
    """Every pixel of the represented images, as model inputs and targets.

    Attributes
    ----------
    features : tensor of float32, shape (N, 2F)
        Fourier features of the pixel coordinates.
    target : tensor of float32, shape (N, 3)
        RGB in [0, 1].
    region : tensor of int64, shape (N,)
        Global region id, which is also the ticket id (regions of image 0 first).
    """

    features: torch.Tensor
    target: torch.Tensor
    region: torch.Tensor

    def __len__(self) -> int:
        return int(self.region.shape[0])


def route(region: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Pixel indices each ticket serves: ticket j gets exactly the pixels of region j.

    Parameters
    ----------
    region : tensor of int64, shape (N,)
        Region id of every pixel, in ``0..k-1``.
    k : int
        Number of tickets.

    Returns
    -------
    list of tensor of int64
        ``k`` index tensors, ascending; together a partition of ``0..N-1``.
    """
    if len(region) and (int(region.min()) < 0 or int(region.max()) >= k):
        raise ValueError(f"region ids must lie in [0, {k}), got [{int(region.min())}, {int(region.max())}]")
    return [torch.nonzero(region == j).squeeze(1) for j in range(k)]


def fit(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    pixels: Pixels,
    streams: Sequence[Iterator[torch.Tensor]],
    schedule: Sequence[int],
    lr: float,
) -> list[float]:
    """Take one masked Adam step per entry of ``schedule`` (a ticket id), in order.

    Parameters
    ----------
    model : nn.Module
        Only its structure is used; the weights come from ``params``.
    params : mapping of str to leaf tensor
        Updated in place.
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    pixels : Pixels
    streams : sequence of iterators of index tensors
        ``streams[k]`` yields ticket k's batches (see :func:`lottery.sampling.index_stream`).
    schedule : sequence of int
        Ticket of each step.
    lr : float

    Returns
    -------
    list of float
        The training loss (MSE) of every step.
    """

    def loss(k: int, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        idx = next(streams[k])
        out = functional_call(model, weights, (pixels.features[idx], pixels.region[idx]))
        return nn.functional.mse_loss(out, pixels.target[idx])

    return step_tickets(params, masks, schedule, lr, loss)


def train_ticket(
    model: nn.Module,
    state: Mapping[str, np.ndarray],
    mask: Mapping[str, torch.Tensor],
    pixels: Pixels,
    indices: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> dict[str, np.ndarray]:
    """Train one ticket from ``state`` on the pixels ``indices`` (IMP's training phase).

    Parameters
    ----------
    mask : mapping of str to bool tensor, shape (*param_shape)
        The ticket's mask of each prunable parameter.
    indices : tensor of int64, shape (n,)
        The pixels it learns (its region for an RTL ticket, all pixels for IMP).

    Returns
    -------
    dict of str to ndarray of float32
        The trained parameters, pruned weights set to exactly 0.
    """
    params = leaf_params(state)
    masks = {n: m[None] for n, m in mask.items()}
    fit(model, params, masks, pixels, [index_stream(indices, batch_size, generator)], [0] * steps, lr)
    return masked_numpy(params, mask)


def train_joint(
    model: nn.Module,
    state: Mapping[str, np.ndarray],
    masks: Mapping[str, torch.Tensor],
    pixels: Pixels,
    rounds: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> dict[str, np.ndarray]:
    """Joint retraining of K tickets over one shared theta (RTL step 3).

    Each round takes one step per ticket, in a freshly shuffled ticket order;
    ticket k's step sees a batch of region k's pixels only and moves only the
    weights of m_k (and the dense biases).

    Parameters
    ----------
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    rounds : int
        Steps per ticket.

    Returns
    -------
    dict of str to ndarray of float32
        The shared theta; weights outside the union of the masks set to 0.
    """
    k = next(iter(masks.values())).shape[0]
    params = leaf_params(state)
    schedule = interleaved_order(k, rounds, generator).tolist()
    streams = [index_stream(ix, batch_size, generator) for ix in route(pixels.region, k)]
    fit(model, params, masks, pixels, streams, schedule, lr)
    return masked_numpy(params, {n: m.any(0) for n, m in masks.items()})


@torch.no_grad()
def predict(
    model: nn.Module,
    state: Mapping[str, np.ndarray],
    masks: Mapping[str, torch.Tensor],
    pixels: Pixels,
    routed: bool,
) -> torch.Tensor:
    """RGB of every pixel, clipped to [0, 1].

    Parameters
    ----------
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    routed : bool
        True: pixel i is produced by ticket ``region[i]`` (RTL, oracle routing
        by the known region); False: every pixel by ticket 0 (one shared ticket).

    Returns
    -------
    tensor of float32, shape (N, 3)
    """
    params = {n: torch.as_tensor(np.asarray(v)) for n, v in state.items()}
    k = next(iter(masks.values())).shape[0]
    groups = route(pixels.region, k) if routed else [torch.arange(len(pixels))]
    out = torch.empty_like(pixels.target)
    for j, idx in enumerate(groups):
        w = masked_weights(params, {n: m[j] for n, m in masks.items()})
        out[idx] = functional_call(model, w, (pixels.features[idx], pixels.region[idx]))
    return out.clamp_(0.0, 1.0)
