"""The graph feature extractor psi: a GCN over each node's packed local subgraph (G-Meta's setting).

Input: packed subgraphs ``x: (n, M, M + C)`` (layout in :mod:`cml.data.graph`): a normalised dense adjacency
``(n, M, M)`` and node inputs ``(n, M, C)`` (features and the centre marker), the centre at index 0. Message
passing is dense and batched (``adjacency @ (h W^T) + b``), which on subgraphs of a few dozen nodes is as fast
as sparse scatter and needs no graph library; every parameter is an ordinary tensor, so higher and torch.func
see a plain functional model.

References:
    Kipf & Welling (2017), Semi-supervised classification with graph convolutional networks (the layer).
    Huang & Zitnik (2020), Graph meta learning via local subgraphs (G-Meta: subgraphs, centre embedding).
    Wang et al. (2020), Graph few-shot learning with attribute matching (AMM-GNN: task-conditioned
    modulation of node features).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import NormFn


class GraphConv(nn.Linear):
    """One GCN layer, ``relu(A_hat (h W^T) + b)``, with padding rows kept at zero.

    A subclass of ``nn.Linear`` so that its weight and bias are initialised like every other linear layer
    (:func:`cml.models.init_parameters`); the bias is added after aggregation, as in Kipf & Welling.
    """

    def forward(self, adjacency: Tensor, h: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        """``adjacency: (n, M, M)``, ``h: (n, M, c_in)``, ``mask: (n, M, 1)`` -> ``(n, M, c_out)``."""
        out = torch.matmul(adjacency, F.linear(h, self.weight)) + self.bias
        return torch.relu(out) * mask


class TaskModulation(nn.Module):
    """AMM-GNN-style task-conditioned feature modulation (FiLM) of the node inputs before the GCN.

    From the mean input row of the real nodes in the batch (the task's support set in the inner loop, its
    query set when predicting, as BatchNorm's batch statistics are), a linear map gives per-feature
    ``gamma`` and ``beta``; every node's input becomes ``h * (1 + gamma) + beta``. Weight and bias start at
    zero, so the modulation starts as the identity and the meta-learner learns how tasks should shift it.
    They are psi's parameters, so the inner loop adapts them too.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2 * channels, channels))
        self.bias = nn.Parameter(torch.zeros(2 * channels))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """``h: (n, M, C)``, ``mask: (n, M, 1)`` -> ``(n, M, C)``."""
        summary = (h * mask).sum((0, 1)) / mask.sum().clamp_min(1.0)  # (C,)
        gamma, beta = F.linear(summary, self.weight, self.bias).chunk(2)
        return (h * (1 + gamma) + beta) * mask


class AttributeModulation(nn.Module):
    """AMM-GNN's attribute modulation as Tan et al. (2022) implement it: two maps ``Linear(nodes -> 1)``, ``alpha``
    and ``beta``, each applied to the feature columns of ``nodes`` task nodes (:func:`attribute_vector`).

    The GCN holds them (they are psi's parameters, learned in the outer loop alone: the ``amm-gnn`` base keeps
    them out of the inner loop), but its forward does not use them: they read the whole task, which one set's
    forward does not see, so the base applies them to every set's inputs (:mod:`cml.bases.amm_gnn`).
    """

    def __init__(self, nodes: int) -> None:
        super().__init__()
        self.nodes = nodes
        self.alpha = nn.Linear(nodes, 1)
        self.beta = nn.Linear(nodes, 1)


def attribute_vector(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """One per-feature vector from the features of ``k`` nodes: ``features.T @ weight.T + bias``.

    ``features: (k, F)`` (row ``j`` node ``j``'s features), ``weight: (1, k)``, ``bias: (1,)`` -> ``(F,)``: entry
    ``f`` is ``sum_j weight[0, j] * features[j, f] + bias[0]``, the map applied to feature column ``f``.
    """
    return F.linear(features.transpose(-1, -2), weight, bias).squeeze(-1)  # (F,)


def node_embedding(h: Tensor, mask: Tensor, how: str) -> Tensor:
    """A node's embedding from its subgraph's: ``h: (n, M, c)``, ``mask: (n, M, 1)`` -> ``(n, c)``.

    ``centre``: the centre node's row (index 0); ``mean``: the mean over the subgraph's real nodes (padding
    excluded).
    """
    if how == "centre":
        return h[:, 0]
    if how == "mean":
        return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    raise ValueError(f"unknown graph readout {how!r}; expected 'centre' or 'mean'")


READOUTS = ("centre", "mean")


class GCN(nn.Module):
    """``layers`` GCN layers of width ``hidden`` on packed subgraphs; a node's embedding is read by ``readout``.

    ``forward`` returns the representations the heads and the diagnostics read, like Conv-4 does:
    ``layer1``..``layerL`` (the node's embedding after each layer, ``(n, hidden)``) and ``flat`` (the last
    layer's, which the linear heads read).

    Args:
        in_channels: width of a node's input row (node features plus the centre marker).
        hidden: width of every layer (G-Meta: 64; Tan et al.: 16).
        layers: number of GCN layers (G-Meta: 2, matching 2-hop subgraphs).
        modulation: put a :class:`TaskModulation` before the first layer (AMM-GNN's idea, as FiLM).
        readout: ``centre`` (the centre node's embedding, G-Meta's original) or ``mean`` (the mean over the
            subgraph's nodes, Tan et al.'s G-Meta): see :func:`node_embedding`.
        attribute_nodes: 0, or the node count of AMM-GNN's :class:`AttributeModulation` (held as ``attributes``).
    """

    def __init__(self, in_channels: int, hidden: int, layers: int = 2, modulation: bool = False,
                 readout: str = "centre", attribute_nodes: int = 0) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"a GCN needs at least one layer, got {layers}")
        if readout not in READOUTS:
            raise ValueError(f"unknown graph readout {readout!r}; expected one of {', '.join(READOUTS)}")
        self.in_channels, self.out_features, self.layers = in_channels, hidden, layers
        self.readout = readout
        self.modulation = TaskModulation(in_channels) if modulation else None
        for i in range(1, layers + 1):
            self.add_module(f"layer{i}", GraphConv(in_channels if i == 1 else hidden, hidden))
        if attribute_nodes:
            self.attributes = AttributeModulation(attribute_nodes)

    def forward(self, x: Tensor, step: int = 0, norm: NormFn | None = None) -> dict[str, Tensor]:
        m = x.shape[1]
        if x.ndim != 3 or x.shape[2] != m + self.in_channels:
            raise ValueError(f"packed subgraphs must be (n, M, M + {self.in_channels}), got {tuple(x.shape)}")
        adjacency, h = x[:, :, :m], x[:, :, m:]
        # A real node has its self loop on the diagonal; padding rows are all zero.
        mask = (torch.diagonal(adjacency, dim1=1, dim2=2) > 0).unsqueeze(2).to(x.dtype)  # (n, M, 1)
        if self.modulation is not None:
            h = self.modulation(h, mask)
        out: dict[str, Tensor] = {}
        for i in range(1, self.layers + 1):
            h = getattr(self, f"layer{i}")(adjacency, h, mask)
            out[f"layer{i}"] = node_embedding(h, mask, self.readout)  # (n, hidden)
        out["flat"] = out[f"layer{self.layers}"]
        return out
