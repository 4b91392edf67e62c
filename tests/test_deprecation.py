"""Old import paths, names and keywords keep working for one release, each warning once with its replacement."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import wsgraph
from wsgraph.deprecation import moved_module, renamed_kwargs


def forget(module: str) -> None:
    """Drop ``module`` from the import cache and from its package, so the next import runs its file again."""
    sys.modules.pop(module, None)
    package, _, name = module.rpartition(".")
    if package in sys.modules and name in vars(sys.modules[package]):
        delattr(sys.modules[package], name)


def test_an_old_module_path_gives_the_new_module_and_warns_at_the_importing_line() -> None:
    forget("wsgraph.spec")
    with pytest.warns(
        DeprecationWarning, match=r"wsgraph.spec is deprecated .* import wsgraph.core.spec instead"
    ) as caught:
        import wsgraph.spec as old_spec
    import wsgraph.core.spec

    assert old_spec is wsgraph.core.spec
    assert old_spec.WeightSpaceSpec is wsgraph.WeightSpaceSpec
    assert caught[0].filename == __file__


def old_module_paths() -> dict[str, str]:
    """Every file kept at an old path, and the module it now stands for."""
    found = {}
    root = Path(wsgraph.__file__).parent
    for path in sorted(root.rglob("*.py")):
        match = re.search(r'moved_module\(__name__, "([\w.]+)"\)', path.read_text())
        if match:
            found[".".join(path.relative_to(root.parent).with_suffix("").parts)] = match[1]
    return found


def test_every_old_module_path_works_and_warns() -> None:
    paths = old_module_paths()
    assert len(paths) == 20
    for old, new in paths.items():
        forget(old)
        with pytest.warns(DeprecationWarning, match=re.escape(f"import {new} instead")):
            assert importlib.import_module(old) is importlib.import_module(new)


def test_importing_wsgraph_and_its_packages_warns_nothing() -> None:
    code = (
        "import warnings, torch_geometric\n"
        "warnings.simplefilter('error')\n"
        "import wsgraph, wsgraph.core, wsgraph.datasets, wsgraph.inrs, wsgraph.layers, wsgraph.training, wsgraph.zoo\n"
        "import wsgraph.cli.main\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_moved_package_attribute_still_resolves_with_a_warning() -> None:
    import wsgraph.datasets
    import wsgraph.inrs

    with pytest.warns(DeprecationWarning, match=r"wsgraph.datasets.fit_sirens is deprecated.*wsgraph.inrs.fitting"):
        assert wsgraph.datasets.fit_sirens is wsgraph.inrs.fit_sirens
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        wsgraph.datasets.not_a_name  # noqa: B018


def test_renamed_keywords_are_mapped_and_a_clash_is_refused() -> None:
    @renamed_kwargs(old="new")
    def function(new: int = 0) -> int:
        return new

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert function(new=3) == 3
    with pytest.warns(DeprecationWarning, match=r"function\(old=...\) is deprecated.*use new="):
        assert function(old=4) == 4
    with pytest.raises(TypeError, match="both old= and its new name new="):
        function(old=1, new=2)


def test_moved_module_needs_an_existing_target() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(ModuleNotFoundError):
        moved_module("wsgraph.no_such_old_module", "wsgraph.no_such_new_module")
    assert wsgraph.__version__


def test_the_old_checkpoint_function_names_call_the_new_ones(tmp_path: Path) -> None:
    import torch

    from wsgraph.core import network_files
    from wsgraph.training import run_checkpoints

    path = tmp_path / "net.pt"
    torch.save({"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, path)
    with pytest.warns(DeprecationWarning, match="wsgraph.load_checkpoint is deprecated.*wsgraph.load_network_file"):
        old = wsgraph.load_checkpoint(path)
    assert old.keys() == wsgraph.load_network_file(path).keys()
    with pytest.warns(DeprecationWarning, match="use wsgraph.core.network_files.graph_from_network_file"):
        assert network_files.graph_from_checkpoint(path).num_nodes == 3 + 2
    with pytest.warns(DeprecationWarning, match="use wsgraph.training.run_checkpoints.save_run_checkpoint"):
        run_checkpoints.save_checkpoint(tmp_path / "last.pt", {"epoch": 3})
    with pytest.warns(DeprecationWarning, match="use wsgraph.training.run_checkpoints.load_run_checkpoint"):
        assert run_checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def test_the_old_layer_count_property_still_reads_with_a_warning() -> None:
    spec = wsgraph.WeightSpaceSpec((2, 5, 3, 1))
    with pytest.warns(DeprecationWarning, match=r"WeightSpaceSpec.num_layers is deprecated.*use .num_weight_layers"):
        assert spec.num_layers == spec.num_weight_layers == 3


def test_the_old_layer_count_keyword_of_the_dense_terms_and_the_neural_graph_inputs_warns() -> None:
    from wsgraph.layers.dense_reference import dws_terms
    from wsgraph.layers.neural_graph import NeuralGraphInputs

    with pytest.warns(DeprecationWarning, match=r"dws_terms\(num_layers=...\) is deprecated.*num_weight_layers="):
        assert dws_terms(num_layers=3) == dws_terms(num_weight_layers=3)
    arguments = dict(
        in_dim=2, out_dim=1, in_channels=1, edge_features=3, node_channels=8, edge_channels=8, fourier_features=4,
        fourier_sigma=3.0, encoder_layers=1, positional=True, probe_features=0, probe_statistics=None, act="silu",
    )  # fmt: skip
    with pytest.warns(DeprecationWarning, match=r"NeuralGraphInputs\(num_layers=...\) is deprecated"):
        old = NeuralGraphInputs(num_layers=3, **arguments)
    new = NeuralGraphInputs(num_weight_layers=3, **arguments)
    assert old.position.num_weight_layers == new.position.num_weight_layers == 3


@pytest.mark.parametrize("old", ["--num-dws-layers", "--num-rounds"])
def test_an_old_option_spelling_sets_the_setting_and_says_so(old: str, capsys: pytest.CaptureFixture) -> None:
    from wsgraph.cli.main import build_parser

    args = build_parser().parse_args(["train", old, "3"])
    assert args.depth == 3
    assert (
        capsys.readouterr().err
        == f"wsgraph train: {old} is deprecated and will be removed in the next release; use --depth\n"
    )
    args = build_parser().parse_args(["train", "--depth", "3"])
    assert args.depth == 3 and capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["train", "bench"])
def test_the_help_marks_the_old_option_spellings_as_deprecated(command: str) -> None:
    from wsgraph.cli.main import build_parser

    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    depth = next(action for action in subparsers.choices[command]._actions if action.dest == "depth")
    assert depth.help.endswith("; --num-dws-layers and --num-rounds are deprecated spellings of --depth")
