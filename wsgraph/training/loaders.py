"""Batches for training and evaluation, the same on one process and across ``torchrun`` ranks.

Every epoch has a *plan*: the order of the split's networks (a permutation drawn from a
generator seeded by the run's seed and the epoch, so a resumed run sees exactly the
batches an uninterrupted one would) cut into global batches of ``--batch-size``
networks. Under ``torchrun`` each process takes its share of every global batch (rank
``r`` the ``r``-th of ``world_size`` near-equal parts), the equivalent of a
:class:`~torch.utils.data.distributed.DistributedSampler` that keeps the global batch
equal to the single-process one. Evaluation splits the networks into contiguous
per-rank parts instead, with no padding, so reduced metrics count each network once.

Two loaders follow a plan:

* :class:`StackedLoader` (networks of one architecture): gathers from the dataset's
  stored stacked tensors, which it keeps on the training device, into a batch structure
  built once with the vectorised :func:`wsgraph.core.graph.assemble`; no per-network Python
  work.
* :class:`GraphLoader` (any architectures): PyG's
  :class:`~torch_geometric.loader.DataLoader` over the dataset's graphs, with worker
  processes if asked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Sampler
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from wsgraph.core.graph import CONV_KEYS, assemble, is_conv_graph
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.store import ACTIVATION_NAMES
from wsgraph.layers.structure import WeightSpaceLayout
from wsgraph.runtime import derived_seed
from wsgraph.training.data import SplitData
from wsgraph.training.distributed import DistributedContext

# Random streams of a run, each seeded by `derived_seed(seed, STREAM, ...)`.
SHUFFLE_STREAM, DROPOUT_STREAM, AUGMENT_STREAM = 0, 1, 2


class EpochPlan:
    """The batches of this process in each epoch, as positions into a split's rows.

    Args:
        num_items: the networks in the split.
        batch_size: networks per global batch (all processes together).
        shuffle: draw a fresh order every epoch (training); otherwise keep the order and
            give each process a contiguous part of the split (evaluation).
        seed: the run's seed.
        context: this process's rank and the world size.
    """

    def __init__(self, num_items: int, batch_size: int, shuffle: bool, seed: int, context: DistributedContext) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.context = context

    def batches(self, epoch: int) -> list[Tensor]:
        """This process's batches in ``epoch``, each a ``long`` tensor of positions."""
        rank, world_size = self.context.rank, self.context.world_size
        if not self.shuffle:
            part = torch.tensor_split(torch.arange(self.num_items), world_size)[rank]
            # An empty part splits into one empty chunk, which is no batch.
            return [chunk for chunk in part.split(self.batch_size) if chunk.numel()]
        generator = torch.Generator().manual_seed(derived_seed(self.seed, SHUFFLE_STREAM, epoch))
        order = torch.randperm(self.num_items, generator=generator)
        # A trailing batch that cannot give every process two networks is dropped (see
        # `global_sizes`): every process must take part in every step, and batch norm
        # needs two samples.
        global_batches = list(order.split(self.batch_size))[: len(self.global_sizes())]
        return [torch.tensor_split(batch, world_size)[rank] for batch in global_batches]

    def global_sizes(self) -> list[int]:
        """The number of networks in each global batch of an epoch (the same every epoch)."""
        full, rest = divmod(self.num_items, self.batch_size)
        sizes = [self.batch_size] * full + ([rest] if rest else [])
        if self.shuffle and len(sizes) > 1 and sizes[-1] < 2 * self.context.world_size:
            sizes.pop()
        return sizes

    def __len__(self) -> int:
        if not self.shuffle:
            part = len(torch.tensor_split(torch.arange(self.num_items), self.context.world_size)[self.context.rank])
            return -(-part // self.batch_size)
        return len(self.global_sizes())


class StackedLoader:
    """Batches of networks of one architecture, gathered from stacked tensors.

    The split's weights and biases are kept on ``device`` as ``[n, E, C]`` and
    ``[n, N, C]`` tensors in the canonical per-network order, so a batch's ``edge_attr``
    and ``x`` are one gather each. The structure of a batch (``edge_index``, layer
    labels, ``batch``, ...) depends only on its size: it is built once per size with the
    vectorised :func:`~wsgraph.core.graph.assemble`, with its
    :class:`~wsgraph.layers.WeightSpaceLayout` (which the DWS layers would otherwise
    rebuild at every step), and every batch is a shallow copy of it with new values.

    Args:
        split: the split and its rows.
        spec: the one architecture of its networks.
        plan: the epoch plan over ``split``'s rows.
        device: where the stacked tensors live and the batches are built.
        keys: per-network attributes to carry besides ``y`` (e.g. a stored target image).
    """

    def __init__(
        self,
        split: SplitData,
        spec: WeightSpaceSpec,
        plan: EpochPlan,
        device: torch.device,
        keys: Sequence[str] = (),
    ) -> None:
        dataset, rows = split.dataset, split.rows
        count = len(dataset)
        self.spec, self.plan, self.device = spec, plan, device
        self.activation = dataset.meta.get("activation", "unknown")
        # A root of several activations records each network's; the batches then name them per graph.
        every = dataset.activations if dataset.meta.get(ACTIVATION_NAMES) else None
        self.activations = None if every is None else [every[row] for row in rows.tolist()]
        # A CNN's edges carry its padded kernels, its nodes one bias each.
        self.edge_channels, self.node_channels = dataset.edge_attr.size(-1), dataset.x.size(-1)
        self.edges = dataset.edge_attr.view(count, spec.num_edges, self.edge_channels)[rows].to(device)
        self.nodes = dataset.x.view(count, spec.num_nodes, self.node_channels)[rows].to(device)
        self.has_bias = dataset.has_bias.view(count, spec.num_weight_layers)[rows].to(device)
        self.per_network = {key: getattr(dataset, key)[rows].to(device) for key in ("y", *keys)}
        # Networks of one widths may still differ in kernel sizes: their rows travel with each batch.
        conv_keys = CONV_KEYS if is_conv_graph(dataset._data) else ()
        self.conv = {key: getattr(dataset, key)[rows].to(device) for key in conv_keys}
        self.templates: dict[int, Batch] = {}
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        for positions in self.plan.batches(self.epoch):
            yield self.batch(positions.to(self.device))

    def batch(self, positions: Tensor) -> Batch:
        """The networks at ``positions`` (into the split's rows) as one batch."""
        batch = copy.copy(self._template(positions.numel()))
        batch.edge_attr = self.edges[positions].view(-1, self.edge_channels)
        batch.x = self.nodes[positions].view(-1, self.node_channels)
        batch.has_bias = self.has_bias[positions]
        for key, values in (*self.per_network.items(), *self.conv.items()):
            batch[key] = values[positions]
        if self.activations is not None:
            batch.activation = [self.activations[position] for position in positions.tolist()]
        return batch

    def _template(self, size: int) -> Batch:
        if size not in self.templates:
            first = torch.zeros(size, dtype=torch.long, device=self.device)
            dense = [
                self.edges[first, self.spec.edge_slice(layer)].view(size, *self.spec.weight_shape(layer), -1)
                for layer in self.spec.weight_layers
            ]
            biases = [self.nodes[first, self.spec.node_slice(layer)] for layer in self.spec.weight_layers]
            conv = {key: values[first] for key, values in self.conv.items()} or None
            template = assemble(dense, biases, activation=self.activation, y=self.per_network["y"][first], conv=conv)
            per_graph = template._slice_dict["y"]
            for key, values in self.per_network.items():
                template[key] = values[first]
                template._slice_dict[key], template._inc_dict[key] = per_graph, None
            WeightSpaceLayout.of(template)
            self.templates[size] = template
        return self.templates[size]


class _PlanSampler(Sampler[list[int]]):
    """Yields the dataset indices of each batch of a plan; PyG's loader collates them."""

    def __init__(self, plan: EpochPlan, rows: Tensor) -> None:
        self.plan, self.rows, self.epoch = plan, rows, 0

    def __iter__(self) -> Iterator[list[int]]:
        for positions in self.plan.batches(self.epoch):
            yield self.rows[positions].tolist()

    def __len__(self) -> int:
        return len(self.plan)


class GraphLoader:
    """Batches collated by PyG's :class:`~torch_geometric.loader.DataLoader`, for networks of any widths.

    Args:
        split: the split and its rows.
        plan: the epoch plan over ``split``'s rows.
        device: where batches are moved.
        num_workers: loader worker processes (kept alive between epochs).
    """

    def __init__(self, split: SplitData, plan: EpochPlan, device: torch.device, num_workers: int = 0) -> None:
        self.device, self.plan = device, plan
        self.sampler = _PlanSampler(plan, split.rows)
        self.loader = DataLoader(
            split.dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=device.type == "cuda",
            # Its own generator: PyG's loader would otherwise draw a worker seed from the
            # global one, which dropout uses, at every epoch.
            generator=torch.Generator(),
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            yield batch.to(self.device, non_blocking=True)
