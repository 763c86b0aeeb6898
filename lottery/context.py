"""The spine of every run: a context, theta_0, the manifest, then each method's levels.

Classification, INR and speech runs differ only in their data, model, loss and
evaluation; each is a :class:`Domain` (how to build its context, write its
manifest, and which methods it has), and :func:`run_domain` drives all three
the same way: refuse a folder holding another run, build the context, write the
manifest once, draw theta_0 once, then run (or resume) each method's levels.

Every method is resumable: a level whose folder exists is skipped, and each
level draws its randomness from (seed, method, level, ticket), so a killed and
resumed run writes exactly what an uninterrupted one writes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from artifacts import run_format as rf
from lottery.config import Described, RunDescription
from lottery.data import Dataset, Partition, load_dataset, make_partition
from lottery.models import ModelConfig, build_model, prunable_shapes
from lottery.protocol import SELECTION, with_selected_epochs
from lottery.train import load_state_numpy, resolve_device, state_numpy

# ----------------------------------------------------------------------------- the context of any run


@dataclass
class RunContext:
    """What every method of a run shares; a domain's context extends it with its data and model.

    Attributes
    ----------
    run_dir : Path
    desc : Described
        The run description (its ``seed`` draws theta_0).
    """

    run_dir: Path
    desc: Any

    def architecture(self) -> nn.Module:
        """A freshly initialised network of the run (its structure; theta_0 is drawn from one)."""
        raise NotImplementedError

    def theta0(self) -> dict[str, np.ndarray]:
        """theta_0, shared by every method and ticket: drawn once from the seed, saved, reloaded on resume."""
        path = self.run_dir / rf.THETA0
        if not path.is_file():
            torch.manual_seed(self.desc.seed)
            rf.save_tensors(path, state_numpy(self.architecture()))
        return rf.load_tensors(path)


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


def manifest_header(
    desc: Described, run_dir: Path, name: str | None = None, task: str | None = None
) -> dict[str, Any]:
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


def check_run_dir(run_dir: Path, desc: Described, task: str | None) -> dict | None:
    """The manifest of the run already in ``run_dir`` (None for a new run); refuses another run.

    Raises
    ------
    ValueError
        ``run_dir`` holds a run of another description or task, or other files.
    """
    path = Path(run_dir) / rf.MANIFEST
    if path.is_file():
        old = rf.read_json(path)
        # runs of different tasks can hash alike (default descriptions)
        if old.get("run_hash") != desc.hash() or old.get("task") != task:
            raise ValueError(
                f"{run_dir} holds a different run (hash {old.get('run_hash')}, this one {desc.hash()}); "
                "choose another --out"
            )
        return old
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"{run_dir} is not empty and holds no run; choose another --out")
    return None


# ----------------------------------------------------------------------------- domains and the driver

MethodRunner = Callable[[Any, bool], None]


@dataclass(frozen=True)
class Domain:
    """What makes a kind of run: its context, manifest and methods.

    Attributes
    ----------
    task : str or None
        ``manifest["task"]`` (None for classification).
    build : callable
        ``build(desc, run_dir, **options) -> RunContext``; writes nothing but
        per-run inputs it must keep for resuming.
    manifest : callable
        ``manifest(ctx, name) -> dict``, written once before the first level.
    methods : mapping of str to callable
        The method registry: ``runner(ctx, show_progress)`` runs or resumes
        every level of one method.
    check : callable, optional
        ``check(ctx, old_manifest)`` refuses a resume the hash cannot catch.
    prepare : callable, optional
        ``prepare(ctx)`` writes per-run extras after theta_0 (probe batch, examples).
    finish : callable, optional
        ``finish(ctx)`` after every method (e.g. drop resume-only files).
    plan : callable, optional
        ``plan(desc) -> tuple of str``: the methods to run, in order (default
        ``desc.methods``; classification adds its dense reference).
    """

    task: str | None
    build: Callable[..., RunContext]
    manifest: Callable[[Any, str | None], dict]
    methods: Mapping[str, MethodRunner]
    check: Callable[[Any, dict], None] | None = None
    prepare: Callable[[Any], None] | None = None
    finish: Callable[[Any], None] | None = None
    plan: Callable[[Any], tuple[str, ...]] | None = None


def open_run(
    domain: Domain, desc: Described, run_dir: Path, name: str | None = None, **options: Any
) -> RunContext:
    """Build a run's context and write what its methods share: manifest, theta_0, ``domain.prepare``.

    Idempotent: a resumed run keeps its manifest and theta_0.

    Parameters
    ----------
    domain : Domain
    desc : Described
    run_dir : Path
    name : str, optional
        Run name in the manifest (default: the folder name).
    **options
        Passed to ``domain.build``.

    Returns
    -------
    RunContext
        The domain's context of the run.

    Raises
    ------
    ValueError
        When ``run_dir`` holds another run, or other files and no run.
    """
    old = check_run_dir(run_dir, desc, domain.task)
    ctx = domain.build(desc, run_dir, **options)
    if old is not None and domain.check is not None:
        domain.check(ctx, old)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / rf.MANIFEST).is_file():
        rf.write_manifest(run_dir, domain.manifest(ctx, name))
    ctx.theta0()
    if domain.prepare is not None:
        domain.prepare(ctx)
    return ctx


def run_domain(
    domain: Domain,
    desc: Described,
    run_dir: str | Path,
    *,
    name: str | None = None,
    show_progress: bool = True,
    threads: int | None = None,
    **options: Any,
) -> Path:
    """Run (or resume) every method of ``desc`` into ``run_dir``.

    Parameters
    ----------
    domain : Domain
    desc : Described
        Its ``methods`` name entries of ``domain.methods``, run in that order.
    run_dir : str or Path
        Created if missing; a folder holding another run is refused.
    name : str, optional
        Run name in the manifest (default: the folder name).
    show_progress : bool
    threads : int, optional
        torch intra-op threads while the run trains (restored afterwards).
    **options
        Passed to ``domain.build`` (device, data folder, corpus, ...).

    Returns
    -------
    Path
        The run folder.
    """
    run_dir = Path(run_dir)
    methods = tuple(domain.plan(desc) if domain.plan else desc.methods)  # type: ignore[attr-defined]
    unknown = [m for m in methods if m not in domain.methods]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {sorted(domain.methods)}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        ctx = open_run(domain, desc, run_dir, name, **options)
        for method in methods:
            domain.methods[method](ctx, show_progress)
        if domain.finish is not None:
            domain.finish(ctx)
    finally:
        torch.set_num_threads(before)
    return run_dir


# ----------------------------------------------------------------------------- classification


@dataclass
class Context(RunContext):
    """What every method of a classification run shares: data on the device, partition, theta_0.

    Attributes
    ----------
    x_train, y_train : tensor, shapes (N, *input_shape), (N,)
    subset_train : tensor of int64, shape (N,)
        Subset (ticket) id of every training sample.
    x_test, y_test, subset_test : the evaluation split, likewise
    test_frame : DataFrame
        One row per evaluation sample: ``sample, label, label_name, subset`` and group columns.
    shapes : dict of str to tuple of int
        Prunable weight shapes, in module order.
    requested : RunDescription or None
        The description as given, when ``desc`` differs from it by epochs chosen on
        the validation split (:mod:`lottery.protocol`); its hash names the run.
    epoch_selection : dict or None
        ``manifest["epoch_selection"]`` of such a run.
    """

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
    requested: RunDescription | None = None
    epoch_selection: dict | None = None

    @property
    def k(self) -> int:
        """Number of subsets (tickets)."""
        return len(self.partition.names)

    def architecture(self) -> nn.Module:
        """A freshly initialised classifier (CPU)."""
        return build_model(self.model_cfg)

    def new_model(self) -> nn.Module:
        """A model holding theta_0 of this run, on the device."""
        model = build_model(self.model_cfg)
        load_state_numpy(model, self.theta0())
        return model.to(self.device)


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
    data = load_dataset(
        dc.name,
        data_dir,
        val_fraction=dc.val_fraction,
        seed=desc.seed,
        limit=dc.limit,
        train_limit=dc.train_limit,
    )
    partition = make_partition(
        dc.partition, data, name=dc.partition_map, k=dc.k, seed=desc.seed, null_of=dc.null_of
    )
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
        run_dir=Path(run_dir),
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
    if desc.train.epochs_from_validation:
        # a resumed run (or a sweep's method task) reads the choice its manifest recorded;
        # a new run makes it when its manifest is written (lottery.pipeline.manifest_for)
        path = Path(run_dir) / rf.MANIFEST
        old = rf.read_json(path) if path.is_file() else {}
        if isinstance(old, dict) and isinstance(old.get(SELECTION), dict):
            apply_epoch_selection(ctx, old[SELECTION])
    return ctx


def apply_epoch_selection(ctx: Context, selection: dict) -> None:
    """Give every phase of ``ctx`` the epochs chosen on the validation split (``requested`` kept)."""
    if ctx.requested is None:
        ctx.requested = ctx.desc
    ctx.epoch_selection = selection
    ctx.desc = with_selected_epochs(ctx.requested, selection)


def group_columns(ctx: Context) -> list[str]:
    """Group columns of the evaluation frame (class, cluster, audit attributes)."""
    return [c for c in ctx.test_frame.columns if c not in ("sample", "label", "label_name", "subset")]
