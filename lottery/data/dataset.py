"""One container for every data set, and the seeded splits that fill it.

Splits: the test split is the data set's own held-out test set (for ``digits``,
which has none, a fixed stratified 25 % carved once with seed 0). The validation
split is carved from the training set, stratified by class and seeded. ``limit``
first takes a stratified subsample of the training set (and the same fraction of
the test set) for quick runs; ``train_limit`` takes a stratified subsample of the
training set only and leaves the test set whole (cheaper training, evaluated on
every held-out sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lottery.data import adult, fashion_mnist

NAMES = ("fashion_mnist", "digits", "adult")
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set split into train / validation / test.

    Attributes
    ----------
    name : str
        One of ``NAMES``.
    classes : list of str
        Class names; label ``i`` means ``classes[i]``.
    input_shape : tuple of int
        Shape of one input: (1, 28, 28), (1, 8, 8) or (F,).
    x_train, x_val, x_test : np.ndarray
        Inputs, (N, *input_shape) float32; images in [0, 1].
    y_train, y_val, y_test : np.ndarray
        Labels, (N,) int64 in ``range(len(classes))``.
    attrs_train, attrs_val, attrs_test : dict of str to np.ndarray
        Audit attributes, each (N,) of str and never a model input
        (``sex`` and ``race`` for Adult; empty for image sets).
    index_train, index_val, index_test : np.ndarray
        (N,) int64 row of each sample in the source's own training file (train and
        val) or test file (test), so a run can record exactly what it used.
    feature_names : list of str
        Names of the F features of a tabular set; empty for images.
    """

    name: str
    classes: list[str]
    input_shape: tuple[int, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    attrs_train: dict[str, np.ndarray] = field(default_factory=dict)
    attrs_val: dict[str, np.ndarray] = field(default_factory=dict)
    attrs_test: dict[str, np.ndarray] = field(default_factory=dict)
    index_train: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    index_val: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    index_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    feature_names: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def summary(self) -> dict[str, Any]:
        """JSON-able description for a run manifest: name, classes, shape, split sizes."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "input_shape": list(self.input_shape),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "attributes": sorted(self.attrs_train),
        }


def stratified_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a stratified random subset.

    Parameters
    ----------
    y : np.ndarray
        (N,) labels.
    size : int
        Subset size; ``size >= N`` returns every index.
    seed : int
        Random state.

    Returns
    -------
    np.ndarray
        (min(size, N),) int64 indices into ``y``, sorted ascending.
    """
    n = len(y)
    if size >= n:
        return np.arange(n, dtype=np.int64)
    n_classes = len(np.unique(y))
    if size < n_classes:
        raise ValueError(f"a stratified subset of {size} cannot hold all {n_classes} classes")
    keep, _ = train_test_split(np.arange(n), train_size=size, stratify=y, random_state=seed)
    return np.sort(keep).astype(np.int64)


def split_indices(
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    val_fraction: float,
    seed: int,
    limit: int | None,
    train_limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the source's train file for train and val, and of its test file for test.

    Parameters
    ----------
    y_train : np.ndarray
        (N_train,) labels of the source's training set.
    y_test : np.ndarray
        (N_test,) labels of the source's test set.
    val_fraction : float
        Share of the (limited) training rows held out for validation, in [0, 1).
    seed : int
        Random state of the subsample and of the validation split.
    limit : int, optional
        Keep a stratified ``limit`` training rows and the same fraction of test rows.
    train_limit : int, optional
        Keep a stratified ``train_limit`` training rows (validation included); every
        test row stays. Excludes ``limit``.

    Returns
    -------
    train, val, test : np.ndarray
        int64 indices, each sorted; train and val are disjoint.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if limit is not None and train_limit is not None:
        raise ValueError("limit and train_limit exclude each other (limit shrinks the test set too)")
    train = np.arange(len(y_train), dtype=np.int64)
    test = np.arange(len(y_test), dtype=np.int64)
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        train = stratified_subset(y_train, limit, seed)
        test_size = round(len(y_test) * min(1.0, limit / len(y_train)))
        test = stratified_subset(y_test, max(test_size, len(np.unique(y_test))), seed)
    if train_limit is not None:
        if train_limit <= 0:
            raise ValueError(f"train_limit must be positive, got {train_limit}")
        train = stratified_subset(y_train, train_limit, seed)
    if val_fraction == 0.0:
        return train, np.zeros(0, np.int64), test
    train, val = train_test_split(train, test_size=val_fraction, stratify=y_train[train], random_state=seed)
    return np.sort(train), np.sort(val), test


def _image_dataset(
    name: str,
    classes: list[str],
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    scale: float,
    indices: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Dataset:
    """Assemble an image Dataset from (N, H, W) pixel arrays scaled by ``1 / scale``."""
    x_source_train, y_source_train, x_source_test, y_source_test = arrays
    i_train, i_val, i_test = indices
    height, width = x_source_train.shape[1:]

    def images(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # (n, H, W) -> (n, 1, H, W): one channel, as torch convolutions expect.
        return (x[rows].astype(np.float32) / np.float32(scale))[:, None, :, :]

    def labels(y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return y[rows].astype(np.int64)

    return Dataset(
        name=name,
        classes=list(classes),
        input_shape=(1, height, width),
        x_train=images(x_source_train, i_train),
        y_train=labels(y_source_train, i_train),
        x_val=images(x_source_train, i_val),
        y_val=labels(y_source_train, i_val),
        x_test=images(x_source_test, i_test),
        y_test=labels(y_source_test, i_test),
        index_train=i_train,
        index_val=i_val,
        index_test=i_test,
    )


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, split once into a fixed stratified train/test.

    Returns
    -------
    x_train, y_train, x_test, y_test : np.ndarray
        Images (N, 8, 8) float64 with values 0..16 and labels (N,) int64;
        1347 training and 450 test images.
    """
    bunch = load_digits()
    x, y = bunch.images, bunch.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(y)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=y,
        random_state=DIGITS_SPLIT_SEED,
    )
    train, test = np.sort(train), np.sort(test)
    return x[train], y[train], x[test], y[test]


def _adult_dataset(
    root: str | Path | None, val_fraction: float, seed: int, limit: int | None, train_limit: int | None
) -> Dataset:
    """Assemble Adult; its encoder is fitted after the split, on training rows only."""
    source_train, source_test = adult.load_tables(root)
    i_train, i_val, i_test = split_indices(
        adult.labels(source_train),
        adult.labels(source_test),
        val_fraction=val_fraction,
        seed=seed,
        limit=limit,
        train_limit=train_limit,
    )
    train = source_train.iloc[i_train]
    val = source_train.iloc[i_val]
    test = source_test.iloc[i_test]
    # The encoder sees the training rows only: validation and test stay unseen.
    encoder = adult.fit_encoder(train)
    feature_names = [str(n) for n in encoder.get_feature_names_out()]
    return Dataset(
        name="adult",
        classes=list(adult.CLASSES),
        input_shape=(len(feature_names),),
        x_train=adult.encode(encoder, train),
        y_train=adult.labels(train),
        x_val=adult.encode(encoder, val),
        y_val=adult.labels(val),
        x_test=adult.encode(encoder, test),
        y_test=adult.labels(test),
        attrs_train=adult.audit_attributes(train),
        attrs_val=adult.audit_attributes(val),
        attrs_test=adult.audit_attributes(test),
        index_train=i_train,
        index_val=i_val,
        index_test=i_test,
        feature_names=feature_names,
    )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    train_limit: int | None = None,
) -> Dataset:
    """Load a data set, split into train / validation / test.

    Parameters
    ----------
    name : {"fashion_mnist", "digits", "adult"}
        Which data set; ``-`` and case are ignored ("Fashion-MNIST" works).
    root : str or Path, optional
        A folder searched first for the files (the ``--data-dir`` option); ignored
        by ``digits``, which ships with scikit-learn.
    val_fraction : float, default 0.1
        Share of the training set held out for validation (stratified, seeded).
    seed : int, default 0
        Random state of the validation split and of ``limit``'s or ``train_limit``'s subsample.
    limit : int, optional
        Use a stratified subsample of ``limit`` training rows (validation included)
        and the same fraction of the test set.
    train_limit : int, optional
        Use a stratified subsample of ``train_limit`` training rows (validation
        included) and the whole test set. Excludes ``limit``.

    Returns
    -------
    Dataset
        fashion_mnist: (N, 1, 28, 28) float32 in [0, 1], 10 classes, 60000 train
        rows before the validation split, 10000 test.
        digits: (N, 1, 8, 8) float32 in [0, 1], 10 classes, 1347 / 450.
        adult: (N, F) float32 features, classes ``["<=50K", ">50K"]``, audit
        attributes ``sex`` and ``race``, 32561 / 16281.

    Raises
    ------
    DataNotFoundError
        The files are in none of the searched places (the message says how to
        install them).
    DataFormatError
        A file is truncated or corrupt.
    """
    key = name.lower().replace("-", "_")
    if key == "fashion_mnist":
        arrays = fashion_mnist.load_arrays(root)
        scale, classes = 255.0, fashion_mnist.CLASSES
    elif key == "digits":
        arrays = digits_arrays()
        scale, classes = 16.0, [str(d) for d in range(10)]
    elif key == "adult":
        return _adult_dataset(root, val_fraction, seed, limit, train_limit)
    else:
        raise ValueError(f"unknown data set {name!r}; choose from {NAMES}")
    indices = split_indices(
        arrays[1], arrays[3], val_fraction=val_fraction, seed=seed, limit=limit, train_limit=train_limit
    )
    return _image_dataset(key, classes, arrays, scale, indices)
