"""Editing classifiers' weights: an editor's residual change to every network, the edited
classifiers' logits on images (batched, differentiable), and the editor's training."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch_geometric.data import Data

from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.inrs.render import render_inr
from wsgraph.layers import DWSEditNet
from wsgraph.training.editors import FlatMLPEditor

EDITORS = ("dwsnet", "mlp")


def classifier_logits(networks: Data, images: Tensor, activation: str | None = None) -> Tensor:
    """``[B, P, classes]``: every MLP classifier of ``networks`` applied to every image.

    The images (``[P, C, H, W]``) are flattened as the zoo's ``nn.Flatten`` does; all
    networks run as one batched matrix product per layer, and gradients reach their
    weights and biases.
    """
    return render_inr(networks, images.flatten(1), activation=activation)


def accuracies(networks: Data, images: Tensor, labels: Tensor, activation: str | None = None) -> Tensor:
    """``[B]``: each network's accuracy (a fraction) on the labelled images."""
    with torch.no_grad():
        logits = classifier_logits(networks, images, activation)
    return (logits.argmax(dim=-1) == labels.view(1, -1)).double().mean(dim=1)


class WeightEditing(nn.Module):
    r"""An editor made into a map from raw weights to raw weights.

    The editor sees the weights standardised per layer (as every weight-space model of
    wsgraph does) and returns edited standardised weights; their change, mapped back to
    the original scale, is added to the original weights:

    .. math::
        \theta' = \theta + N^{-1}(E(N(\theta))) - N^{-1}(N(\theta))

    so an editor whose change is zero returns the input weights bit for bit, and the
    edit is equivariant to hidden-neuron permutations whenever the editor is.
    """

    def __init__(self, editor: nn.Module, normalization: NormalizeWeights) -> None:
        super().__init__()
        self.editor = editor
        self.normalization = normalization

    def forward(self, networks: Data) -> Data:
        normalized = self.normalization(copy.copy(networks))
        edited = self.editor(normalized)
        before = self.normalization.inverse(normalized)
        after = self.normalization.inverse(edited)
        out = copy.copy(networks)
        out.edge_attr = networks.edge_attr + (after.edge_attr - before.edge_attr)
        out.x = networks.x + (after.x - before.x)
        return out


def make_editor(name: str, spec: WeightSpaceSpec, hidden_channels: int, depth: int) -> nn.Module:
    """A residual editor of networks of architecture ``spec``: ``"dwsnet"``
    (:class:`~wsgraph.layers.DWSEditNet`, equivariant) or ``"mlp"``
    (:class:`~wsgraph.training.editors.FlatMLPEditor`, the non-equivariant baseline)."""
    if name == "dwsnet":
        return DWSEditNet(
            spec.num_weight_layers,
            spec.in_dim,
            spec.out_dim,
            hidden_channels=hidden_channels,
            depth=depth,
            backend="dense",
        )
    if name == "mlp":
        return FlatMLPEditor(spec, hidden_channels=hidden_channels, depth=depth)
    raise ValueError(f"unknown editor {name!r}; choose from {', '.join(EDITORS)}")


def image_batches(count: int, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[Tensor]:
    """``steps`` batches of ``batch_size`` image indices below ``count``, drawn without replacement per batch."""
    for _ in range(steps):
        yield torch.randperm(count, generator=generator)[: min(batch_size, count)]


def edit_loss(
    editing: nn.Module, networks: Data, images: Tensor, labels: Tensor, activation: str | None = None
) -> Tensor:
    """The mean over networks of the edited classifiers' cross-entropy on the images."""
    logits = classifier_logits(editing(networks), images, activation)
    classes = logits.size(-1)
    return functional.cross_entropy(logits.reshape(-1, classes), labels.repeat(logits.size(0)))


def fine_tune(
    networks: Data,
    images: Tensor,
    labels: Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    activation: str | None = None,
) -> Data:
    """Every network after ``steps`` plain SGD steps on its cross-entropy, each step on a
    fresh batch of ``batch_size`` labelled images (the same batch for all networks).

    The networks' losses are summed, so each network's gradient is its own; all networks
    take their steps together.
    """
    tuned = copy.copy(networks)
    edge_attr, x = networks.edge_attr.detach().clone(), networks.x.detach().clone()
    for index in image_batches(images.size(0), batch_size, steps, generator):
        edge_attr.requires_grad_(True)
        x.requires_grad_(True)
        tuned.edge_attr, tuned.x = edge_attr, x
        logits = classifier_logits(tuned, images[index], activation)
        losses = functional.cross_entropy(
            logits.transpose(1, 2), labels[index].expand(logits.size(0), -1), reduction="none"
        )
        edge_grad, x_grad = torch.autograd.grad(losses.mean(dim=1).sum(), (edge_attr, x))
        with torch.no_grad():
            edge_attr = edge_attr - lr * edge_grad
            x = x - lr * x_grad
    tuned.edge_attr, tuned.x = edge_attr.detach(), x.detach()
    return tuned
