"""The data layer: data sets from local files only, seeded splits, RTL partitions."""

from lottery.data.dataset import NAMES, Dataset, load_dataset
from lottery.data.errors import DataFormatError, DataNotFoundError
from lottery.data.idx import read_idx
from lottery.data.partition import (
    CLASS_MAPS,
    KINDS,
    Partition,
    fit_centroids,
    make_partition,
    nearest_centroid,
)

__all__ = [
    "CLASS_MAPS",
    "KINDS",
    "NAMES",
    "DataFormatError",
    "DataNotFoundError",
    "Dataset",
    "Partition",
    "fit_centroids",
    "load_dataset",
    "make_partition",
    "nearest_centroid",
    "read_idx",
]
