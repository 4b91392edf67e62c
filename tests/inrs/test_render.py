import numpy as np
import pytest
import scipy.ndimage
import torch
from torch_geometric.data import Batch

import wsgraph
from wsgraph.inrs.dilation import dilate
from wsgraph.inrs.render import image_grid_coords, render_inr
from wsgraph.inrs.siren import SirenRecipe, siren_forward, siren_init, split_augmented


def siren_batch(count: int, widths=(2, 32, 32, 1), seed: int = 0):
    weights, biases = split_augmented(siren_init(SirenRecipe(widths=widths), torch.arange(count), seed))
    return wsgraph.mlp_to_graph(list(zip(weights, biases)), activation="sine(30.0)")


def reference(batch, coords, offset=0.0):
    return torch.stack([module(coords) for module in wsgraph.graph_to_mlp(batch)]) + offset


def test_render_one_architecture_matches_rebuilt_modules():
    batch = siren_batch(5)
    coords = image_grid_coords(7, 6)
    rendered = render_inr(batch, coords, output_offset=0.5)
    assert rendered.shape == (5, 42, 1)
    torch.testing.assert_close(rendered, reference(batch, coords, 0.5), rtol=0, atol=2e-6)


def test_render_mixed_widths_matches_rebuilt_modules():
    wide, narrow = siren_batch(3).to_data_list(), siren_batch(2, widths=(2, 5, 7, 1), seed=1).to_data_list()
    batch = Batch.from_data_list([wide[0], narrow[0], wide[1], narrow[1], wide[2]])
    coords = torch.rand(11, 2) * 2 - 1
    rendered = render_inr(batch, coords)
    torch.testing.assert_close(rendered, reference(batch, coords), rtol=0, atol=2e-6)
    per_network = torch.rand(5, 11, 2)
    rendered = render_inr(batch, per_network, output_offset=0.5)
    expected = torch.stack([m(c) for m, c in zip(wsgraph.graph_to_mlp(batch), per_network)]) + 0.5
    torch.testing.assert_close(rendered, expected, rtol=0, atol=2e-6)


def test_render_single_graph_and_other_activation():
    graph = wsgraph.mlp_to_graph(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)))
    coords = torch.rand(9, 2)
    rendered = render_inr(graph, coords)
    assert rendered.shape == (1, 9, 3)
    torch.testing.assert_close(rendered[0], wsgraph.graph_to_mlp(graph)(coords), rtol=0, atol=1e-6)


def test_render_gradients_reach_the_graph_features():
    # In float64: sine(30) multiplies every rounding by 30 per layer, so float32 gradients computed in two
    # orders differ by amounts that depend on the CPU's kernels, not on the rendering.
    batch = siren_batch(3)
    batch.edge_attr = batch.edge_attr.double().requires_grad_(True)
    batch.x = batch.x.double().requires_grad_(True)
    coords = image_grid_coords(4, 4).double()
    target = torch.rand(3, 16, 1, dtype=torch.float64)
    (render_inr(batch, coords, 0.5) - target).square().mean().backward()
    weights, biases = split_augmented(siren_init(SirenRecipe(), torch.arange(3), 0))
    weights = [weight.double().requires_grad_(True) for weight in weights]
    biases = [bias.double().requires_grad_(True) for bias in biases]
    (siren_forward(weights, biases, coords, 30.0) + 0.5 - target).square().mean().backward()
    expected = wsgraph.mlp_to_graph([(w.grad, b.grad) for w, b in zip(weights, biases)])
    torch.testing.assert_close(batch.edge_attr.grad, expected.edge_attr, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(batch.x.grad, expected.x, rtol=1e-10, atol=1e-12)


def test_render_errors():
    batch = siren_batch(2)
    with pytest.raises(ValueError, match="coordinates have 3 dimensions, the networks take 2 inputs"):
        render_inr(batch, torch.rand(4, 3))
    with pytest.raises(ValueError, match="got coordinates for 3 networks, the batch has 2"):
        render_inr(batch, torch.rand(3, 4, 2))
    unknown = wsgraph.mlp_to_graph([(torch.rand(3, 2), torch.rand(3)), (torch.rand(1, 3), torch.rand(1))])
    with pytest.raises(ValueError, match="activation is unknown"):
        render_inr(unknown, torch.rand(4, 2))
    assert render_inr(unknown, torch.rand(4, 2), activation="relu").shape == (1, 4, 1)
    batch.edge_attr = batch.edge_attr.repeat(1, 2)
    with pytest.raises(ValueError, match="one-channel graphs"):
        render_inr(batch, torch.rand(4, 2))


@pytest.mark.parametrize("size", [3, 5])
def test_dilation_matches_scipy(size):
    generator = np.random.default_rng(size)
    grey = generator.integers(0, 256, (6, 11, 9), dtype=np.uint8)
    expected = np.stack([scipy.ndimage.grey_dilation(image, size=(size, size)) for image in grey])
    np.testing.assert_array_equal(dilate(torch.from_numpy(grey), size).numpy(), expected)
    real = generator.random((3, 7, 8)).astype(np.float32)
    expected = np.stack([scipy.ndimage.grey_dilation(image, size=(size, size)) for image in real])
    np.testing.assert_array_equal(dilate(torch.from_numpy(real), size).numpy(), expected)
    colour = generator.integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    expected = np.stack([scipy.ndimage.grey_dilation(image, size=(size, size, 1)) for image in colour])
    np.testing.assert_array_equal(dilate(torch.from_numpy(colour), size).numpy(), expected)


def test_dilation_errors():
    with pytest.raises(ValueError, match="odd side"):
        dilate(torch.zeros(1, 4, 4), 2)
    with pytest.raises(ValueError, match="expected"):
        dilate(torch.zeros(4, 4))
