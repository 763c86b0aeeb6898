"""The masked training loop: small on purpose; evaluation and logging live elsewhere."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from functools import partial

import numpy as np
import torch
from torch import nn

from lottery.config import TrainConfig
from lottery.models import MLP
from lottery.stacked import cross_entropy_grad, flat_views, mlp_grads
from models.state import load_state_numpy  # noqa: F401 - re-exported: lottery.train.load_state_numpy

ENGINES = ("batched", "reference")


def check_engine(engine: str) -> None:
    """Refuse engines other than ``batched`` (the fast paths) and ``reference`` (the loops before them)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def seeded_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded from ``parts`` (e.g. seed, method, level, ticket).

    Every level and ticket draws its own stream, so a resumed run replays exactly.
    """
    seed = int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1
    return torch.Generator().manual_seed(seed)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD with momentum, as ``cfg`` says (Adam fused where PyTorch has the kernel)."""
    params = list(params)
    if cfg.optimizer == "adam":
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")


def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place: ``w <- w * m`` for every masked parameter."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in mask.items():
            params[name].mul_(m.to(params[name].dtype))


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Index batches (B,) of one shuffled pass over ``n`` samples (drawn on the CPU, held on ``device``)."""
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_masked(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    on_step: Callable[[int], None] | None = None,
    progress: Callable[[], None] | None = None,
    engine: str = "batched",
) -> int:
    """Train one ticket in place; pruned weights stay exactly zero.

    The pruned weights are zeroed once, and every gradient is masked before
    the step. Adam's or SGD's state of a pruned weight then only ever sees
    zero gradients (weight decay adds ``wd * 0``), so it stays zero and so
    does the weight's update: no mask is re-applied after the step. Batches
    are index slices of one shuffled order per epoch, held on the device;
    the loop never waits on the host.

    For an :class:`~lottery.models.MLP` with the cross-entropy loss, the
    ``batched`` engine (the default) runs :func:`_train_mlp`: the same
    batches and the same optimiser update, with a hand-written
    forward/backward on one flat parameter buffer (no autograd graph) and one
    optimiser call on one tensor; ``engine="reference"`` keeps the autograd
    loop below for every model (the tests' oracle).

    Parameters
    ----------
    model : nn.Module
    mask : mapping of str to bool tensor, shape (*weight_shape), on the model's device
    x : tensor, shape (N, *input_shape), on the model's device
    y : tensor, shape (N,)
    cfg : TrainConfig
    generator : torch.Generator
        Drives the shuffling; the caller seeds it per level and ticket.
    on_step : callable, optional
        Called with the number of steps done after every step (late rewinding hooks here).
    progress : callable, optional
        Called once per epoch.
    engine : {"batched", "reference"}

    Returns
    -------
    int
        Number of optimiser steps taken.
    """
    check_engine(engine)
    if engine == "batched" and type(model) is MLP and loss_fn is nn.functional.cross_entropy:
        return _train_mlp(model, mask, x, y, cfg, generator, on_step, progress)
    params = dict(model.named_parameters())
    opt = make_optimizer(model.parameters(), cfg)
    apply_mask(model, mask)
    masked = [params[n] for n in mask]
    fmasks = [m.to(params[n].dtype) for n, m in mask.items()]
    model.train()
    steps = 0
    for _ in range(cfg.epochs):
        for idx in shuffled_batches(len(x), cfg.batch_size, generator, x.device):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.index_select(0, idx)), y[idx])
            loss.backward()
            if masked:
                torch._foreach_mul_([p.grad for p in masked], fmasks)
            opt.step()
            steps += 1
            if on_step is not None:
                on_step(steps)
        if progress is not None:
            progress()
    apply_mask(model, mask)  # a no-op by the argument above; kept as the guarantee
    return steps


def _train_mlp(
    model: MLP,
    mask: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    on_step: Callable[[int], None] | None,
    progress: Callable[[], None] | None,
) -> int:
    """:func:`train_masked`'s loop for an MLP and the cross-entropy: flat buffers, hand-written backward.

    Every parameter of ``model`` becomes a view into one flat (P,) parameter
    (so ``on_step`` reads the current weights from the model); a step writes
    the gradients of :func:`lottery.stacked.mlp_grads` into one flat (P,)
    gradient, multiplies it by the flat mask (ones for unmasked parameters;
    skipped when every mask is all ones, a multiply by 1.0) and takes one
    step of :func:`make_optimizer`'s optimiser on that one tensor. Adam's
    and SGD's updates are elementwise, so this is the per-parameter update
    of the reference loop, up to the float rounding of the gradients;
    pruned weights stay exactly zero by the same argument. At the end the
    parameters get storage of their own again.
    """
    params = dict(model.named_parameters())
    apply_mask(model, mask)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    with torch.no_grad():
        flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params.values()]))
        flat.grad = torch.zeros_like(flat)
        weights = flat_views(flat.detach()[None], shapes)  # (1, *shape) views of flat
        for n, p in params.items():
            p.data = weights[n][0]
        fmask = torch.cat(
            [
                mask[n].to(p.dtype).reshape(-1) if n in mask else torch.ones_like(p).reshape(-1)
                for n, p in params.items()
            ]
        )  # (P,)
    masked = not all(bool(m.all()) for m in mask.values())  # an all-ones mask multiplies by 1.0: skip it
    grads = flat_views(flat.grad[None], shapes)  # (1, *shape) views of the flat gradient
    opt = make_optimizer([flat], cfg)
    steps = 0
    for _ in range(cfg.epochs):
        for idx in shuffled_batches(len(x), cfg.batch_size, generator, x.device):
            target = y[idx][None]  # (1, B)
            mlp_grads(
                model,
                weights,
                x.index_select(0, idx)[None],
                partial(cross_entropy_grad, target=target),
                grads,
            )
            if masked:
                flat.grad.mul_(fmask)
            opt.step()
            steps += 1
            if on_step is not None:
                on_step(steps)
        if progress is not None:
            progress()
    with torch.no_grad():
        for p in params.values():
            p.data = p.data.clone()
    apply_mask(model, mask)  # a no-op, as in the reference loop
    return steps


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, n_out) in eval mode, batched."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def state_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """All parameters as float32 numpy arrays (for safetensors)."""
    return {n: p.detach().cpu().float().numpy().copy() for n, p in model.named_parameters()}
