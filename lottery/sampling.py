"""Mini-batches of one ticket's subset, and the interleaving of K tickets' steps.

A ticket draws its batches from an endless *stream*: independently shuffled
passes over its sample indices, cut into batches of exactly ``batch`` indices
(a batch may straddle two passes). Smaller subsets therefore repeat
cyclically, and "E epochs" of a subset of n samples is ``ceil(E * n / batch)``
steps.

Batches by ticket kind:

- ``expert``: ``batch_size`` samples of d_k, targets are the class labels.
- ``detector``: ``batch_size // 2`` positives from d_k plus as many negatives
  from the other subsets (their own stream), so every batch is class-balanced;
  targets are 1.0 / 0.0. An epoch counts passes over the positives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

TICKET_KINDS = ("detector", "expert")


def index_stream(indices: torch.Tensor, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of exactly ``batch`` entries of ``indices``, reshuffled every pass.

    Parameters
    ----------
    indices : tensor of int64, shape (n,), n >= 1
    batch : int
        Batch length, >= 1.
    generator : torch.Generator
        Drives every shuffle.

    Yields
    ------
    tensor of int64, shape (batch,)
    """
    if len(indices) == 0:
        raise ValueError("cannot stream an empty subset")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    pending = indices[:0]
    while True:
        while len(pending) < batch:
            pending = torch.cat([pending, indices[torch.randperm(len(indices), generator=generator)]])
        yield pending[:batch]
        pending = pending[batch:]


@dataclass
class TicketBatches:
    """The batch stream of ticket ``k`` over a partitioned training set.

    Parameters
    ----------
    subset : tensor of int64, shape (N,)
        Subset id of every training sample.
    labels : tensor of int64, shape (N,)
        Class labels (targets of an expert).
    k : int
        The ticket.
    kind : {"detector", "expert"}
    batch_size : int
        Samples per step (positives plus negatives for a detector).
    generator : torch.Generator
    """

    subset: torch.Tensor
    labels: torch.Tensor
    k: int
    kind: str
    batch_size: int
    generator: torch.Generator

    def __post_init__(self) -> None:
        if self.kind not in TICKET_KINDS:
            raise ValueError(f"unknown ticket kind {self.kind!r}; choose from {TICKET_KINDS}")
        cpu_subset = self.subset.cpu()
        pos = torch.nonzero(cpu_subset == self.k).flatten()
        self.n_positives = len(pos)
        self.per_step = positives_per_step(self.kind, self.batch_size)
        self._pos = index_stream(pos, self.per_step, self.generator)
        if self.kind == "detector":
            neg = torch.nonzero(cpu_subset != self.k).flatten()
            self._neg = index_stream(neg, self.per_step, self.generator)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (B,) into the training set and targets (B,) of the next step.

        Targets are int64 labels for an expert, float32 1/0 (positives first)
        for a detector.
        """
        pos = next(self._pos)
        if self.kind == "expert":
            idx = pos.to(self.labels.device)
            return idx, self.labels[idx]
        neg = next(self._neg)
        idx = torch.cat([pos, neg]).to(self.labels.device)
        target = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(self.labels.device)
        return idx, target


def positives_per_step(kind: str, batch_size: int) -> int:
    """Samples of the ticket's own subset in one batch: all of it for an expert, half for a detector."""
    if kind == "detector":
        if batch_size < 2:
            raise ValueError("a detector batch needs batch_size >= 2 (positives and negatives)")
        return batch_size // 2
    return batch_size


def presentations_per_step(kind: str, batch_size: int) -> int:
    """Samples the network sees in one step (an odd detector batch size loses one)."""
    return positives_per_step(kind, batch_size) * (2 if kind == "detector" else 1)


def epoch_steps(n_positives: int, epochs: float, kind: str, batch_size: int) -> int:
    """Steps for ``epochs`` passes over ``n_positives`` samples of a ticket's own subset."""
    return math.ceil(epochs * n_positives / positives_per_step(kind, batch_size))


def interleaved_order(k: int, rounds: int, generator: torch.Generator) -> torch.Tensor:
    """Ticket of every joint-retraining step: ``rounds`` rounds, each a random order of all K tickets.

    Every ticket gets exactly ``rounds`` steps, and no ticket is always last
    to touch the shared weights in a round.

    Returns
    -------
    tensor of int64, shape (rounds * k,)
    """
    if rounds == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.stack([torch.randperm(k, generator=generator) for _ in range(rounds)]).flatten()


def draw_batches(batches: TicketBatches, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The next ``steps`` batches of a ticket's stream at once, for an index-sampling hot loop.

    Returns
    -------
    idx : tensor of int64, shape (steps, B)
        Training-set indices, on the labels' device.
    target : tensor, shape (steps, B)
        Targets as :meth:`TicketBatches.next` gives them.
    """
    if steps == 0:
        b = presentations_per_step(batches.kind, batches.batch_size)
        dtype = torch.float32 if batches.kind == "detector" else batches.labels.dtype
        empty = torch.zeros((0, b), dtype=torch.int64, device=batches.labels.device)
        return empty, torch.zeros((0, b), dtype=dtype, device=batches.labels.device)
    drawn = [batches.next() for _ in range(steps)]
    return torch.stack([i for i, _ in drawn]), torch.stack([t for _, t in drawn])


def gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for an index tensor of any shape, as one row-wise ``index_select`` (several times faster).

    Parameters
    ----------
    x : tensor, shape (N, *row_shape)
    idx : tensor of int64, shape (*index_shape)

    Returns
    -------
    tensor, shape (*index_shape, *row_shape)
    """
    return x.index_select(0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])
