"""Learning-dynamics recording: it changes nothing, and what it writes is what the analysis functions say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import cosine_similarity, grad_norm
from cml.recording import Recorder, gradient_record
from cml import records
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
    assert reps["layers"] == ["block1", "block2", "block3", "flat"]
    for layer in reps["layers"]:
        assert 0 <= reps["cka"][layer]["mean"] <= 1 + 1e-9
    feats = np.load(tmp_path / "run" / "features.npz")
    n = cfg.ways * 15
    assert feats["before"].shape[0] == feats["after"].shape[0] == n == len(feats["labels"])
    assert feats["embed_before"].shape == feats["embed_after"].shape == (n, 2)
    written = records.read_json(tmp_path / "run" / "representations.json")
    assert written["cka"] == reps["cka"] and written["layers"] == reps["layers"]
    assert written["tsne_task"]["points"] == n


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
    # A finished sweep trains nothing again; an extended one resumes from the checkpoints.
    monkeypatch.setattr(Trainer, "outer_step", lambda *a, **k: pytest.fail("retrained a finished run"))
    run_sweep(tmp_path, base, ["maml", "cml"], [0, 1], splits=splits)
    monkeypatch.undo()
    run_sweep(tmp_path, base.replace(steps=5), ["maml"], [0], splits=splits)
    assert records.read_json(tmp_path / "maml-s0" / "test.json")["step"] == 5
    assert aggregate(tmp_path)["maml"]["seeds"] == 2
