"""The engine registry: every engine evaluates the one objective of :mod:`cml.meta` (see
:mod:`cml.engines.base` for what an engine provides).

- ``higher`` (:mod:`cml.engines.higher`, the trainer's default): higher's monkeypatch and DifferentiableSGD;
- ``func`` (:mod:`cml.engines.func`): ``torch.func.functional_call`` and ``torch.autograd.grad``;
- ``batched`` (:mod:`cml.engines.batched`): the tasks of a meta-batch at once under ``torch.func.vmap``;
- ``auto``: the faster of them on the model's device (:data:`AUTO_BACKEND`).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Engine, Order, Params, PerTaskEngine, Primitives, Rate
from .batched import EVAL_CHUNK, BatchedBackend, stack_tasks
from .func import FuncBackend
from .higher import HigherBackend

ENGINES: dict[str, type] = {e.name: e for e in (HigherBackend, FuncBackend, BatchedBackend)}
#: What ``backend="auto"`` runs on each kind of device. On the CPU the per-task engine is faster (bench/batched.py:
#: vmap's batched convolutions cost more than the loop they replace; README, "The batched engine").
AUTO_BACKEND = {"cpu": "higher", "cuda": "batched"}


def resolve_backend(name: str, device: torch.device | str) -> str:
    """The engine ``name`` runs as on ``device``: itself, or for ``auto`` the device's entry of
    :data:`AUTO_BACKEND` (the per-task engine on a device not listed)."""
    if name != "auto":
        return name
    return AUTO_BACKEND.get(torch.device(device).type, "higher")


def make_backend(name: str, model: nn.Module) -> Engine:
    """The engine ``name`` for ``model`` (``auto``: the faster one on the device its parameters are on)."""
    name = resolve_backend(name, next(model.parameters()).device)
    if name not in ENGINES:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join([*ENGINES, 'auto'])}")
    return ENGINES[name](model)


__all__ = ["AUTO_BACKEND", "BatchedBackend", "ENGINES", "EVAL_CHUNK", "Engine", "FuncBackend", "HigherBackend",
           "Order", "Params", "PerTaskEngine", "Primitives", "Rate", "make_backend", "resolve_backend",
           "stack_tasks"]
