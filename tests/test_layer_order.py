"""A state_dict's layers are read in the order they run: by the numbers in their names, the key
order of a torch.save file, or, for a .safetensors file (keys sorted by name), the one order in
which their shapes chain; anything else is refused rather than guessed."""

from collections import OrderedDict

import pytest
import torch
from mlp_helpers import assert_params_equal, linear_params
from torch import nn

from wsgraph import NotAnMLPError, graph_to_params
from wsgraph.core.extract_cnn import NotACNNError, from_cnn_state_dict
from wsgraph.core.extract_mlp import from_state_dict
from wsgraph.core.layer_order import NameSortedStateDict, numbers_give_order
from wsgraph.core.network_files import graph_from_network_file


def square_mlp(depth: int, width: int = 8) -> nn.Sequential:
    """``depth`` square layers: their shapes chain in any order, so only the names can tell it."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def names(chain) -> list[str]:
    return [name.strip("'").removesuffix(".weight") for name in chain.names]


@pytest.mark.parametrize(
    ("prefixes", "expected"),
    [
        (["0", "2", "10"], True),
        (["net.0.linear", "net.1.linear", "net.2"], True),
        (["fc1", "fc2", "fc10"], True),
        (["conv1", "fc1"], False),
        (["layers.0", "head"], False),
        (["input", "hidden", "output"], False),
        (["0"], True),
    ],
)
def test_numbers_give_order(prefixes, expected):
    assert numbers_give_order(prefixes) is expected


def test_safetensors_file_of_more_than_ten_square_layers_keeps_its_order(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    mlp = square_mlp(6)  # keys 0, 2, ..., 10: sorted as text, '10' comes before '2'
    path = tmp_path / "net.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, str(path))
    assert_params_equal(graph_to_params(graph_from_network_file(path)), linear_params(mlp))


def test_state_dict_saved_with_keys_sorted_as_text_is_read_in_numeric_order():
    mlp = square_mlp(6)
    text_sorted = OrderedDict(sorted(mlp.state_dict().items()))
    assert list(text_sorted)[2:4] == ["10.bias", "10.weight"]
    assert names(from_state_dict(text_sorted)) == ["0", "2", "4", "6", "8", "10"]


def test_key_order_of_a_torch_save_file_is_kept_for_names_without_numbers():
    state = OrderedDict(
        [
            ("input.weight", torch.randn(8, 2)),
            ("hidden.weight", torch.randn(8, 8)),
            ("output.weight", torch.randn(1, 8)),
        ]
    )
    assert names(from_state_dict(state)) == ["input", "hidden", "output"]
    square = OrderedDict((name, torch.randn(8, 8)) for name in ("input.weight", "hidden.weight", "output.weight"))
    assert names(from_state_dict(square)) == ["input", "hidden", "output"]


def test_name_sorted_keys_without_numbers_follow_the_one_order_their_shapes_allow():
    state = NameSortedStateDict(
        {
            "hidden.weight": torch.randn(8, 8),
            "input.weight": torch.randn(8, 2),
            "input.bias": torch.randn(8),
            "output.weight": torch.randn(1, 8),
        }
    )
    chain = from_state_dict(state)
    assert names(chain) == ["input", "hidden", "output"]
    assert chain.biases[0] is state["input.bias"] and chain.biases[1] is None


def test_name_sorted_keys_without_numbers_that_chain_in_several_orders_are_refused():
    state = NameSortedStateDict((f"{name}.weight", torch.randn(8, 8)) for name in ("hidden", "input", "output"))
    with pytest.raises(NotAnMLPError, match="chain in more than one order") as error:
        from_state_dict(state)
    assert "'hidden.weight'" in str(error.value) and "\n" not in str(error.value)


def test_the_order_search_gives_up_on_many_interchangeable_layers_that_never_chain():
    # Twelve square layers and one that fits nowhere: every order of the twelve is a dead end.
    letters = "abcdefghijkl"
    state = NameSortedStateDict((f"{letter}.weight", torch.randn(8, 8)) for letter in letters)
    state["z.weight"] = torch.randn(5, 7)
    with pytest.raises(NotAnMLPError, match=r"could not be worked out from their shapes \(too many candidates\)"):
        from_state_dict(state)


def test_name_sorted_keys_that_chain_in_no_order_say_where_they_break():
    state = NameSortedStateDict({"a.weight": torch.randn(8, 2), "b.weight": torch.randn(1, 5)})
    with pytest.raises(NotAnMLPError, match=r"'b\.weight' takes 5 inputs but 'a\.weight' gives 8 outputs"):
        from_state_dict(state)


def test_name_sorted_cnn_state_dict_puts_convolutions_before_the_linear_head():
    torch.manual_seed(0)
    state = NameSortedStateDict(
        {
            "classifier.weight": torch.randn(10, 8),
            "features.0.weight": torch.randn(8, 3, 3, 3),
            "features.2.weight": torch.randn(8, 8, 3, 3),
        }
    )
    chain = from_cnn_state_dict(state)
    assert names(chain) == ["features.0", "features.2", "classifier"]
    assert chain.num_conv == 2


def test_name_sorted_cnn_state_dict_with_interchangeable_convolutions_is_refused():
    state = NameSortedStateDict(
        {
            "classifier.weight": torch.randn(10, 8),
            "first.weight": torch.randn(8, 8, 3, 3),
            "second.weight": torch.randn(8, 8, 3, 3),
        }
    )
    with pytest.raises(NotACNNError, match="chain in more than one order"):
        from_cnn_state_dict(state)


@pytest.mark.parametrize(
    "layers",
    [
        [("fc1", (64, 2)), ("fc2", (64, 64)), ("fc3", (64, 64)), ("out", (1, 64))],
        [("layers.0", (8, 8)), ("layers.1", (8, 8)), ("layers.2", (8, 8)), ("head", (3, 8))],
        [("input", (64, 2)), ("hidden.0", (64, 64)), ("hidden.1", (64, 64)), ("output", (1, 64))],
        [("net.0.linear", (8, 2)), ("net.1.linear", (8, 8)), ("net.2.linear", (8, 8)), ("net.3", (1, 8))],
    ],
    ids=["fc-and-out", "layers-and-head", "hidden-numbered", "siren"],
)
def test_name_sorted_keys_partly_numbered_take_the_numbers_and_the_shapes_together(layers):
    state = NameSortedStateDict(sorted((f"{name}.weight", torch.randn(*shape)) for name, shape in layers))
    assert names(from_state_dict(state)) == [name for name, _ in layers]


def test_name_sorted_torchvision_like_cnn_takes_the_numbers_and_the_shapes_together():
    state = NameSortedStateDict(
        {
            "classifier.1.weight": torch.randn(10, 64),
            "features.0.weight": torch.randn(64, 3, 3, 3),
            "features.3.weight": torch.randn(64, 64, 3, 3),
            "features.6.weight": torch.randn(64, 64, 3, 3),
        }
    )
    assert names(from_cnn_state_dict(state)) == ["features.0", "features.3", "features.6", "classifier.1"]


def test_a_registration_order_that_chains_is_kept_even_against_the_names_numbers():
    # conv3x3 / conv1x1: numbers that are not positions. torch.save keeps the order the module registered.
    state = OrderedDict([("block.conv3x3.weight", torch.randn(8, 8)), ("block.conv1x1.weight", torch.randn(8, 8))])
    assert names(from_state_dict(state)) == ["block.conv3x3", "block.conv1x1"]
