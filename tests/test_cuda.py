"""CUDA checks: the engines on a GPU against the CPU, the batched engine against the per-task one there, a short
training run and ``evaluate --device cuda``. Skipped, saying so, where torch sees no CUDA device
(``bench/gpu_check.sh`` runs them with the GPU benchmark)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cml import records
from cml.engines import BatchedBackend, FuncBackend, HigherBackend
from cml.cli import main
from cml.data.base import TaskSampler
from cml.meta import outer_gradient
from cml.seeds import generator
from cml.trainer import Trainer

from test_bases import BASES, conv_cfg, image_tasks, model_for
from test_batched import _assert_same_records, _records, relative_errors
from test_trainer import image_cfg, synthetic_splits

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA device: torch.cuda.is_available() is False "
                                        "(run bench/gpu_check.sh on a GPU)")]

CUDA = torch.device("cuda")


def _on(tasks, device):
    return [t.to(device) for t in tasks]


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("base", BASES)
def test_cpu_and_cuda_meta_gradients_agree_in_float64(float64, base, first_order):
    cfg = conv_cfg(base, "cml", first_order=first_order)
    model, tasks = model_for(cfg), image_tasks(cfg, 2)
    want = outer_gradient(HigherBackend(model), cfg, dict(model.named_parameters()), tasks, split=True)
    gpu = model_for(cfg).to(CUDA)
    for backend_cls in (HigherBackend, FuncBackend, BatchedBackend):
        got = outer_gradient(backend_cls(gpu), cfg, dict(gpu.named_parameters()), _on(tasks, CUDA), split=True)
        # Each tensor against the whole gradient's norm: a conv bias before a BatchNorm has a zero gradient.
        assert relative_errors({n: g.cpu() for n, g in got.total.items()}, want.total) <= 1e-10, backend_cls.name
        assert relative_errors({n: g.cpu() for n, g in got.meta_part.items()}, want.meta_part) <= 1e-10
        assert math.isclose(got.meta_loss, want.meta_loss, rel_tol=1e-10)


@pytest.mark.parametrize("method", ["none", "cml", "cl"])
@pytest.mark.parametrize("base", BASES)
def test_batched_equals_per_task_on_cuda(float64, base, method):
    cfg = conv_cfg(base, method)
    model = model_for(cfg).to(CUDA)
    tasks = _on(image_tasks(cfg, 4), CUDA)
    params = dict(model.named_parameters())
    want = outer_gradient(HigherBackend(model), cfg, params, tasks, outer_step=3)
    got = outer_gradient(BatchedBackend(model), cfg, params, tasks, outer_step=3)
    assert relative_errors(got.total, want.total) <= 1e-10


def test_device_resident_pool_gives_the_cpu_tasks():
    pool = synthetic_splits().train
    host, gpu = (TaskSampler(pool, 3, 1, 2, generator(0, "t"), rotations=True, device=d) for d in (None, CUDA))
    for _ in range(5):
        a, b = host.sample(), gpu.sample()
        assert b.support[0].device.type == "cuda"
        assert all(torch.equal(x, y.cpu()) for x, y in zip(a.support + a.query, b.support + b.query))
    assert all(t.device.type == "cuda" and t.dtype == torch.uint8 for t in gpu.resident.values())


def test_short_cuda_training_run_batched_and_per_task_agree(tmp_path):
    runs = {}
    for backend in ("higher", "batched"):
        cfg = image_cfg("cml", backend=backend, device="cuda", steps=4, val_interval=2, test_tasks=5)
        trainer = Trainer(cfg, tmp_path / backend, splits=synthetic_splits())
        assert next(trainer.model.parameters()).device.type == "cuda"
        trainer.train()
        runs[backend] = _records(tmp_path / backend)
    _assert_same_records(runs["batched"], runs["higher"])
    assert Trainer(image_cfg("cml", backend="auto", device="cuda", steps=1), tmp_path / "auto",
                   splits=synthetic_splits()).backend.name == "batched"


def test_evaluate_on_cuda_reproduces_test_json(tmp_path, capsys):
    assert main(["train", "--method", "cml", "--task", "sinusoid", "--out", str(tmp_path), "--name", "run",
                 "--steps", "5", "--test-tasks", "40", "--val-tasks", "5", "--no-progress"]) == 0
    test = records.read_json(tmp_path / "run" / records.TEST)
    capsys.readouterr()
    for backend in ("higher", "batched"):
        assert main(["evaluate", str(tmp_path / "run"), "--device", "cuda", "--backend", backend, "--no-progress"]) == 0
        mse = float(re.search(r"test MSE ([0-9.]+)", capsys.readouterr().out).group(1))
        assert mse == pytest.approx(test["mse"], rel=1e-3, abs=1e-4)  # printed to 4 decimals
