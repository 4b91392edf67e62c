"""Per-object normalisation of weight-space features."""

import pytest
import torch

from wsgraph.layers import WeightSpaceFeatures, WeightSpaceNorm


def test_layer_norm_over_one_channel_is_refused():
    with pytest.raises(ValueError, match="layer norm over 1 channel erases every feature"):
        WeightSpaceNorm(1, num_weight_layers=2, mode="layer")


def test_batch_norm_over_one_channel_keeps_the_features_apart():
    norm = WeightSpaceNorm(1, num_weight_layers=2, mode="batch")
    generator = torch.Generator().manual_seed(0)
    features = WeightSpaceFeatures(
        [torch.randn(12, 1, generator=generator), torch.randn(8, 1, generator=generator)],
        [torch.randn(4, 1, generator=generator), torch.randn(2, 1, generator=generator)],
    )
    out = norm(features)
    for before, after in zip((*features.weights, *features.biases), (*out.weights, *out.biases)):
        assert after.std() > 0.5
        torch.testing.assert_close(after, (before - before.mean()) / before.var(unbiased=False).add(1e-5).sqrt())
