"""Shared fixtures: a real smoke run (trained once per session) and a synthetic multi-ticket run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests, restored after (2 threads contend on 2 shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of the ``smoke`` preset, trained once per test session.

    Set ``RTL_SMOKE_RUN`` to an existing smoke run folder to skip the training
    (e.g. when iterating on the app tests).
    """
    given = os.environ.get("RTL_SMOKE_RUN")
    if given and (Path(given) / "manifest.json").is_file():
        return Path(given)
    out = tmp_path_factory.mktemp("runs") / "smoke"
    proc = subprocess.run(
        [sys.executable, "-m", "lottery", "train", "--preset", "smoke", "--quiet", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"smoke training failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out


def write_synthetic_run(
    run_dir: Path,
    *,
    k: int = 4,
    n_levels: int = 5,
    n_samples: int = 240,
    groups: bool = False,
    seed: int = 0,
) -> Path:
    """Write a small run with K detector tickets (``rtl``) and one shared ticket (``imp``).

    Masks are nested across levels (20 % of the survivors pruned per level);
    ticket accuracy falls with the level so collapse has something to find.
    No weights, no attention, and (unless ``groups``) no group column.
    """
    from artifacts import run_format as rf

    rng = np.random.default_rng(seed)
    shapes = {"fc1.weight": (32, 16), "fc2.weight": (16, 32), "head.weight": (k, 16)}
    names = [f"s{i}" for i in range(k)]
    classes = [f"c{i}" for i in range(k)]
    manifest = {
        "name": run_dir.name,
        "dataset": {
            "name": "synthetic",
            "classes": classes,
            "n_train": 1000,
            "n_val": 0,
            "n_test": n_samples,
        },
        "model": {"name": "mlp", "hidden": [32, 16]},
        "partition": {"kind": "class", "k": k, "names": names, "classes": [[c] for c in classes]},
        "prunable": {n: list(s) for n, s in shapes.items()},
        "groups": ["class", "sex"] if groups else [],
        "methods": {
            "imp": {
                "tickets": ["all"],
                "ticket_kind": "single",
                "routings": [],
                "default_routing": None,
                "description": "one ticket for all the data (IMP single)",
            },
            "rtl": {
                "tickets": names,
                "ticket_kind": "detector",
                "routings": ["oracle", "max_score"],
                "default_routing": "max_score",
                "description": "one detector ticket per subset on a shared network",
            },
        },
    }
    rf.write_manifest(run_dir, manifest)
    label = np.arange(n_samples) % k
    base = pd.DataFrame(
        {
            "sample": np.arange(n_samples),
            "label": label,
            "label_name": np.asarray(classes, dtype=object)[label],
            "subset": label,
        }
    )
    if groups:
        base["class"] = base["label_name"]
        base["sex"] = np.where(rng.random(n_samples) < 0.8, "M", "F").astype(object)
    for method, kt in (("imp", 1), ("rtl", k)):
        masks = {n: np.ones((kt, *s), dtype=bool) for n, s in shapes.items()}
        for level in range(n_levels):
            if level:
                for m in masks.values():
                    for t in range(kt):
                        alive = np.flatnonzero(m[t].ravel())
                        drop = rng.choice(alive, size=int(0.2 * alive.size), replace=False)
                        flat = m[t].ravel()
                        flat[drop] = False
                        m[t] = flat.reshape(m[t].shape)
            p_right = 0.95 - 0.12 * level  # accuracy falls with sparsity
            right = rng.random(n_samples) < p_right
            pred = np.where(right, label, (label + 1) % k)
            frame = base.copy()
            frame["pred"] = pred
            if method == "rtl":
                frame["pred_oracle"] = pred
                frame["pred_max_score"] = pred
            for t in range(k):
                frame[f"score_{t}"] = (pred == t).astype(np.float32) * 0.9 + 0.05
                frame[f"detect_{t}"] = pred == t
            kept = sum(int(m.sum()) for m in masks.values())
            total = sum(int(np.prod(s)) for s in shapes.values())
            union = sum(int(m.any(axis=0).sum()) for m in masks.values())
            rf.write_level(
                run_dir,
                method,
                level,
                masks={n: m.copy() for n, m in masks.items()},
                predictions=frame,
                info={
                    "sparsity": 1 - kept / (kt * total),
                    "params_union": union,
                    "params_total": kept,
                    "params_per_ticket": [kept // kt] * kt,
                },
            )
    return run_dir


@pytest.fixture(scope="session")
def synthetic_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two synthetic runs: ``multi`` (no group column) and ``groups`` (class, sex)."""
    root = tmp_path_factory.mktemp("synthetic_runs")
    write_synthetic_run(root / "multi", groups=False, seed=0)
    write_synthetic_run(root / "groups", groups=True, seed=1)
    return root
