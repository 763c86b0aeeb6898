"""Typed, frozen hyperparameters, grouped into one run description.

The description's canonical form (fields at their default value left out, so
adding a field with a default changes no existing hash) is hashed to name the
default run folder; ``tests/test_config.py`` pins those hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Names of the classification methods; ``lottery.methods.METHODS`` maps each to its module.
METHOD_NAMES = ("imp", "independent", "rtl", "dense")


def _choose(key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _at_least(key: str, value: Any, low: float) -> None:
    if value < low:
        raise ValueError(f"{key} must be >= {low}; got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is split into the K subsets.

    Attributes
    ----------
    name : {"fashion_mnist", "digits", "adult"}
    partition : {"class", "map", "kmeans", "random"}
        One subset per class, per cluster of a named class map, or per k-means cluster of the
        inputs; ``random``: the null control of the partition ``null_of`` (K random subsets
        of the same sizes, membership shuffled with the run seed, blind to labels and inputs).
    partition_map : str, optional
        Name of the class-to-cluster map for ``partition="map"`` (e.g. "fashion4").
    k : int, optional
        Number of k-means clusters for ``partition="kmeans"``.
    limit : int, optional
        Stratified subsample of the training set and the same fraction of the test set
        (quick runs only).
    train_limit : int, optional
        Stratified subsample of ``train_limit`` training rows (the validation split is
        carved from it); the test set stays whole. Excludes ``limit``.
    eval_limit : int, optional
        Evaluate on the first ``eval_limit`` test samples only.
    val_fraction : float
        Fraction of train carved out as a validation split.
    null_of : {"class", "map", "kmeans"}, optional
        For ``partition="random"``: the real partition whose subset sizes it copies
        (with ``partition_map`` / ``k`` as that partition needs them).
    """

    name: str = "digits"
    partition: str = "class"
    partition_map: str | None = None
    k: int | None = None
    limit: int | None = None
    train_limit: int | None = None
    eval_limit: int | None = None
    val_fraction: float = 0.1
    null_of: str | None = None

    def __post_init__(self) -> None:
        _choose("data.name", self.name, ("fashion_mnist", "digits", "adult"))
        _choose("data.partition", self.partition, ("class", "map", "kmeans", "random"))
        if self.partition == "random":
            if self.null_of is None:
                raise ValueError('data.partition="random" needs data.null_of (class, map or kmeans)')
            _choose("data.null_of", self.null_of, ("class", "map", "kmeans"))
        elif self.null_of is not None:
            raise ValueError('data.null_of is only for data.partition="random"')
        real = self.null_of if self.partition == "random" else self.partition
        if real == "map" and not self.partition_map:
            raise ValueError('data.partition="map" needs data.partition_map (e.g. fashion4)')
        if real == "kmeans" and self.k is None:
            raise ValueError('data.partition="kmeans" needs data.k (the number of clusters)')
        for name in ("k", "limit", "eval_limit"):
            if getattr(self, name) is not None:
                _at_least(f"data.{name}", getattr(self, name), 1)
        if self.train_limit is not None:
            t = self.train_limit
            if isinstance(t, bool) or not isinstance(t, int) or t < 1:
                raise ValueError(f"data.train_limit must be a positive integer; got {t!r}")
            if self.limit is not None:
                raise ValueError(
                    "data.train_limit and data.limit exclude each other (limit shrinks the test split too)"
                )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1); got {self.val_fraction!r}")


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

    def __post_init__(self) -> None:
        _choose("model.name", self.name, ("mlp", "cnn", "vit"))
        for h in self.hidden:
            _at_least("model.hidden", h, 1)
        for name in ("dim", "depth", "heads", "patch", "mlp_ratio"):
            _at_least(f"model.{name}", getattr(self, name), 1)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of one training phase.

    Attributes
    ----------
    epochs : int
        Passes per phase (ignored when ``epochs_from_validation``).
    epochs_from_validation : bool
        Choose the epochs of every phase once per run: the dense model (IMP level 0)
        trains from theta_0 for up to ``max_epochs`` with early stopping on the
        validation split (best validation loss, ``patience`` epochs without
        improvement); the best epoch count replaces ``train.epochs`` and
        ``rtl.retrain_epochs`` for every phase of every method. Recorded in the
        manifest as ``epoch_selection``.
    max_epochs, patience : int
        Cap and patience of that selection.
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs_from_validation: bool = False
    max_epochs: int = 30
    patience: int = 3

    def __post_init__(self) -> None:
        _at_least("train.epochs", self.epochs, 0)
        _at_least("train.max_epochs", self.max_epochs, 1)
        _at_least("train.patience", self.patience, 1)
        _at_least("train.batch_size", self.batch_size, 1)
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0; got {self.lr!r}")
        _choose("train.optimizer", self.optimizer, ("adam", "sgd"))
        _at_least("train.momentum", self.momentum, 0.0)
        _at_least("train.weight_decay", self.weight_decay, 0.0)


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
    until_collapse : bool
        Stop a method early once it has collapsed: its balanced accuracy at a level >= 1
        has fallen at least ``collapse_drop`` below the dense reference's (IMP level 0),
        after which ``extra_levels`` more levels run; ``levels`` stays the cap.
    extra_levels : int
        Levels run after the collapse level.
    collapse_drop : float
        Absolute drop in balanced accuracy that counts as collapse.
    """

    fraction: float = 0.2
    levels: int = 3
    scope: str = "layer"
    rewind_iter: int = 0
    until_collapse: bool = False
    extra_levels: int = 2
    collapse_drop: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"prune.fraction must be in (0, 1); got {self.fraction!r}")
        _at_least("prune.levels", self.levels, 0)
        _choose("prune.scope", self.scope, ("layer", "global"))
        _at_least("prune.rewind_iter", self.rewind_iter, 0)
        _at_least("prune.extra_levels", self.extra_levels, 0)
        if not 0.0 < self.collapse_drop < 1.0:
            raise ValueError(f"prune.collapse_drop must be in (0, 1); got {self.collapse_drop!r}")


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
    overlap_scaling : {"none", "count"}
        ``none`` (the paper): in joint retraining a weight kept by c tickets moves
        with each of their steps. ``count``: each ticket's update of a weight is
        divided by c, so a round of K steps moves it by about the mean of the
        tickets' updates rather than their sum.
    """

    ticket_kind: str = "detector"
    retrain_epochs: int = 3
    match_imp_budget: bool = False
    overlap_scaling: str = "none"

    def __post_init__(self) -> None:
        _choose("rtl.ticket_kind", self.ticket_kind, ("detector", "expert"))
        _choose("rtl.overlap_scaling", self.overlap_scaling, ("none", "count"))
        _at_least("rtl.retrain_epochs", self.retrain_epochs, 0)


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

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_NAMES]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown or list(self.methods)}; choose from {METHOD_NAMES}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods repeat a name: {self.methods}")
        _at_least("probe_size", self.probe_size, 0)

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


D = TypeVar("D", bound=Described)

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


def apply_overrides(desc: D, assignments: Sequence[str]) -> D:
    """A copy of ``desc`` with ``key=value`` assignments applied (``--set`` on the command line).

    Works for every run description (classification, INR, speech). Keys are dotted
    paths into nested sections (``train.epochs``, ``prune.levels``, ``seed``);
    values are converted to the field's declared type: int, float, bool
    (true/false, yes/no, 1/0), str, ``none`` for optional fields, tuples as
    comma-separated items (``model.hidden=300,100``; ``()`` for an empty one).
    The result is validated by the description's own checks, and its hash
    changes only where a value changes.

    Parameters
    ----------
    desc : Described
        A frozen run description (e.g. :class:`RunDescription`).
    assignments : sequence of str
        ``"a.b=value"`` strings, applied in order (a later one wins).

    Returns
    -------
    Described
        Same type as ``desc``.

    Raises
    ------
    ValueError
        One line naming the key: an unknown key (with the valid keys of its
        section), a section set as a whole, a value of the wrong type, or a
        value the description's checks refuse.
    """
    changes: dict[tuple[str, ...], Any] = {}
    for text in assignments:
        key, sep, raw = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=5")
        path = tuple(key.split("."))
        hint = _field_hint(desc, path, key)
        changes[path] = _convert(raw.strip(), hint, key)
    return _with_changes(desc, changes)


def add_overrides_argument(parser: Any, example: str = "prune.levels=20") -> None:
    """Give an argparse (sub)parser the repeatable ``--set KEY=VALUE`` option (``args.overrides``)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a run-description field, e.g. --set {example} (repeatable)",
    )


def _keys_of(obj: Any, prefix: str) -> str:
    names = []
    for f in dataclasses.fields(obj):
        sub = dataclasses.is_dataclass(getattr(obj, f.name))
        names.append(f"{prefix}{f.name}" + (".*" if sub else ""))
    return ", ".join(names)


def _field_hint(desc: Any, path: tuple[str, ...], key: str) -> Any:
    """The declared type of the field at ``path`` (walking the runtime sections)."""
    obj = desc
    for i, part in enumerate(path):
        prefix = ".".join(path[:i])
        fields = {f.name for f in dataclasses.fields(obj)}
        if part not in fields:
            where = f"section {prefix!r}" if prefix else "top-level"
            valid = _keys_of(obj, prefix + "." if prefix else "")
            raise ValueError(f"unknown key {key!r}; valid {where} keys: {valid}")
        value = getattr(obj, part)
        last = i == len(path) - 1
        if dataclasses.is_dataclass(value):
            if last:
                full = ".".join(path)
                raise ValueError(f"{key!r} is a section; set one of its keys: {_keys_of(value, full + '.')}")
            obj = value
            continue
        if not last:
            raise ValueError(f"{'.'.join(path[: i + 1])!r} is a value, not a section; cannot set {key!r}")
        return typing.get_type_hints(type(obj))[part]
    raise AssertionError("unreachable")


def _convert(raw: str, hint: Any, key: str) -> Any:
    """``raw`` as a value of type ``hint`` (one-line ValueError otherwise)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and raw.lower() in _NONE:
            return None
        if len(options) != 1:
            raise ValueError(f"{key}: cannot be set from the command line (type {hint})")
        return _convert(raw, options[0], key)
    if origin is tuple:
        text = raw
        if text[:1] in "([" and text[-1:] in ")]":
            text = text[1:-1]
        items = [t.strip() for t in text.split(",")]
        if items and items[-1] == "":
            items = items[:-1]  # "300," or "" (empty tuple)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(t, args[0], key) for t in items)
        if len(items) != len(args):
            raise ValueError(f"{key}: expected {len(args)} comma-separated values, got {raw!r}")
        return tuple(_convert(t, a, key) for t, a in zip(items, args, strict=True))
    if hint is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{key}: {raw!r} is not a boolean (use true or false)")
    if hint is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{key}: {raw!r} is not an integer") from None
    if hint is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{key}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{key}: {raw!r} is not a finite number")
        return value
    if hint is str:
        return raw
    raise ValueError(f"{key}: cannot be set from the command line (type {hint})")


def _with_changes(obj: Any, changes: dict[tuple[str, ...], Any]) -> Any:
    """``obj`` rebuilt with the changes at their paths (each section's checks run once)."""
    here: dict[str, Any] = {}
    below: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in changes.items():
        if len(path) == 1:
            here[path[0]] = value
        else:
            below.setdefault(path[0], {})[path[1:]] = value
    for name, sub in below.items():
        here[name] = _with_changes(getattr(obj, name), sub)
    try:
        return dataclasses.replace(obj, **here)
    except TypeError as e:  # a dataclass __init__ refusing a value
        raise ValueError(str(e)) from None
