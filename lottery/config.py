"""Typed, frozen hyperparameters, grouped into one run description.

The description's canonical form (fields at their default value left out, so
adding a field with a default changes no existing hash) is hashed to name the
default run folder; ``tests/test_config.py`` pins those hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is split into the K subsets.

    Attributes
    ----------
    name : {"fashion_mnist", "digits", "adult"}
    partition : {"class", "map", "kmeans"}
        One subset per class, per cluster of a named class map, or per k-means cluster of the inputs.
    partition_map : str, optional
        Name of the class-to-cluster map for ``partition="map"`` (e.g. "fashion4").
    k : int, optional
        Number of k-means clusters for ``partition="kmeans"``.
    limit : int, optional
        Stratified subsample of the training set (quick runs only).
    eval_limit : int, optional
        Evaluate on the first ``eval_limit`` test samples only.
    val_fraction : float
        Fraction of train carved out as a validation split.
    """

    name: str = "digits"
    partition: str = "class"
    partition_map: str | None = None
    k: int | None = None
    limit: int | None = None
    eval_limit: int | None = None
    val_fraction: float = 0.1


@dataclass(frozen=True)
class ModelSpec:
    """Model family and size; input shape and outputs come from the data."""

    name: str = "mlp"
    hidden: tuple[int, ...] = (300, 100)
    dim: int = 64
    depth: int = 3
    heads: int = 4
    patch: int = 7
    mlp_ratio: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one training phase."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass(frozen=True)
class PruneConfig:
    """Iterative magnitude pruning schedule.

    Attributes
    ----------
    fraction : float
        Fraction p of the surviving weights removed per level.
    levels : int
        Number of pruning rounds after the dense level 0; sparsity after L levels is 1 - (1-p)^L.
    scope : {"layer", "global"}
    rewind_iter : int
        0 rewinds to theta_0; k > 0 rewinds to the weights after k training steps (late rewinding).
    """

    fraction: float = 0.2
    levels: int = 3
    scope: str = "layer"
    rewind_iter: int = 0


@dataclass(frozen=True)
class RTLConfig:
    """Adaptive tickets: kind of ticket and the joint retraining phase.

    Attributes
    ----------
    ticket_kind : {"detector", "expert"}
        ``detector``: ticket k is a one-vs-rest detector of subset k trained on
        class-balanced batches; ``expert``: ticket k is a classifier trained on d_k.
    retrain_epochs : int
        Epochs of joint retraining (counted on the largest subset).
    match_imp_budget : bool
        When true, ``imp`` trains each level for ``ceil(P / N)`` epochs, P being
        RTL's sample presentations per level (ticket extraction plus joint
        retraining, :func:`lottery.tickets.rtl_budget`) and N the training-set
        size, instead of ``train.epochs``.
    """

    ticket_kind: str = "detector"
    retrain_epochs: int = 3
    match_imp_budget: bool = False


class Described:
    """Canonical form, hash and round trip of a frozen dataclass run description.

    Shared by every kind of run (classification, INR, speech). The canonical form
    drops fields at their default value, so adding a defaulted field changes no hash.
    """

    def to_dict(self) -> dict[str, Any]:
        """Full description as plain JSON types."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    def canonical(self) -> dict[str, Any]:
        """Description with default-valued fields dropped (stable under new defaulted fields)."""
        return _non_default(self)

    def hash(self) -> str:
        """Short hash of the canonical form."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict` for a flat description (unknown keys are an error)."""
        return _from_fields(cls, d)


@dataclass(frozen=True)
class RunDescription(Described):
    """Everything that determines a run; its hash names the default run folder."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    rtl: RTLConfig = field(default_factory=RTLConfig)
    methods: tuple[str, ...] = ("imp",)
    seed: int = 0
    keep_weights: bool = True
    probe_size: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunDescription:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        sub = {
            "data": DataConfig,
            "model": ModelSpec,
            "train": TrainConfig,
            "prune": PruneConfig,
            "rtl": RTLConfig,
        }
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            if k in sub:
                kwargs[k] = _from_fields(sub[k], v)
            elif k == "methods":
                kwargs[k] = tuple(v)
            else:
                kwargs[k] = v
        return _from_fields(cls, kwargs)


def _from_fields(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**fixed)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _non_default(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(value):
            sub = _non_default(value)
            if sub:
                out[f.name] = sub
        elif value != default:
            out[f.name] = _plain(value)
    return out


def replace(desc: RunDescription, **changes: Any) -> RunDescription:
    """A copy of ``desc`` with top-level fields or dotted sub-fields (``"train.epochs"``) changed."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        if "." in key:
            group, name = key.split(".", 1)
            nested.setdefault(group, {})[name] = value
        else:
            top[key] = value
    for group, vals in nested.items():
        top[group] = dataclasses.replace(getattr(desc, group), **vals)
    return dataclasses.replace(desc, **top)
