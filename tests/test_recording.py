"""Learning-dynamics recording: it changes nothing, and what it writes is what the analysis functions say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import cosine_similarity, grad_norm
from cml.recording import Recorder, gradient_record
from cml import records
from cml.config import ConfigError
from cml.sweep import aggregate, run_sweep
from cml.trainer import Trainer
from test_trainer import image_cfg, synthetic_splits


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cml", "noisy-maml"])
def test_recording_on_or_off_gives_bit_identical_parameters(tmp_path, method):
    cfg = image_cfg(method, steps=6, checkpoint_interval=0)
    off = Trainer(cfg, tmp_path / "off", splits=synthetic_splits())
    off.train()
    on = Trainer(cfg.replace(record_interval=1), tmp_path / "on", splits=synthetic_splits(),
                 recorder=Recorder(tmp_path / "on"))
    on.train()
    on.finish_recording()
    for (name, a), (_, b) in zip(off.model.named_parameters(), on.model.named_parameters()):
        assert torch.equal(a, b), name
    assert len(records.read_jsonl(tmp_path / "on" / "dynamics.jsonl")) == 6


def test_gradient_record_matches_the_analysis_functions():
    g = torch.Generator().manual_seed(0)
    names = ["features.block1.conv.weight", "features.block2.conv.weight", "head.fc.weight", "co_head.fc.weight"]
    total = {n: torch.randn(3, 4, generator=g) for n in names}
    meta = {n: torch.randn(3, 4, generator=g) for n in names}
    rec = gradient_record(total, meta)
    psi = names[:2]
    co = {n: total[n] - meta[n] for n in psi}
    assert rec["cos_psi"] == pytest.approx(cosine_similarity({n: meta[n] for n in psi}, co), rel=1e-12)
    assert rec["grad_norm_psi"] == pytest.approx(grad_norm({n: total[n] for n in psi}), rel=1e-12)
    assert set(rec["cos_blocks"]) == set(rec["grad_norm_blocks"]) == {"block1", "block2"}
    assert rec["grad_norm_blocks"]["block2"] == pytest.approx(total[names[1]].norm().item(), rel=1e-6)
    assert "cos_psi" not in gradient_record(total, None)


def test_recorded_run_writes_dynamics_cka_and_tsne(tmp_path):
    cfg = image_cfg("cml", steps=4, record_interval=2, record_tasks=3, queries=3)
    trainer = Trainer(cfg, tmp_path / "run", splits=synthetic_splits(per_class=18), recorder=Recorder(tmp_path / "run"))
    trainer.train()
    reps = trainer.finish_recording()
    dyn = records.read_jsonl(tmp_path / "run" / "dynamics.jsonl")
    assert [d["step"] for d in dyn] == [2, 4]
    assert all(-1 <= d["cos_psi"] <= 1 and d["grad_norm_psi"] > 0 for d in dyn)
    assert set(dyn[0]["cos_blocks"]) == {"block1", "block2", "block3", "block4"}
    # The inner loop's support-gradient norms, per block, on every recorded step (Figure 3c's second row).
    assert all(set(d["inner_grad_norm_blocks"]) == set(d["cos_blocks"]) and d["inner_grad_norm_psi"] > 0 for d in dyn)
    # CKA from block 1 to the head's output (the logits).
    assert reps["layers"] == ["block1", "block2", "block3", "flat", "output"]
    for layer in reps["layers"]:
        assert 0 <= reps["cka"][layer]["mean"] <= 1 + 1e-9
    feats = np.load(tmp_path / "run" / "features.npz")
    n = cfg.ways * 15
    assert feats["before"].shape[0] == feats["after"].shape[0] == n == len(feats["labels"])
    assert feats["embed_before"].shape == feats["embed_after"].shape == (n, 2)
    written = records.read_json(tmp_path / "run" / "representations.json")
    assert written["cka"] == reps["cka"] and written["layers"] == reps["layers"]
    assert written["tsne_task"]["points"] == n
    # The test task by task: its means are test.json's, and its digest names the tasks.
    test = records.read_json(tmp_path / "run" / "test.json")
    per_task = records.read_json(tmp_path / "run" / records.TEST_TASKS)
    assert per_task["tasks"] == cfg.test_tasks == len(per_task["values"]["acc"])
    for key in ("acc", "acc_dagger", "loss"):
        assert np.mean(per_task["values"][key]) == pytest.approx(test[key], rel=1e-12, abs=1e-12)
    assert len(per_task["digest"]) == 64


def test_the_per_task_test_reads_the_checkpoint_the_test_read(tmp_path, monkeypatch):
    # select best-val, with the first validation (step 2) kept as the best and 4 steps trained: test.json reads
    # step 2's weights, and so must test_tasks.json (the claims pair methods task by task on it).
    real = Trainer._consider_best
    monkeypatch.setattr(Trainer, "_consider_best", lambda self, val: self.best is None and real(self, val))
    cfg = image_cfg("cml", steps=4, record_interval=2, record_tasks=3, queries=3, select="best-val",
                    val_interval=2, test_queries=2)
    trainer = Trainer(cfg, tmp_path / "run", splits=synthetic_splits(per_class=18), recorder=Recorder(tmp_path / "run"))
    trainer.train()
    trainer.finish_recording()
    test = records.read_json(tmp_path / "run" / "test.json")
    assert test["selected_step"] == 2 and test["step"] == 4
    per_task = records.read_json(tmp_path / "run" / records.TEST_TASKS)
    assert per_task["step"] == 4
    for key in ("acc", "acc_dagger", "loss"):
        assert np.mean(per_task["values"][key]) == pytest.approx(test[key], rel=1e-12, abs=1e-12)


def test_sinusoid_records_fits(tmp_path):
    from test_trainer import sinusoid

    cfg = sinusoid(steps=10, record_interval=5, record_tasks=3)
    trainer = Trainer(cfg, tmp_path / "run", recorder=Recorder(tmp_path / "run"))
    trainer.train()
    trainer.finish_recording()
    fits = np.load(tmp_path / "run" / "fits.npz")
    assert fits["truth"].shape == fits["after"].shape == fits["after_dagger"].shape == (3, 200)
    assert fits["support_x"].shape == (3, cfg.shots)
    # the support points lie on the true curves
    for i in range(3):
        truth_at_support = np.interp(fits["support_x"][i], fits["x"], fits["truth"][i])
        np.testing.assert_allclose(truth_at_support, fits["support_y"][i], atol=0.05)


@pytest.mark.slow
def test_sweep_resumes_and_aggregates_across_seeds(tmp_path, monkeypatch):
    base = image_cfg("maml", steps=3, record_interval=0)
    splits = synthetic_splits()
    agg = run_sweep(tmp_path, base, ["maml", "cml"], [0, 1], splits=splits)
    assert agg["maml"]["seeds"] == 2 and len(agg["cml"]["acc"]["values"]) == 2
    values = agg["cml"]["acc"]["values"]
    assert agg["cml"]["acc"]["mean"] == pytest.approx(sum(values) / 2)
    # A finished sweep trains nothing again; one with other settings (more steps for one cell) is refused before
    # anything is trained: its cells would be pooled with these as seeds (issue 19, case 1).
    monkeypatch.setattr(Trainer, "outer_step", lambda *a, **k: pytest.fail("retrained a finished run"))
    run_sweep(tmp_path, base, ["maml", "cml"], [0, 1], splits=splits)
    with pytest.raises(ConfigError, match=r"holds a sweep with other settings: this command asks for steps 5 "
                                          r"\(sweep.json: 3\)"):
        run_sweep(tmp_path, base.replace(steps=5), ["maml"], [0], splits=splits)
    monkeypatch.undo()
    assert records.read_json(tmp_path / "maml-s0" / "test.json")["step"] == 3
    assert aggregate(tmp_path)["maml"]["seeds"] == 2


def _manual_mlp_grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The MSE support loss's gradient of the 1-h-h-1 ReLU MLP, by the chain rule written out (no autograd)."""
    z1 = x @ p["features.layer1.weight"].T + p["features.layer1.bias"]  # (n, h)
    h1 = np.maximum(z1, 0)
    z2 = h1 @ p["features.layer2.weight"].T + p["features.layer2.bias"]
    h2 = np.maximum(z2, 0)
    out = h2 @ p["head.fc.weight"].T + p["head.fc.bias"]  # (n, 1)
    d_out = 2 * (out - y) / out.size  # d mean((out - y)^2) / d out
    d_z2 = (d_out @ p["head.fc.weight"]) * (z2 > 0)
    d_z1 = (d_z2 @ p["features.layer2.weight"]) * (z1 > 0)
    return {"features.layer1.weight": d_z1.T @ x, "features.layer1.bias": d_z1.sum(0),
            "features.layer2.weight": d_z2.T @ h1, "features.layer2.bias": d_z2.sum(0),
            "head.fc.weight": d_out.T @ h2, "head.fc.bias": d_out.sum(0)}


@pytest.mark.parametrize("steps", [1, 2])
def test_inner_loop_norm_is_the_hand_computed_support_gradient_norm(float64, steps):
    from test_bases import mlp_cfg, model_for, sinusoid_tasks

    from cml.engines import HigherBackend
    from cml.recording import inner_gradient_record

    cfg = mlp_cfg("maml", "cml", hidden=3, inner_steps=steps, inner_lr=0.05)
    model = model_for(cfg)
    tasks = sinusoid_tasks(2)
    got = inner_gradient_record(HigherBackend(model), cfg, dict(model.named_parameters()), tasks)
    start = {n: t.detach().numpy().copy() for n, t in model.named_parameters() if not n.startswith("co_head")}
    blocks = {"layer1": ["features.layer1.weight", "features.layer1.bias"],
              "layer2": ["features.layer2.weight", "features.layer2.bias"]}
    want = {b: 0.0 for b in blocks} | {"whole": 0.0}
    for task in tasks:
        x, y = (t.numpy() for t in task.support)
        p = dict(start)
        for _ in range(steps):  # each step's gradient at the trajectory's point, then the step (MAML: psi and theta)
            g = _manual_mlp_grads(p, x, y)
            share = 1 / (steps * len(tasks))  # each norm is a mean over the steps and the tasks
            for b, names in blocks.items():
                want[b] += share * np.sqrt(sum((g[n] ** 2).sum() for n in names))
            want["whole"] += share * np.sqrt(sum((g[n] ** 2).sum() for ns in blocks.values() for n in ns))
            p = {n: v - cfg.inner_lr * g[n] for n, v in p.items()}
    assert list(got["inner_grad_norm_blocks"]) == ["layer1", "layer2"]
    for b in blocks:
        assert got["inner_grad_norm_blocks"][b] == pytest.approx(want[b], rel=1e-10)
    assert got["inner_grad_norm_psi"] == pytest.approx(want["whole"], rel=1e-10)


@pytest.mark.parametrize("method", ["cml", "cl", "random"])
def test_inner_loop_norms_agree_across_engines(float64, method):
    from test_bases import conv_cfg, image_tasks, model_for

    from cml.engines import ENGINES
    from cml.recording import inner_gradient_record

    cfg = conv_cfg("maml", method)  # Conv-4 with BatchNorm, two inner steps; CL adapts phi in its inner loop
    model = model_for(cfg)
    tasks = image_tasks(cfg, 3)
    params = dict(model.named_parameters())
    got = {name: inner_gradient_record(engine(model), cfg, params, tasks) for name, engine in ENGINES.items()}
    assert set(got) == {"higher", "func", "batched"}  # the per-task engines and the vmapped one
    want = got["higher"]
    assert set(want["inner_grad_norm_blocks"]) == {"block1", "block2", "block3", "block4"}
    for name, rec in got.items():
        assert rec["inner_grad_norm_psi"] == pytest.approx(want["inner_grad_norm_psi"], rel=1e-10), name
        for b, v in want["inner_grad_norm_blocks"].items():
            assert rec["inner_grad_norm_blocks"][b] == pytest.approx(v, rel=1e-10), (name, b)


def test_cl_inner_loop_gradient_includes_its_second_branch(float64):
    from test_bases import conv_cfg, image_tasks, model_for

    from cml.engines import HigherBackend
    from cml.recording import inner_gradient_record

    # CL's support loss adds gamma times phi's, so its psi gradient grows with gamma; CML's does not (phi is never
    # in CML's inner loop).
    tasks = image_tasks(conv_cfg("maml", "cl"), 2)
    norms = {}
    for method in ("cl", "cml"):
        for gamma in (0.0, 1.0):
            cfg = conv_cfg("maml", method, gamma=gamma)
            model = model_for(cfg)
            norms[method, gamma] = inner_gradient_record(HigherBackend(model), cfg, dict(model.named_parameters()),
                                                         tasks)["inner_grad_norm_psi"]
    assert norms["cml", 0.0] == pytest.approx(norms["cml", 1.0], rel=1e-12)
    assert norms["cl", 0.0] == pytest.approx(norms["cml", 0.0], rel=1e-6)  # gamma 0: the meta-learner's loss alone
    assert abs(norms["cl", 1.0] - norms["cl", 0.0]) > 1e-3


def test_head_output_cka_is_the_cka_of_the_logits(float64):
    from test_bases import conv_cfg, image_tasks, model_for

    from analysis.cka import linear_cka
    from cml.engines import HigherBackend
    from cml.meta import adapt, inner_spec
    from cml.recording import OUTPUT_LAYER, representations

    cfg = conv_cfg("maml", "cml", queries=4)
    model = model_for(cfg)
    (task,) = image_tasks(cfg, 1)
    backend = HigherBackend(model)
    params = dict(model.named_parameters())
    before, after = representations(backend, cfg, params, task.support, task.query[0])
    assert list(before)[-1] == OUTPUT_LAYER == records.OUTPUT_LAYER
    # The logits, computed here without the recorder: the meta-learner's output before and after adaptation.
    adapted = adapt(backend, inner_spec(cfg, params, cfg.test_inner_steps, "none", test_time=True), params,
                    task.support)[-1]
    with torch.no_grad():
        logits_before = model(task.query[0])[0]
        logits_after = backend.forward(adapted, task.query[0], step=cfg.test_inner_steps - 1)[0]
    assert before[OUTPUT_LAYER].shape == (cfg.ways * cfg.queries, cfg.ways)
    torch.testing.assert_close(before[OUTPUT_LAYER], logits_before)
    torch.testing.assert_close(after[OUTPUT_LAYER], logits_after)
    assert linear_cka(before[OUTPUT_LAYER], after[OUTPUT_LAYER]) == pytest.approx(
        linear_cka(logits_before, logits_after), rel=1e-12)
    assert linear_cka(logits_before, logits_after) < 1 - 1e-6  # adaptation changed the logits


def test_head_output_cka_is_recorded_as_the_analysis_function_computes_it(tmp_path, monkeypatch):
    import cml.recording as recording
    from analysis.cka import linear_cka

    # Capture every (before, after) pair the recorder measures: its head-output CKA must be linear_cka of the logits.
    seen = []
    original = recording.representations

    def spy(*args, **kwargs):
        pair = original(*args, **kwargs)
        seen.append(pair)
        return pair

    monkeypatch.setattr(recording, "representations", spy)
    cfg = image_cfg("cml", steps=2, record_interval=1, record_tasks=3, queries=3)
    trainer = Trainer(cfg, tmp_path / "run", splits=synthetic_splits(per_class=18), recorder=Recorder(tmp_path / "run"))
    trainer.train()
    reps = trainer.finish_recording()
    values = [linear_cka(b[recording.OUTPUT_LAYER], a[recording.OUTPUT_LAYER]) for b, a in seen[:cfg.record_tasks]]
    assert reps["cka"][recording.OUTPUT_LAYER]["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12)
