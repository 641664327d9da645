"""The graph base learners of the paper's Table 3 (cml/bases/gmeta.py, cml/bases/amm_gnn.py) and what they need:
the GCN's mean readout, G-Meta's prototypical loss, AMM-GNN's attribute modulation and regulariser, first-order
inner steps, one objective on every engine, the paper's class splits and stand-ins, and the Table 3 page."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cml.bases import BASES, get_base
from cml.bases.amm_gnn import attribute_vectors, modulate, node_sets, regulariser, task_features
from cml.bases.gmeta import prototype_logits
from cml.config import Config, ConfigError, preset
from cml.data.base import DataError, Task
from cml.data.graph import (GraphTaskSampler, Subgraphs, generate_sbm_graph, load_graph_splits, standin_graph,
                            tan_split)
from cml.engines import BatchedBackend, FuncBackend, HigherBackend
from cml.gnn import GCN
from cml.meta import (TaskContext, adapt, evaluate_tasks, inner_spec, meta_gradient, outer_gradient, prediction,
                      task_losses)
from cml.models import build_model, init_parameters
from cml.paper import matching
from cml.tasks import get_task
from cml.tasks.graph import PAPER_GRAPHS

ROOT = Path(__file__).resolve().parents[1]
GRAPH_BASES = [b for b in BASES if get_base(b).families]
# Each graph base, with G-Meta also in its original prototypical form.
VARIANTS = [("gmeta", {}), ("gmeta", {"gmeta_loss": "proto"}), ("amm-gnn", {})]
IDS = ["gmeta-ce", "gmeta-proto", "amm-gnn"]


def small_graph():
    # 4 classes of 8-10 nodes, 3 features: train holds two classes, enough nodes for 1 shot + 4 queries each.
    return generate_sbm_graph(num_classes=4, num_features=3, min_size=8, max_size=10, noise=1.0, seed=3,
                              split=(2, 1, 1))


def cfg_for(base: str, method: str, **kw) -> Config:
    values = dict(base=base, method=method, task="graph", ways=2, shots=1, queries=4, hidden=4, max_nodes=5,
                  inner_steps=2, inner_lr=0.3, gamma=0.5, first_order=True, co_learner="mlp")
    if method == "noisy":
        values["noise_std"] = 0.1
    return Config(**{**values, **kw})


def tasks_for(cfg: Config, n: int, seed: int = 0) -> list[Task]:
    sampler = GraphTaskSampler(Subgraphs(small_graph(), 2, cfg.max_nodes), "train", cfg.ways, cfg.shots, cfg.queries,
                               torch.Generator().manual_seed(seed))
    dtype = torch.get_default_dtype()
    return [Task((t.support[0].to(dtype), t.support[1]), (t.query[0].to(dtype), t.query[1]))
            for t in (sampler.sample() for _ in range(n))]


def model_for(cfg: Config, seed: int = 0):
    model = build_model(cfg, in_channels=4).to(torch.get_default_dtype())
    init_parameters(model, torch.Generator().manual_seed(seed))
    return model


def relative_error(got: dict, want: dict) -> float:
    assert got.keys() == want.keys()
    whole = math.sqrt(sum(float(v.pow(2).sum()) for v in want.values()))
    assert whole > 0
    return max(float((got[n] - want[n]).norm()) for n in want) / whole


# -- the rows ---------------------------------------------------------------------------------------------

def test_the_graph_bases_are_rows_of_the_table_and_refuse_other_families_with_the_reason():
    assert GRAPH_BASES == ["gmeta", "amm-gnn"] and BASES[-2:] == ("gmeta", "amm-gnn")
    assert get_base("gmeta").label == "G-Meta" and get_base("amm-gnn").label == "AMM-GNN"
    with pytest.raises(ConfigError, match=r"base 'gmeta' runs on graph tasks only \(it reads each node's subgraph; "
                                          r"its prototypical loss on images would be ProtoMAML"):
        Config(base="gmeta", task="fonts")
    with pytest.raises(ConfigError, match="base 'amm-gnn' runs on graph tasks only"):
        Config(base="amm-gnn", task="sinusoid")
    with pytest.raises(ConfigError, match="gmeta_loss is an option of base 'gmeta', not of 'maml'"):
        Config(task="graph", gmeta_loss="proto")
    with pytest.raises(ConfigError, match="AMM-GNN draws 10 of a task's nodes; a 2-way 1-shot task with 3 queries "
                                          "per class has 8: raise --queries"):
        Config(base="amm-gnn", task="graph", ways=2, shots=1, queries=3)
    # The paper's names of the cells, as in Table 1.
    from cml.methods import display_name
    assert display_name("G-Meta", "gmeta", "cml") == "G-Meta + CML"


def test_presets_are_tan_et_al_s():
    for base, rate, steps in (("gmeta", 0.05, 1000), ("amm-gnn", 0.1, 500)):
        cfg = preset("paper", "graph-standin-citeseer", "cml", base=base, ways=2, shots=5)
        assert (cfg.hidden, cfg.inner_steps, cfg.test_inner_steps, cfg.inner_lr, cfg.first_order) == (16, 20, 20, rate,
                                                                                                       True)
        assert (cfg.meta_lr, cfg.co_learner, cfg.gamma, cfg.queries, cfg.test_queries, cfg.test_tasks) == (
            1e-3, "mlp", 0.2, 5, 10, 100)
        assert (cfg.ways, cfg.shots, cfg.steps, cfg.meta_batch) == (2, 5, steps, 1)
    assert preset("quick", "graph", "none", base="gmeta").first_order
    assert not preset("quick", "graph", "none", base="gmeta", first_order=False).first_order


# -- the pieces, by hand ------------------------------------------------------------------------------------

def test_mean_readout_is_the_mean_over_the_subgraphs_nodes():
    """A path 0-1-2 packed with M = 4 (one padding row), features (1, 0), (0, 2), (3, 1) and the centre marker,
    one GCN layer with identity weights and zero biases: each node's output is relu(A_hat X) with A_hat =
    D^-1/2 (A + I) D^-1/2 (degrees 2, 3, 2), the mean readout its mean over the 3 real nodes (the padding row
    excluded), the centre readout its row 0."""
    a = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float64)
    d = 1 / np.sqrt(a.sum(1))
    a_hat = d[:, None] * a * d[None, :]
    inputs = np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0], [3.0, 1.0, 0.0]])  # features, then the centre marker
    x = torch.zeros(1, 4, 4 + 3, dtype=torch.float64)
    x[0, :3, :3] = torch.from_numpy(a_hat)
    x[0, :3, 4:] = torch.from_numpy(inputs)
    # By hand: A_hat's rows are (1/2, 1/r6, 0), (1/r6, 1/3, 1/r6), (0, 1/r6, 1/2), r6 = sqrt(6), so the outputs
    # (every entry non-negative: the ReLU keeps them) are node 0: (1/2, 2/r6, 1/2), node 1: (4/r6, 2/3 + 1/r6, 1/r6),
    # node 2: (3/2, 2/r6 + 1/2, 0).
    r6 = math.sqrt(6)
    h = np.array([[1 / 2, 2 / r6, 1 / 2], [4 / r6, 2 / 3 + 1 / r6, 1 / r6], [3 / 2, 2 / r6 + 1 / 2, 0]])
    np.testing.assert_allclose(np.maximum(a_hat @ inputs, 0), h, rtol=1e-14)
    mean = [(2 + 4 / r6) / 3, (5 / r6 + 2 / 3 + 1 / 2) / 3, (1 / 2 + 1 / r6) / 3]
    for how, want in (("mean", mean), ("centre", h[0])):
        gcn = GCN(in_channels=3, hidden=3, layers=1, readout=how).double()
        with torch.no_grad():
            gcn.layer1.weight.copy_(torch.eye(3))
            gcn.layer1.bias.zero_()
        with torch.no_grad():
            out = gcn(x)
        np.testing.assert_allclose(out["flat"][0].numpy(), want, rtol=1e-14)
        assert torch.equal(out["layer1"], out["flat"])


def test_amm_alpha_of_a_hand_built_ten_node_matrix_and_its_regulariser():
    """Node j of the task (j = 0..9) has features (j, 1, j^2); the alpha map has weight w_j = 0.1 (j + 1) and bias
    0.5, the beta map weight 1 and bias 0. A set S of positions gives alpha[f] = sum_j w_j x[S_j, f] + 0.5 (the
    map applied to feature column f of the set's nodes), beta[f] = sum_j x[S_j, f]."""
    n = 10
    feats = torch.tensor([[j, 1.0, j * j] for j in range(n)], dtype=torch.float64)  # (10, 3)
    w = 0.1 * torch.arange(1, 11, dtype=torch.float64)
    params = {"features.attributes.alpha.weight": w.view(1, 10),
              "features.attributes.alpha.bias": torch.tensor([0.5], dtype=torch.float64),
              "features.attributes.beta.weight": torch.ones(1, 10, dtype=torch.float64),
              "features.attributes.beta.bias": torch.zeros(1, dtype=torch.float64)}
    sets = node_sets(n)
    assert sets.shape == (2, 10) and all(sorted(s.tolist()) == list(range(10)) for s in sets)  # all 10, reordered
    a1, a2, b1, b2 = attribute_vectors(params, feats)
    for got, s in ((a1, sets[0]), (a2, sets[1])):
        js = s.tolist()
        want = [sum(w[i].item() * feats[j, f].item() for i, j in enumerate(js)) + 0.5 for f in range(3)]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)
        # column 1 (all ones): sum of the weights + bias = 5.5 + 0.5, whatever the order
        assert got[1].item() == pytest.approx(6.0, rel=1e-14)
    np.testing.assert_allclose(b1.numpy(), [45.0, 10.0, 285.0], rtol=1e-14)  # sums over all ten nodes
    np.testing.assert_allclose(b2.numpy(), [45.0, 10.0, 285.0], rtol=1e-14)

    def cos(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    # As one task: support 2 nodes, query 8, each a packed subgraph whose centre row holds the node's features.
    m = 2
    x = torch.zeros(n, m, m + 3 + 1, dtype=torch.float64)
    x[:, 0, m:m + 3] = feats
    x[:, 0, 0] = x[:, 0, -1] = 1.0
    context = TaskContext((x[:2], torch.tensor([0, 1])), x[2:])
    assert torch.equal(task_features(context), feats)
    want = -0.01 * (cos(a1, a2) + 1.0)  # beta_1 = beta_2 here
    assert regulariser(params, context).item() == pytest.approx(want, rel=1e-12)
    assert cos(a1, a2) < 1 - 1e-6  # the two sets' alphas differ (their orders weigh the nodes differently)
    # The modulation scales the feature columns by 1 + 0.01 alpha and leaves adjacency and marker alone.
    alpha = (a1 + a2) / 2
    y = modulate(x, alpha)
    assert torch.equal(y[..., :m], x[..., :m]) and torch.equal(y[..., -1], x[..., -1])
    torch.testing.assert_close(y[..., m:m + 3], x[..., m:m + 3] * (1 + 0.01 * alpha), rtol=1e-15, atol=0)
    with pytest.raises(ValueError, match="AMM-GNN draws 10 of a task's nodes; this task has 9"):
        node_sets(9)


def test_prototypical_loss_of_a_hand_worked_2_way_2_shot_task():
    """The docstring's case (cml.bases.gmeta.prototype_logits): support class 0 at (0, 0), (2, 0), class 1 at (0, 2),
    (0, 4): prototypes (1, 0) and (0, 3); squared distances of the support points (1, 9), (1, 13), (5, 1), (17, 1);
    loss = mean of log(1 + e^-8), log(1 + e^-12), log(1 + e^-4), log(1 + e^-16) = 4.62290e-3."""
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    logits = prototype_logits(support, support, y, 2)
    assert torch.equal(logits, -torch.tensor([[1.0, 9.0], [1.0, 13.0], [5.0, 1.0], [17.0, 1.0]], dtype=torch.float64))
    loss = F.cross_entropy(logits, y)
    want = sum(math.log1p(math.exp(-k)) for k in (8, 12, 4, 16)) / 4
    assert loss.item() == pytest.approx(want, rel=1e-12) and want == pytest.approx(4.62290e-3, rel=1e-5)
    # A query at (1, 1): distances 1 and 5 to the prototypes; it is class 0's.
    q = prototype_logits(torch.tensor([[1.0, 1.0]], dtype=torch.float64), support, y, 2)
    assert q.tolist() == [[-1.0, -5.0]]


def test_the_original_g_meta_has_no_classifier_and_reads_the_centre():
    cfg = cfg_for("gmeta", "cml", gmeta_loss="proto")
    model = model_for(cfg)
    assert not [n for n, _ in model.named_parameters() if n.startswith("head.")] and model.features.readout == "centre"
    assert model_for(cfg_for("gmeta", "none")).features.readout == "mean"
    assert model_for(cfg_for("gmeta", "none", graph_readout="centre")).features.readout == "centre"
    amm = model_for(cfg_for("amm-gnn", "none"))
    assert amm.features.readout == "centre" and amm.features.attributes.alpha.weight.shape == (1, 10)


# -- the objective ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base, kw", VARIANTS, ids=IDS)
def test_first_order_inner_steps_give_the_first_order_meta_gradient(float64, base, kw):
    """Under the presets' first order the meta-gradient is the gradient of the query loss at the adapted
    parameters, taken as if they were the initial ones (FOMAML: an inner step's Jacobian is the identity), computed
    here from a detached inner loop; second order differs."""
    cfg = cfg_for(base, "cml", **kw)
    assert get_base(base).outer_order(cfg, 0) == "first"
    model = model_for(cfg)
    params = dict(model.named_parameters())
    tasks = tasks_for(cfg, 2)
    got = meta_gradient(FuncBackend(model), cfg, params, tasks).total
    want = {n: torch.zeros_like(p) for n, p in params.items()}
    backend, predict = FuncBackend(model), prediction(cfg)
    reg = get_base(base).outer_regulariser(cfg)
    for task in tasks:
        xq, yq = task.query
        # adapted tensors are new leaves; those the inner loop leaves alone (phi, AMM's maps) are the originals
        adapted = adapt(backend, inner_spec(cfg, params, cfg.inner_steps, "none"), params, task.support, xq)[-1]
        context = TaskContext(task.support, xq)
        meta, co = predict(backend, adapted, xq, context, step=cfg.inner_steps - 1)
        loss = F.cross_entropy(meta, yq) + cfg.gamma * F.cross_entropy(co, yq)
        if reg is not None:
            loss = loss + reg(adapted, context)
        for n, g in zip(adapted, torch.autograd.grad(loss, list(adapted.values()), allow_unused=True)):
            if g is not None:
                want[n] += g / len(tasks)
    assert relative_error(got, want) <= 1e-9
    second = meta_gradient(FuncBackend(model), cfg.replace(first_order=False), params, tasks).total
    assert relative_error(second, got) > 1e-4


@pytest.mark.parametrize("method", ["none", "cml"])
@pytest.mark.parametrize("base, kw", VARIANTS, ids=IDS)
def test_higher_torch_func_and_batched_agree(float64, base, kw, method):
    cfg = cfg_for(base, method, **kw)
    model = model_for(cfg)
    params = dict(model.named_parameters())
    tasks = tasks_for(cfg, 2)
    for order in (True, False):  # the presets' first order, and second order
        c = cfg.replace(first_order=order)
        want = outer_gradient(HigherBackend(model), c, params, tasks, split=method == "cml")
        for engine in (FuncBackend, BatchedBackend):
            got = outer_gradient(engine(model), c, params, tasks, split=method == "cml")
            assert relative_error(got.total, want.total) <= 1e-10, (engine.name, order)
            if method == "cml":
                assert relative_error(got.meta_part, want.meta_part) <= 1e-10
            assert got.meta_loss == pytest.approx(want.meta_loss, rel=1e-12)
    # every part of the model is trained: the GCN, the heads, and AMM-GNN's maps (outer loop only)
    assert all(float(want.total[n].abs().sum()) > 0 for n in want.total)
    ev = [evaluate_tasks(e(model), cfg, params, tasks, 3) for e in (HigherBackend, BatchedBackend)]
    assert ev[0].meta_loss == pytest.approx(ev[1].meta_loss, rel=1e-10)


@pytest.mark.parametrize("method", ["cl", "noisy", "more", "random"])
def test_every_other_method_runs_the_same_on_every_engine(float64, method):
    for base, kw in VARIANTS:
        cfg = cfg_for(base, method, **kw, hidden=7 if method == "more" else 4)  # 7: a width More can match
        model = model_for(cfg)
        params = dict(model.named_parameters())
        tasks = tasks_for(cfg, 2)
        want = outer_gradient(HigherBackend(model), cfg, params, tasks).total
        got = outer_gradient(BatchedBackend(model), cfg, params, tasks).total
        assert relative_error(got, want) <= 1e-10, (base, method)


def test_amm_maps_stay_out_of_the_inner_loop_and_the_regulariser_enters_the_outer_loss(float64):
    cfg = cfg_for("amm-gnn", "none")
    model = model_for(cfg)
    params = dict(model.named_parameters())
    task = tasks_for(cfg, 1)[0]
    adapted = adapt(FuncBackend(model), inner_spec(cfg, params, 2, "second"), params, task.support, task.query[0])[-1]
    maps = [n for n in params if n.startswith("features.attributes.")]
    assert len(maps) == 4 and all(adapted[n] is params[n] for n in maps)
    assert not torch.equal(adapted["features.layer1.weight"], params["features.layer1.weight"])
    with_reg = task_losses(FuncBackend(model), cfg, params, task, "first").meta
    # the same query loss without the regulariser: the plain cross-entropy at the adapted parameters
    xq, yq = task.query
    meta, _ = prediction(cfg)(FuncBackend(model), adapt(FuncBackend(model), inner_spec(cfg, params, 2, "first"),
                                                        params, task.support, xq)[-1], xq,
                              TaskContext(task.support, xq), step=1)
    ce = F.cross_entropy(meta, yq)
    reg = regulariser(params, TaskContext(task.support, xq))
    assert with_reg.item() == pytest.approx((ce + reg).item(), rel=1e-12) and reg.item() != 0


@pytest.mark.parametrize("base, kw", VARIANTS, ids=IDS)
def test_gradcheck_of_the_meta_gradient(float64, base, kw):
    cfg = cfg_for(base, "cml", **kw, hidden=2, first_order=False)
    model = model_for(cfg)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    task = tasks_for(cfg, 1)[0]
    backend = FuncBackend(model)

    def f(flat):
        params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return task_losses(backend, cfg, params, task, "second").total(cfg.gamma)

    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).requires_grad_()
    assert torch.autograd.gradcheck(f, (flat,), eps=1e-6, atol=1e-7, rtol=1e-6)


# -- data: the paper's splits and the stand-ins ---------------------------------------------------------------

def test_tan_et_al_s_split_is_what_their_code_draws():
    # Their loader, seeded as their script seeds it (numpy's global generator), for each data set's class counts.
    for classes, counts in ((6, (2, 2, 2)), (10, (4, 3, 3)), (70, (40, 15, 15))):
        np.random.seed(1234)
        test = np.random.choice(list(range(classes)), counts[2], replace=False).tolist()
        rest = list(set(range(classes)).difference(set(test)))
        val = np.random.choice(rest, counts[1], replace=False).tolist()
        train = list(set(rest).difference(set(val)))
        got = tan_split(classes, counts)
        assert (got["test"].tolist(), got["val"].tolist(), sorted(got["train"].tolist())) == (test, val, sorted(train))


def test_stand_ins_have_the_paper_shapes_and_are_never_the_paper_data():
    for key, classes, split in (("citeseer", 6, (2, 2, 2)), ("amazon-computer", 10, (4, 3, 3)),
                                ("corafull", 70, (40, 15, 15))):
        g = standin_graph(key)
        assert tuple(len(g.classes[s]) for s in ("train", "val", "test")) == split
        assert len(np.unique(g.labels)) == classes and f"not {key}" in g.source
        entry = get_task(f"graph-standin-{key}")
        assert entry.family is get_task("graph").family and "stand-in" in entry.summary
        cfg = preset("quick", entry.name, "cml", base="gmeta", ways=2, shots=1)
        assert cfg.family.paper_dataset(cfg.to_dict()) is None and not matching(cfg.to_dict(), None)
        with pytest.raises(ConfigError, match="is a generated stand-in of .* --graph-split applies to --task graph"):
            Config(task=entry.name, graph_split=key)
    with pytest.raises(ConfigError, match="names the data set of a --data file; the generated graph is not CiteSeer"):
        Config(task="graph", graph_split="citeseer")


def test_subgraphs_beyond_the_cache_budget_are_packed_again_the_same():
    graph = small_graph()
    cached, budget = Subgraphs(graph, 2, 5), Subgraphs(graph, 2, 5, cache_bytes=3 * 5 * (5 + 4) * 4)  # 3 nodes' worth
    for v in range(graph.num_nodes):
        assert torch.equal(cached[v], budget[v])
    assert len(cached._cache) == graph.num_nodes and len(budget._cache) == 3


def fake_citeseer(path: Path, classes: int = 6, stored: tuple[int, int, int] | None = None) -> Path:
    g = generate_sbm_graph(num_classes=classes, num_features=4, min_size=20, max_size=24, seed=5,
                           split=stored or (classes - 2, 1, 1))
    arrays = dict(edges=g.edge_list(), features=g.features, labels=g.labels)
    if stored:
        arrays.update({f"{s}_classes": g.classes[s] for s in ("train", "val", "test")})
    np.savez(path, **arrays)
    return path


@pytest.mark.filterwarnings("ignore:.*the paper's CiteSeer has 3327")
def test_graph_split_applies_the_paper_split_and_checks_the_file(tmp_path):
    data = fake_citeseer(tmp_path / "cs.npz")
    citeseer = ("citeseer", PAPER_GRAPHS["citeseer"])
    with pytest.warns(UserWarning, match="has 13.* nodes and 4 features; the paper's CiteSeer has 3327 and 3703"):
        splits = load_graph_splits(data, citeseer)
    want = tan_split(6, (2, 2, 2))
    assert {s: sorted(splits.graph.classes[s].tolist()) for s in want} == {s: sorted(v.tolist())
                                                                           for s, v in want.items()}
    kept = load_graph_splits(fake_citeseer(tmp_path / "stored.npz", stored=(2, 2, 2)), citeseer)
    assert [len(kept.graph.classes[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    with pytest.raises(DataError, match=r"has 7 labelled classes; --graph-split citeseer needs CiteSeer's 6 \(split "
                                        r"2/2/2\): is the file CiteSeer\? \(PyTorch Geometric's Planetoid"):
        load_graph_splits(fake_citeseer(tmp_path / "seven.npz", classes=7), citeseer)
    with pytest.raises(DataError, match=r"stores a 3/2/1 class split; CiteSeer's is 2/2/2"):
        load_graph_splits(fake_citeseer(tmp_path / "bad.npz", stored=(3, 2, 1)), citeseer)


def test_a_graph_split_that_does_not_fit_is_one_line_from_the_cli(tmp_path):
    data = fake_citeseer(tmp_path / "seven.npz", classes=7)
    out = subprocess.run([sys.executable, "-m", "cml", "train", "--task", "graph", "--data", str(data),
                          "--graph-split", "citeseer", "--base", "gmeta", "--method", "none", "--ways", "2", "--shots",
                          "1", "--steps", "1", "--no-progress", "--out", str(tmp_path / "runs")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "has 7 labelled classes; --graph-split citeseer needs CiteSeer's 6" in lines[0]


# -- real runs and the Table 3 page ---------------------------------------------------------------------------

def _train(tmp_path: Path, name: str, **kw):
    from cml.trainer import Trainer

    values = dict(val_interval=0, checkpoint_interval=0, progress=False, log_interval=10)
    cfg = preset("quick", **{**values, **kw})
    return Trainer(cfg, tmp_path / name).train()


@pytest.mark.slow
@pytest.mark.parametrize("base, kw", VARIANTS, ids=IDS)
def test_a_real_run_beats_chance_on_held_out_classes(tmp_path, base, kw):
    """The generated graph, 3-way 3-shot, the quick preset cut to 40 outer steps of 2 tasks with 5 inner steps of
    0.2 and an outer step of 5e-3 (10-20 s each); the held-out test classes were never trained on; chance is 1/3
    (measured: 75.0 ± 3.2, 65.0 ± 3.9 and 73.6 ± 3.0% for gmeta, gmeta proto and amm-gnn)."""
    torch.set_num_threads(1)
    result = _train(tmp_path, base, task="graph", method="none", base=base, ways=3, shots=3, steps=40, meta_batch=2,
                    inner_steps=5, test_inner_steps=5, inner_lr=0.2, meta_lr=5e-3, test_tasks=40, **kw)
    assert result["acc"] - result["acc_ci95"] > 1 / 3 + 0.2, result


@pytest.mark.filterwarnings("ignore:.*the paper's CiteSeer has 3327")  # the file is a small fake of its shape
def test_table3_sets_the_paper_beside_a_matching_run_and_never_beside_a_stand_in(tmp_path):
    from figures import table3
    from figures.runs import find_runs

    short = dict(steps=2, inner_steps=2, test_inner_steps=2, test_tasks=4, max_nodes=6, ways=2, shots=1)
    data = fake_citeseer(tmp_path / "citeseer.npz")
    for seed in (0, 1):
        for method in ("none", "cml"):
            _train(tmp_path / "real", f"{method}-{seed}", task="graph", data=str(data), graph_split="citeseer",
                   base="gmeta", method=method, seed=seed, **short)
            _train(tmp_path / "standin", f"{method}-{seed}", task="graph-standin-citeseer", base="gmeta",
                   method=method, seed=seed, **short)
    runs = find_runs([tmp_path / "real", tmp_path / "standin"])
    tables = table3.rows(runs)
    real = next(k for k in tables if k.dataset == "citeseer")
    standin = next(k for k in tables if k.task == "graph-standin-citeseer")
    (row,) = tables[real]
    assert (row.paper_alone.value, row.paper_cml.value) == (55.15, 61.17)
    assert row.paper_gain == pytest.approx(6.02) and row.runs.paired_seeds == [0, 1]
    (stand,) = tables[standin]
    assert stand.paper_alone is None and stand.paper_cml is None and "stand-in" in standin.note
    text = table3.markdown(runs)
    assert "CiteSeer (graph --data" in text and "| 55.15 | 61.17 | +6.02 |" in text
    assert "graph-standin-citeseer, 2-way 1-shot" in text and "not the paper's data" in text
    fig = table3.figure(runs)
    fig.savefig(tmp_path / "table3.png")
    assert fig.get_suptitle().startswith("Table 3")
    assert len(table3.report_pages(runs)) == 1
