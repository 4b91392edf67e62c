"""The package tree is the architecture: each subpackage imports only from the ones below it,
and no chain of module-level imports comes back to where it started.

Read from the source (``ast``), so a violation is found without importing anything. The
modules kept at old paths for one release (files that call
:func:`wsgraph.deprecation.moved_module`) are left out: they exist to point upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsgraph"

# Bottom to top. A module may import from its own layer and the layers below.
LAYERS = [
    ("wsgraph.errors", "wsgraph.io", "wsgraph.runtime", "wsgraph.locks", "wsgraph.deprecation"),
    ("wsgraph.core", "wsgraph"),
    ("wsgraph.datasets",),
    ("wsgraph.inrs",),
    ("wsgraph.layers",),
    ("wsgraph.training",),
    ("wsgraph.zoo",),
    ("wsgraph.cli", "wsgraph.__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_alias(path: Path) -> bool:
    return "moved_module(__name__" in path.read_text()


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if not is_alias(path)}


def layer_of(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best[0]


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The wsgraph modules ``path`` imports (``from package import module`` names the module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "wsgraph"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "wsgraph":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return found


def test_every_module_sits_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    upward = [
        target
        for target in sorted(imports(MODULES[module], top_level_only=False))
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, f"{module} (layer {LAYERS[layer_of(module)][0]}) imports from above: {upward}"


def test_module_level_imports_have_no_cycle() -> None:
    graph = {module: imports(path, top_level_only=True) & MODULES.keys() for module, path in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, chain: list[str]) -> None:
        if module in chain:
            cycle = [*chain[chain.index(module) :], module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*chain, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("from wsgraph.training import train\nimport wsgraph.core.spec\n")
    assert {layer_of(target) for target in imports(source, top_level_only=False)} == {
        layer_of("wsgraph.training"),
        layer_of("wsgraph.core"),
    }
    assert layer_of("wsgraph.training") > layer_of("wsgraph.core")
