"""Model definitions and state loading shared by ``lottery`` (training) and ``analysis`` (probing).

Depends on torch and numpy only: never on :mod:`lottery`, so the analysis can
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
from models.state import load_state_numpy

__all__ = [
    "CNN",
    "MLP",
    "Attention",
    "Block",
    "ModelConfig",
    "ViT",
    "build_model",
    "load_state_numpy",
    "prunable_names",
    "prunable_shapes",
]
