"""Run descriptions: canonical hashes are pinned so old runs stay reachable."""

import dataclasses

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


@pytest.mark.parametrize("name", [n for n, h in PINNED.items() if h])
def test_embedded_preset_hashes_are_pinned_and_match_the_shipped_runs(name):
    import json
    from pathlib import Path

    assert get_preset(name).hash() == PINNED[name]
    manifest = Path(__file__).resolve().parents[1] / "artifacts" / name / "manifest.json"
    assert json.loads(manifest.read_text())["run_hash"] == PINNED[name]
