"""Partitions of the data into the K disjoint subsets that RTL draws one ticket for.

Three rules, all fixed before any ticket is drawn:

- ``class``: one subset per class;
- ``map``: a named grouping of classes, e.g. ``fashion4`` (tops, bottoms,
  footwear, bags) or ``digits4`` (digits by stroke shape);
- ``kmeans``: k-means clusters of the inputs, fitted on the training inputs
  without labels; a new input goes to its nearest centroid.

and their null control, ``random``: K random subsets with the sizes a real
partition (``null_of``) gives the same split, membership a seeded shuffle that
sees neither labels nor inputs. The same methods on it show what a shared
theta_0 and a density produce by themselves.

``fit_centroids`` / ``nearest_centroid`` serve the label-free "centroid" routing:
the mean training input of each subset, and the nearest such mean for a new input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from lottery.data.dataset import Dataset

KINDS = ("class", "map", "kmeans", "random")
RANDOM_STREAM = 7919  # mixed into the seed of a random partition's shuffle
KMEANS_N_INIT = 4
CLASS_MAPS: dict[str, dict[str, list[str]]] = {
    "fashion4": {
        "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
        "bottoms": ["Trouser", "Dress"],
        "footwear": ["Sandal", "Sneaker", "Ankle boot"],
        "bags": ["Bag"],
    },
    # scikit-learn's 8x8 digits grouped by stroke shape (a hand-chosen map, like fashion4):
    # closed round strokes, straight strokes, open curves, and stacked loops.
    "digits4": {
        "round": ["0", "6"],
        "straight": ["1", "4", "7"],
        "curves": ["2", "3", "5"],
        "loops": ["8", "9"],
    },
}


def _flat(x: np.ndarray) -> np.ndarray:
    """(N, *shape) -> (N, D) float64, the space the centroids live in."""
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def fit_centroids(x: np.ndarray, subset: np.ndarray, k: int) -> np.ndarray:
    """Mean input of each subset.

    Parameters
    ----------
    x : np.ndarray
        (N, *input_shape) training inputs.
    subset : np.ndarray
        (N,) int subset id of each input, in ``range(k)``.
    k : int
        Number of subsets.

    Returns
    -------
    np.ndarray
        (k, D) float64 centroids, D = prod(input_shape).

    Raises
    ------
    ValueError
        A subset id outside ``range(k)``, or a subset without any input.
    """
    flat = _flat(x)
    subset = np.asarray(subset)
    if subset.shape != (len(flat),):
        raise ValueError(f"subset has shape {subset.shape}, expected ({len(flat)},)")
    if subset.size and (subset.min() < 0 or subset.max() >= k):
        raise ValueError(f"subset ids must lie in range({k})")
    counts = np.bincount(subset, minlength=k)
    if (counts == 0).any():
        raise ValueError(f"subsets {np.flatnonzero(counts == 0).tolist()} have no inputs")
    sums = np.zeros((k, flat.shape[1]))
    np.add.at(sums, subset, flat)
    return sums / counts[:, None]


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) for each input.

    Parameters
    ----------
    x : np.ndarray
        (N, *input_shape) inputs.
    centroids : np.ndarray
        (k, D) centroids, D = prod(input_shape).

    Returns
    -------
    np.ndarray
        (N,) int64 in ``range(k)``; ties go to the lower index.
    """
    flat = _flat(x)
    centroids = np.asarray(centroids, dtype=np.float64)
    if flat.shape[1] != centroids.shape[1]:
        raise ValueError(f"inputs have {flat.shape[1]} features, centroids {centroids.shape[1]}")
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every c.
    distances = (centroids**2).sum(axis=1)[None, :] - 2.0 * flat @ centroids.T  # (N, k)
    return distances.argmin(axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Partition:
    """K disjoint subsets of a data set and the rule assigning a sample to one.

    Attributes
    ----------
    kind : {"class", "map", "kmeans"}
        The rule.
    names : list of str
        One name per subset; subset ids are positions in this list.
    subset_of_class : list of int or None
        For class and map partitions, the subset id of each class; None for kmeans.
    classes : list of str
        The data set's class names.
    map_name : str or None
        The class map's name for kind ``map`` (``"custom"`` for a caller's mapping).
    seed : int or None
        Random state of kmeans.
    centroids_ : np.ndarray or None
        (k, D) float64 k-means centroids on flattened inputs; None unless kmeans.
    null_of : Partition or None
        For kind ``random``: the real partition whose subset sizes it copies.
    """

    kind: str
    names: list[str]
    classes: list[str]
    subset_of_class: list[int] | None = None
    map_name: str | None = None
    seed: int | None = None
    centroids_: np.ndarray | None = None
    null_of: Partition | None = None

    @property
    def k(self) -> int:
        """Number of subsets."""
        return len(self.names)

    def assign(self, x: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
        """Subset id of each sample.

        Parameters
        ----------
        x : np.ndarray, optional
            (N, *input_shape) inputs; needed by kmeans, ignored otherwise.
        y : np.ndarray, optional
            (N,) int labels; needed by class and map, ignored by kmeans (which
            therefore works on unlabelled data).

        Returns
        -------
        np.ndarray
            (N,) int64 in ``range(self.k)``.
        """
        if self.kind == "random":
            assert self.null_of is not None and self.seed is not None
            return random_assignment(self.null_of.assign(x, y), self.k, self.seed)
        if self.kind == "kmeans":
            if x is None:
                raise ValueError("a kmeans partition assigns by input: pass x")
            assert self.centroids_ is not None
            return nearest_centroid(x, self.centroids_)
        if y is None:
            raise ValueError(f"a {self.kind} partition assigns by label: pass y")
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in range({len(self.classes)})")
        assert self.subset_of_class is not None
        return np.asarray(self.subset_of_class, dtype=np.int64)[y]

    def classes_of_subset(self) -> list[list[str]]:
        """Class names in each subset (class and map partitions only)."""
        if self.subset_of_class is None:
            raise ValueError(f"a {self.kind} partition does not group classes")
        return [
            [c for c, s in zip(self.classes, self.subset_of_class, strict=True) if s == i]
            for i in range(self.k)
        ]

    def to_json(self) -> dict[str, Any]:
        """JSON-able description for a run manifest.

        Returns
        -------
        dict
            ``kind``, ``k`` and ``names``; for class and map also ``classes``
            (the class names per subset) and for map ``map``; for kmeans ``seed``,
            ``n_init`` and ``fitted_on``.
        """
        out: dict[str, Any] = {"kind": self.kind, "k": self.k, "names": list(self.names)}
        if self.kind == "random":
            assert self.null_of is not None
            out.update(seed=self.seed, null_of=self.null_of.to_json(), sizes="those of null_of, per split")
        elif self.kind == "kmeans":
            out.update(seed=self.seed, n_init=KMEANS_N_INIT, fitted_on="x_train")
        else:
            out["classes"] = self.classes_of_subset()
            if self.kind == "map":
                out["map"] = self.map_name
        return out


def random_assignment(real: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Random subset ids with the subset sizes of ``real``: a seeded shuffle of ``real``'s counts.

    Parameters
    ----------
    real : np.ndarray
        (N,) int subset ids of the real partition, in ``range(k)``.
    k : int
        Number of subsets.
    seed : int
        Random state; the same ``(len(real), counts, seed)`` gives the same ids.

    Returns
    -------
    np.ndarray
        (N,) int64 with ``bincount(out, minlength=k) == bincount(real, minlength=k)``;
        which sample lands in which subset depends on the seed only.
    """
    counts = np.bincount(np.asarray(real, dtype=np.int64), minlength=k)
    ids = np.repeat(np.arange(k, dtype=np.int64), counts)  # (N,) sorted by subset
    rng = np.random.default_rng([RANDOM_STREAM, int(seed), len(ids)])
    return ids[rng.permutation(len(ids))]


def _check_map(mapping: Mapping[str, Sequence[str]], classes: Sequence[str]) -> list[int]:
    """Subset id per class for a class map; every class must appear exactly once."""
    seen: dict[str, int] = {}
    for i, members in enumerate(mapping.values()):
        for c in members:
            if c not in classes:
                raise ValueError(f"class map names {c!r}, which is not a class of {classes}")
            if c in seen:
                raise ValueError(f"class map puts {c!r} in more than one subset")
            seen[c] = i
    missing = [c for c in classes if c not in seen]
    if missing:
        raise ValueError(f"class map leaves out classes {missing}")
    empty = [name for name, members in mapping.items() if not members]
    if empty:
        raise ValueError(f"class map has empty subsets {empty}")
    return [seen[c] for c in classes]


def make_partition(
    kind: str,
    dataset: Dataset,
    *,
    name: str | Mapping[str, Sequence[str]] | None = None,
    k: int | None = None,
    seed: int = 0,
    null_of: str | None = None,
) -> Partition:
    """Build a partition of ``dataset`` into disjoint subsets.

    Parameters
    ----------
    kind : {"class", "map", "kmeans", "random"}
        The rule; see the module docstring.
    dataset : Dataset
        Supplies the class names, and for kmeans the training inputs.
    name : str or mapping, optional
        For ``map``: a key of ``CLASS_MAPS`` (e.g. ``"fashion4"``) or a mapping
        subset name -> class names covering every class exactly once.
    k : int, optional
        For ``kmeans``, the number of clusters (required). For class and map,
        optional and checked against the number of subsets.
    seed : int, default 0
        Random state of kmeans (with ``KMEANS_N_INIT`` restarts) and of a random partition.
    null_of : {"class", "map", "kmeans"}, optional
        For ``random``: the real partition (built with ``name``, ``k``, ``seed``)
        whose subset sizes the random one copies.

    Returns
    -------
    Partition
        With ``assign`` for any split.
    """
    classes = list(dataset.classes)
    if kind == "random":
        if null_of is None or null_of == "random":
            raise ValueError("a random partition needs null_of=, one of class, map, kmeans")
        real = make_partition(null_of, dataset, name=name, k=k, seed=seed)
        return Partition(
            kind="random",
            names=[f"random {i}" for i in range(real.k)],
            classes=classes,
            seed=seed,
            null_of=real,
        )
    if kind == "class":
        partition = Partition(
            kind="class",
            names=classes,
            classes=classes,
            subset_of_class=list(range(len(classes))),
        )
    elif kind == "map":
        if name is None:
            raise ValueError(f"a map partition needs name=, one of {sorted(CLASS_MAPS)}")
        if isinstance(name, str):
            if name not in CLASS_MAPS:
                raise ValueError(f"unknown class map {name!r}; known: {sorted(CLASS_MAPS)}")
            mapping, map_name = CLASS_MAPS[name], name
        else:
            mapping, map_name = name, "custom"
        partition = Partition(
            kind="map",
            names=list(mapping),
            classes=classes,
            subset_of_class=_check_map(mapping, classes),
            map_name=map_name,
        )
    elif kind == "kmeans":
        if k is None or k < 1:
            raise ValueError(f"a kmeans partition needs k >= 1, got {k}")
        kmeans = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed)
        # Fit in the inputs' own dtype (float32): half the time of float64 on images.
        x_train = np.asarray(dataset.x_train).reshape(len(dataset.x_train), -1)
        kmeans.fit(x_train)
        return Partition(
            kind="kmeans",
            names=[f"cluster {i}" for i in range(k)],
            classes=classes,
            seed=seed,
            centroids_=kmeans.cluster_centers_.astype(np.float64),
        )
    else:
        raise ValueError(f"unknown partition kind {kind!r}; choose from {KINDS}")
    if k is not None and k != partition.k:
        raise ValueError(f"k={k} but the {kind} partition has {partition.k} subsets")
    return partition
