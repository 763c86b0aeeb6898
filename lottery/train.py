"""The masked training loop: small on purpose; evaluation and logging live elsewhere."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from lottery.config import TrainConfig
from lottery.models import MLP
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
    batches, gradients and optimiser update, bit for bit, with the backward
    written out on flat parameter and gradient buffers (no autograd graph)
    and one optimiser call per step; ``engine="reference"`` keeps the
    autograd loop below for every model (the tests' oracle).

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
    """:func:`train_masked`'s loop for an MLP and the cross-entropy: flat buffers, no autograd graph.

    Every parameter of ``model`` becomes a view into one flat buffer and its
    gradient a view into another (:func:`_aligned_buffer`; ``on_step`` reads
    the current weights from the model). A step writes the gradients of
    :func:`_mlp_grads` into the flat gradient, multiplies it by the flat mask
    (ones for unmasked parameters; skipped when every mask is all ones, a
    multiply by 1.0) and takes one step of :func:`make_optimizer`'s optimiser
    over the parameters. The gradients are autograd's own, op for op, and the
    optimiser is the reference loop's, so the weights are bit for bit those
    of the reference loop (tested): runs drawn with either engine are the
    same runs. Pruned weights stay exactly zero by the argument of
    :func:`train_masked`. At the end the parameters get storage of their own
    again.
    """
    params = dict(model.named_parameters())
    apply_mask(model, mask)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    like = next(iter(params.values()))
    with torch.no_grad():
        _, weights = _aligned_buffer(shapes, like.dtype, like.device)  # every weight
        flat_grad, grads = _aligned_buffer(shapes, like.dtype, like.device)  # every gradient
        fmask, masks = _aligned_buffer(shapes, like.dtype, like.device)  # the masks; 1 where unmasked
        for n, p in params.items():
            weights[n].copy_(p.detach())
            if n in mask:
                masks[n].copy_(mask[n])
            else:
                masks[n].fill_(1.0)
            p.data, p.grad = weights[n], grads[n]
    masked = not all(bool(m.all()) for m in mask.values())  # an all-ones mask multiplies by 1.0: skip it
    names = [f"layers.{i}" for i in range(len(model.layers))] + ["head"]
    # the optimiser steps the parameters one by one, as in the reference loop: CPU fused Adam
    # rounds a tensor's last few elements differently from the rest, so one flat tensor would
    # not reproduce it (still one call per step)
    opt = make_optimizer(params.values(), cfg)
    steps = 0
    for _ in range(cfg.epochs):
        for idx in shuffled_batches(len(x), cfg.batch_size, generator, x.device):
            _mlp_grads(names, weights, x.index_select(0, idx), y[idx], grads)
            if masked:
                flat_grad.mul_(fmask)
            opt.step()
            steps += 1
            if on_step is not None:
                on_step(steps)
        if progress is not None:
            progress()
    with torch.no_grad():
        for p in params.values():
            p.data, p.grad = p.data.clone(), None
    apply_mask(model, mask)  # a no-op, as in the reference loop
    return steps


# elements between the starts of two parameters in a flat buffer: 64 bytes of float32, the
# alignment of PyTorch's CPU allocations. A matmul writing into a view at another offset may
# round differently (MKL's kernels depend on alignment), and the flat step must reproduce the
# reference loop, whose parameters are separate allocations, bit for bit.
_ALIGN = 16


def _aligned_buffer(
    shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One zero buffer (P_padded,) and a named view (*shape) into it per parameter, each 64-byte aligned."""
    starts, end = {}, 0
    for name, shape in shapes.items():
        starts[name] = end
        end += -(-math.prod(shape) // _ALIGN) * _ALIGN
    buffer = torch.zeros(end, dtype=dtype, device=device)
    views = {n: buffer[starts[n] : starts[n] + math.prod(s)].view(s) for n, s in shapes.items()}
    return buffer, views


@torch.no_grad()
def _mlp_grads(
    names: list[str],
    weights: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    grads: Mapping[str, torch.Tensor],
) -> None:
    """Gradients of an MLP's mean cross-entropy, computed with the very kernels autograd runs.

    The forward is :class:`~lottery.models.MLP`'s (``addmm`` per layer as
    ``F.linear`` runs it, ReLU, ``log_softmax`` and ``nll_loss`` as
    ``F.cross_entropy`` runs them); the backward calls the functions
    autograd's formulas call (``nll_loss_backward``,
    ``_log_softmax_backward_data``, ``d.T @ a`` for a weight, a row sum for
    a bias, ``d @ W`` and ``threshold_backward`` through a layer and its
    ReLU), so the gradients equal autograd's bit for bit, without its graph.
    The first layer's input gradient is not computed.

    Parameters
    ----------
    names : list of str
        Layer names in order (``layers.0``, ..., ``head``).
    weights : mapping of str to tensor, shape (*param_shape)
        Current parameters.
    x : tensor, shape (B, *input_shape)
    y : tensor of int64, shape (B,)
    grads : mapping of str to tensor, shape (*param_shape)
        Receive the gradients (overwritten; e.g. views of one flat buffer).
    """
    acts = [x.flatten(1)]  # (B, F): the input of every layer
    for j, name in enumerate(names):
        h = torch.addmm(weights[f"{name}.bias"], acts[-1], weights[f"{name}.weight"].t())  # (B, out)
        if j < len(names) - 1:
            acts.append(torch.relu(h))
    logp = torch._log_softmax(h, 1, False)  # (B, n_out)
    _, total_weight = torch.ops.aten.nll_loss_forward(logp, y, None, 1, -100)  # 1: mean
    one = torch.ones((), dtype=logp.dtype, device=logp.device)
    d = torch.ops.aten.nll_loss_backward(one, logp, y, None, 1, -100, total_weight)
    d = torch.ops.aten._log_softmax_backward_data(d, logp, 1, logp.dtype)  # (B, n_out)
    for j in range(len(names) - 1, -1, -1):
        name = names[j]
        torch.mm(d.t(), acts[j], out=grads[f"{name}.weight"])
        torch.sum(d, dim=0, keepdim=True, out=grads[f"{name}.bias"].view(1, -1))
        if j > 0:
            d = torch.ops.aten.threshold_backward(d.mm(weights[f"{name}.weight"]), acts[j], 0)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, n_out) in eval mode, batched."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def state_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """All parameters as float32 numpy arrays (for safetensors)."""
    return {n: p.detach().cpu().float().numpy().copy() for n, p in model.named_parameters()}
