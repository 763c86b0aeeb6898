"""A run from description to folder: data, partition, theta_0, then each method's levels.

Every method is resumable: a level whose folder exists is skipped, and each
level draws its randomness from (seed, method, level, ticket), so a killed and
resumed run writes exactly what an uninterrupted one writes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from artifacts import run_format as rf
from lottery.config import RunDescription
from lottery.data import Dataset, Partition, load_dataset, make_partition
from lottery.models import ModelConfig, build_model, prunable_shapes
from lottery.train import load_state_numpy, resolve_device, state_numpy


@dataclass
class Context:
    """What every method of a run shares: data on the device, partition, theta_0.

    Attributes
    ----------
    x_train, y_train : tensor, shapes (N, *input_shape), (N,)
    subset_train : tensor of int64, shape (N,)
        Subset (ticket) id of every training sample.
    x_test, y_test, subset_test : the evaluation split, likewise
    """

    run_dir: Path
    desc: RunDescription
    data: Dataset
    partition: Partition
    model_cfg: ModelConfig
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    subset_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    subset_test: torch.Tensor
    test_frame: pd.DataFrame
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of subsets (tickets)."""
        return len(self.partition.names)

    def new_model(self) -> nn.Module:
        """A model holding theta_0 of this run (drawn once, saved, reloaded on resume)."""
        model = build_model(self.model_cfg)
        load_state_numpy(model, self.theta0())
        return model.to(self.device)

    def theta0(self) -> dict[str, np.ndarray]:
        """theta_0, shared by every method and ticket of the run."""
        path = self.run_dir / rf.THETA0
        if not path.is_file():
            torch.manual_seed(self.desc.seed)
            rf.save_tensors(path, state_numpy(build_model(self.model_cfg)))
        return rf.load_tensors(path)


def model_config(desc: RunDescription, data: Dataset) -> ModelConfig:
    """The model config a description gives for a dataset (K-way head)."""
    m = desc.model
    return ModelConfig(
        name=m.name,
        input_shape=tuple(data.input_shape),
        n_out=len(data.classes),
        hidden=m.hidden,
        dim=m.dim,
        depth=m.depth,
        heads=m.heads,
        patch=m.patch,
        mlp_ratio=m.mlp_ratio,
    )


def build_context(
    desc: RunDescription, run_dir: Path, device: str = "auto", data_dir: str | None = None
) -> Context:
    """Load data and partition, put arrays on the device, build the evaluation frame."""
    dev = resolve_device(device)
    dc = desc.data
    data = load_dataset(dc.name, data_dir, val_fraction=dc.val_fraction, seed=desc.seed, limit=dc.limit)
    partition = make_partition(dc.partition, data, name=dc.partition_map, k=dc.k, seed=desc.seed)
    x_test, y_test = data.x_test, data.y_test
    attrs = {k: v for k, v in data.attrs_test.items()}
    if dc.eval_limit is not None:
        x_test, y_test = x_test[: dc.eval_limit], y_test[: dc.eval_limit]
        attrs = {k: v[: dc.eval_limit] for k, v in attrs.items()}
    sub_train = partition.assign(data.x_train, data.y_train)
    sub_test = partition.assign(x_test, y_test)
    frame = pd.DataFrame(
        {
            "sample": np.arange(len(y_test)),
            "label": y_test.astype(np.int64),
            "label_name": np.asarray(data.classes, dtype=object)[y_test],
            "subset": sub_test.astype(np.int64),
            "class": np.asarray(data.classes, dtype=object)[y_test],
        }
    )
    if dc.partition != "class":
        frame["cluster"] = np.asarray(partition.names, dtype=object)[sub_test]
    for name, values in attrs.items():
        frame[name] = np.asarray(values, dtype=object)
    mcfg = model_config(desc, data)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(dev)

    ctx = Context(
        run_dir=run_dir,
        desc=desc,
        data=data,
        partition=partition,
        model_cfg=mcfg,
        device=dev,
        x_train=t(data.x_train),
        y_train=t(data.y_train.astype(np.int64)),
        subset_train=t(sub_train.astype(np.int64)),
        x_test=t(x_test),
        y_test=t(y_test.astype(np.int64)),
        subset_test=t(sub_test.astype(np.int64)),
        test_frame=frame,
    )
    ctx.shapes = prunable_shapes(build_model(mcfg))
    return ctx


def group_columns(ctx: Context) -> list[str]:
    """Group columns of the evaluation frame (class, cluster, audit attributes)."""
    return [c for c in ctx.test_frame.columns if c not in ("sample", "label", "label_name", "subset")]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def manifest_header(desc, run_dir: Path, name: str | None = None, task: str | None = None) -> dict:
    """The fields every run's manifest starts with: name, task, hash, description, commit, time.

    Parameters
    ----------
    desc : lottery.config.Described
        The run description (classification, INR or speech).
    run_dir : Path
    name : str, optional
        Run name (default: the folder name).
    task : str, optional
        Set for runs that are not classification (e.g. ``"inr"``); resumes check it.
    """
    header = {
        "name": name or Path(run_dir).name,
        "run_hash": desc.hash(),
        "description": desc.to_dict(),
        "git_commit": _git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if task is not None:
        header["task"] = task
    return header


# A method: its manifest entry and a runner that writes its levels.
MethodEntry = Callable[[Context], dict]
MethodRunner = Callable[[Context, bool], None]
METHODS: dict[str, tuple[MethodEntry, MethodRunner]] = {}


def register_method(name: str, entry: MethodEntry, runner: MethodRunner) -> None:
    """Make a method available to run descriptions."""
    METHODS[name] = (entry, runner)


def manifest_for(ctx: Context, name: str | None = None) -> dict:
    """The manifest of a run (written before the first level)."""
    d = ctx.data
    return {
        **manifest_header(ctx.desc, ctx.run_dir, name),
        "dataset": {
            "name": d.name,
            "classes": list(d.classes),
            "input_shape": list(d.input_shape),
            "n_train": int(len(d.y_train)),
            "n_val": int(len(d.y_val)),
            "n_test": int(len(ctx.test_frame)),
        },
        "model": {**ctx.model_cfg.__dict__, "input_shape": list(ctx.model_cfg.input_shape)},
        "partition": ctx.partition.to_json(),
        "prunable": {n: list(s) for n, s in ctx.shapes.items()},
        "layers": list(ctx.shapes),  # prunable layers in module order (input to output)
        "groups": group_columns(ctx),
        "methods": {m: METHODS[m][0](ctx) for m in ctx.desc.methods},
    }


def train_run(
    desc: RunDescription,
    run_dir: str | Path,
    *,
    device: str = "auto",
    data_dir: str | None = None,
    name: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Run (or resume) every method of ``desc`` into ``run_dir``."""
    _ensure_methods_registered()
    unknown = [m for m in desc.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {sorted(METHODS)}")
    run_dir = Path(run_dir)
    manifest_path = run_dir / rf.MANIFEST
    if manifest_path.is_file():
        old = rf.read_json(manifest_path)
        # INR and speech runs carry a "task"; their default descriptions can hash alike
        if old.get("run_hash") != desc.hash() or old.get("task") is not None:
            raise ValueError(
                f"{run_dir} holds a different run (hash {old.get('run_hash')}, this one {desc.hash()}); "
                "choose another --out"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"{run_dir} is not empty and holds no run; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = build_context(desc, run_dir, device, data_dir)
    if not manifest_path.is_file():
        rf.write_manifest(run_dir, manifest_for(ctx, name))
    ctx.theta0()
    if desc.probe_size:
        from lottery.probe import write_probe

        write_probe(ctx)
    for method in desc.methods:
        rf.clean_partial_levels(run_dir, method)
        METHODS[method][1](ctx, show_progress)
    return run_dir


def _ensure_methods_registered() -> None:
    # importing the method modules registers them
    import lottery.imp  # noqa: F401

    try:
        import lottery.rtl  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "lottery.rtl":
            raise
