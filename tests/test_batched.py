"""The batched engine (cml/engines/batched.py) against the per-task engine: meta-gradients in float64 for every method x
base x order on the MLP and on Conv-4 with BatchNorm; the explicit BatchNorm it vmaps; batched evaluation;
training records; the fallback for tasks that cannot be stacked; backend ``auto``; device-resident pools;
``evaluate --device``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from cml import records
from cml.engines import AUTO_BACKEND, BatchedBackend, HigherBackend, resolve_backend, stack_tasks
from cml.cli import main
from cml.config import Config
from cml.data.base import TaskSampler
from cml.meta import PROTOCOLS, NonFiniteLossError, evaluate_tasks, outer_gradient
from cml.methods import METHODS
from cml.layers import batch_norm_explicit
from cml.recording import Recorder
from cml.seeds import generator
from cml.trainer import Trainer

from test_bases import BASES, conv_cfg, image_tasks, mlp_cfg, model_for, sinusoid_tasks
from test_trainer import image_cfg, synthetic_splits


def cfg_for(kind: str, base: str, method: str, **kw) -> Config:
    if method == "noisy":
        kw["noise_std"] = 0.1
    if method == "more":  # parameter-matched to CML: the MLP needs a width that matches, Conv-4 the conv head
        kw.update(hidden=20) if kind == "mlp" else kw.update(more_capacity="blocks")
    return (mlp_cfg if kind == "mlp" else conv_cfg)(base, method, **kw)


def relative_errors(got: dict, want: dict) -> float:
    """Largest per-tensor error against the whole gradient's norm (a BatchNorm-fed conv bias is ~0)."""
    assert got.keys() == want.keys()
    whole = math.sqrt(sum(float(v.pow(2).sum()) for v in want.values()))
    assert whole > 0
    return max(float((got[n] - want[n]).norm()) for n in want) / whole


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("base", BASES)
def test_batched_meta_gradient_equals_the_per_task_engine(float64, base, method, first_order, kind):
    cfg = cfg_for(kind, base, method, first_order=first_order)
    model = model_for(cfg)
    tasks = sinusoid_tasks(2) if kind == "mlp" else image_tasks(cfg, 2)
    split = cfg.spec.phi_in_outer_loss
    params = dict(model.named_parameters())
    # outer step 3: MAML++'s multi-step loss is still annealing (weights on every step).
    want = outer_gradient(HigherBackend(model), cfg, params, tasks, split=split, outer_step=3)
    got = outer_gradient(BatchedBackend(model), cfg, params, tasks, split=split, outer_step=3)
    assert relative_errors(got.total, want.total) <= 1e-10
    if split:
        assert relative_errors(got.meta_part, want.meta_part) <= 1e-10
    for key in ("meta_loss", "co_loss", "meta_acc", "co_acc"):
        a, b = getattr(got, key), getattr(want, key)
        assert (a is None) == (b is None), key
        # accuracies: the per-task engine averages hits in float32
        assert a is None or a == pytest.approx(b, rel=1e-7 if "acc" in key else 1e-12, abs=1e-15), key


def test_derivative_order_annealing_is_batched_too(float64):
    cfg = cfg_for("conv", "maml++", "cml", first_order_steps=2)
    model = model_for(cfg)
    params = dict(model.named_parameters())
    tasks = image_tasks(cfg, 2)
    by_step = {}
    for step in (1, 2):
        want = outer_gradient(HigherBackend(model), cfg, params, tasks, outer_step=step).total
        got = outer_gradient(BatchedBackend(model), cfg, params, tasks, outer_step=step).total
        assert relative_errors(got, want) <= 1e-10
        by_step[step] = got
    assert relative_errors(by_step[1], by_step[2]) > 1e-6  # first order, then second


def test_explicit_batch_norm_is_the_kernel_and_twice_differentiable(float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 4, 4, generator=g, requires_grad=True)
    w = torch.randn(3, generator=g, requires_grad=True)
    b = torch.randn(3, generator=g, requires_grad=True)
    kernel = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    torch.testing.assert_close(batch_norm_explicit(x, w, b), kernel, rtol=1e-12, atol=1e-12)
    small = (x[:3, :2, :2, :2].detach().requires_grad_(), w[:2].detach().requires_grad_(),
             b[:2].detach().requires_grad_())
    assert torch.autograd.gradgradcheck(batch_norm_explicit, small)


@pytest.mark.parametrize("kind, base, method", [("conv", "maml++", "cml"), ("mlp", "boil", "cml"),
                                                ("conv", "maml", "cl"), ("conv", "anil", "random"),
                                                ("mlp", "sharp-maml", "none")])
def test_batched_evaluation_equals_the_per_task_one(float64, kind, base, method):
    """Every evaluation protocol (theta', CML† as the authors read it, Eq. (9), phi unadapted) on both engines."""
    cfg = cfg_for(kind, base, method)
    tasks = image_tasks(cfg, 5) if kind == "conv" else sinusoid_tasks(5)
    model = model_for(cfg)
    params = dict(model.named_parameters())
    want = evaluate_tasks(HigherBackend(model), cfg, params, tasks, 3)
    got = evaluate_tasks(BatchedBackend(model), cfg, params, iter(tasks), 3)
    protocols = [p.key for p in PROTOCOLS if cfg.spec.co_learner or not p.needs_co]
    assert list(got.loss) == list(want.loss) == protocols
    assert list(got.acc) == list(want.acc) == (protocols if kind == "conv" else [])
    for what in ("loss", "acc"):
        for key, values in getattr(want, what).items():
            assert len(getattr(got, what)[key]) == len(values) == 5, (what, key)
            tol = 1e-7 if what == "acc" else 1e-10  # the per-task engine averages hits in float32
            assert getattr(got, what)[key] == pytest.approx(values, rel=tol, abs=1e-14), (what, key)
    assert got.pre_loss == pytest.approx(want.pre_loss, rel=1e-10)


def test_tasks_that_cannot_be_stacked_say_so_and_run_per_task(float64):
    cfg = cfg_for("mlp", "maml", "cml")
    model = model_for(cfg)
    params = dict(model.named_parameters())
    tasks = sinusoid_tasks(1, shots=4) + sinusoid_tasks(1, seed=5, shots=3)
    assert stack_tasks(tasks) is None
    want = outer_gradient(HigherBackend(model), cfg, params, tasks)
    with pytest.warns(UserWarning, match=r"cannot be stacked; this meta-batch runs on the per-task engine"):
        got = outer_gradient(BatchedBackend(model), cfg, params, tasks)
    assert relative_errors(got.total, want.total) <= 1e-10


def test_a_non_finite_task_loss_is_named(float64):
    cfg = cfg_for("mlp", "maml", "cml")
    model = model_for(cfg)
    tasks = sinusoid_tasks(3)
    x, y = tasks[1].query
    tasks[1] = tasks[1]._replace(query=(x, torch.full_like(y, float("nan"))))
    with pytest.raises(NonFiniteLossError, match="task 2 of 3"):
        outer_gradient(BatchedBackend(model), cfg, dict(model.named_parameters()), tasks)


def _records(run_dir):
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    test = {k: v for k, v in records.read_json(run_dir / records.TEST).items() if k != "train_time"}
    return strip(records.read_jsonl(run_dir / records.METRICS)), strip(records.read_jsonl(run_dir / records.VAL)), test


def _assert_same_records(a, b) -> None:
    for rows_a, rows_b in zip(a[:2], b[:2]):
        assert len(rows_a) == len(rows_b)
        for ra, rb in zip(rows_a, rows_b):
            assert ra.keys() == rb.keys()
            for k in ra:
                assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), k
    for k in a[2]:
        assert a[2][k] == (pytest.approx(b[2][k], rel=1e-4, abs=1e-6) if isinstance(b[2][k], float) else b[2][k]), k


@pytest.mark.parametrize("base", ["maml", "maml++"])
def test_training_with_the_batched_engine_gives_the_same_records(tmp_path, base):
    extra = dict(msl=True, msl_anneal_steps=3, learn_inner_lr=True, per_step_bn=True, inner_steps=2) \
        if base == "maml++" else {}
    runs, dynamics = {}, {}
    for backend in ("higher", "batched"):
        cfg = image_cfg("cml", base=base, backend=backend, steps=4, val_interval=2, test_tasks=5, record_interval=2,
                        **extra)
        Trainer(cfg, tmp_path / backend, splits=synthetic_splits(), recorder=Recorder(tmp_path / backend)).train()
        runs[backend] = _records(tmp_path / backend)
        dynamics[backend] = [_flat(r) for r in records.read_jsonl(tmp_path / backend / records.DYNAMICS)]
    _assert_same_records(runs["batched"], runs["higher"])
    # The recording steps' split (cosine of the meta-learner's and the co-learner's parts, block norms).
    assert len(dynamics["batched"]) == 2 and dynamics["batched"][0].keys() == dynamics["higher"][0].keys()
    for a, b in zip(dynamics["batched"], dynamics["higher"]):
        assert "cos_psi" in a and a == pytest.approx(b, rel=1e-3, abs=1e-5)


def _flat(row: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in row.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_backend_auto_picks_per_device_and_config_json_says_which(tmp_path):
    assert resolve_backend("auto", "cpu") == AUTO_BACKEND["cpu"] and resolve_backend("auto", "cuda") == "batched"
    assert resolve_backend("func", "cuda") == "func"
    cfg = image_cfg("cml", backend="auto", steps=2, val_interval=0, test_tasks=2)
    trainer = Trainer(cfg, tmp_path / "run", splits=synthetic_splits())
    assert trainer.backend.name == AUTO_BACKEND["cpu"]
    assert json.loads((tmp_path / "run" / records.CONFIG).read_text())["backend"] == AUTO_BACKEND["cpu"]
    trainer.train()
    resumed = Trainer(cfg.replace(steps=3), tmp_path / "run", splits=synthetic_splits(), resume=True)
    assert resumed.step == 2


def test_device_resident_sampler_gives_the_same_tasks_and_moves_each_class_once():
    pool = synthetic_splits().train
    on_host = TaskSampler(pool, 3, 1, 2, generator(0, "t"), rotations=True)
    host = [on_host.sample() for _ in range(12)]
    fetched = []
    images = pool.images
    pool.images = lambda c: (fetched.append(c), images(c))[1]
    sampler = TaskSampler(pool, 3, 1, 2, generator(0, "t"), rotations=True, device="cpu")
    for a in host:
        b = sampler.sample()
        for x, y in zip(a.support + a.query, b.support + b.query):
            assert torch.equal(x, y) and y.device == torch.device("cpu")
    assert sorted(fetched) == sorted(set(fetched)) == sorted(sampler.resident)  # each class fetched once
    assert len(fetched) > 3 and all(t.dtype == torch.uint8 for t in sampler.resident.values())


def test_evaluate_on_a_device_with_the_batched_engine_reproduces_test_json(tmp_path, capsys):
    code = main(["train", "--method", "cml", "--task", "sinusoid", "--out", str(tmp_path), "--name", "run",
                 "--steps", "5", "--test-tasks", "40", "--val-tasks", "5", "--no-progress"])
    assert code == 0
    test = records.read_json(tmp_path / "run" / records.TEST)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--device", "cpu", "--backend", "batched", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"test MSE {test['mse']:.4f}" in out and "over 40 tasks" in out
    if not torch.cuda.is_available():
        assert main(["evaluate", str(tmp_path / "run"), "--device", "cuda", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: device 'cuda'") and "evaluate --device" in err and len(err.splitlines()) == 1
