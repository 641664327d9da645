"""AMM-GNN (Wang, Ding, Zhang, Shu & Liu, CIKM 2020) as the CML paper ran it: the implementation of Tan et al.
(2022, Zhen-Tan-dmml/TLP-FSNC) that its Table 3 uses.

Per task, from the feature columns of two sets of 10 of the task's nodes (support and query nodes, features only:
transductive, as theirs), two maps ``Linear(10 -> 1)`` give per-feature vectors (:func:`attribute_vectors`):
alpha_1, alpha_2 and beta_1, beta_2. Every node's features are multiplied by ``1 + 0.01 alpha``, alpha the mean of
alpha_1 and alpha_2, before the GCN, in the inner loop, the query losses and evaluation alike (hook
``task_inputs``); beta enters only the regulariser added to each task's outer loss (hook ``outer_regulariser``):

    meta-loss = query cross-entropy - 0.01 [cos(alpha_1, alpha_2) + cos(beta_1, beta_2)]

The two maps are psi's parameters (``features.attributes.*``, hook ``feature_options``) learned in the outer loop
alone (hook ``adapts``); a node's embedding is its centre node's after the 2-layer GCN, which on the node's full
2-hop subgraph is the whole-graph GCN's output at that node (Tan et al. run the GCN on the whole graph). 20
first-order inner steps of 0.1 and Adam 1e-3 under the presets.

Which 10 nodes: Tan et al. draw each set per task with numpy's global generator. Here the two sets are fixed
positions in the task's node order (two draws without replacement, from a generator seeded by the task's node
count: :func:`node_sets`), since the objective is a pure function that every engine maps, ``vmap`` included; the
task's classes and nodes are drawn at random by the sampler, so the nodes at those positions are a random draw of
the task's nodes, each set with a fixed number per class position. Differences from their code as for G-Meta
(:mod:`cml.bases.gmeta`): no dropout, capped subgraphs normalised within themselves, no early stopping; and the
maps are initialised as every linear layer here (PyTorch's default) where theirs draw U(-1, 1).

References: Wang et al., Graph Few-shot Learning with Attribute Matching, CIKM 2020; Tan et al., Transductive
Linear Probing: A Novel Framework for Few-Shot Node Classification, LoG 2022.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from . import BaseLearner, every_tensor
from .gmeta import tan_presets

if TYPE_CHECKING:
    from torch import Tensor

    from ..config import Config
    from ..engines.base import Params
    from ..meta import TaskContext
    from . import InputsFn, RegulariserFn

#: Nodes per set (the maps are ``Linear(NODES -> 1)``).
NODES = 10
#: The modulation's strength: features times ``1 + STRENGTH * alpha``.
STRENGTH = 0.01
#: The regulariser's weight.
WEIGHT = 0.01
#: The parameters' prefix (the GCN's :class:`cml.gnn.AttributeModulation`, named ``attributes``).
PREFIX = "features.attributes."
_SETS_SEED = 1_000_003


@functools.lru_cache(maxsize=64)
def _positions(n: int, nodes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # numpy, not torch: the objective may run inside torch.func.vmap, which refuses torch's random ops.
    rng = np.random.default_rng(_SETS_SEED + n)
    first, second = (tuple(int(i) for i in rng.permutation(n)[:nodes]) for _ in range(2))
    return first, second


def node_sets(n: int, nodes: int = NODES) -> "Tensor":
    """Two sets of ``nodes`` positions among a task's ``n`` nodes, each drawn without replacement: ``(2, nodes)``.

    Fixed for a given ``n`` (numpy's PCG64 seeded by it), so that the objective stays a pure function of the task.

    Raises:
        ValueError: if the task has fewer than ``nodes`` nodes.
    """
    import torch  # the table is read before torch is imported (cml.bases' docstring)

    if n < nodes:
        raise ValueError(f"AMM-GNN draws {nodes} of a task's nodes; this task has {n}")
    return torch.tensor(_positions(n, nodes))


def task_features(context: "TaskContext") -> "Tensor":
    """The task's nodes' own features ``(n, F)``: each packed subgraph's centre row (:mod:`cml.data.graph`),
    support nodes first, then query nodes (the support set alone without a query set)."""
    import torch

    xs = context.support[0]
    sets = [xs] if context.query_x is None else [xs, context.query_x]
    m = xs.shape[-2]
    return torch.cat([x[..., 0, m:-1] for x in sets], dim=-2)  # (n, F): the centre marker is the last column


def attribute_vectors(params: "Params", features: "Tensor") -> tuple["Tensor", "Tensor", "Tensor", "Tensor"]:
    """``(alpha_1, alpha_2, beta_1, beta_2)``, each ``(F,)``, from a task's node features ``(n, F)``.

    alpha_i is ``Linear(10 -> 1)`` (weight ``(1, 10)``, bias ``(1,)``) applied to each feature column of the 10
    nodes of set ``i`` (:func:`node_sets`): ``alpha_i[f] = sum_j w[j] * features[set_i[j], f] + b``
    (:func:`cml.gnn.attribute_vector`); beta_i the same with the beta map.
    """
    from ..gnn import attribute_vector

    sets = node_sets(features.shape[-2], params[PREFIX + "alpha.weight"].shape[-1]).to(features.device)
    out = []
    for which in ("alpha", "beta"):
        w, b = params[f"{PREFIX}{which}.weight"], params[f"{PREFIX}{which}.bias"]
        out += [attribute_vector(features[..., sets[i], :], w, b) for i in (0, 1)]
    return out[0], out[1], out[2], out[3]


def modulate(x: "Tensor", alpha: "Tensor", strength: float = STRENGTH) -> "Tensor":
    """Packed subgraphs ``x: (n, M, M + F + 1)`` with every node's features times ``1 + strength * alpha``
    (``alpha: (F,)``); the adjacency and the centre marker unchanged (multiplied by one, exactly)."""
    import torch

    m = x.shape[-2]
    ones = alpha.new_ones(m)
    scale = torch.cat([ones, 1 + strength * alpha, alpha.new_ones(1)])  # (M + F + 1,)
    return x * scale


def _inputs(params: "Params", x: "Tensor", context: "TaskContext") -> "Tensor":
    a1, a2, _, _ = attribute_vectors(params, task_features(context))
    return modulate(x, (a1 + a2) / 2)


def regulariser(params: "Params", context: "TaskContext", weight: float = WEIGHT) -> "Tensor":
    """``-weight * [cos(alpha_1, alpha_2) + cos(beta_1, beta_2)]`` of the task (cosine with eps 1e-6, as
    ``torch.nn.CosineSimilarity``): it rewards the two node sets' vectors for agreeing."""
    from torch.nn import functional as F

    a1, a2, b1, b2 = attribute_vectors(params, task_features(context))
    return -weight * (F.cosine_similarity(a1, a2, dim=-1, eps=1e-6) + F.cosine_similarity(b1, b2, dim=-1, eps=1e-6))


def _task_inputs(cfg: "Config") -> "InputsFn":
    return _inputs


def _outer_regulariser(cfg: "Config") -> "RegulariserFn":
    return regulariser


def _adapts(cfg: "Config", name: str) -> bool:
    # The maps are meta-parameters: Tan et al.'s inner loop adapts the GCN and the classifier only.
    return not name.startswith(PREFIX) and every_tensor(cfg, name)


def _feature_options(cfg: "Config") -> dict[str, Any]:
    return {"attribute_nodes": NODES}


def _check(cfg: "Config") -> None:
    from ..errors import ConfigError

    queries = min(cfg.queries, cfg.queries if cfg.test_queries is None else cfg.test_queries)
    if cfg.ways * (cfg.shots + queries) < NODES:
        raise ConfigError(f"AMM-GNN draws {NODES} of a task's nodes; a {cfg.ways}-way {cfg.shots}-shot task with "
                          f"{queries} queries per class has {cfg.ways * (cfg.shots + queries)}: raise --queries")


BASE = BaseLearner(
    name="amm-gnn",
    label="AMM-GNN",
    reference="Wang et al., Graph Few-shot Learning with Attribute Matching, CIKM 2020 (as Tan et al., 2022 run it)",
    summary="MAML on a GCN whose node features each task modulates by 1 + 0.01 alpha (alpha from 10 of its nodes), "
            "with a cosine regulariser in the outer loss; first-order inner steps",
    families=("graph",),
    why_only="it modulates node features by a task's own nodes",
    adapts=_adapts,
    feature_options=_feature_options,
    task_inputs=_task_inputs,
    outer_regulariser=_outer_regulariser,
    check=_check,
    # Tan et al.'s AMM-GNN: 500 outer steps (their epochs, one task each), inner step 0.1.
    presets=tan_presets(0.1, 500),
)
