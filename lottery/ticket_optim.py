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
from torch.optim.adam import adam
from torch.optim.sgd import sgd

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
    fused : bool
        False (the default, the reference): PyTorch's single-tensor update
        written out, one parameter at a time, the update multiplied by m_k.
        True (the engine's hot path): one fused (Adam) or foreach (SGD) call
        of :mod:`torch.optim`'s functional optimisers over all parameters per
        step. The update then needs no multiply of its own: ticket k's
        moments only ever receive gradients masked by m_k (weight decay
        included), so outside m_k they stay exactly 0 and so does the update
        (``-lr * 0 / (0 + eps)``), which leaves those weights bit-identical.
        This holds as long as each ticket's mask is fixed for the optimiser's
        life (one level); ``tests/test_engine.py`` checks it bit for bit.
    premasked : bool
        On the fused path: the gradients arrive already zero outside m_k
        (they come from a forward pass through ``theta * m_k``), so without
        weight decay the gradient multiply is skipped.
    """

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        masks: Mapping[str, torch.Tensor],
        cfg: TrainConfig,
        k: int,
        *,
        fused: bool = False,
        premasked: bool = False,
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
        self.fused = fused
        self.premasked = premasked
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
        if fused:
            self._init_fused()

    def _init_fused(self) -> None:
        """Per-ticket lists of state views, built once: the hot path only indexes them."""
        names = list(self.params)
        for n in names:
            if not self.params[n].is_contiguous():
                raise ValueError(f"the fused optimiser needs contiguous parameters; {n!r} is not")
        self._names = names
        self._plist = [self.params[n] for n in names]
        self._masked = [i for i, n in enumerate(names) if n in self.masks]
        self._slot_masks = [[self.masks[names[i]][t] for i in self._masked] for t in range(self.k)]
        if self.cfg.optimizer == "adam":
            self._avg = [[self.exp_avg[n][t] for n in names] for t in range(self.k)]
            self._avg_sq = [[self.exp_avg_sq[n][t] for n in names] for t in range(self.k)]
            self._step_t = [
                [torch.zeros((), dtype=torch.float32, device=p.device) for p in self._plist]
                for _ in range(self.k)
            ]
            # fused kernels exist for floating CPU / CUDA tensors; foreach otherwise
            self._kernel = {"fused": True} if self._fusable() else {"foreach": True}
        else:
            # functional SGD creates a buffer (a copy of the first gradient) where it finds None
            self._bufs: list[list[torch.Tensor | None]] = [[None] * len(names) for _ in range(self.k)]

    def _fusable(self) -> bool:
        return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in self._plist)

    @torch.no_grad()
    def step(self, k: int, grads: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> None:
        """Apply ticket ``k``'s step for ``grads`` (one gradient per parameter, same shapes).

        ``grads`` is a mapping by name or, on the fused path, also a sequence in
        the order of ``params`` (the fused path masks them in place). Weights
        outside ``m_k`` are left bit-identical.
        """
        self.steps[k] += 1
        if self.fused:
            self._step_fused(k, grads)
            return
        cfg = self.cfg
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

    def _step_fused(self, k: int, grads: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> None:
        cfg = self.cfg
        glist = [grads[n] for n in self._names] if isinstance(grads, Mapping) else grads
        # the fused kernels read a gradient with its parameter's (contiguous) layout;
        # torch.autograd.grad may hand back a transposed view (e.g. through bmm)
        glist = [g.contiguous() for g in glist]
        if cfg.weight_decay != 0:
            glist = torch._foreach_add(glist, self._plist, alpha=cfg.weight_decay)
        if self._masked and (cfg.weight_decay != 0 or not self.premasked):  # in place: gradients are consumed
            torch._foreach_mul_([glist[i] for i in self._masked], self._slot_masks[k])
        if cfg.optimizer == "adam":
            beta1, beta2 = ADAM_BETAS
            adam(
                self._plist,
                glist,
                self._avg[k],
                self._avg_sq[k],
                [],
                self._step_t[k],
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=cfg.lr,
                weight_decay=0.0,
                eps=ADAM_EPS,
                maximize=False,
                **self._kernel,
            )
        else:
            if cfg.momentum != 0:
                bufs = self._bufs[k]
            else:
                bufs = [None] * len(glist)
            sgd(
                self._plist,
                glist,
                bufs,
                foreach=True,
                weight_decay=0.0,
                momentum=cfg.momentum,
                lr=cfg.lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )

    def state_rows(self, rows: torch.Tensor, params: Mapping[str, torch.Tensor]) -> TicketOptimizer:
        """A fused optimiser over ``params`` (rows ``rows`` of the stacked ones), same rows of state.

        For stacked tickets trained as one parameter set (``k = 1``, every
        parameter (K, *shape)): when some tickets finish, the others go on
        with their own moments and step count.
        """
        if self.k != 1 or not self.fused:
            raise ValueError("state_rows needs a fused optimiser over stacked parameters (k = 1)")
        masks = {n: m[0][rows][None] for n, m in self.masks.items()}
        out = TicketOptimizer(params, masks, self.cfg, 1, fused=True)
        out.steps = list(self.steps)
        if self.cfg.optimizer == "adam":
            for n in self._names:
                out.exp_avg[n].copy_(self.exp_avg[n][:, rows])
                out.exp_avg_sq[n].copy_(self.exp_avg_sq[n][:, rows])
            for a, b in zip(out._step_t[0], self._step_t[0], strict=True):
                a.copy_(b)
        else:
            out._bufs[0] = [None if b is None else b[rows].clone() for b in self._bufs[0]]
        return out


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

    Each ticket has its own moments; one fused Adam call per step
    (:class:`TicketOptimizer` with ``fused=True``), and the losses are read
    back once at the end, not per step.

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
    cfg = TrainConfig(optimizer="adam", lr=lr)
    # the loss sees theta * m_k, so autograd already masks the gradients
    opt = TicketOptimizer(params, masks, cfg, k_all, fused=True, premasked=True)
    names = list(params)
    plist = [params[n] for n in names]
    fmasks = [{n: m[k].to(params[n].dtype) for n, m in masks.items()} for k in range(k_all)]
    losses = []
    for k in schedule:
        value = loss(k, masked_weights(params, fmasks[k]))
        opt.step(k, torch.autograd.grad(value, plist))
        losses.append(value.detach())
    return torch.stack(losses).tolist() if losses else []
