"""The training loop: learning, determinism, resume, checkpoints, NaN handling and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cml.config import Config, ConfigError, preset
from cml.data.base import ClassPool, DataError, Splits
from cml.meta import NonFiniteLossError
from cml.trainer import CHECKPOINT, Trainer, load_checkpoint, load_model
from cml import records


def sinusoid(method="cml", **kw) -> Config:
    base = dict(steps=60, meta_batch=5, log_interval=10, val_interval=30, val_tasks=20, test_tasks=50,
                checkpoint_interval=20, progress=False)
    return preset("quick", "sinusoid", method, **{**base, **kw})


def synthetic_splits(classes=(12, 6, 6), per_class=6, size=16) -> Splits:
    """Classes are blobs at distinct positions: learnable, and tiny."""
    rng = np.random.default_rng(0)

    def pool(n, offset):
        loaders = []
        for _ in range(n):
            centre = rng.integers(3, size - 3, size=2)

            def load(centre=centre):
                imgs = np.zeros((per_class, size, size), np.uint8)
                for i in range(per_class):
                    y, x = centre + rng.integers(-1, 2, size=2)
                    imgs[i, y - 2:y + 2, x - 2:x + 2] = 255
                return imgs

            loaders.append(load)
        return ClassPool([f"c{offset + c}" for c in range(n)], loaders, "synthetic blobs")

    return Splits(pool(classes[0], 0), pool(classes[1], 100), pool(classes[2], 200), "synthetic")


def image_cfg(method="cml", **kw) -> Config:
    base = dict(task="omniglot", data="synthetic", image_size=16, filters=8, ways=3, shots=1, queries=2, steps=6,
                meta_batch=2, log_interval=2, val_interval=3, val_tasks=4, test_tasks=6, checkpoint_interval=3,
                progress=False, co_learner="conv", more_capacity="blocks")
    if method == "noisy-maml":
        base["noise_std"] = 0.5
    return Config(method=method, **{**base, **kw})


def metric_lines(run_dir):
    return [{k: v for k, v in r.items() if k != "time"} for r in records.read_jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.slow
def test_sinusoid_adaptation_beats_the_unadapted_model(tmp_path):
    result = Trainer(sinusoid(steps=600, meta_batch=10, val_interval=0, test_tasks=400), tmp_path / "run").train()
    assert result["mse"] < 0.7 * result["mse_before"]
    assert result["mse"] + result["mse_ci95"] < result["mse_before"] - result["mse_before_ci95"]


def test_run_folder_contents_and_weights_only_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = Trainer(sinusoid(), run).train()
    # config.json holds the thread count the run ran at (threads none resolves to the process's count).
    assert Config.load(run / "config.json") == sinusoid(threads=torch.get_num_threads())
    assert [r["step"] for r in records.read_jsonl(run / "metrics.jsonl")] == [10, 20, 30, 40, 50, 60]
    assert [r["step"] for r in records.read_jsonl(run / "val.jsonl")] == [30, 60]
    assert json.loads((run / "test.json").read_text())["tasks"] == 50 == result["tasks"]
    state = torch.load(run / CHECKPOINT, weights_only=True)
    assert state["step"] == 60 and set(state) >= {"model", "optimizer", "train_gen", "noise_gen", "config"}
    model, cfg = load_model(run)
    assert cfg == sinusoid(threads=torch.get_num_threads())
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("method", ["cml", "noisy-maml"])
def test_same_seed_same_numbers_and_other_seed_differs(tmp_path, method):
    a = Trainer(image_cfg(method), tmp_path / "a", splits=synthetic_splits()).train()
    b = Trainer(image_cfg(method), tmp_path / "b", splits=synthetic_splits()).train()
    Trainer(image_cfg(method, seed=1), tmp_path / "c", splits=synthetic_splits()).train()
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")
    drop = ("train_time",)
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert metric_lines(tmp_path / "a") != metric_lines(tmp_path / "c")


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, monkeypatch):
    cfg = sinusoid(method="noisy-maml", noise_std=0.2, steps=50)
    full = Trainer(cfg, tmp_path / "full").train()

    trainer = Trainer(cfg, tmp_path / "cut")
    original = trainer.outer_step

    def interrupted(record):
        if trainer.step == 45:  # after the step-40 checkpoint, and after lines for step 41-45 were logged
            raise KeyboardInterrupt
        return original(record)

    monkeypatch.setattr(trainer, "outer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert load_checkpoint(tmp_path / "cut")["step"] == 40
    resumed = Trainer(cfg, tmp_path / "cut", resume=True).train()
    assert metric_lines(tmp_path / "cut") == metric_lines(tmp_path / "full")
    assert records.read_jsonl(tmp_path / "cut" / "val.jsonl") == records.read_jsonl(tmp_path / "full" / "val.jsonl")
    assert resumed["mse"] == full["mse"]


def test_resume_can_extend_steps_but_not_change_the_method(tmp_path):
    Trainer(sinusoid(steps=20), tmp_path / "run").train()
    with pytest.raises(ConfigError, match="gamma"):
        Trainer(sinusoid(steps=40, gamma=0.5), tmp_path / "run", resume=True)
    Trainer(sinusoid(steps=40), tmp_path / "run", resume=True).train()
    assert load_checkpoint(tmp_path / "run")["step"] == 40
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(sinusoid(steps=40), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        Trainer(sinusoid(), tmp_path / "absent", resume=True)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(sinusoid(steps=40), tmp_path / "run")
    original = trainer.train_sampler.sample

    def poisoned():
        task = original()
        if trainer.step >= 25:
            x, y = task.query
            return task._replace(query=(x, torch.full_like(y, float("nan"))))
        return task

    trainer.train_sampler.sample = poisoned
    with pytest.raises(NonFiniteLossError, match="outer step 26") as info:
        trainer.train()
    assert "checkpoint" in str(info.value)
    assert load_checkpoint(tmp_path / "run")["step"] == 20


@pytest.mark.parametrize("changes, match", [
    (dict(method="reptile"), "unknown method 'reptile'"),
    (dict(inner_lr=0.0), "inner_lr"),
    (dict(inner_lr=-0.1), "inner_lr"),
    (dict(meta_lr=-1.0), "meta_lr"),
    (dict(steps=0), "steps"),
    (dict(first_order="False"), "first_order must be a boolean"),
    (dict(co_learner="conv"), "co_learner 'conv' does not apply to task 'sinusoid'"),
    (dict(method="noisy-maml", noise_std=0.0), "noise_std"),
])
def test_bad_config_values_are_named(changes, match):
    with pytest.raises(ConfigError, match=match):
        Config(**{"task": "sinusoid", **changes})


def test_unknown_config_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown key.*inner_lrr"):
        Config.from_dict({"inner_lrr": 0.1})


def test_ways_larger_than_a_split_fails_before_training(tmp_path):
    with pytest.raises(DataError, match="val split.*6 classes, fewer than ways=8"):
        Trainer(image_cfg(ways=8), tmp_path / "run", splits=synthetic_splits(classes=(12, 6, 6)))
    assert not (tmp_path / "run").exists()


def test_missing_data_path_fails_before_training(tmp_path):
    cfg = image_cfg(data=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        Trainer(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="needs a data path"):
        image_cfg(data=None)


def test_add_noise_scales_as_documented():
    from cml.methods import add_noise

    g = torch.Generator().manual_seed(0)
    grads = {"a": torch.randn(300, 200, generator=g), "b": torch.randn(5000, generator=g) * 10}
    for mode in ("relative", "absolute"):
        cfg = sinusoid(method="noisy-maml", noise_std=0.5, noise_mode=mode)
        noisy = {k: v.clone() for k, v in grads.items()}
        add_noise(cfg, noisy, torch.Generator().manual_seed(1))
        for k in grads:
            noise = noisy[k] - grads[k]
            if mode == "relative":
                assert (noise.norm() / grads[k].norm()).item() == pytest.approx(0.5, rel=0.03)
            else:
                assert noise.std().item() == pytest.approx(0.5, rel=0.03)


def test_noisy_maml_step_differs_from_maml_step_only_by_the_noise(tmp_path):
    from cml.seeds import generator
    from cml.methods import add_noise

    maml = Trainer(sinusoid(method="maml", steps=1), tmp_path / "maml")
    noisy = Trainer(sinusoid(method="noisy-maml", noise_std=0.5, steps=1), tmp_path / "noisy")
    for a, b in zip(maml.model.parameters(), noisy.model.parameters()):
        assert torch.equal(a, b)  # same seed: same initialisation

    def capture(trainer):
        # The gradients the optimizer applies, taken at the moment of its step.
        seen, step = {}, trainer.optimizer.step

        def wrapped(*args, **kwargs):
            seen.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
            return step(*args, **kwargs)

        trainer.optimizer.step = wrapped
        return seen

    applied = {"maml": capture(maml), "noisy": capture(noisy)}
    maml.outer_step(False)
    noisy.outer_step(False)
    # The noise noisy-maml's first step must draw: the run's noise stream, fresh, on MAML's gradient.
    expected = {n: g.clone() for n, g in applied["maml"].items()}
    add_noise(noisy.cfg, expected, generator(noisy.cfg.seed, "noise"))
    assert set(applied["noisy"]) == set(expected)
    for name, g in applied["noisy"].items():
        assert torch.equal(g, expected[name]), name  # the un-noised update plus exactly the drawn noise
        assert not torch.equal(g, applied["maml"][name]), name  # and the noise is not zero


def test_resume_between_log_lines_matches_uninterrupted_run(tmp_path, monkeypatch):
    cfg = sinusoid(steps=30, log_interval=10, checkpoint_interval=15, val_interval=0)
    Trainer(cfg, tmp_path / "full").train()
    trainer = Trainer(cfg, tmp_path / "cut")
    original = trainer.outer_step

    def interrupted(record):
        if trainer.step == 17:
            raise KeyboardInterrupt
        return original(record)

    monkeypatch.setattr(trainer, "outer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    Trainer(cfg, tmp_path / "cut", resume=True).train()
    assert metric_lines(tmp_path / "cut") == metric_lines(tmp_path / "full")


def test_resuming_a_finished_run_adds_no_line(tmp_path):
    Trainer(sinusoid(steps=20, val_interval=0), tmp_path / "run").train()
    Trainer(sinusoid(steps=20, val_interval=0), tmp_path / "run", resume=True).train()
    assert [r["step"] for r in records.read_jsonl(tmp_path / "run" / "val.jsonl")] == [20]


def test_partial_last_line_is_dropped_on_resume(tmp_path):
    Trainer(sinusoid(steps=20), tmp_path / "run").train()
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 2')  # a crash while appending
    Trainer(sinusoid(steps=30), tmp_path / "run", resume=True).train()
    assert [r["step"] for r in records.read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [10, 20, 30]


def test_diverging_test_time_adaptation_is_an_error_naming_it(tmp_path):
    with pytest.raises(NonFiniteLossError, match="diverged in the validation at step 2.*lower --inner-lr"):
        Trainer(sinusoid(steps=2, inner_lr=50.0, test_inner_steps=10, val_interval=0), tmp_path / "run").train()


def test_damaged_checkpoint_is_named(tmp_path):
    Trainer(sinusoid(steps=10), tmp_path / "run").train()
    (tmp_path / "run" / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(records.RunFolderError, match="cannot read checkpoint.*damaged"):
        load_model(tmp_path / "run")


def test_the_random_co_learner_is_never_updated_and_augments_mamls_gradient(tmp_path):
    """The paper's Figure 3a baseline: phi keeps its initial values through training (neither loop moves it),
    psi and theta start where MAML's do (same seed, same init), and their update is MAML's meta-gradient plus
    gamma times the random head's: the gradient CML gets from its co-learner, from a head that never learns."""
    from cml.engines import HigherBackend
    from cml.meta import outer_gradient
    from cml.roles import role_of

    rand = Trainer(sinusoid(method="random", steps=5), tmp_path / "random")
    maml = Trainer(sinusoid(method="maml", steps=5), tmp_path / "maml")
    initial = {n: p.detach().clone() for n, p in rand.model.named_parameters()}
    for n, p in maml.model.named_parameters():
        assert torch.equal(p, initial[n]), n  # the same initialisation of psi and theta
    phi = [n for n in initial if role_of(n) == "phi"]
    assert phi
    # One outer step's gradient on psi and theta: MAML's plus the co-learner term (which is not zero).
    tasks = [rand.train_sampler.sample() for _ in range(3)]
    params = dict(rand.model.named_parameters())
    with_co = outer_gradient(HigherBackend(rand.model), rand.cfg, params, tasks).total
    alone = outer_gradient(HigherBackend(maml.model), maml.cfg, dict(maml.model.named_parameters()), tasks).total
    assert any(not torch.allclose(with_co[n], alone[n]) for n in alone)
    rand.train()
    for n, p in rand.model.named_parameters():
        if n in phi:
            assert torch.equal(p, initial[n]), n  # bit-identical after training
        else:
            assert not torch.equal(p, initial[n]), n
    assert not any(rand.optimizer.state.get(p) for n, p in rand.model.named_parameters() if n in phi)
    assert records.read_json(tmp_path / "random" / records.TEST)["method"] == "random"


# -- model selection: --select best-val ------------------------------------------------------------------------

#: Validation MSEs by step, scripted so that the best is neither the first nor the last (the real values of a short
#: run decrease too steadily to test a selection with).
SCRIPTED_VAL = {5: 5.0, 10: 4.0, 15: 1.0, 20: 3.0, 25: 0.5, 30: 2.0}


def _scripted(trainer, snapshots=None):
    """Replaces the validation metric by SCRIPTED_VAL (the rest of the record is real); keeps the weights seen."""
    original = trainer.validate

    def validate():
        line = original()
        if snapshots is not None:
            snapshots[trainer.step] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        return {**line, "mse": SCRIPTED_VAL[trainer.step]}

    trainer.validate = validate
    return trainer


def _best_cfg(**kw) -> Config:
    return sinusoid(**{"steps": 30, "val_interval": 5, "checkpoint_interval": 10, "test_tasks": 20,
                       "select": "best-val", **kw})


def test_best_val_keeps_and_tests_the_checkpoint_of_the_best_validation(tmp_path, capsys):
    from cml.cli import main

    snapshots: dict = {}
    result = _scripted(Trainer(_best_cfg(), tmp_path / "run"), snapshots).train()
    assert result["selected"] == "best-val" and result["selected_step"] == 25 and result["step"] == 30
    best = torch.load(tmp_path / "run" / records.BEST_CHECKPOINT, weights_only=True)
    assert best["step"] == 25 and best["value"] == 0.5 and best["metric"] == "mse"
    assert best["model"].keys() == snapshots[25].keys()
    assert all(torch.equal(best["model"][k], snapshots[25][k]) for k in best["model"])
    last = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert not all(torch.equal(last["model"][k], best["model"][k]) for k in best["model"])  # kept beside the last
    # The test read the best weights: evaluate reproduces it from best.pt, and says which checkpoint it read.
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"test MSE {result['mse']:.4f}" in out and out.rstrip().endswith("[best-val checkpoint, step 25]")
    assert main(["evaluate", str(tmp_path / "run"), "--no-progress", "--select", "last"]) == 0
    out = capsys.readouterr().out
    assert f"test MSE {result['mse']:.4f}" not in out and out.rstrip().endswith("[last checkpoint, step 30]")
    # A run that selects the last checkpoint keeps no best.pt, and evaluate says so in one line.
    Trainer(sinusoid(steps=10, val_interval=0), tmp_path / "plain").train()
    assert not (tmp_path / "plain" / records.BEST_CHECKPOINT).exists()
    assert main(["evaluate", str(tmp_path / "plain"), "--select", "best-val", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no best.pt" in err and "select last" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("cut", [22, 27])
def test_best_val_selection_keeps_the_right_checkpoint_across_a_resume(tmp_path, monkeypatch, cut):
    """Interrupted at step 22 (the best, step 15, is in checkpoint 20) or 27 (a better one, step 25, was found
    after checkpoint 20 and is lost with the process): the resumed run selects what the uninterrupted one does."""
    full = _scripted(Trainer(_best_cfg(), tmp_path / "full")).train()
    trainer = _scripted(Trainer(_best_cfg(), tmp_path / "cut"))
    original = trainer.outer_step

    def interrupted(record):
        if trainer.step == cut:
            raise KeyboardInterrupt
        return original(record)

    monkeypatch.setattr(trainer, "outer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert torch.load(tmp_path / "cut" / records.BEST_CHECKPOINT, weights_only=True)["step"] == 15
    resumed = _scripted(Trainer(_best_cfg(), tmp_path / "cut", resume=True))
    assert resumed.best["step"] == 15  # restored from checkpoint 20
    result = resumed.train()
    assert result["selected_step"] == full["selected_step"] == 25
    drop = ("train_time",)
    assert {k: v for k, v in result.items() if k not in drop} == {k: v for k, v in full.items() if k not in drop}
    a, b = (torch.load(tmp_path / run / records.BEST_CHECKPOINT, weights_only=True) for run in ("cut", "full"))
    assert a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])


def test_a_best_pt_behind_its_checkpoint_is_written_again_on_resume(tmp_path, monkeypatch):
    """A crash between checkpoint.pt (holding best step 15) and best.pt (still step 10's) at step 20."""
    trainer = _scripted(Trainer(_best_cfg(), tmp_path / "run"))
    write = trainer._write_best

    def crash_at_20():
        if trainer.step == 20:
            raise KeyboardInterrupt
        write()

    monkeypatch.setattr(trainer, "_write_best", crash_at_20)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert load_checkpoint(tmp_path / "run")["best"]["step"] == 15
    assert torch.load(tmp_path / "run" / records.BEST_CHECKPOINT, weights_only=True)["step"] == 10
    _scripted(Trainer(_best_cfg(), tmp_path / "run", resume=True))
    assert torch.load(tmp_path / "run" / records.BEST_CHECKPOINT, weights_only=True)["step"] == 15


def test_a_best_val_cell_is_finished_only_with_the_best_pt_it_tested(tmp_path):
    from cml.cells import cell_finished

    cfg = _best_cfg(steps=10)
    _scripted(Trainer(cfg, tmp_path / "run")).train()
    assert cell_finished(tmp_path / "run", cfg, recording=False)
    test = records.read_json(tmp_path / "run" / records.TEST)
    records.write_json(tmp_path / "run" / records.TEST, {**test, "selected_step": 5})
    assert not cell_finished(tmp_path / "run", cfg, recording=False)
    records.write_json(tmp_path / "run" / records.TEST, test)
    (tmp_path / "run" / records.BEST_CHECKPOINT).write_bytes(b"damaged")
    assert not cell_finished(tmp_path / "run", cfg, recording=False)
    (tmp_path / "run" / records.BEST_CHECKPOINT).unlink()
    assert not cell_finished(tmp_path / "run", cfg, recording=False)


def test_the_gradient_clamp_acts_after_the_noise_and_spares_the_learned_rates(tmp_path):
    """MAML++'s +-c clamp (the reference's on ImageNet-like sets) on the gradient Adam steps with: the weights' are
    within +-c after the method's noise (large here, so a clamp before it would not bound them); the learned inner
    rates' are not clamped (the reference keeps them outside the clamped module)."""
    bound = 1e-3
    cfg = preset("quick", "sinusoid", "noisy", base="maml++", noise_std=5.0, grad_clamp=bound, steps=1,
                 progress=False)
    trainer = Trainer(cfg, tmp_path / "run")
    seen, step = {}, trainer.optimizer.step

    def wrapped(*args, **kwargs):
        seen.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
        return step(*args, **kwargs)

    trainer.optimizer.step = wrapped
    trainer.outer_step(False)
    weights = {n: g for n, g in seen.items() if not n.startswith("inner_lr.")}
    rates = {n: g for n, g in seen.items() if n.startswith("inner_lr.")}
    assert weights and rates
    assert max(g.abs().max().item() for g in weights.values()) == pytest.approx(bound)
    assert max(g.abs().max().item() for g in rates.values()) > 10 * bound
    with pytest.raises(ConfigError, match="grad_clamp is an option of base 'maml\\+\\+'"):
        sinusoid(grad_clamp=10.0)
