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


class GCN(nn.Module):
    """``layers`` GCN layers of width ``hidden`` on packed subgraphs; the centre node's embedding is ``flat``.

    ``forward`` returns the representations the heads and the diagnostics read, like Conv-4 does:
    ``layer1``..``layerL`` (the centre node's embedding after each layer, ``(n, hidden)``) and ``flat`` (the
    last layer's, which the linear heads read).

    Args:
        in_channels: width of a node's input row (node features plus the centre marker).
        hidden: width of every layer (G-Meta: 64).
        layers: number of GCN layers (G-Meta: 2, matching 2-hop subgraphs).
        modulation: put a :class:`TaskModulation` before the first layer (AMM-GNN's idea).
    """

    def __init__(self, in_channels: int, hidden: int, layers: int = 2, modulation: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"a GCN needs at least one layer, got {layers}")
        self.in_channels, self.out_features, self.layers = in_channels, hidden, layers
        self.modulation = TaskModulation(in_channels) if modulation else None
        for i in range(1, layers + 1):
            self.add_module(f"layer{i}", GraphConv(in_channels if i == 1 else hidden, hidden))

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
            out[f"layer{i}"] = h[:, 0]  # (n, hidden): the centre node
        out["flat"] = out[f"layer{self.layers}"]
        return out
