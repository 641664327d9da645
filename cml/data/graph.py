"""Few-shot node classification on one attributed graph, as in G-Meta (Huang & Zitnik, 2020).

A task is N-way K-shot over the nodes of N sampled classes; each node is represented by its h-hop local
subgraph, capped at ``max_nodes`` nodes by sampling, with the centre node marked. A node's capped subgraph is
drawn once, with a generator seeded by the node's index, and cached (:class:`Subgraphs`): it is part of the
data set, the same in every run, and a task costs only the stacking of its nodes' tensors. The classes are split
disjointly into train, val and test, so test tasks hold classes never seen while meta-training.

**Tensor layout of a task** (what the trainer's ``Task(support=(x, y), query=(x, y))`` carries): every node's
subgraph is packed into one fixed-size matrix, so ``x`` stays one tensor and every engine (higher, torch.func)
works unchanged::

    x: (n, M, M + F + 1)       M = max_nodes, F = node features
       x[i, :, :M]             the subgraph's symmetric-normalised adjacency with self loops,
                               D^-1/2 (A + I) D^-1/2 (Kipf & Welling, 2017), zero-padded beyond its nodes
       x[i, :, M:M + F]        the node features (zero rows for padding)
       x[i, :, M + F]          the centre marker: 1 for the centre node, which is always index 0

**On-disk format** (``.npz``, read with ``allow_pickle=False``; :func:`save_graph` writes it):

- ``edges``: integer ``(E, 2)``, one row per undirected edge ``(u, v)`` with ``0 <= u, v < num_nodes``; either
  or both directions may be listed, duplicates and self loops are dropped on loading;
- ``features``: float ``(num_nodes, F)``, finite;
- ``labels``: integer ``(num_nodes,)``, class ids ``>= 0``; a node with label ``-1`` is unlabelled (it is in
  subgraphs but never a support or query node);
- optional ``train_classes``, ``val_classes``, ``test_classes``: integer class ids, pairwise disjoint, all
  three or none. Without them the labelled classes are split 60/20/20 in an order fixed by the file's contents
  (independent of any run's seed).

The default graph is generated (:func:`generate_sbm_graph`): a stochastic block model with class-dependent
edge densities and node features drawn around per-class prototypes; it is a fixed artefact, the same for every
run and machine (numpy's PCG64 from a constant seed). The *stand-ins* (:func:`standin_graph`) are generated the
same way in the shapes of the CML paper's Table 3 data sets (their class counts, class splits and node counts),
so that its commands run without the data; they are not those data sets.

**The paper's class splits** (:func:`with_paper_split`): a file holding CiteSeer, Amazon-Computer or CoraFull is
split as Tan et al. (2022) split it (counts 2/2/2, 4/3/3, 40/15/15; the classes their code draws, :func:`tan_split`),
or as the file's own stored split when its counts are the paper's; a file with another class count is refused.
"""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from cml.data.base import DataError, Task

if TYPE_CHECKING:
    from cml.tasks.graph import PaperGraph

#: G-Meta's defaults: 2-hop subgraphs. The cap on a subgraph's nodes is this project's choice (G-Meta samples
#: large neighbourhoods down too); 32 keeps a 3-way 3-shot task with 24 queries per class in ~0.7 MB.
DEFAULT_HOPS = 2
DEFAULT_MAX_NODES = 32
#: The generated graph's shape (see :func:`generate_sbm_graph`).
SBM_CLASSES = 64
SBM_FEATURES = 32
SBM_SEED = 20200  # fixed: the graph is a data set, not part of a run's randomness
SUBGRAPH_SEED = 7919  # node v's capped subgraph is sampled with seed SUBGRAPH_SEED + v
#: The memory the packed subgraphs of one graph may hold (:class:`Subgraphs`); nodes beyond it are packed per draw.
CACHE_BYTES = 2 * 2**30
#: Class split of the generated graph (train, val, test); of a file without a split, the fractions.
SBM_SPLIT = (40, 12, 12)
FILE_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("train", "val", "test")
_SPLIT_KEYS = tuple(f"{s}_classes" for s in SPLITS)
_REQUIRED_KEYS = ("edges", "features", "labels")


@dataclass(frozen=True)
class Graph:
    """An undirected attributed graph in CSR form, with node labels and a disjoint class split.

    Attributes:
        indptr, indices: CSR adjacency (symmetric, no self loops, no duplicates): the neighbours of node
            ``v`` are ``indices[indptr[v]:indptr[v + 1]]``, sorted.
        features: ``(num_nodes, F)`` float32.
        labels: ``(num_nodes,)`` int64, ``-1`` for unlabelled nodes.
        classes: ``{"train": ids, "val": ids, "test": ids}``, disjoint int64 arrays of class ids.
        source: where the graph comes from, for messages.
        split_given: the split was given (stored in the file, or by the generator), not the 60/20/20 default.
    """

    indptr: np.ndarray
    indices: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    classes: dict[str, np.ndarray]
    source: str
    split_given: bool = True

    @property
    def num_nodes(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_edges(self) -> int:
        """Undirected edges (each counted once)."""
        return int(len(self.indices) // 2)

    @property
    def in_channels(self) -> int:
        """Width of a node's input row to the GNN: its features plus the centre marker."""
        return self.num_features + 1

    def neighbours(self, v: int) -> np.ndarray:
        return self.indices[self.indptr[v]:self.indptr[v + 1]]

    def edge_list(self) -> np.ndarray:
        """``(E, 2)`` int64, each undirected edge once with ``u < v``."""
        src = np.repeat(np.arange(self.num_nodes), np.diff(self.indptr))
        keep = src < self.indices
        return np.stack([src[keep], self.indices[keep]], axis=1).astype(np.int64)

    def summary(self) -> str:
        per = {s: len(c) for s, c in self.classes.items()}
        return (f"graph {self.source}: {self.num_nodes} nodes, {self.num_edges} edges, {self.num_features} "
                f"features, classes {per['train']}/{per['val']}/{per['test']} (train/val/test)")


def _csr(num_nodes: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric CSR without self loops or duplicates from an ``(E, 2)`` edge list."""
    u, v = edges[:, 0], edges[:, 1]
    keep = u != v
    src = np.concatenate([u[keep], v[keep]])
    dst = np.concatenate([v[keep], u[keep]])
    key = np.unique(src * num_nodes + dst)  # sorts by (src, dst) and drops duplicates
    src, dst = key // num_nodes, key % num_nodes
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=num_nodes), out=indptr[1:])
    return indptr, dst.astype(np.int64)


def build_graph(edges: np.ndarray, features: np.ndarray, labels: np.ndarray,
                classes: dict[str, np.ndarray] | None = None, source: str = "arrays") -> Graph:
    """A :class:`Graph` from arrays in the on-disk format, checked (see the module docstring).

    Args:
        edges: ``(E, 2)`` integer node pairs.
        features: ``(num_nodes, F)`` finite numbers.
        labels: ``(num_nodes,)`` integer class ids, ``-1`` for unlabelled.
        classes: the class split; None splits the labelled classes 60/20/20 in a content-fixed order.
        source: named in every error message (the file's path when loading).

    Raises:
        DataError: one line naming the source, the array and what is wrong.
    """
    def bad(msg: str) -> DataError:
        return DataError(f"{source}: {msg}; see README, 'Graphs', for the .npz format")

    edges, features, labels = np.asarray(edges), np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise bad(f"'features' must be a non-empty (num_nodes, F) array, got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype, np.complexfloating):
        raise bad(f"'features' must be real numbers, got dtype {features.dtype}")
    if not np.isfinite(features).all():
        raise bad(f"'features' holds {int((~np.isfinite(features)).sum())} NaN or infinite values")
    n = features.shape[0]
    if labels.ndim != 1 or labels.shape[0] != n:
        raise bad(f"'labels' must have shape ({n},) (one per node), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise bad(f"'labels' must be integers, got dtype {labels.dtype}")
    if (labels < -1).any():
        raise bad(f"'labels' holds {int((labels < -1).sum())} values below -1 (-1 marks an unlabelled node)")
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise bad(f"'edges' must be an (E, 2) array of node pairs, got shape {edges.shape}")
    if not np.issubdtype(edges.dtype, np.integer):
        raise bad(f"'edges' must be integers (node indices), got dtype {edges.dtype}")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise bad(f"'edges' refers to node {int(edges.min() if edges.min() < 0 else edges.max())}, outside "
                  f"0..{n - 1}")
    labelled = np.unique(labels[labels >= 0])
    given = classes is not None
    if classes is None:
        if len(labelled) < 3:
            raise bad(f"{len(labelled)} labelled class(es); splitting into train/val/test needs at least 3")
        classes = _default_split(labelled, features, labels)
    for split in SPLITS:
        ids = np.asarray(classes[split])
        if ids.ndim != 1 or len(ids) == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise bad(f"'{split}_classes' must be a non-empty 1-D integer array, got {ids.dtype} {ids.shape}")
        missing = np.setdiff1d(ids, labelled)
        if len(missing):
            raise bad(f"'{split}_classes' names class {int(missing[0])}, which no node has")
        if len(np.unique(ids)) != len(ids):
            raise bad(f"'{split}_classes' lists a class twice")
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            both = np.intersect1d(classes[a], classes[b])
            if len(both):
                raise bad(f"class {int(both[0])} is in both '{a}_classes' and '{b}_classes'; the splits must be "
                          f"disjoint")
    indptr, indices = _csr(n, edges.astype(np.int64))
    return Graph(indptr, indices, features.astype(np.float32), labels.astype(np.int64),
                 {s: np.sort(np.asarray(classes[s]).astype(np.int64)) for s in SPLITS}, source, given)


def _default_split(labelled: np.ndarray, features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    # An order fixed by the data alone: the same file always gives the same split, whatever the run's seed.
    rng = np.random.default_rng(len(labelled) * 1_000_003 + int(labels.shape[0]))
    order = labelled[rng.permutation(len(labelled))]
    n_val = max(1, round(len(order) * FILE_SPLIT_FRACTIONS[1]))
    n_test = max(1, round(len(order) * FILE_SPLIT_FRACTIONS[2]))
    n_train = len(order) - n_val - n_test
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def generate_sbm_graph(num_classes: int = SBM_CLASSES, num_features: int = SBM_FEATURES,
                       min_size: int = 40, max_size: int = 70, intra_degree: tuple[float, float] = (3.0, 8.0),
                       inter_degree: float = 2.0, noise: float = 6.0, seed: int = SBM_SEED,
                       split: tuple[int, int, int] = SBM_SPLIT) -> Graph:
    """The default graph: an attributed stochastic block model, one block per class.

    Class ``c`` has ``U{min_size..max_size}`` nodes and its own within-class edge density, chosen so that its
    nodes have on average ``U(*intra_degree)`` neighbours in their own class; every node also has on average
    ``inter_degree`` neighbours in other classes (uniformly). Features are ``prototype_c + noise * N(0, I)``
    with unit-variance Gaussian prototypes: with the default noise a node's own features are a weak cue, and
    averaging over same-class neighbours (what a GCN does) sharpens it, so local structure matters.

    Args:
        num_classes, num_features: blocks and feature width.
        min_size, max_size: class sizes.
        intra_degree: range of the mean within-class degree, drawn per class.
        inter_degree: mean number of neighbours in other classes.
        noise: feature noise scale relative to the prototypes' spread.
        seed: numpy PCG64 seed (the default makes the project's fixed data set).
        split: numbers of train, val and test classes (a random, seed-fixed partition).

    Raises:
        DataError: if ``split`` does not add up to ``num_classes`` or a size is not positive.
    """
    if sum(split) != num_classes or min(split) < 1:
        raise DataError(f"class split {split} must be three positive counts adding up to {num_classes}")
    if not 2 <= min_size <= max_size:
        raise DataError(f"class sizes must satisfy 2 <= min_size <= max_size, got {min_size}, {max_size}")
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_size, max_size + 1, size=num_classes)
    labels = np.repeat(np.arange(num_classes), sizes)
    n = len(labels)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    edges = []
    degrees = rng.uniform(*intra_degree, size=num_classes)
    for c in range(num_classes):
        size, start = int(sizes[c]), int(starts[c])
        pairs = size * (size - 1) // 2
        m = rng.binomial(pairs, min(1.0, degrees[c] / (size - 1)))
        u, v = rng.integers(0, size, size=(2, m)) + start
        edges.append(np.stack([u, v], 1))
    m_out = rng.binomial(n * (n - 1) // 2, inter_degree / (n - 1))
    u, v = rng.integers(0, n, size=(2, m_out))
    cross = labels[u] != labels[v]  # within-class pairs come only from the block's own density
    edges.append(np.stack([u[cross], v[cross]], 1))
    prototypes = rng.standard_normal((num_classes, num_features))
    features = prototypes[labels] + noise * rng.standard_normal((n, num_features))
    order = rng.permutation(num_classes)
    a, b = split[0], split[0] + split[1]
    classes = {"train": order[:a], "val": order[a:b], "test": order[b:]}
    return build_graph(np.concatenate(edges), features, labels, classes,
                       source=f"generated SBM ({num_classes} classes, seed {seed})")


#: Per stand-in: (classes, class split, (min, max) class size, seed). The class counts and splits are the paper's
#: data sets' (its Table 6, with CiteSeer's 2/2/2 of Tan et al.'s code); class sizes put the node count near
#: each data set's (3,327, 13,752 and 19,793 nodes). Features, degrees and difficulty are the generator's own.
STANDINS: dict[str, tuple[int, tuple[int, int, int], tuple[int, int], int]] = {
    "citeseer": (6, (2, 2, 2), (400, 700), SBM_SEED + 6),
    "amazon-computer": (10, (4, 3, 3), (1100, 1650), SBM_SEED + 10),
    "corafull": (70, (40, 15, 15), (150, 420), SBM_SEED + 70),
}


def standin_graph(shape: str) -> Graph:
    """The generated stand-in of a paper data set's shape (:data:`STANDINS`): a stochastic block model like the
    default graph, with that data set's class count, class split and about its node count. Not the data set.

    Raises:
        KeyError: for a shape that has no stand-in.
    """
    classes, split, (low, high), seed = STANDINS[shape]
    graph = generate_sbm_graph(num_classes=classes, min_size=low, max_size=high, seed=seed, split=split)
    return dataclasses.replace(graph, source=f"generated stand-in of {shape}'s shape ({classes} classes, "
                                             f"{'/'.join(map(str, split))}, seed {seed}; not {shape})")


#: The seed of Tan et al.'s code (TLP-FSNC), whose first draws after seeding pick its class split.
TAN_SEED = 1234


def tan_split(num_classes: int, counts: tuple[int, int, int], seed: int = TAN_SEED) -> dict[str, np.ndarray]:
    """The class split Tan et al.'s code draws for a data set of ``num_classes`` classes (ids ``0..C-1``).

    Their loader draws the test classes first, then the validation classes from the remaining ones (in
    increasing order), with numpy's legacy global generator just after ``np.random.seed(1234)``, and keeps the
    rest for training; :class:`numpy.random.RandomState` with the same seed makes the same draws. That is the
    split of their code's first load of a data set (the CML paper does not list its classes).

    Args:
        num_classes: the data set's classes.
        counts: (train, val, test) class counts.
        seed: the seed their code sets.
    """
    rng = np.random.RandomState(seed)
    test = rng.choice(list(range(num_classes)), counts[2], replace=False)
    rest = sorted(set(range(num_classes)) - set(test.tolist()))
    val = rng.choice(rest, counts[1], replace=False)
    train = sorted(set(rest) - set(val.tolist()))
    return {"train": np.array(train, dtype=np.int64), "val": np.asarray(val, dtype=np.int64),
            "test": np.asarray(test, dtype=np.int64)}


def with_paper_split(graph: Graph, name: str, paper: "PaperGraph") -> Graph:
    """``graph`` (a user's file given as ``--graph-split name``, the paper's data set ``paper``) with that data
    set's class split.

    The file's own stored split is kept when its counts are the paper's; without a stored split, the labelled
    classes (in increasing order) are split as Tan et al.'s code splits them (:func:`tan_split`). A file whose
    node or feature count is not the paper's is warned about (another version of the data set), not refused.

    Raises:
        DataError: one line, if the file's labelled classes are not the data set's, or its stored split has
            other counts.
    """
    labelled = np.unique(graph.labels[graph.labels >= 0])
    want = "/".join(map(str, paper.split))
    if len(labelled) != paper.classes:
        raise DataError(f"{graph.source} has {len(labelled)} labelled classes; --graph-split {name} needs "
                        f"{paper.label}'s {paper.classes} (split {want}): is the file {paper.label}? (PyTorch "
                        f"Geometric's {paper.pyg}, DGL's {paper.dgl}; README, 'Table 3')")
    if (graph.num_nodes, graph.num_features) != (paper.nodes, paper.features):
        warnings.warn(f"{graph.source} has {graph.num_nodes} nodes and {graph.num_features} features; the paper's "
                      f"{paper.label} has {paper.nodes} and {paper.features}: its runs are set beside the paper's "
                      f"{paper.label} numbers all the same", stacklevel=2)
    if graph.split_given:
        have = tuple(len(graph.classes[s]) for s in SPLITS)
        if have != tuple(paper.split):
            raise DataError(f"{graph.source} stores a {'/'.join(map(str, have))} class split; {paper.label}'s is "
                            f"{want}: store the paper's split or none (then Tan et al.'s classes are drawn)")
        return graph
    split = tan_split(len(labelled), paper.split)
    classes = {s: labelled[split[s]] for s in SPLITS}
    return dataclasses.replace(graph, classes=classes, split_given=True,
                               source=f"{graph.source} ({paper.label}, Tan et al.'s {want} class split)")


def save_graph(path: str | Path, graph: Graph) -> Path:
    """Writes ``graph`` in the documented ``.npz`` format (with its class split)."""
    path = Path(path)
    np.savez_compressed(path, edges=graph.edge_list(), features=graph.features, labels=graph.labels,
                        **{f"{s}_classes": graph.classes[s] for s in SPLITS})
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_graph(path: str | Path) -> Graph:
    """Reads a graph ``.npz`` (format in the module docstring), never executing pickled code.

    Raises:
        DataError: one line naming the file: missing, not an .npz, a missing or malformed array, a
            partial or overlapping class split.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"graph file {path} does not exist; give an .npz with edges, features and labels "
                        f"(README, 'Graphs'), or leave --data out for the generated graph")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path} holds a single array, not an .npz of named arrays (edges, features, "
                            f"labels); see README, 'Graphs'")
        with loaded as npz:
            keys = set(npz.files)
            missing = [k for k in _REQUIRED_KEYS if k not in keys]
            if missing:
                raise DataError(f"{path} has no array {', '.join(map(repr, missing))} (it has: "
                                f"{', '.join(sorted(keys)) or 'nothing'}); see README, 'Graphs'")
            present = [k for k in _SPLIT_KEYS if k in keys]
            if present and len(present) != 3:
                raise DataError(f"{path} has {', '.join(present)} but not all of {', '.join(_SPLIT_KEYS)}; give "
                                f"all three class lists or none")
            arrays = {k: npz[k] for k in (*_REQUIRED_KEYS, *present)}
    except DataError:
        raise
    except ValueError as e:  # an object array needs pickle: refused
        raise DataError(f"cannot read {path} without pickle ({e}); save plain numeric arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataError(f"cannot read {path} as an .npz ({type(e).__name__}: {e}); the file is damaged or not "
                        f"written by numpy.savez") from None
    classes = {s: arrays[f"{s}_classes"] for s in SPLITS} if present else None
    return build_graph(arrays["edges"], arrays["features"], arrays["labels"], classes, source=str(path))


# -- subgraphs ---------------------------------------------------------------------------------------------

def khop_nodes(graph: Graph, centre: int, hops: int, max_nodes: int,
               generator: torch.Generator | None = None) -> np.ndarray:
    """The nodes of ``centre``'s ``hops``-hop neighbourhood, at most ``max_nodes``, centre first.

    Nodes are taken hop by hop (nearer hops first). The hop that does not fit is sampled uniformly without
    replacement with ``generator`` down to the room left, and farther hops are dropped, so the subgraph stays
    connected. Within a hop, nodes are sorted by index.

    Raises:
        ValueError: if ``max_nodes < 1``, ``hops < 0`` or the cap needs sampling and no generator is given.
    """
    if max_nodes < 1 or hops < 0:
        raise ValueError(f"max_nodes must be >= 1 and hops >= 0, got {max_nodes}, {hops}")
    kept = [np.array([centre], dtype=np.int64)]
    seen = {int(centre)}
    frontier = kept[0]
    room = max_nodes - 1
    for _ in range(hops):
        if room == 0 or len(frontier) == 0:
            break
        nbrs = np.unique(np.concatenate([graph.neighbours(int(v)) for v in frontier]))
        new = np.array([v for v in nbrs.tolist() if v not in seen], dtype=np.int64)
        if len(new) > room:
            if generator is None:
                raise ValueError(f"node {centre}'s neighbourhood exceeds max_nodes={max_nodes}; sampling needs a "
                                 f"generator")
            pick = torch.randperm(len(new), generator=generator)[:room].numpy()
            new = np.sort(new[pick])
        kept.append(new)
        seen.update(new.tolist())
        room -= len(new)
        frontier = new
    return np.concatenate(kept)


def normalized_adjacency(graph: Graph, nodes: np.ndarray) -> np.ndarray:
    """``D^-1/2 (A + I) D^-1/2`` of the subgraph induced by ``nodes`` (degrees within the subgraph)."""
    n = len(nodes)
    local = np.full(graph.num_nodes, -1, dtype=np.int64)
    local[nodes] = np.arange(n)
    counts = graph.indptr[nodes + 1] - graph.indptr[nodes]
    rows = np.repeat(np.arange(n), counts)
    cols = local[np.concatenate([graph.neighbours(int(v)) for v in nodes])]
    inside = cols >= 0
    a = np.eye(n, dtype=np.float64)
    a[rows[inside], cols[inside]] = 1.0
    d = 1.0 / np.sqrt(a.sum(1))
    return d[:, None] * a * d[None, :]


def pack_subgraph(graph: Graph, nodes: np.ndarray, max_nodes: int) -> Tensor:
    """One node's subgraph as a ``(M, M + F + 1)`` float32 matrix (layout in the module docstring)."""
    n, f = len(nodes), graph.num_features
    if n > max_nodes:
        raise ValueError(f"{n} nodes do not fit max_nodes={max_nodes}")
    out = np.zeros((max_nodes, max_nodes + f + 1), dtype=np.float32)
    out[:n, :n] = normalized_adjacency(graph, nodes)
    out[:n, max_nodes:max_nodes + f] = graph.features[nodes]
    out[0, max_nodes + f] = 1.0
    return torch.from_numpy(out)


def unpack_subgraphs(x: Tensor, num_features: int) -> tuple[Tensor, Tensor]:
    """``(adjacency (n, M, M), node inputs (n, M, F + 1))`` from packed subgraphs ``x: (n, M, M + F + 1)``."""
    m = x.shape[1]
    if x.ndim != 3 or x.shape[2] != m + num_features + 1:
        raise ValueError(f"packed subgraphs must be (n, M, M + {num_features} + 1), got {tuple(x.shape)}")
    return x[:, :, :m], x[:, :, m:]


# -- tasks -------------------------------------------------------------------------------------------------

class Subgraphs:
    """Every node's packed subgraph (``hops``-hop, at most ``max_nodes`` nodes), built on first use and cached.

    A neighbourhood larger than the cap is sampled with a generator seeded by the node's index, so a node's
    subgraph is a fixed part of the data set: the same for every run, seed and split, and computed once per
    process however often the node is drawn (as G-Meta extracts each node's subgraph once), within a memory
    budget; a node packed after the budget is spent is packed again on each draw (the same tensor's values).

    Args:
        graph: the graph.
        hops, max_nodes: the subgraph's radius and node cap.
        cache_bytes: the budget of the cache (:data:`CACHE_BYTES`).
    """

    def __init__(self, graph: Graph, hops: int = DEFAULT_HOPS, max_nodes: int = DEFAULT_MAX_NODES,
                 cache_bytes: int = CACHE_BYTES) -> None:
        if hops < 1 or max_nodes < 2:
            raise DataError(f"subgraphs need hops >= 1 and max_nodes >= 2, got hops={hops}, max_nodes={max_nodes}")
        self.graph, self.hops, self.max_nodes = graph, hops, max_nodes
        self._cache: dict[int, Tensor] = {}
        # A packed subgraph holds its nodes' features: with thousands of features (CoraFull's 8,710: 1.1 MB a node
        # at 32 nodes) caching every node would not fit in memory; beyond the budget nodes are packed on each draw.
        self._room = cache_bytes

    def nodes(self, centre: int) -> np.ndarray:
        """The subgraph's nodes, centre first (:func:`khop_nodes` with the node's own generator)."""
        gen = torch.Generator().manual_seed(SUBGRAPH_SEED + int(centre))
        return khop_nodes(self.graph, int(centre), self.hops, self.max_nodes, gen)

    def __getitem__(self, centre: int) -> Tensor:
        """``centre``'s packed subgraph ``(M, M + F + 1)`` (layout in the module docstring)."""
        centre = int(centre)
        if centre in self._cache:
            return self._cache[centre]
        packed = pack_subgraph(self.graph, self.nodes(centre), self.max_nodes)
        size = packed.numel() * packed.element_size()
        if size <= self._room:
            self._cache[centre] = packed
            self._room -= size
        return packed


class GraphTaskSampler:
    """Draws N-way K-shot node-classification tasks over the classes of one split of a graph.

    Args:
        subgraphs: the graph's node subgraphs (which fix the graph, the hops and the cap).
        split: ``train``, ``val`` or ``test``: which classes to draw from.
        ways, shots, queries: N, K and Q (queries per class, as G-Meta's ``k_qry``).
        generator: the sampler's own RNG (classes and nodes); the same state gives the same tasks.

    Raises:
        DataError: if the split has fewer than ``ways`` classes (at construction) or a drawn class has fewer
            than ``shots + queries`` labelled nodes (on the draw).
    """

    def __init__(self, subgraphs: Subgraphs, split: str, ways: int, shots: int, queries: int,
                 generator: torch.Generator) -> None:
        graph = subgraphs.graph
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        for label, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            if value < 1:
                raise DataError(f"{label} must be at least 1, got {value}")
        classes = graph.classes[split]
        if len(classes) < ways:
            raise DataError(f"the {split} split of {graph.source} has {len(classes)} classes, fewer than "
                            f"ways={ways}; lower --ways or use a graph with more classes")
        self.subgraphs, self.graph, self.split, self.classes = subgraphs, graph, split, classes
        self.ways, self.shots, self.queries, self.generator = ways, shots, queries, generator
        self._members = {int(c): np.flatnonzero(graph.labels == c) for c in classes}

    def sample(self) -> Task:
        """One task; labels 0..ways-1 in a random class order, support and query nodes of a class disjoint."""
        g = self.generator
        picked = torch.randperm(len(self.classes), generator=g)[: self.ways].tolist()
        per_class = self.shots + self.queries
        support, query = [], []
        for c in (int(self.classes[i]) for i in picked):
            members = self._members[c]
            if len(members) < per_class:
                raise DataError(f"class {c} in the {self.split} split of {self.graph.source} has {len(members)} "
                                f"nodes, fewer than shots + queries = {per_class}; lower --shots or --queries")
            nodes = members[torch.randperm(len(members), generator=g)[:per_class].numpy()]
            xs = [self.subgraphs[int(v)] for v in nodes]
            support.extend(xs[: self.shots])
            query.extend(xs[self.shots:])
        labels = torch.arange(self.ways)
        return Task((torch.stack(support), labels.repeat_interleave(self.shots)),
                    (torch.stack(query), labels.repeat_interleave(self.queries)))


class GraphSplits:
    """The graph task's data: one graph whose classes are split three ways (what ``TaskSource`` holds).

    Indexing by split gives that split's class ids, so ``len(splits[split])`` counts its classes.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.description = graph.summary()
        self._subgraphs: dict[tuple[int, int], Subgraphs] = {}

    def subgraphs(self, hops: int, max_nodes: int) -> Subgraphs:
        """The (cached) node subgraphs for ``hops`` and ``max_nodes``, shared by every sampler of the graph."""
        key = (hops, max_nodes)
        if key not in self._subgraphs:
            self._subgraphs[key] = Subgraphs(self.graph, hops, max_nodes)
        return self._subgraphs[key]

    def __getitem__(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected 'train', 'val' or 'test'")
        return self.graph.classes[split]

    def summary(self) -> str:
        lines = [self.description]
        for split in SPLITS:
            counts = [int((self.graph.labels == c).sum()) for c in self.graph.classes[split]]
            lines.append(f"  {split:5s}: {len(counts):5d} classes, {min(counts)}-{max(counts)} nodes per class, "
                         f"{sum(counts)} nodes")
        return "\n".join(lines)


def load_graph_splits(path: str | Path | None, paper: "tuple[str, PaperGraph] | None" = None,
                      standin: str | None = None) -> GraphSplits:
    """The generated graph (``path`` None), a stand-in (``standin``: :func:`standin_graph`) or a user's ``.npz``
    (with the class split of the paper's data set ``paper = (name, facts)`` when given: :func:`with_paper_split`),
    as :class:`GraphSplits`."""
    if standin is not None:
        return GraphSplits(standin_graph(standin))
    if path is None:
        return GraphSplits(generate_sbm_graph())
    graph = load_graph(path)
    return GraphSplits(graph if paper is None else with_paper_split(graph, *paper))
