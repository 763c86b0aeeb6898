"""Adam with one state per ticket and masked updates, for joint retraining over one shared theta.

RTL retrains one dense tensor theta; a step on ticket k must move only the
weights of m_k. Masking the gradient is not enough with Adam: momentum built
up by earlier steps (of k or of another ticket) would still move a weight
whose gradient is zero. So each ticket keeps its own first and second
moments and step count, its gradient is masked before they are updated, and
the update itself is masked again before it is applied. With one ticket and
all-ones masks this is exactly ``torch.optim.Adam`` (tested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


class TicketAdam:
    """Per-ticket Adam over a dict of shared parameters.

    Parameters
    ----------
    params : mapping of str to tensor
        The shared parameters (leaf tensors; updated in place).
    masks : mapping of str to bool tensor, shape (K, *param_shape)
        Masks of the prunable parameters; parameters without a mask are dense
        for every ticket (biases, embeddings) and each ticket's steps move them.
    lr, betas, eps : float, tuple of float, float
        As ``torch.optim.Adam``.
    """

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        unknown = set(masks) - set(params)
        if unknown:
            raise ValueError(f"masks for unknown parameters {sorted(unknown)}")
        ks = {int(m.shape[0]) for m in masks.values()}
        if len(ks) > 1:
            raise ValueError(f"masks disagree on the number of tickets: {sorted(ks)}")
        self.params = dict(params)
        self.k = ks.pop() if ks else 1
        # float copies: multiplying by a float mask is cheaper than torch.where per step
        self.masks = {n: m.to(self.params[n].dtype) for n, m in masks.items()}
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = [0] * self.k
        self.exp_avg: list[dict[str, torch.Tensor]] = [{} for _ in range(self.k)]
        self.exp_avg_sq: list[dict[str, torch.Tensor]] = [{} for _ in range(self.k)]

    def mask(self, name: str, k: int) -> torch.Tensor | None:
        """Float mask (``*param_shape``) of parameter ``name`` for ticket ``k``; None if dense."""
        m = self.masks.get(name)
        return None if m is None else m[k]

    @torch.no_grad()
    def step(self, k: int, grads: Mapping[str, torch.Tensor]) -> None:
        """One Adam step of ticket ``k``: only weights in ``m_k`` (and dense parameters) move.

        Parameters
        ----------
        k : int
            Ticket index.
        grads : mapping of str to tensor
            Gradient of the loss with respect to each parameter (missing = no gradient).
        """
        if not 0 <= k < self.k:
            raise IndexError(f"ticket {k} out of range for {self.k} tickets")
        b1, b2 = self.betas
        self.steps[k] += 1
        t = self.steps[k]
        bias1, bias2 = 1 - b1**t, 1 - b2**t
        for name, p in self.params.items():
            g = grads.get(name)
            if g is None:
                continue
            m = self.mask(name, k)
            if m is not None:
                g = g * m
            avg = self.exp_avg[k].setdefault(name, torch.zeros_like(p))
            sq = self.exp_avg_sq[k].setdefault(name, torch.zeros_like(p))
            avg.lerp_(g, 1 - b1)
            sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = sq.sqrt().div_(math.sqrt(bias2)).add_(self.eps)
            update = avg / denom * (self.lr / bias1)
            if m is not None:
                update.mul_(m)
            p.sub_(update)
