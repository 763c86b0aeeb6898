"""The masked training loop: small on purpose; evaluation and logging live elsewhere."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from lottery.config import TrainConfig
from models.state import load_state_numpy  # noqa: F401 - re-exported: lottery.train.load_state_numpy


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
    """Adam or SGD with momentum, as ``cfg`` says."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adam or sgd")


def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place: ``w <- w * m`` for every masked parameter."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in mask.items():
            params[name].mul_(m.to(params[name].dtype))


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches (B,) of one shuffled pass over ``n`` samples."""
    order = torch.randperm(n, generator=generator)
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
) -> int:
    """Train one ticket in place; pruned weights stay exactly zero.

    Gradients of pruned weights are zeroed before the step and the mask is
    applied again after it (Adam's momentum would otherwise move them).

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

    Returns
    -------
    int
        Number of optimiser steps taken.
    """
    params = dict(model.named_parameters())
    opt = make_optimizer(model.parameters(), cfg)
    apply_mask(model, mask)
    model.train()
    steps = 0
    for _ in range(cfg.epochs):
        for idx in shuffled_batches(len(x), cfg.batch_size, generator):
            idx = idx.to(x.device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            for name, m in mask.items():
                params[name].grad.mul_(m)
            opt.step()
            apply_mask(model, mask)
            steps += 1
            if on_step is not None:
                on_step(steps)
        if progress is not None:
            progress()
    return steps


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, n_out) in eval mode, batched."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def state_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """All parameters as float32 numpy arrays (for safetensors)."""
    return {n: p.detach().cpu().float().numpy().copy() for n, p in model.named_parameters()}
