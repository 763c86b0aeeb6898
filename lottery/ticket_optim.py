"""Adam / SGD with one optimiser state per ticket over shared weights, and masked steps.

Joint retraining moves one shared tensor theta with K tickets' steps. A zero
gradient does not stop Adam (its momentum keeps moving a weight) and weight
decay adds a gradient of its own, so two things keep ticket k's step inside
its mask m_k: ticket k has its own moments (the state of the other tickets is
untouched by k's steps) and both the gradient entering k's moments and the
update leaving them are multiplied by m_k. Multiplying the update by 0 adds
exactly ``-0.0`` to a weight, which leaves it bit-identical.

Without masks and with K = 1, a step is PyTorch's own ``Adam`` / ``SGD``
(single-tensor code path, ``maximize=False``, ``amsgrad=False``,
``dampening=0``, ``nesterov=False``), operation for operation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from lottery.config import TrainConfig

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class TicketOptimizer:
    """Per-ticket optimiser state for shared parameters.

    Parameters
    ----------
    params : mapping of str to tensor
        The shared parameters, updated in place (leaf tensors, any shape).
    masks : mapping of str to bool tensor, shape (K, *param_shape)
        Ticket masks of the masked parameters; parameters without a mask are
        shared dense (biases, norms, embeddings) and updated by every ticket.
    cfg : TrainConfig
        ``optimizer`` ("adam" or "sgd"), ``lr``, ``momentum``, ``weight_decay``.
    k : int
        Number of tickets.
    """

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        cfg: TrainConfig,
        k: int,
    ):
        if cfg.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")
        for name, m in masks.items():
            if name not in params:
                raise ValueError(f"mask for unknown parameter {name!r}")
            if tuple(m.shape) != (k, *params[name].shape):
                raise ValueError(
                    f"mask {name!r} has shape {tuple(m.shape)}, expected {(k, *params[name].shape)}"
                )
        self.params = dict(params)
        self.cfg = cfg
        self.k = k
        # float masks: a multiply is cheaper than a where and exact for 0/1
        self.masks = {n: m.to(self.params[n].dtype) for n, m in masks.items()}
        self.steps = [0] * k
        zeros = {
            n: torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device) for n, p in self.params.items()
        }
        if cfg.optimizer == "adam":
            self.exp_avg = zeros
            self.exp_avg_sq = {n: z.clone() for n, z in zeros.items()}
        else:
            self.momentum_buffer = zeros

    @torch.no_grad()
    def step(self, k: int, grads: Mapping[str, torch.Tensor]) -> None:
        """Apply ticket ``k``'s step for ``grads`` (one gradient per parameter, same shapes).

        Weights outside ``m_k`` are left bit-identical.
        """
        cfg = self.cfg
        self.steps[k] += 1
        t = self.steps[k]
        for name, p in self.params.items():
            g = grads[name]
            if cfg.weight_decay != 0:
                g = g.add(p, alpha=cfg.weight_decay)
            mask = self.masks[name][k] if name in self.masks else None
            if mask is not None:
                g = g * mask
            if cfg.optimizer == "adam":
                beta1, beta2 = ADAM_BETAS
                exp_avg, exp_avg_sq = self.exp_avg[name][k], self.exp_avg_sq[name][k]
                exp_avg.lerp_(g, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step_size = cfg.lr / (1 - beta1**t)
                denom = (exp_avg_sq.sqrt() / (1 - beta2**t) ** 0.5).add_(ADAM_EPS)
                num = exp_avg if mask is None else exp_avg * mask
                p.addcdiv_(num, denom, value=-step_size)
            else:
                update = g
                if cfg.momentum != 0:
                    buf = self.momentum_buffer[name][k]
                    if t == 1:
                        buf.copy_(g)
                    else:
                        buf.mul_(cfg.momentum).add_(g)
                    update = buf if mask is None else buf * mask
                p.add_(update, alpha=-cfg.lr)


def leaf_params(state: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Trainable float32 leaf tensors from numpy parameters (copies)."""
    return {n: torch.tensor(np.asarray(v), dtype=torch.float32, requires_grad=True) for n, v in state.items()}


def masked_weights(
    params: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``theta * m`` for the masked parameters, the others as they are (``mask``: one ticket)."""
    return {n: p * mask[n] if n in mask else p for n, p in params.items()}


def masked_numpy(
    params: Mapping[str, torch.Tensor], keep: Mapping[str, torch.Tensor]
) -> dict[str, np.ndarray]:
    """Parameters as float32 numpy, weights outside ``keep`` (bool, per masked param) set to 0."""
    out = {}
    for n, p in params.items():
        w = p.detach()
        if n in keep:
            w = w * keep[n]
        out[n] = w.numpy().astype(np.float32, copy=True)
    return out


def step_tickets(
    params: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    schedule: Sequence[int],
    lr: float,
    loss: Callable[[int, dict[str, torch.Tensor]], torch.Tensor],
) -> list[float]:
    """One masked Adam step per entry of ``schedule`` (a ticket id), in order.

    Parameters
    ----------
    params : mapping of str to leaf tensor
        The shared parameters theta, updated in place.
    masks : mapping of str to bool tensor, shape (K, *param_shape)
    schedule : sequence of int
        Ticket of each step.
    lr : float
    loss : callable
        ``loss(k, weights)``: ticket k's loss on its next batch, computed with
        ``weights`` = theta masked by m_k (e.g. through ``torch.func.functional_call``).

    Returns
    -------
    list of float
        The loss of every step.
    """
    k_all = next(iter(masks.values())).shape[0]
    opt = TicketOptimizer(params, masks, TrainConfig(optimizer="adam", lr=lr), k_all)
    names = list(params)
    fmasks = [{n: m[k].to(params[n].dtype) for n, m in masks.items()} for k in range(k_all)]
    losses = []
    for k in schedule:
        value = loss(k, masked_weights(params, fmasks[k]))
        grads = torch.autograd.grad(value, [params[n] for n in names])
        opt.step(k, dict(zip(names, grads, strict=True)))
        losses.append(float(value.detach()))
    return losses
