"""Named run descriptions: ``python -m lottery presets`` lists them."""

from __future__ import annotations

from lottery.config import (
    DataConfig,
    ModelSpec,
    PruneConfig,
    RunDescription,
    TrainConfig,
)

PRESETS: dict[str, tuple[str, RunDescription]] = {
    "smoke": (
        "digits (sklearn, offline), MLP 64-32, IMP, 3 levels of 20 %: under a minute on 2 CPU cores",
        RunDescription(
            data=DataConfig(name="digits", partition="class"),
            model=ModelSpec(name="mlp", hidden=(64, 32)),
            train=TrainConfig(epochs=4, batch_size=64, lr=3e-3),
            prune=PruneConfig(fraction=0.2, levels=3),
            methods=("imp",),
        ),
    ),
}


def get_preset(name: str) -> RunDescription:
    """The run description of a preset (a clear error names the known ones)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name][1]
