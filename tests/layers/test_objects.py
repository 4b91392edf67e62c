"""The package's object list and dimension count agree with the tests' independent derivation."""

import pytest

from wsgraph.layers import DWSLayer
from wsgraph.layers.objects import equivariant_dimension, weight_space_objects

from .weight_space_numerics import design_constant_dimension, design_linear_dimension

ARCHITECTURES = [(2, 3, 4, 2), (1, 2, 1), (3, 2, 2), (2, 3, 1), (2, 2, 2, 2, 1), (2, 3), (3, 4, 5, 2)]


@pytest.mark.parametrize("widths", ARCHITECTURES)
def test_dimension_matches_the_independent_formula(widths):
    linear, constant = equivariant_dimension(len(widths) - 1, widths[0], widths[-1])
    assert linear == design_linear_dimension(widths)
    assert constant == design_constant_dimension(widths)


@pytest.mark.parametrize("widths", ARCHITECTURES)
def test_layer_has_exactly_that_many_parameters(widths):
    layer = DWSLayer(1, 1, len(widths) - 1, widths[0], widths[-1])
    linear, constant = equivariant_dimension(len(widths) - 1, widths[0], widths[-1])
    assert sum(p.numel() for p in layer.parameters()) == linear + constant


def test_objects_fold_fixed_neurons():
    names = [(obj.name, obj.permuted, obj.fold) for obj in weight_space_objects(3, 2, 5)]
    assert names == [
        ("W1", (1,), 2),
        ("W2", (1, 2), 1),
        ("W3", (2,), 5),
        ("b1", (1,), 1),
        ("b2", (2,), 1),
        ("b3", (), 5),
    ]
    assert [obj.fold for obj in weight_space_objects(1, 3, 4)] == [12, 4]
