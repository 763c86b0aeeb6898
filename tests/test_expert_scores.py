"""Expert and single-ticket scores: subset mass on class-defined partitions, confidence elsewhere.

Oracles are recomputed from the stored weights and masks with a plain forward pass and a
softmax summed class by class, independent of :mod:`lottery.routing`.
"""

import numpy as np
import pytest
import torch

from artifacts import run_format as rf
from artifacts import schema
from lottery.config import DataConfig, ModelSpec, PruneConfig, RTLConfig, RunDescription, TrainConfig
from lottery.data import CLASS_MAPS, load_dataset
from lottery.models import ModelConfig, build_model
from lottery.pipeline import train_run
from lottery.routing import ROUTINGS, expert_columns, score_definition, subset_mass
from lottery.train import load_state_numpy

# digits grouped by hand into 3 subsets of unequal sizes (a class map of this test only)
DIGITS3 = {"low": ["0", "1", "2"], "mid": ["3", "4", "5", "6"], "high": ["7", "8", "9"]}
SUBSET_OF_DIGIT = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])


def tiny(data: DataConfig) -> RunDescription:
    return RunDescription(
        data=data,
        model=ModelSpec(name="mlp", hidden=(24,)),
        train=TrainConfig(epochs=2, batch_size=64, lr=1e-2),
        prune=PruneConfig(fraction=0.3, levels=1),
        rtl=RTLConfig(ticket_kind="expert", retrain_epochs=1),
        methods=("rtl", "imp"),
    )


# one torch thread for the module (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_map():
    CLASS_MAPS["digits3-test"] = DIGITS3
    yield "digits3-test"
    del CLASS_MAPS["digits3-test"]


def _softmax_of_ticket(run: rf.Run, method: str, level: int, k: int, x: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities of ticket k: the stored weights zeroed outside its mask."""
    model_json = dict(run.manifest["model"])
    model_json["input_shape"] = tuple(model_json["input_shape"])
    model_json["hidden"] = tuple(model_json["hidden"])
    model = build_model(ModelConfig(**model_json))
    w, masks = run.weights(method, level), run.masks(method, level)
    state = {n: (v * masks[n][k] if n in masks else v) for n, v in w.items()}
    load_state_numpy(model, state)
    with torch.no_grad():
        return torch.softmax(model(torch.as_tensor(x)).double(), dim=-1).numpy()


def _mass(probs: np.ndarray, classes: list[int]) -> np.ndarray:
    out = np.zeros(len(probs))
    for c in classes:
        out += probs[:, c]
    return out


@pytest.fixture(scope="module")
def map_run(tmp_path_factory, digits_map):
    out = tmp_path_factory.mktemp("scores") / "map"
    train_run(
        tiny(DataConfig(name="digits", partition="map", partition_map=digits_map)),
        out,
        device="cpu",
        show_progress=False,
    )
    return rf.load_run(out)


@pytest.fixture(scope="module")
def kmeans_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scores") / "kmeans"
    train_run(
        tiny(DataConfig(name="digits", partition="kmeans", k=3)), out, device="cpu", show_progress=False
    )
    return rf.load_run(out)


def test_expert_scores_on_a_map_partition_are_the_subset_mass(map_run):
    x_test = load_dataset("digits").x_test
    assert map_run.manifest["methods"]["rtl"]["score"] == "subset_mass"
    for level in map_run.levels("rtl"):
        frame = map_run.predictions("rtl", level)
        confidences = []
        for k in range(3):
            probs = _softmax_of_ticket(map_run, "rtl", level, k, x_test)
            mine = [c for c in range(10) if SUBSET_OF_DIGIT[c] == k]
            np.testing.assert_allclose(frame[f"score_{k}"], _mass(probs, mine), atol=1.5e-4)
            confidences.append(probs.max(1))
        conf = np.stack(confidences, axis=1)  # (N, K)
        # routing is unchanged: max-score routing follows the confidences, not the masses
        assert np.mean(frame["route_max_score"].to_numpy() == conf.argmax(1)) > 0.99
        np.testing.assert_allclose(frame["confidence"], conf.max(1), atol=1.5e-4)
        np.testing.assert_array_equal(frame["route_oracle"], frame["subset"])


def test_single_ticket_on_a_map_partition_stores_the_oracle_prediction(map_run):
    x_test = load_dataset("digits").x_test
    entry = map_run.manifest["methods"]["imp"]
    assert entry["score"] == "subset_mass" and entry["routings"] == ["oracle"]
    for level in map_run.levels("imp"):
        frame = map_run.predictions("imp", level)
        probs = _softmax_of_ticket(map_run, "imp", level, 0, x_test)
        subset = frame["subset"].to_numpy()
        expected = []
        for i, s in enumerate(subset):  # argmax among the true subset's classes, sample by sample
            mine = [c for c in range(10) if SUBSET_OF_DIGIT[c] == s]
            expected.append(mine[int(np.argmax(probs[i, mine]))])
        assert np.mean(frame["pred_oracle"].to_numpy() == np.array(expected)) > 0.99
        assert np.all(SUBSET_OF_DIGIT[frame["pred_oracle"].to_numpy()] == subset)
        for k in range(3):
            mine = [c for c in range(10) if SUBSET_OF_DIGIT[c] == k]
            np.testing.assert_allclose(frame[f"score_{k}"], _mass(probs, mine), atol=1.5e-4)


def test_kmeans_expert_scores_stay_the_confidence(kmeans_run):
    x_test = load_dataset("digits").x_test
    assert kmeans_run.manifest["methods"]["rtl"]["score"] == "confidence"
    assert "score" not in kmeans_run.manifest["methods"]["imp"]  # no scores over input-space clusters
    assert kmeans_run.manifest["methods"]["imp"]["routings"] == []
    level = kmeans_run.levels("rtl")[-1]
    frame = kmeans_run.predictions("rtl", level)
    assert "confidence" not in frame and set(f"pred_{r}" for r in ROUTINGS) <= set(frame)
    for k in range(3):
        probs = _softmax_of_ticket(kmeans_run, "rtl", level, k, x_test)
        np.testing.assert_allclose(frame[f"score_{k}"], probs.max(1), atol=1.5e-4)
    imp = kmeans_run.predictions("imp", level)
    assert "pred_oracle" not in imp and not any(c.startswith("score_") for c in imp)


def test_expert_columns_with_classes_change_only_the_scores():
    rng = np.random.default_rng(4)
    n, k, c = 200, 3, 10
    probs = rng.dirichlet(np.ones(c), size=(k, n))  # (K, N, C)
    subset, centroid = rng.integers(0, k, n), rng.integers(0, k, n)
    plain = expert_columns(probs, subset, centroid)
    grouped = expert_columns(probs, subset, centroid, SUBSET_OF_DIGIT.tolist())
    for name, values in plain.items():
        if not name.startswith("score_"):
            np.testing.assert_array_equal(grouped[name], values)
    for t in range(k):
        mine = [cl for cl in range(c) if SUBSET_OF_DIGIT[cl] == t]
        np.testing.assert_allclose(grouped[f"score_{t}"], _mass(probs[t], mine), atol=5e-5)
    np.testing.assert_allclose(grouped["confidence"], probs.max(2).max(0), atol=5e-5)
    assert "confidence" not in plain


def test_subset_mass_and_score_definition():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25]])
    np.testing.assert_allclose(subset_mass(probs, [1, 0, 1, 2]), [[0.2, 0.4, 0.4], [0.0, 0.75, 0.25]])
    with pytest.raises(ValueError, match="classes"):
        subset_mass(probs, [0, 1])
    assert score_definition("detector", [0, 1]) == "sigmoid"
    assert score_definition("expert", [0, 1]) == "subset_mass"
    assert score_definition("expert", None) == "confidence"
    assert score_definition("single", [0, 1]) == "subset_mass"
    assert score_definition("single", None) is None


def test_manifest_schema_accepts_the_score_key_and_refuses_a_non_string():
    entry = {"tickets": ["a", "b"], "ticket_kind": "expert", "score": "subset_mass"}
    manifest = {"schema_version": 1, "methods": {"rtl": entry}}
    schema.check(manifest, schema.MANIFEST_SCHEMA, "manifest.json", rf.RunFormatError)
    manifest["methods"]["rtl"] = {**entry, "score": 3}
    with pytest.raises(rf.RunFormatError, match="methods/rtl/score"):
        schema.check(manifest, schema.MANIFEST_SCHEMA, "manifest.json", rf.RunFormatError)


def test_label_free_confidence_of_experts_stays_the_largest_expert_confidence(map_run, kmeans_run):
    from analysis.signals import label_free_view

    for run in (map_run, kmeans_run):
        frame = run.predictions("rtl", run.levels("rtl")[-1])
        view = label_free_view(frame, "expert")
        scores = frame[[f"score_{k}" for k in range(3)]].to_numpy(np.float64)
        expected = frame["confidence"].to_numpy(np.float64) if "confidence" in frame else scores.max(1)
        np.testing.assert_array_equal(view.confidence, expected)
        np.testing.assert_array_equal(view.prediction, frame["pred_max_score"].to_numpy())
