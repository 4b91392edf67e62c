"""The DWS layer's initialisation keeps activations at a stable scale through a deep stack."""

import itertools

import pytest
import torch
from torch import nn

from wsgraph.core.graph import assemble
from wsgraph.layers import DWSLayer, WeightSpaceFeatures, WeightSpaceLayout

DEPTH = 12


def _random_features(widths, count, generator):
    weights = [torch.randn(count, a, b, 1, generator=generator) for a, b in itertools.pairwise(widths)]
    biases = [torch.randn(count, b, 1, generator=generator) for b in widths[1:]]
    batch = assemble(weights, biases)
    layout = WeightSpaceLayout.of(batch)
    return layout.split(batch.x, batch.edge_attr), layout


def _rms(features: WeightSpaceFeatures) -> float:
    values = torch.cat([t.reshape(-1) for t in (*features.weights, *features.biases)])
    return values.pow(2).mean().sqrt().item()


def _deep_stack_rms(widths, reinitialise, seed=0):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    features, layout = _random_features(widths, 8, generator)
    scales = [_rms(features)]
    channels = 1
    for _ in range(DEPTH):
        layer = DWSLayer(channels, 16, len(widths) - 1, widths[0], widths[-1])
        reinitialise(layer)
        channels = 16
        with torch.no_grad():
            features = layer.forward_features(features, layout).map(torch.relu)
        scales.append(_rms(features))
    return torch.tensor(scales) / scales[0]


@pytest.mark.parametrize("widths", [(2, 32, 32, 1), (2, 16, 16, 16, 16, 1), (1, 8, 1), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_relu_stack_keeps_scale(widths, seed):
    ratios = _deep_stack_rms(widths, lambda layer: layer.reset_parameters(gain=2**0.5), seed)
    assert ratios.min() > 0.4, ratios
    assert ratios.max() < 2.5, ratios


def test_default_linear_init_would_collapse():
    """The same stack with PyTorch's default Linear init loses the signal: the check above can fail."""

    def default_init(layer):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    ratios = _deep_stack_rms((2, 32, 32, 1), default_init)
    assert ratios[-1] < 0.05, ratios
