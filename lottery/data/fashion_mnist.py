"""Fashion-MNIST (Xiao et al. 2017) from its four IDX files, found without downloading.

Search order, first complete folder wins:

1. the ``root`` folder given by the caller (the ``--data-dir`` option),
2. ``$FASHION_MNIST_DIR``,
3. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).

In each place the files may sit directly in the folder or in a torchvision-style
``FashionMNIST/raw`` subfolder, gzipped (``*.gz``) or not.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from lottery.data.errors import DataFormatError, DataNotFoundError
from lottery.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

CLASSES: list[str] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
ENV_VAR = "FASHION_MNIST_DIR"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SIZE = 28


def candidate_dirs(root: str | Path | None = None) -> list[Path]:
    """The folders searched for the IDX files, in order.

    Parameters
    ----------
    root : str or Path, optional
        A folder given by the user; searched first.

    Returns
    -------
    list of Path
        Each base folder followed by its torchvision-style ``FashionMNIST/raw`` child.
    """
    bases = [Path(root)] if root is not None else []
    if os.environ.get(ENV_VAR):
        bases.append(Path(os.environ[ENV_VAR]))
    bases.append(DEFAULT_DIR)
    return [d for base in bases for d in (base, base / "FashionMNIST" / "raw")]


def _files_in(folder: Path) -> dict[str, Path] | None:
    """Map each of the four files to its path in ``folder`` (gz preferred), or None."""
    found = {}
    for key, stem in FILES.items():
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            return None
    return found


def find_files(root: str | Path | None = None) -> dict[str, Path]:
    """Locate the four Fashion-MNIST IDX files.

    Parameters
    ----------
    root : str or Path, optional
        A folder given by the user (``--data-dir``). When given, only it and its
        ``FashionMNIST/raw`` child are searched: a wrong folder is an error rather
        than a silent fall-back to another copy. Otherwise ``$FASHION_MNIST_DIR``
        and the Debian folder are searched.

    Returns
    -------
    dict of str to Path
        Keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.

    Raises
    ------
    DataNotFoundError
        No searched folder holds all four files.
    """
    searched = candidate_dirs(root)
    if root is not None:
        searched = searched[:2]
    for folder in searched:
        files = _files_in(folder)
        if files is not None:
            return files
    listing = "\n".join(f"  - {d}" for d in searched)
    raise DataNotFoundError(
        "Fashion-MNIST not found. Looked for the four IDX files "
        f"({', '.join(s + '[.gz]' for s in FILES.values())}) in:\n{listing}\n"
        "Install it with `apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), "
        f"or point `${ENV_VAR}` or the `--data-dir` option at a folder holding the files."
    )


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check one split's images (N, 28, 28) uint8 and labels (N,) uint8."""
    images = read_idx(images_path, expected_magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataFormatError(
            f"{images_path}: images of {images.shape[1:]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataFormatError(f"{labels_path}: label {labels.max()} outside 0..{len(CLASSES) - 1}")
    return images, labels


@functools.lru_cache(maxsize=4)
def _load_cached(paths: tuple[Path, Path, Path, Path]) -> tuple[np.ndarray, ...]:
    """Decode once per set of files; the arrays are read-only so the cache stays intact."""
    train = _read_split(paths[0], paths[1])
    test = _read_split(paths[2], paths[3])
    return (*train, *test)


def load_arrays(
    root: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded Fashion-MNIST, cached in memory after the first call.

    Parameters
    ----------
    root : str or Path, optional
        A folder given by the user; see :func:`find_files` for the search order.

    Returns
    -------
    x_train : np.ndarray
        (60000, 28, 28) uint8, read-only.
    y_train : np.ndarray
        (60000,) uint8, read-only.
    x_test : np.ndarray
        (10000, 28, 28) uint8, read-only.
    y_test : np.ndarray
        (10000,) uint8, read-only.

    Raises
    ------
    DataNotFoundError
        The files are nowhere.
    DataFormatError
        A file is truncated, corrupt or inconsistent with its partner.
    """
    files = find_files(root)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    x_train, y_train, x_test, y_test = _load_cached(tuple(files[k].resolve() for k in keys))
    return x_train, y_train, x_test, y_test
