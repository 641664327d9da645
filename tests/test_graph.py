"""The graph task: subgraphs, the .npz loader, the sampler, the GCN, its meta-gradients, and a real run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cml.config import Config, ConfigError, preset
from cml.data.base import DataError
from cml.data.graph import (GraphSplits, GraphTaskSampler, Subgraphs, build_graph, generate_sbm_graph, khop_nodes,
                            load_graph, pack_subgraph, save_graph)
from cml.gnn import GCN
from cml.engines import FuncBackend, HigherBackend
from cml.meta import meta_gradient, task_losses
from cml.models import build_model, init_parameters

# A hand-built graph: a path 0-1-2-3-4, a star around 1 (5, 6, 7), and node 8 alone.
#   5   6   7
#    \  |  /
#  0 -- 1 -- 2 -- 3 -- 4          8
EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [1, 5], [6, 1], [1, 7], [1, 2], [4, 4]])
LABELS = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2])


def hand_graph(features: int = 2):
    feats = np.arange(9 * features, dtype=np.float32).reshape(9, features) / 10
    return build_graph(EDGES, feats, LABELS, {"train": np.array([0]), "val": np.array([1]), "test": np.array([2])})


def test_csr_drops_duplicates_and_self_loops_and_symmetrises():
    g = hand_graph()
    assert g.num_edges == 7
    assert g.neighbours(1).tolist() == [0, 2, 5, 6, 7]
    assert g.neighbours(4).tolist() == [3]
    assert g.neighbours(8).tolist() == []


def test_khop_set_without_cap():
    g = hand_graph()
    assert khop_nodes(g, 0, 1, 100).tolist() == [0, 1]
    assert khop_nodes(g, 0, 2, 100).tolist() == [0, 1, 2, 5, 6, 7]
    assert khop_nodes(g, 3, 2, 100).tolist() == [3, 2, 4, 1]
    assert khop_nodes(g, 8, 2, 100).tolist() == [8]


def test_khop_cap_samples_the_last_hop_and_drops_farther_ones():
    g = hand_graph()
    # 2 hops from 0 has 5 neighbours; room for 3: all of hop 1 ({1}), two of hop 2 ({2, 5, 6, 7}).
    seen = set()
    for seed in range(30):
        nodes = khop_nodes(g, 0, 2, 4, torch.Generator().manual_seed(seed))
        assert len(nodes) == 4 and nodes[0] == 0 and nodes[1] == 1
        assert set(nodes[2:]) <= {2, 5, 6, 7} and len(set(nodes)) == 4
        seen.add(tuple(nodes[2:]))
    assert len(seen) > 3  # really sampled, not the first ones
    # the cap cuts hop 1 itself: hop 2 is dropped, so the subgraph stays connected to the centre
    nodes = khop_nodes(g, 1, 2, 3, torch.Generator().manual_seed(0))
    assert nodes[0] == 1 and set(nodes[1:]) <= {0, 2, 5, 6, 7}
    with pytest.raises(ValueError, match="generator"):
        khop_nodes(g, 0, 2, 4)
    # same generator state, same subgraph
    a = khop_nodes(g, 0, 2, 4, torch.Generator().manual_seed(5))
    b = khop_nodes(g, 0, 2, 4, torch.Generator().manual_seed(5))
    assert a.tolist() == b.tolist()


def test_packed_subgraph_layout_and_normalisation():
    g = hand_graph(features=2)
    nodes = khop_nodes(g, 3, 2, 100)  # [3, 2, 4, 1]
    x = pack_subgraph(g, nodes, 6).double()
    assert x.shape == (6, 6 + 2 + 1)
    # induced edges 3-2, 3-4, 2-1 plus self loops; degrees (with self loop) 3, 3, 2, 2
    deg = {3: 3, 2: 3, 4: 2, 1: 2}
    expected = np.zeros((6, 6))
    index = {int(v): i for i, v in enumerate(nodes)}
    for u, v in [(3, 3), (2, 2), (4, 4), (1, 1), (3, 2), (2, 3), (3, 4), (4, 3), (2, 1), (1, 2)]:
        expected[index[u], index[v]] = 1 / math.sqrt(deg[u] * deg[v])
    np.testing.assert_allclose(x[:, :6].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(x[:4, 6:8].numpy(), g.features[nodes], rtol=0)
    assert x[:, 8].tolist() == [1, 0, 0, 0, 0, 0]
    assert torch.count_nonzero(x[4:]) == 0


def _edge_scatter_gcn(model: GCN, nodes, g, x_in):
    """Reference: GCN layers by message passing over an explicit edge list (index_add), one subgraph."""
    index = {int(v): i for i, v in enumerate(nodes)}
    pairs = [(i, i) for i in range(len(nodes))]
    for i, v in enumerate(nodes):
        pairs += [(i, index[int(u)]) for u in g.neighbours(int(v)) if int(u) in index]
    dst = torch.tensor([p[0] for p in pairs])
    src = torch.tensor([p[1] for p in pairs])
    deg = torch.zeros(len(nodes), dtype=torch.float64).index_add_(0, dst, torch.ones(len(dst), dtype=torch.float64))
    norm = (deg[dst] * deg[src]).rsqrt()
    h, out = x_in, []
    for i in range(1, model.layers + 1):
        layer = getattr(model, f"layer{i}")
        msg = (h @ layer.weight.T)[src] * norm[:, None]
        h = torch.relu(torch.zeros(len(nodes), layer.out_features, dtype=torch.float64).index_add_(0, dst, msg)
                       + layer.bias)
        out.append(h[0])
    return out


def test_dense_message_passing_matches_edge_list_reference():
    g = hand_graph(features=3)
    model = GCN(in_channels=4, hidden=5, layers=3).double()
    init_parameters(model, torch.Generator().manual_seed(0))
    for centre in (0, 3, 8):
        nodes = khop_nodes(g, centre, 2, 8)
        x = pack_subgraph(g, nodes, 8).double().unsqueeze(0)
        feats = model(x)
        x_in = torch.cat([torch.from_numpy(g.features[nodes]).double(),
                          torch.eye(len(nodes), 1, dtype=torch.float64)], 1)
        ref = _edge_scatter_gcn(model, nodes, g, x_in)
        for i, r in enumerate(ref, start=1):
            # the packed adjacency is stored in float32: agreement to float32's precision, not float64's
            torch.testing.assert_close(feats[f"layer{i}"][0], r, rtol=1e-6, atol=1e-7)
        assert feats["flat"] is feats["layer3"]
        # padding changes nothing: the same subgraph packed with more room gives the same embedding
        wide = model(pack_subgraph(g, nodes, 12).double().unsqueeze(0))
        torch.testing.assert_close(wide["flat"], feats["flat"], rtol=1e-12, atol=1e-12)


def test_generated_graph_is_deterministic_large_and_split_disjointly():
    a, b = generate_sbm_graph(), generate_sbm_graph()
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.features, b.features)
    assert a.num_nodes >= 2000 and len(np.unique(a.labels)) >= 60
    sets = [set(a.classes[s].tolist()) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == set(np.unique(a.labels).tolist())
    # class-dependent densities: within-class mean degrees really differ between classes
    src = np.repeat(np.arange(a.num_nodes), np.diff(a.indptr))
    same = a.labels[src] == a.labels[a.indices]
    intra = np.bincount(a.labels[src][same], minlength=64) / np.bincount(a.labels, minlength=64)
    assert intra.max() > 1.8 * intra.min()


def _drawn_classes(graph, sampler, n_tasks: int) -> set[int]:
    """The classes of the centre nodes of ``n_tasks`` tasks, found from their packed feature rows."""
    f = graph.num_features
    row_class = {tuple(r): int(c) for r, c in zip(graph.features.round(4).tolist(), graph.labels)}
    m = sampler.subgraphs.max_nodes
    out = set()
    for _ in range(n_tasks):
        task = sampler.sample()
        for x in (task.support[0], task.query[0]):
            out |= {row_class[tuple(r)] for r in x[:, 0, m:m + f].numpy().round(4).tolist()}
    return out


def test_sampler_classes_are_disjoint_across_splits_and_tasks_well_formed():
    splits = GraphSplits(generate_sbm_graph())
    subgraphs = splits.subgraphs(2, 16)
    drawn = {}
    for split in ("train", "val", "test"):
        sampler = GraphTaskSampler(subgraphs, split, 3, 2, 4, torch.Generator().manual_seed(0))
        for _ in range(15):
            task = sampler.sample()
            assert task.support[0].shape == (6, 16, 16 + 33) and task.query[0].shape == (12, 16, 16 + 33)
            assert task.support[1].tolist() == [0, 0, 1, 1, 2, 2]
            assert torch.all(task.query[0][:, 0, -1] == 1)  # the centre marker at index 0
        drawn[split] = _drawn_classes(splits.graph, sampler, 15)
        assert drawn[split] <= set(splits[split].tolist())
    assert not (drawn["train"] & drawn["val"]) and not (drawn["train"] & drawn["test"])
    assert not (drawn["val"] & drawn["test"])
    with pytest.raises(DataError, match="fewer than ways"):
        GraphTaskSampler(subgraphs, "val", 13, 1, 1, torch.Generator())
    with pytest.raises(DataError, match="fewer than shots"):
        GraphTaskSampler(subgraphs, "test", 3, 50, 50, torch.Generator()).sample()


def test_sampled_nodes_belong_to_their_split():
    graph = generate_sbm_graph()
    subgraphs = Subgraphs(graph, 2, 8)
    sampler = GraphTaskSampler(subgraphs, "test", 3, 1, 2, torch.Generator().manual_seed(1))
    # every packed centre row is some test-class node's features
    test_nodes = np.flatnonzero(np.isin(graph.labels, graph.classes["test"]))
    test_rows = {tuple(r) for r in graph.features[test_nodes].round(5).tolist()}
    for _ in range(5):
        task = sampler.sample()
        for x in (task.support[0], task.query[0]):
            for row in x[:, 0, 8:8 + graph.num_features].numpy().round(5).tolist():
                assert tuple(row) in test_rows


# -- the .npz format -----------------------------------------------------------------------------------

def test_save_load_roundtrip_and_default_split(tmp_path):
    g = hand_graph()
    path = save_graph(tmp_path / "g.npz", g)
    back = load_graph(path)
    assert np.array_equal(back.indices, g.indices) and np.array_equal(back.features, g.features)
    assert all(np.array_equal(back.classes[s], g.classes[s]) for s in ("train", "val", "test"))
    np.savez(tmp_path / "nosplit.npz", edges=EDGES, features=np.ones((9, 2)), labels=LABELS)
    a, b = load_graph(tmp_path / "nosplit.npz"), load_graph(tmp_path / "nosplit.npz")
    assert all(np.array_equal(a.classes[s], b.classes[s]) and len(a.classes[s]) == 1 for s in a.classes)


@pytest.mark.parametrize("arrays, message", [
    ({"features": np.ones((9, 2)), "labels": LABELS}, "no array 'edges'"),
    ({"edges": EDGES, "features": np.ones(9), "labels": LABELS}, "'features' must be a non-empty"),
    ({"edges": EDGES, "features": np.full((9, 2), np.nan), "labels": LABELS}, "NaN or infinite"),
    ({"edges": EDGES, "features": np.ones((9, 2)), "labels": LABELS[:5]}, "'labels' must have shape"),
    ({"edges": EDGES, "features": np.ones((9, 2)), "labels": LABELS.astype(float)}, "'labels' must be integers"),
    ({"edges": EDGES + 5, "features": np.ones((9, 2)), "labels": LABELS}, "outside 0..8"),
    ({"edges": EDGES[:, :1], "features": np.ones((9, 2)), "labels": LABELS}, r"\(E, 2\)"),
    ({"edges": EDGES, "features": np.ones((9, 2)), "labels": LABELS, "train_classes": [0]}, "not all of"),
    ({"edges": EDGES, "features": np.ones((9, 2)), "labels": LABELS, "train_classes": [0, 1], "val_classes": [1],
      "test_classes": [2]}, "class 1 is in both"),
    ({"edges": EDGES, "features": np.ones((9, 2)), "labels": LABELS, "train_classes": [0], "val_classes": [1],
      "test_classes": [7]}, "names class 7"),
])
def test_broken_npz_gives_one_line_error_naming_the_file(tmp_path, arrays, message):
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as e:
        load_graph(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_graph(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="junk.npz") as e:
        load_graph(tmp_path / "junk.npz")
    assert "\n" not in str(e.value)
    good = tmp_path / "good.npz"
    save_graph(good, hand_graph())
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.npz"):
        load_graph(tmp_path / "cut.npz")
    np.savez(tmp_path / "obj.npz", edges=np.array([object()]), features=np.ones((9, 2)), labels=LABELS)
    with pytest.raises(DataError, match="without pickle"):
        load_graph(tmp_path / "obj.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(DataError, match="single array"):
        load_graph(tmp_path / "single.npy")


def test_cli_reports_a_broken_graph_file_in_one_line(tmp_path, capsys):
    from cml.cli import main

    (tmp_path / "bad.npz").write_bytes(b"garbage")
    code = main(["train", "--method", "maml", "--task", "graph", "--data", str(tmp_path / "bad.npz"),
                 "--out", str(tmp_path / "runs"), "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.npz" in err and len(err.strip().splitlines()) == 1


def test_config_rejects_image_only_options_for_graphs():
    with pytest.raises(ConfigError, match="co_learner 'conv'"):
        preset("quick", "graph", "cml", co_learner="conv")
    with pytest.raises(ConfigError, match="max_nodes"):
        preset("quick", "graph", "cml", max_nodes=1)
    cfg = preset("paper", "graph", "cml")
    assert (cfg.ways, cfg.shots, cfg.queries, cfg.meta_batch, cfg.inner_steps, cfg.test_inner_steps, cfg.hidden) \
        == (3, 3, 24, 8, 5, 10, 64)


# -- meta-gradients on the graph model -----------------------------------------------------------------

def graph_cfg(method: str, **kw) -> Config:
    base = dict(method=method, task="graph", ways=2, shots=1, queries=2, hidden=4, max_nodes=5, inner_steps=2,
                inner_lr=0.3)
    return Config(**{**base, **kw})


def graph_tasks(cfg: Config, n: int, seed: int = 0):
    g = hand_graph(features=2)
    # hand_graph with two more edges and node 8 in a class of its own; train holds classes 0 and 1 (3 nodes each)
    labels = LABELS.copy()
    labels[8] = 3
    graph = build_graph(np.concatenate([EDGES, [[8, 5], [0, 7]]]), g.features, labels,
                        {"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([3])})
    sampler = GraphTaskSampler(Subgraphs(graph, 2, cfg.max_nodes), "train", cfg.ways, cfg.shots, cfg.queries,
                               torch.Generator().manual_seed(seed))
    out = []
    for _ in range(n):
        t = sampler.sample()
        out.append(type(t)((t.support[0].double(), t.support[1]), (t.query[0].double(), t.query[1])))
    return out


def graph_model(cfg: Config, seed: int = 0):
    model = build_model(cfg, in_channels=3).double()
    init_parameters(model, torch.Generator().manual_seed(seed))
    if cfg.graph_modulation:  # away from the zero start, so the modulation's own gradient is exercised
        with torch.no_grad():
            model.features.modulation.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    return model


@pytest.mark.parametrize("method", ["maml", "cml"])
@pytest.mark.parametrize("modulation", [False, True])
def test_higher_and_torch_func_agree_on_the_graph_model(method, modulation):
    cfg = graph_cfg(method, graph_modulation=modulation)
    model = graph_model(cfg)
    tasks = graph_tasks(cfg, 2)
    gh = meta_gradient(HigherBackend(model), cfg, dict(model.named_parameters()), tasks).total
    gf = meta_gradient(FuncBackend(model), cfg, dict(model.named_parameters()), tasks).total
    assert gh.keys() == gf.keys()
    for name in gf:
        scale = gf[name].abs().max().clamp_min(1e-300)
        assert ((gh[name] - gf[name]).abs().max() / scale).item() <= 1e-10, name
    assert all(gf[n].abs().sum() > 0 for n in gf if n.startswith("features.layer"))


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_gradcheck_graph_meta_gradient(backend_cls):
    cfg = graph_cfg("cml", hidden=3, graph_modulation=True)
    model = graph_model(cfg)
    tasks = graph_tasks(cfg, 1)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    backend = backend_cls(model)

    def f(flat):
        params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return task_losses(backend, cfg, params, tasks[0], "second").total(cfg.gamma)

    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).requires_grad_()
    assert torch.autograd.gradcheck(f, (flat,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gcn_gradcheck_of_the_forward():
    model = GCN(in_channels=3, hidden=3, layers=2, modulation=True).double()
    init_parameters(model, torch.Generator().manual_seed(0))
    x = graph_tasks(graph_cfg("maml"), 1)[0].support[0]

    def f(w1, w2):
        params = {**dict(model.named_parameters()), "layer1.weight": w1, "layer2.weight": w2}
        return torch.func.functional_call(model, params, (x,))["flat"]

    w = (model.layer1.weight.detach().clone().requires_grad_(), model.layer2.weight.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(f, w, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_psi_blocks_are_the_gcn_layers():
    from cml.recording import gradient_record

    cfg = graph_cfg("cml", graph_modulation=True)
    model = graph_model(cfg)
    mg = meta_gradient(HigherBackend(model), cfg, dict(model.named_parameters()), graph_tasks(cfg, 1), split=True)
    rec = gradient_record(mg.total, mg.meta_part)
    assert set(rec["grad_norm_blocks"]) == {"modulation", "layer1", "layer2"}
    assert set(rec["cos_blocks"]) == {"modulation", "layer1", "layer2"}


# -- a real run --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_run_beats_chance_on_held_out_classes_with_cml_recorded(tmp_path):
    """Reduced from the quick preset (120 steps, meta-batch 4, 3 inner steps, 16-node subgraphs) to stay fast;
    the quick preset itself reaches ~80% (README, 'Graphs')."""
    import json

    from cml.recording import Recorder
    from cml.trainer import Trainer

    torch.set_num_threads(1)
    cfg = preset("quick", "graph", "cml", steps=120, meta_batch=4, inner_steps=3, test_inner_steps=5,
                 max_nodes=16, val_interval=0, val_tasks=20, test_tasks=100, record_interval=40, record_tasks=5,
                 checkpoint_interval=0, progress=False)
    run = tmp_path / "run"
    recorder = Recorder(run)
    trainer = Trainer(cfg, run, recorder=recorder)
    result = trainer.train()
    reps = trainer.finish_recording()
    # chance is 1/3; the held-out test classes were never trained on
    assert result["acc"] - result["acc_ci95"] > 0.55, result
    dyn = [json.loads(line) for line in (run / "dynamics.jsonl").read_text().splitlines()]
    assert len(dyn) == 3 and set(dyn[0]["grad_norm_blocks"]) == {"layer1", "layer2"} and "cos_psi" in dyn[0]
    assert reps["layers"] == ["layer1", "flat", "output"]  # up to the head's output (the logits)
    assert np.load(run / "features.npz")["before"].shape[1] == cfg.hidden


@pytest.mark.parametrize("base", ["maml++", "boil", "sharp-maml", "anil"])
def test_every_base_learner_with_cml_trains_on_graph_tasks(tmp_path, base):
    from cml.trainer import Trainer

    cfg = preset("quick", "graph", "cml", base=base, steps=2, meta_batch=2, test_tasks=2, val_tasks=2,
                 val_interval=0, checkpoint_interval=0, log_interval=1, progress=False, max_nodes=8)
    result = Trainer(cfg, tmp_path / base).train()
    assert result["base"] == base and 0 <= result["acc"] <= 1 and "acc_dagger" in result
