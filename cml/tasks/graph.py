"""Few-shot node classification (G-Meta's setting, the paper's Table 3): N-way K-shot tasks over the nodes of
N classes of one graph, each node its local subgraph (:mod:`cml.data.graph`), a GCN (:mod:`cml.gnn`),
cross-entropy; t-SNE of centre-node embeddings is its end-of-training record. Without ``--data`` the graph is the
generated stochastic block model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ConfigError
from ..records import FEATURES
from . import Classification, TaskEntry, no_image_options, shape_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..config import Config

_COMMON = dict(ways=3, shots=3, queries=24, hidden=64, graph_layers=2, hops=2, max_nodes=32, inner_lr=0.1,
               inner_steps=5, test_inner_steps=10, meta_batch=8, meta_lr=1e-3, gamma=1.0, co_learner="linear")


class Graph(Classification):
    name = "graph"
    help_group = "graph"
    field_label = "graph task"
    width_field = "hidden"
    end_record = FEATURES
    summary_fields = ("hops", "max_nodes", "graph_layers", "graph_modulation")
    presets = {
        # G-Meta (Huang & Zitnik, 2020): 3-way 3-shot, 24 queries per class, meta-batch 8, 5 inner steps (10 at
        # test), 2 GCN layers of 64, 2-hop subgraphs, Adam 1e-3. G-Meta's inner step is 1e-3 on its own
        # prototypical loss; on a linear head's cross-entropy that barely moves, so both presets use 0.1 here.
        "paper": dict(_COMMON, steps=10000, val_interval=500, val_tasks=300, test_tasks=600, checkpoint_interval=500,
                      log_interval=50),
        # Minutes on 2 CPU cores: G-Meta's task shape, fewer steps and tasks.
        "quick": dict(_COMMON, steps=300, val_interval=100, val_tasks=50, test_tasks=300, checkpoint_interval=100,
                      log_interval=20),
    }

    def paper_dataset(self, config: Mapping[str, Any]) -> str | None:
        """The graph's name when its split is one of the paper's (``graph_split``); None for the generated graph or
        a graph of the user's own."""
        return config.get("graph_split")

    def check(self, cfg: "Config") -> None:
        super().check(cfg)
        if cfg.max_nodes < 2:
            raise ConfigError(f"max_nodes must be at least 2 (the centre and a neighbour), got {cfg.max_nodes}")
        no_image_options(cfg, "the graph task")

    def load(self, cfg: "Config"):
        from ..data.graph import load_graph_splits

        return load_graph_splits(cfg.data)

    def in_channels(self, splits: Any) -> int:
        return splits.graph.in_channels

    def sampler(self, cfg: "Config", splits: Any, split: str, gen: "torch.Generator", ways: int, shots: int,
                queries: int, device: "torch.device | None" = None):
        from ..data.graph import GraphTaskSampler

        return GraphTaskSampler(splits.subgraphs(cfg.hops, cfg.max_nodes), split, ways, shots, queries, gen)

    def features(self, cfg: "Config", in_channels: int, width: int, norm_layer: Any) -> "nn.Module":
        from ..gnn import GCN  # in_channels: a node's input row (features + centre marker)

        return GCN(in_channels, width, cfg.graph_layers, cfg.graph_modulation)

    def describe(self, cfg: "Config") -> str:
        return f"the test classes of {cfg.data or 'the generated graph'}, {shape_of(cfg)}"

    def data_summary(self, entry: TaskEntry, data: str | None, image_size: int, seed: int) -> str:
        from ..data.graph import load_graph_splits

        return load_graph_splits(data).summary()


FAMILY = Graph()
# channels: the generated graph's node features and the centre marker (cml.data.graph.SBM_FEATURES + 1), a
# number here so that the table stays torch-free (tests/test_tasks.py checks it against the data module).
TASKS = (TaskEntry("graph", FAMILY, "few-shot node classification on a graph (the generated one by default)",
                   needs_data=False, channels=33),)
