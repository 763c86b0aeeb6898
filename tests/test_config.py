"""Run descriptions: canonical hashes are pinned so old runs stay reachable."""

import dataclasses
import json
from pathlib import Path

import pytest

from lottery.config import RunDescription, TrainConfig, replace
from lottery.presets import PRESETS, get_preset


def test_default_description_hash_is_pinned():
    assert RunDescription().canonical() == {}
    assert RunDescription().hash() == "44136fa355b3"


def test_changed_field_changes_hash_and_round_trips():
    d = replace(RunDescription(), seed=3, **{"train.epochs": 7})
    assert d.canonical() == {"seed": 3, "train": {"epochs": 7}}
    assert d.hash() != RunDescription().hash()
    assert RunDescription.from_dict(d.to_dict()) == d


def test_new_defaulted_field_keeps_hash():
    @dataclasses.dataclass(frozen=True)
    class Extended(TrainConfig):
        warmup: int = 0

    d = RunDescription(train=Extended())
    assert d.hash() == RunDescription().hash()


def test_unknown_fields_rejected():
    with pytest.raises(ValueError, match="unknown"):
        RunDescription.from_dict({"train": {"epochz": 3}})


def test_presets_resolve():
    for name in PRESETS:
        assert isinstance(get_preset(name), RunDescription)
    with pytest.raises(ValueError, match="known presets"):
        get_preset("nope")


PINNED = {
    "smoke": None,  # not embedded: free to change
    "fashion-mlp-class": "8ae841e426e6",
    "fashion-vit-cluster": "89415892d0bf",
    "adult-mlp-cluster": "b0954cf79944",
}


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# one-seed runs still shipped: none (each was replaced by its issue-12 sweep group; presets kept)
SHIPPED_RUNS: set[str] = set()


@pytest.mark.parametrize("name", [n for n, h in PINNED.items() if h])
def test_embedded_preset_hashes_are_pinned_and_match_the_shipped_runs(name):
    assert get_preset(name).hash() == PINNED[name]
    if name in SHIPPED_RUNS:
        manifest = ARTIFACTS / name / "manifest.json"
        assert json.loads(manifest.read_text())["run_hash"] == PINNED[name]
    else:
        assert not (ARTIFACTS / name).exists()


# Issue 12's run groups: their hashes name the folders of the sweeps, and a new defaulted field
# (e.g. data.train_limit) must not move them; every seed of a shipped group was trained from them.
PINNED_SWEEPS = {
    "fashion-mlp-class-sweep": "e38c9e074032",
    "fashion-mlp-class-sweep-null": "63a6a1b907f5",
    "fashion-mlp-class-sweep-count": "7f0667c5149a",
    "adult-mlp-cluster-sweep": "35b1971ca730",
    "adult-mlp-cluster-sweep-null": "c53fba1a82c7",
    # with data.train_limit=12000 and train.max_epochs=7 (was af95bdf941a5 / 96dec17f470f)
    "fashion-vit-cluster-sweep": "3a8fcf9c2f67",
    "fashion-vit-cluster-sweep-null": "2df8021cb52c",
}
NOT_SHIPPED_YET: set[str] = set()


@pytest.mark.parametrize("name", sorted(PINNED_SWEEPS))
def test_sweep_preset_hashes_are_pinned_and_match_the_shipped_groups(name):
    assert get_preset(name).hash() == PINNED_SWEEPS[name]
    group = ARTIFACTS / name
    if name in NOT_SHIPPED_YET:
        assert not group.exists()
        return
    manifest = json.loads((group / "group.json").read_text())
    assert len(manifest["runs"]) >= 1
    for run, seed in zip(manifest["runs"], manifest["seeds"], strict=True):
        want = dataclasses.replace(get_preset(name), seed=seed).hash()  # the seed is part of a run's hash
        assert json.loads((group / run / "manifest.json").read_text())["run_hash"] == want


def test_every_preset_but_smoke_is_pinned():
    assert set(PRESETS) == {n for n, h in PINNED.items() if h} | set(PINNED_SWEEPS) | {"smoke"}


# --- apply_overrides: every description field settable from the command line ---


def test_overrides_set_nested_and_top_level_fields_with_their_types():
    from lottery.config import apply_overrides

    base = get_preset("smoke")
    d = apply_overrides(
        base,
        [
            "prune.levels=20",
            "train.epochs=5",
            "train.lr=1e-2",
            "model.name=cnn",
            "model.hidden=(300, 100)",
            "data.limit=500",
            "rtl.match_imp_budget=true",
            "methods=imp,rtl",
            "seed=3",
        ],
    )
    assert d.prune.levels == 20 and type(d.prune.levels) is int
    assert d.train.epochs == 5 and d.train.lr == 0.01 and type(d.train.lr) is float
    assert d.model.name == "cnn" and d.model.hidden == (300, 100)
    assert d.data.limit == 500 and d.rtl.match_imp_budget is True
    assert d.methods == ("imp", "rtl") and d.seed == 3
    # untouched fields keep the preset's values
    assert d.train.batch_size == base.train.batch_size and d.data == dataclasses.replace(base.data, limit=500)
    assert apply_overrides(d, ["data.limit=none"]).data.limit is None
    assert apply_overrides(base, ["model.hidden=64,"]).model.hidden == (64,)
    assert base.prune.levels == 3  # the preset itself is frozen and unchanged


@pytest.mark.parametrize(
    "assignment, message",
    [
        (
            "train.epochz=3",
            "unknown key 'train.epochz'; valid section 'train' keys: train.epochs, train.batch_size",
        ),
        ("bogus=1", "valid top-level keys: data.*, model.*"),
        ("train=3", "'train' is a section"),
        ("model.name.x=1", "is a value, not a section"),
        ("train.epochs=3.5", "train.epochs: '3.5' is not an integer"),
        ("train.lr=fast", "train.lr: 'fast' is not a number"),
        ("train.lr=inf", "not a finite number"),
        ("keep_weights=maybe", "not a boolean"),
        ("model.hidden=300,x", "'x' is not an integer"),
        ("model.name=cnx", "model.name must be one of mlp, cnn, vit"),
        ("prune.fraction=1.5", "prune.fraction must be in (0, 1)"),
        ("methods=imp,lasso", "unknown methods ['lasso']"),
        ("train.epochs", "expected KEY=VALUE"),
    ],
)
def test_overrides_refuse_bad_input_with_one_line(assignment, message):
    from lottery.config import apply_overrides

    with pytest.raises(ValueError) as err:
        apply_overrides(get_preset("smoke"), [assignment])
    text = str(err.value)
    assert message in text and "\n" not in text


def test_override_hash_changes_only_when_a_value_changes():
    from lottery.config import apply_overrides

    base = get_preset("fashion-mlp-class")
    same = apply_overrides(base, ["prune.levels=14", "train.lr=0.001", "train.epochs=1", "seed=0"])
    assert same == base and same.hash() == PINNED["fashion-mlp-class"]
    # a field left at its default value, set explicitly to that value
    assert apply_overrides(base, ["prune.scope=layer", "data.val_fraction=0.1"]).hash() == base.hash()
    changed = apply_overrides(base, ["prune.levels=20"])
    assert changed.hash() != base.hash()
    assert changed == replace(base, **{"prune.levels": 20})
    assert RunDescription.from_dict(changed.to_dict()) == changed


def test_overrides_work_for_inr_and_speech_descriptions():
    from lottery.config import apply_overrides
    from lottery.inr.config import INRDescription
    from lottery.speech.config import SpeechDescription

    inr = apply_overrides(INRDescription(), ["images=china", "levels=2", "sigma=4"])
    assert inr.images == ("china",) and inr.levels == 2 and inr.sigma == 4.0
    assert apply_overrides(INRDescription(), ["levels=11"]).hash() == INRDescription().hash()
    with pytest.raises(ValueError, match="unknown methods"):
        apply_overrides(INRDescription(), ["methods=lasso"])
    sp = apply_overrides(SpeechDescription(), ["train_snr_db=0,5", "channels=8,16"])
    assert sp.train_snr_db == (0.0, 5.0) and sp.channels == (8, 16)
    with pytest.raises(ValueError, match="expected 2 comma-separated values"):
        apply_overrides(SpeechDescription(), ["train_snr_db=0"])
    with pytest.raises(ValueError, match=r"must be \(low, high\)"):
        apply_overrides(SpeechDescription(), ["train_snr_db=10,5"])
    with pytest.raises(ValueError, match="valid top-level keys: environments"):
        apply_overrides(SpeechDescription(), ["epochs=3"])
