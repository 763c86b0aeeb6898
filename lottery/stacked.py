"""K networks of one architecture run as one: stacked parameters (K, *shape), batched matmuls.

Ticket extraction and the independent baseline train K tickets, each on its
own data; the per-step overheads (kernel launches, Python, the optimiser)
dominate one small network, so the K tickets are stepped together. Every
``nn.Linear`` becomes one ``baddbmm`` over the K tickets (K independent
matmuls in one call), a ``Conv2d`` one grouped convolution, and the
parameter-free parts run on the K * B samples at once. Ticket k's output
depends only on ``params[name][k]`` and ``x[k]``: the K networks share no
arithmetic, so their gradients are exactly their own.

:func:`stacked_forward` has hand-written paths for the project's classifiers
(:class:`lottery.models.MLP`, :class:`~lottery.models.CNN`,
:class:`~lottery.models.ViT`), each checked against ``functional_call`` per
ticket in ``tests/test_stacked.py``, and falls back to
``torch.func.vmap(functional_call)`` for any other model (slower on CPU:
vmap's batched linear does not reach bmm's speed here).

:func:`mlp_grads` is the MLP's forward and hand-written backward without
autograd, writing the gradients into views of one flat buffer
(:func:`flatten_stacked`, :func:`flat_views`) so that one fused optimiser
call on one tensor steps every layer: joint retraining's step. (At K = 10 in
extraction it is no faster than autograd through :func:`stacked_forward`,
which extraction therefore keeps. IMP's MLP step,
:func:`lottery.train.train_masked`, calls autograd's own kernels instead, to
reproduce the autograd loop bit for bit.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from lottery.models import CNN, MLP, ViT

Params = Mapping[str, torch.Tensor]


def stack_params(states: Sequence[Params]) -> dict[str, torch.Tensor]:
    """``[{name: (*shape)}] * K`` to ``{name: (K, *shape)}``."""
    return {n: torch.stack([s[n] for s in states]) for n in states[0]}


def _linear(params: Params, name: str, x: torch.Tensor) -> torch.Tensor:
    """Per-ticket linear layer: x (K, ..., in) -> (K, ..., out)."""
    w, b = params[f"{name}.weight"], params[f"{name}.bias"]  # (K, out, in), (K, out)
    k, lead = x.shape[0], x.shape[1:-1]
    flat = x.reshape(k, -1, x.shape[-1])  # (K, M, in)
    y = torch.baddbmm(b.unsqueeze(1), flat, w.transpose(1, 2))  # (K, M, out)
    return y.view(k, *lead, w.shape[1])


def _layer_norm(params: Params, name: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-ticket LayerNorm over the last axis of x (K, ..., D)."""
    w, b = params[f"{name}.weight"], params[f"{name}.bias"]  # (K, D)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return nn.functional.layer_norm(x, x.shape[-1:], eps=eps) * w.view(shape) + b.view(shape)


def _mlp(model: MLP, params: Params, x: torch.Tensor) -> torch.Tensor:
    # feature-major activations (K, F, B): y = W h + b is baddbmm(b, W, h), and the weight
    # gradient dy h^T comes out in W's own (contiguous) layout, ready for a fused optimiser
    h = x.flatten(2).transpose(1, 2)  # (K, F, B)
    names = [f"layers.{i}" for i in range(len(model.layers))] + ["head"]
    for j, name in enumerate(names):
        w, b = params[f"{name}.weight"], params[f"{name}.bias"]  # (K, out, in), (K, out)
        h = torch.baddbmm(b.unsqueeze(2), w, h)  # (K, out, B)
        if j < len(names) - 1:
            h = torch.relu(h)
    return h.transpose(1, 2)  # (K, B, n_out)


def _cnn(model: CNN, params: Params, x: torch.Tensor) -> torch.Tensor:
    k, b = x.shape[:2]
    h = x.transpose(0, 1).flatten(1, 2)  # (B, K * C, H, W): ticket k's channels in group k
    for i, conv in enumerate(model.convs):
        w, bias = params[f"convs.{i}.weight"], params[f"convs.{i}.bias"]  # (K, out, in, kh, kw)
        h = nn.functional.conv2d(
            h, w.flatten(0, 1), bias.flatten(), stride=conv.stride, padding=conv.padding, groups=k
        )
        h = torch.relu(h)
    pooled = h.mean(dim=(2, 3)).view(b, k, -1).transpose(0, 1)  # (K, B, C)
    return _linear(params, "head", pooled)


def _vit(model: ViT, params: Params, x: torch.Tensor) -> torch.Tensor:
    k, b, c = x.shape[:3]
    p = model.patch
    patches = x.flatten(0, 1).unfold(2, p, p).unfold(3, p, p)  # (K*B, C, H/p, W/p, p, p)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(k, b, -1, c * p * p)  # (K, B, N, C*p*p)
    z = _linear(params, "embed", patches)  # (K, B, N, D)
    d = z.shape[-1]
    cls = params["cls"].view(k, 1, 1, d).expand(k, b, 1, d)
    z = torch.cat([cls, z], dim=2) + params["pos"].view(k, 1, -1, d)  # (K, B, T, D)
    t = z.shape[2]
    for i, block in enumerate(model.blocks):
        pre = f"blocks.{i}"
        h = block.attn.heads
        y = _layer_norm(params, f"{pre}.norm1", z, block.norm1.eps)
        q, kk, v = (
            _linear(params, f"{pre}.attn.{j}", y).reshape(k * b, t, h, d // h).transpose(1, 2) for j in "qkv"
        )  # (K*B, H, T, D/H)
        att = (q @ kk.transpose(-2, -1)) / math.sqrt(d // h)  # (K*B, H, T, T)
        y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(k, b, t, d)
        z = z + _linear(params, f"{pre}.attn.out", y)
        y = _layer_norm(params, f"{pre}.norm2", z, block.norm2.eps)
        y = _linear(params, f"{pre}.fc2", nn.functional.gelu(_linear(params, f"{pre}.fc1", y)))
        z = z + y
    return _linear(params, "head", _layer_norm(params, "norm", z[:, :, 0], model.norm.eps))


def stacked_forward(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Outputs of K networks of ``model``'s architecture, network k on its own inputs.

    Parameters
    ----------
    model : nn.Module
        Gives the architecture only; its own weights are not used.
    params : mapping of str to tensor, shape (K, *param_shape)
        Every parameter of ``model``, one row per network.
    x : tensor, shape (K, B, *input_shape)
        Network k's inputs are ``x[k]``.

    Returns
    -------
    tensor, shape (K, B, *output_shape)
    """
    if type(model) is MLP:
        return _mlp(model, params, x)
    if type(model) is CNN:
        return _cnn(model, params, x)
    if type(model) is ViT:
        return _vit(model, params, x)
    return vmap(lambda p, xb: functional_call(model, p, (xb,)))(dict(params), x)


def single_forward(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Output of ``model`` run with ``params`` on ``x`` (B, *input_shape), by the faster of two paths.

    The stacked MLP with K = 1 (its weight gradients come out contiguous,
    ready for a fused optimiser); every other model through its own
    ``forward`` via ``functional_call`` (faster than the stacked ViT at K = 1).
    """
    if type(model) is MLP:
        return stacked_forward(model, {n: p[None] for n, p in params.items()}, x[None])[0]
    return functional_call(model, dict(params), (x,))


# ------------------------------------------------------------------ flat parameters, hand-written MLP


def flatten_stacked(params: Params) -> torch.Tensor:
    """``{name: (A, *shape)}`` as one (A, P) buffer, names concatenated in order (a copy)."""
    return torch.cat([p.detach().reshape(p.shape[0], -1) for p in params.values()], dim=1)


def flat_views(flat: torch.Tensor, shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """Named views (A, *shape) into a flat (A, P) buffer laid out by :func:`flatten_stacked`.

    Row a of a view is network a's parameter; the views share ``flat``'s memory,
    so writing a view (e.g. ``torch.bmm(..., out=view)``) writes the buffer.
    """
    out, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[:, offset : offset + size].view(flat.shape[0], *shape)
        offset += size
    if offset != flat.shape[1]:
        raise ValueError(f"the shapes hold {offset} values, the buffer {flat.shape[1]} per row")
    return out


def cross_entropy_grad(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient of each row's mean cross-entropy with respect to its logits, written out.

    ``(softmax(z) - onehot(y)) / B``: what autograd computes for
    ``cross_entropy(logits[a], target[a])`` (mean over the batch), equal up to float rounding.

    Parameters
    ----------
    logits : tensor, shape (A, B, n_classes)
    target : tensor of int64, shape (A, B)

    Returns
    -------
    tensor, shape (A, B, n_classes)
    """
    a, b = target.shape
    d = logits.softmax(dim=-1)
    d.scatter_add_(2, target.unsqueeze(2), torch.full((a, b, 1), -1.0, dtype=d.dtype, device=d.device))
    return d.div_(b)


def mlp_grads(
    model: MLP,
    weights: Params,
    x: torch.Tensor,
    loss_grad: Callable[[torch.Tensor], torch.Tensor],
    grads: Params,
) -> torch.Tensor:
    """Forward and hand-written backward of A stacked :class:`~lottery.models.MLP` networks.

    No autograd graph: each layer is one ``baddbmm`` forward and two ``bmm``
    backward (the first layer's input gradient is not computed), and the
    parameter gradients are written straight into ``grads`` (e.g. views of
    one flat gradient buffer, :func:`flat_views`), ready for a single fused
    optimiser call.

    Parameters
    ----------
    model : MLP
        Gives the architecture only.
    weights : mapping of str to tensor, shape (A, *param_shape)
        The weights the networks run with (e.g. theta already masked).
    x : tensor, shape (A, B, *input_shape)
    loss_grad : callable
        ``loss_grad(logits)`` with logits (A, B, n_out): the gradient of the
        loss with respect to the logits, same shape.
    grads : mapping of str to tensor, shape (A, *param_shape)
        Receive the gradients of the loss with respect to ``weights`` (overwritten).

    Returns
    -------
    tensor, shape (A, B, n_out)
        The logits.
    """
    names = [f"layers.{i}" for i in range(len(model.layers))] + ["head"]
    acts = [x.flatten(2)]  # (A, B, F): the inputs of every layer
    for j, name in enumerate(names):
        w, b = weights[f"{name}.weight"], weights[f"{name}.bias"]  # (A, out, in), (A, out)
        h = torch.baddbmm(b.unsqueeze(1), acts[-1], w.transpose(1, 2))  # (A, B, out)
        if j < len(names) - 1:
            acts.append(torch.relu_(h))
    logits = h
    d = loss_grad(logits)  # (A, B, out)
    for j in range(len(names) - 1, -1, -1):
        name = names[j]
        torch.bmm(d.transpose(1, 2), acts[j], out=grads[f"{name}.weight"])
        torch.sum(d, dim=1, out=grads[f"{name}.bias"])
        if j > 0:  # through the layer and the ReLU before it (its output > 0 <=> its input > 0)
            d = torch.ops.aten.threshold_backward(torch.bmm(d, weights[f"{name}.weight"]), acts[j], 0)
    return logits
