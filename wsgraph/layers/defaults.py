"""The models' default sizes, in one place: every constructor's defaults, ``wsgraph train``'s
``--hidden-channels`` and ``--depth`` when unset, and their help text read them from here.

Keyed by model family: ``dwsnet`` (:class:`~wsgraph.layers.DWSNet`, :class:`~wsgraph.layers.DWSEditNet`,
:class:`~wsgraph.layers.CNNDWSNet`), ``mlp`` (:class:`~wsgraph.layers.FlatMLP` and the flat MLP editor),
``gnn`` (:class:`~wsgraph.layers.WeightSpaceGNN`), ``ng-gnn`` (:class:`~wsgraph.layers.NeuralGraphGNN`)
and ``ng-transformer`` (:class:`~wsgraph.layers.NeuralGraphTransformer`, whose hidden size is its
neurons' state size).
"""

from __future__ import annotations

HIDDEN_CHANNELS = {"dwsnet": 32, "mlp": 32, "gnn": 64, "ng-gnn": 32, "ng-transformer": 64}
DEPTH = {"dwsnet": 4, "mlp": 5, "gnn": 4, "ng-gnn": 4, "ng-transformer": 4}

# How the help text names each family.
FAMILY_LABELS = {
    "dwsnet": "DWSNet",
    "mlp": "MLP",
    "gnn": "GNNs",
    "ng-gnn": "ng-gnn",
    "ng-transformer": "ng-transformer",
}


def describe_per_family(values: dict[str, int]) -> str:
    """``values`` as help text, families with one value together: ``"32 DWSNet, MLP and ng-gnn, 64 GNNs ..."``."""
    by_value: dict[int, list[str]] = {}
    for family, value in values.items():
        by_value.setdefault(value, []).append(FAMILY_LABELS[family])
    parts = []
    for value, labels in by_value.items():
        names = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
        parts.append(f"{value} {names}")
    return ", ".join(parts)
