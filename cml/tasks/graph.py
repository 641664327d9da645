"""Few-shot node classification (G-Meta's setting, the paper's Table 3): N-way K-shot tasks over the nodes of
N classes of one graph, each node its local subgraph (:mod:`cml.data.graph`), a GCN (:mod:`cml.gnn`),
cross-entropy; t-SNE of node embeddings is its end-of-training record. Without ``--data`` the graph is the
generated stochastic block model.

The tasks: ``graph`` (the generated graph, or a user's ``--data`` file, which ``--graph-split`` names as one of
the paper's data sets: :data:`PAPER_GRAPHS`), and one generated *stand-in* per paper data set
(``graph-standin-citeseer``, ...: its class count, class split and about its node count, nothing else of it), so
that the paper's Table 3 commands run without the data. A stand-in is never matched to the paper's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, get_args

from ..errors import ConfigError
from ..records import FEATURES
from . import Classification, TaskEntry, no_image_options, shape_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..config import Config

#: ``graph_readout``'s values (:func:`cml.gnn.node_embedding`).
GraphReadout = Literal["centre", "mean"]
#: ``graph_split``'s values: the paper's Table 3 data sets, by the names :mod:`cml.paper` gives them.
GraphSplit = Literal["citeseer", "amazon-computer", "corafull"]


@dataclass(frozen=True)
class PaperGraph:
    """One of the paper's node-classification data sets (its Table 6), and how to get it.

    Attributes:
        label: its printed name.
        classes: its class count (checked against a file given as it).
        split: the (train, val, test) class counts Tan et al.'s code splits it into (the paper prints
            CiteSeer's as "20/10/10", impossible for 6 classes; the code uses 2/2/2).
        nodes, edges, features: the paper's Table 6 counts.
        pyg: the PyTorch Geometric data set Tan et al.'s code loads (named in the error for a file that is not it).
        dgl: the DGL data set of the same graph.
    """

    label: str
    classes: int
    split: tuple[int, int, int]
    nodes: int
    edges: int
    features: int
    pyg: str
    dgl: str


PAPER_GRAPHS: dict[str, PaperGraph] = {
    "citeseer": PaperGraph("CiteSeer", 6, (2, 2, 2), 3327, 4552, 3703, 'Planetoid(root, name="CiteSeer")',
                           "CiteseerGraphDataset()"),
    "amazon-computer": PaperGraph("Amazon-Computer", 10, (4, 3, 3), 13752, 245861, 767,
                                  'Amazon(root, name="Computers")', "AmazonCoBuyComputerDataset()"),
    "corafull": PaperGraph("CoraFull", 70, (40, 15, 15), 19793, 63421, 8710, "CoraFull(root)", "CoraFullDataset()"),
}
assert tuple(PAPER_GRAPHS) == get_args(GraphSplit)


@dataclass(frozen=True)
class GraphEntry(TaskEntry):
    """A graph task: :class:`TaskEntry` and, for a stand-in, the paper data set whose shape it has.

    Attributes:
        standin: None (the generated graph, or ``--data``), or the :data:`PAPER_GRAPHS` key the generated graph
            is a stand-in for (:func:`cml.data.graph.standin_graph`).
    """

    standin: str | None = None


_COMMON = dict(ways=3, shots=3, queries=24, hidden=64, graph_layers=2, hops=2, max_nodes=32, inner_lr=0.1,
               inner_steps=5, test_inner_steps=10, meta_batch=8, meta_lr=1e-3, gamma=1.0, co_learner="linear")


class Graph(Classification):
    name = "graph"
    help_group = "graph"
    field_label = "graph task"
    width_field = "hidden"
    # The paper's co-learner on graphs is an MLP (one hidden layer of 16, Tan et al.'s setting: --co-learner mlp).
    co_learners = ("linear", "mlp")
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
        """The graph's name when the run's ``--data`` file was given as one of the paper's (``graph_split``); None
        for the generated graph, a stand-in (which refuses ``graph_split``) or a graph of the user's own."""
        return config.get("graph_split")

    def check(self, cfg: "Config") -> None:
        super().check(cfg)
        if cfg.max_nodes < 2:
            raise ConfigError(f"max_nodes must be at least 2 (the centre and a neighbour), got {cfg.max_nodes}")
        no_image_options(cfg, "the graph task")
        standin = _standin(cfg)
        if standin is not None and (cfg.data is not None or cfg.graph_split is not None):
            given = "--data" if cfg.data is not None else "--graph-split"
            raise ConfigError(f"task {cfg.task!r} is a generated stand-in of {PAPER_GRAPHS[standin].label}'s shape, "
                              f"not the data set; {given} applies to --task graph (e.g. --task graph --data "
                              f"{standin}.npz --graph-split {standin})")
        if cfg.graph_split is not None and cfg.data is None:
            raise ConfigError(f"graph_split {cfg.graph_split!r} names the data set of a --data file; the generated "
                              f"graph is not {PAPER_GRAPHS[cfg.graph_split].label}: give --data (README, 'Table 3') "
                              f"or run its stand-in, --task graph-standin-{cfg.graph_split}")

    def load(self, cfg: "Config"):
        from ..data.graph import load_graph_splits

        paper = None if cfg.graph_split is None else (cfg.graph_split, PAPER_GRAPHS[cfg.graph_split])
        return load_graph_splits(cfg.data, paper, _standin(cfg))

    def in_channels(self, splits: Any) -> int:
        return splits.graph.in_channels

    def sampler(self, cfg: "Config", splits: Any, split: str, gen: "torch.Generator", ways: int, shots: int,
                queries: int, device: "torch.device | None" = None):
        from ..data.graph import GraphTaskSampler

        return GraphTaskSampler(splits.subgraphs(cfg.hops, cfg.max_nodes), split, ways, shots, queries, gen)

    def features(self, cfg: "Config", in_channels: int, width: int, norm_layer: Any) -> "nn.Module":
        from ..bases import get_base, graph_readout
        from ..gnn import GCN  # in_channels: a node's input row (features + centre marker)

        return GCN(in_channels, width, cfg.graph_layers, cfg.graph_modulation, readout=graph_readout(cfg),
                   **get_base(cfg.base).feature_options(cfg))

    def describe(self, cfg: "Config") -> str:
        standin = _standin(cfg)
        where = (f"{cfg.task} (a generated stand-in of {PAPER_GRAPHS[standin].label}'s shape)" if standin else
                 cfg.data or "the generated graph")
        return f"the test classes of {where}, {shape_of(cfg)}"

    def data_summary(self, entry: TaskEntry, data: str | None, image_size: int, seed: int) -> str:
        from ..data.graph import load_graph_splits

        return load_graph_splits(data, standin=getattr(entry, "standin", None)).summary()


def _standin(cfg: "Config") -> str | None:
    return getattr(cfg.task_entry, "standin", None)


FAMILY = Graph()
# channels: the generated graph's node features and the centre marker (cml.data.graph.SBM_FEATURES + 1), a
# number here so that the table stays torch-free (tests/test_tasks.py checks it against the data module).
TASKS = (GraphEntry("graph", FAMILY, "few-shot node classification on a graph (the generated one by default)",
                    needs_data=False, channels=33),
         *(GraphEntry(f"graph-standin-{key}", FAMILY, f"a generated stand-in of {g.label}'s shape ({g.classes} "
                      f"classes, split {'/'.join(map(str, g.split))}): the paper's Table 3 commands without the data; "
                      f"not {g.label}", needs_data=False, channels=33, standin=key)
           for key, g in PAPER_GRAPHS.items()))
