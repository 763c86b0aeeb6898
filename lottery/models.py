"""Models of the engine: re-exported from the shared :mod:`models` package.

The definitions live in ``models/networks.py`` so that :mod:`analysis` can
rebuild a ticket without importing the trainer.
"""

from models.networks import (
    CNN,
    MLP,
    Attention,
    Block,
    ModelConfig,
    ViT,
    build_model,
    prunable_names,
    prunable_shapes,
)

__all__ = [
    "CNN",
    "MLP",
    "Attention",
    "Block",
    "ModelConfig",
    "ViT",
    "build_model",
    "prunable_names",
    "prunable_shapes",
]
