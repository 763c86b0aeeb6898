"""Networks: LeNet-300-100 MLP, a small CNN, and a tiny Vision Transformer.

Shared by the engine (:mod:`lottery`, which re-exports them as
``lottery.models``) and the measurements (:mod:`analysis.attention_probe`
rebuilds a ticket from a run), so measuring a run needs no trainer.

Prunable weights are the weights of every ``nn.Linear`` and ``nn.Conv2d``
(attention projections and the patch embedding included); biases, norms,
positional embeddings and the class token stay dense. A model's config is a
frozen dataclass that a checkpoint carries, so the model can be rebuilt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model.

    Attributes
    ----------
    name : {"mlp", "cnn", "vit"}
    input_shape : tuple of int
        Shape of one input without the batch axis, e.g. (1, 28, 28) or (F,).
    n_out : int
        Number of output units.
    hidden : tuple of int
        MLP hidden widths (LeNet-300-100 is (300, 100)) or CNN channels.
    dim, depth, heads, patch, mlp_ratio : int
        ViT embedding width, number of blocks, heads per block, patch side, MLP expansion.
    """

    name: str
    input_shape: tuple[int, ...]
    n_out: int
    hidden: tuple[int, ...] = (300, 100)
    dim: int = 64
    depth: int = 3
    heads: int = 4
    patch: int = 7
    mlp_ratio: int = 2


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs (LeNet-300-100 by default)."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], n_out: int):
        super().__init__()
        widths = [in_features, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Linear(widths[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_out) for inputs (B, *input_shape)."""
        x = x.flatten(1)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


class CNN(nn.Module):
    """A few 3x3 conv layers (stride 2 after the first) and a linear head."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], n_out: int):
        super().__init__()
        convs, c_in = [], in_channels
        for i, c in enumerate(channels):
            convs.append(nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.head = nn.Linear(c_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_out) for images (B, C, H, W)."""
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.head(x.mean(dim=(2, 3)))  # global average pool: (B, C)


class Attention(nn.Module):
    """Multi-head self-attention with separate (prunable) q, k, v, out projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the output (B, T, D) and the attention probabilities (B, H, T, T)."""
        b, t, d = x.shape
        h = self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, h, d // h).transpose(1, 2)  # (B, H, T, D/H)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)  # (B, H, T, T)
        probs = att.softmax(dim=-1)
        y = (probs @ v).transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.out(y), probs


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the block output (B, T, D) and its attention probabilities (B, H, T, T)."""
        y, probs = self.attn(self.norm1(x))
        x = x + y
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))
        return x, probs


class ViT(nn.Module):
    """A tiny Vision Transformer whose per-head attention maps can be read out."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, hgt, wid = cfg.input_shape
        if hgt % cfg.patch or wid % cfg.patch:
            raise ValueError(f"image {hgt}x{wid} is not divisible into {cfg.patch}x{cfg.patch} patches")
        n_patches = (hgt // cfg.patch) * (wid // cfg.patch)
        self.patch = cfg.patch
        self.embed = nn.Linear(c * cfg.patch * cfg.patch, cfg.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_out)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token prepended: (B, 1 + n_patches, D)."""
        p = self.patch
        b, c, _, _ = x.shape
        patches = x.unfold(2, p, p).unfold(3, p, p)  # (B, C, H/p, W/p, p, p)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * p * p)  # (B, N, C*p*p)
        z = self.embed(patches)
        return torch.cat([self.cls.expand(b, -1, -1), z], dim=1) + self.pos

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Logits (B, n_out); with ``return_attention`` also a list of (B, H, T, T) per block."""
        z = self.tokens(x)
        maps = []
        for block in self.blocks:
            z, probs = block(z)
            maps.append(probs)
        logits = self.head(self.norm(z[:, 0]))
        return (logits, maps) if return_attention else logits


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the model a config describes (weights drawn from torch's global RNG)."""
    if cfg.name == "mlp":
        return MLP(math.prod(cfg.input_shape), cfg.hidden, cfg.n_out)
    if cfg.name == "cnn":
        return CNN(cfg.input_shape[0], cfg.hidden, cfg.n_out)
    if cfg.name == "vit":
        if len(cfg.input_shape) != 3:
            raise ValueError("the ViT needs image inputs (C, H, W)")
        return ViT(cfg)
    raise ValueError(f"unknown model {cfg.name!r}; choose mlp, cnn or vit")


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the prunable parameters (Linear and Conv2d weights), in module order."""
    return [
        f"{mod_name}.weight" if mod_name else "weight"
        for mod_name, mod in model.named_modules()
        if isinstance(mod, nn.Linear | nn.Conv2d)
    ]


def prunable_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the prunable parameters."""
    params = dict(model.named_parameters())
    return {n: tuple(params[n].shape) for n in prunable_names(model)}
