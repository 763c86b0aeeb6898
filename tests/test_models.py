"""Models: shapes, prunable weights (attention projections included), attention maps readable."""

import pytest
import torch

from lottery.models import ModelConfig, build_model, prunable_names, prunable_shapes


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig("mlp", (1, 28, 28), 10),
        ModelConfig("cnn", (1, 28, 28), 10, hidden=(8, 16)),
        ModelConfig("vit", (1, 28, 28), 4, dim=32, depth=2, heads=4, patch=7),
        ModelConfig("mlp", (84,), 2, hidden=(100, 50)),
    ],
)
def test_forward_shapes_and_prunable_weights(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    out = model(torch.rand(5, *cfg.input_shape))
    assert out.shape == (5, cfg.n_out)
    params = dict(model.named_parameters())
    names = prunable_names(model)
    assert names and all(n.endswith(".weight") and params[n].ndim >= 2 for n in names)
    # biases, norms, positional embeddings and the class token stay dense
    assert not any(n.endswith(".bias") or "norm" in n or n in ("pos", "cls") for n in names)
    assert prunable_shapes(model) == {n: tuple(params[n].shape) for n in names}


def test_lenet_300_100_has_266200_prunable_weights():
    model = build_model(ModelConfig("mlp", (1, 28, 28), 10))
    assert (
        sum(torch.Size(s).numel() for s in prunable_shapes(model).values())
        == 784 * 300 + 300 * 100 + 100 * 10
    )


def test_vit_attention_maps_are_per_head_probabilities():
    cfg = ModelConfig("vit", (1, 28, 28), 4, dim=32, depth=3, heads=4, patch=7)
    model = build_model(cfg)
    names = prunable_names(model)
    for proj in ("q", "k", "v", "out"):
        assert f"blocks.0.attn.{proj}.weight" in names
    logits, maps = model(torch.rand(2, 1, 28, 28), return_attention=True)
    assert logits.shape == (2, 4) and len(maps) == 3
    for probs in maps:
        assert probs.shape == (2, 4, 17, 17)  # (B, H, T, T): 16 patches + class token
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 17))
        assert (probs >= 0).all()


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_model(ModelConfig("rnn", (1, 28, 28), 10))
    with pytest.raises(ValueError, match="patches"):
        build_model(ModelConfig("vit", (1, 28, 28), 10, patch=5))
    with pytest.raises(ValueError, match="divisible"):
        build_model(ModelConfig("vit", (1, 28, 28), 10, dim=30, heads=4))
