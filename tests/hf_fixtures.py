"""Hugging Face-style model folders written with torch and safetensors, for the importer tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def prune_rows(w: torch.Tensor, keep: float, act: torch.Tensor) -> torch.Tensor:
    """Wanda-style: per output row keep the largest |w| * activation norm, zero the rest."""
    score = w.float().abs() * act[None, :]
    k = int(round(w.shape[1] * keep))
    idx = score.argsort(dim=1, descending=True)[:, k:]
    out = w.clone()
    out.scatter_(1, idx, 0)
    return out


def prune_2_4(w: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest of every 4 consecutive weights along the input axis."""
    g = w.reshape(w.shape[0], -1, 4)
    idx = g.float().abs().argsort(dim=2)[:, :, :2]
    out = g.clone()
    out.scatter_(2, idx, 0)
    return out.reshape(w.shape)


def write_model(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    shards: list[list[str]] | None,
    config: dict | None = None,
) -> Path:
    """Save ``tensors`` as ``save_pretrained`` does: sharded with an index, or one model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    if shards is None:
        save_file(tensors, str(folder / "model.safetensors"))
    else:
        weight_map = {}
        for i, names in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(
                {n: tensors[n].contiguous() for n in names}, str(folder / fname), metadata={"format": "pt"}
            )
            weight_map.update(dict.fromkeys(names, fname))
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
        )
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def tiny_llama(folder: Path, seed: int, *, hidden: int = 32, inter: int = 64, sharded: bool = True) -> Path:
    """A 2-layer LLaMA-shaped folder: fp16 and bf16 weights, layer 1's q_proj 2:4, the rest 50 % per row."""
    g = torch.Generator().manual_seed(seed)
    act = torch.rand(max(hidden, inter), generator=g) + 0.1
    t: dict[str, torch.Tensor] = {"model.embed_tokens.weight": torch.randn(50, hidden, generator=g).half()}
    for layer in range(2):
        p = f"model.layers.{layer}."
        dtype = torch.float16 if layer == 0 else torch.bfloat16
        for name, shape in (
            ("self_attn.q_proj", (hidden, hidden)),
            ("self_attn.k_proj", (hidden // 2, hidden)),
            ("mlp.up_proj", (inter, hidden)),
            ("mlp.down_proj", (hidden, inter)),
        ):
            w = torch.randn(*shape, generator=g).to(dtype)
            if layer == 1 and name == "self_attn.q_proj":
                w = prune_2_4(w)
            else:
                w = prune_rows(w, 0.5, act[: shape[1]])
            t[p + name + ".weight"] = w
        t[p + "input_layernorm.weight"] = torch.ones(hidden, dtype=dtype)
    t["model.norm.weight"] = torch.ones(hidden, dtype=torch.float16)
    t["lm_head.weight"] = torch.randn(50, hidden, generator=g).half()
    names = list(t)
    shards = [names[: len(names) // 2], names[len(names) // 2 :]] if sharded else None
    config = {"model_type": "llama", "hidden_size": hidden, "intermediate_size": inter, "seed": seed}
    return write_model(folder, t, shards, config)


def expected_masks(folder: Path) -> dict[str, np.ndarray]:
    """``weight != 0`` of every prunable tensor of a folder written by :func:`tiny_llama`."""
    from safetensors import safe_open

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for n in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if n.endswith("proj.weight"):
                    out[n] = (st.get_tensor(n) != 0).numpy()
    return out
