"""Run groups for the across-seed tests: a shrunk real smoke sweep, synthetic groups with a null control."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from artifacts import run_format as rf

SMOKE_OVERRIDES = ["prune.levels=2", "train.epochs=1", "rtl.retrain_epochs=1"]


def build_smoke_group(out: Path, seeds=(0, 1), overrides=SMOKE_OVERRIDES) -> Path:
    """Train a shrunk ``smoke`` sweep (digits, 3 levels, 1 epoch) into a run group, without Ray (~8 s)."""
    from lottery.config import apply_overrides
    from lottery.pipeline import train_run
    from lottery.presets import get_preset
    from lottery.sweep import seed_run_name, write_group

    desc = apply_overrides(get_preset("smoke"), list(overrides))
    write_group(out, desc, list(seeds), preset="smoke", overrides=list(overrides))
    for s in seeds:
        train_run(replace(desc, seed=s), out / seed_run_name(s), device="cpu", show_progress=False)
    return out


SHAPES = {"fc1.weight": (48, 32), "fc2.weight": (16, 48)}


def description(partition: str = "class", fraction: float = 0.3) -> dict:
    """A run description (as manifests carry it, seed left out) of the synthetic runs."""
    return {
        "data": {"name": "synthetic", "partition": partition, "partition_map": None, "k": None},
        "model": {"name": "mlp", "hidden": [48, 16]},
        "prune": {"fraction": fraction, "levels": 3},
        "methods": ["rtl"],
    }


def write_mask_run(
    run_dir: Path,
    *,
    seed: int,
    shared: bool,
    k: int = 4,
    n_levels: int = 4,
    fraction: float = 0.3,
    partition: str = "class",
) -> Path:
    """A run whose ``rtl`` tickets are pruned by a score: shared structure, or independent random masks.

    With ``shared`` every ticket prunes by one common score plus a little noise of
    its own (the tickets keep mostly the same weights, J* well above 0); without,
    each ticket prunes by noise of its own (random masks of the same density, J* near 0).
    Each level removes ``fraction`` of each ticket's survivors in every layer, so
    the sparsity of a level does not depend on the seed.
    """
    rng = np.random.default_rng(seed)
    names = [f"s{i}" for i in range(k)]
    desc = description(partition, fraction)
    rf.write_manifest(
        run_dir,
        {
            "name": run_dir.name,
            "description": {**desc, "seed": seed},
            "dataset": {"name": "synthetic", "classes": names, "n_train": 100, "n_val": 0, "n_test": 8},
            "partition": {"kind": partition, "k": k, "names": names, "classes": [[n] for n in names]},
            "prunable": {n: list(s) for n, s in SHAPES.items()},
            "groups": [],
            "methods": {
                "rtl": {"tickets": names, "ticket_kind": "expert", "routings": [], "default_routing": None}
            },
        },
    )
    common = {n: rng.random(s) for n, s in SHAPES.items()}
    score = {
        n: (common[n][None] if shared else 0) + (0.15 if shared else 1.0) * rng.random((k, *s))
        for n, s in SHAPES.items()
    }
    masks = {n: np.ones((k, *s), dtype=bool) for n, s in SHAPES.items()}
    frame = pd.DataFrame({"sample": np.arange(8), "label": np.arange(8) % k, "subset": np.arange(8) % k})
    frame["pred"] = frame["label"]
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    for level in range(n_levels):
        if level:
            for n, m in masks.items():
                for t in range(k):
                    flat, sc = m[t].ravel(), score[n][t].ravel()
                    alive = np.flatnonzero(flat)
                    drop = alive[np.argsort(sc[alive])[: int(round(fraction * alive.size))]]
                    flat[drop] = False
                    m[t] = flat.reshape(m[t].shape)
        kept = sum(int(m.sum()) for m in masks.values())
        rf.write_level(
            run_dir,
            "rtl",
            level,
            masks={n: m.copy() for n, m in masks.items()},
            predictions=frame,
            info={"sparsity": 1 - kept / (k * total), "params_total": kept},
        )
    return run_dir


def write_mask_group(out: Path, seeds=(0, 1, 2), *, shared: bool, partition: str = "class", **kw) -> Path:
    """A run group of :func:`write_mask_run` runs, one per seed."""
    out.mkdir(parents=True, exist_ok=True)
    rf.write_group_manifest(
        out,
        {
            "name": out.name,
            "preset": "synthetic",
            "seeds": list(seeds),
            "runs": [f"seed-{s}" for s in seeds],
            "methods": ["rtl"],
            "description": description(partition, kw.get("fraction", 0.3)),
        },
    )
    for s in seeds:
        write_mask_run(out / f"seed-{s}", seed=s, shared=shared, partition=partition, **kw)
    return out
