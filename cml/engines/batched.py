"""The batched engine: every task of a meta-batch adapted at once, for the GPU.

The per-task engines run the tasks of a meta-batch one after another, so a GPU waits on kernel launches. Here the
tasks are stacked on a leading axis and the one objective of :mod:`cml.meta` — the whole inner loop and the query
losses of one task — is mapped over that axis with ``torch.func.vmap``, with primitives written for it: every inner
step's gradient is ``torch.func.grad`` of the support loss. One backward of the mean query loss through the mapped
function then gives the meta-gradient (and, for the recorders' split, a second backward of the same graph).

BatchNorm keeps this project's policy (:mod:`cml.layers`): statistics of the batch it sees, here each task's own
batch, since the mapped function sees one task. It is computed with the explicit formula
(:func:`cml.layers.batch_norm_explicit`): ``vmap`` over PyTorch's batch-norm kernel gives wrong second-order
meta-gradients (measured: README, "The batched engine").

Tests hold this engine and the per-task one to the same meta-gradients in float64 for every method, base learner
and derivative order. A chunk of tasks that cannot be stacked (their sets differ in shape) is said to be so in one
warning and runs task by task on the per-task ``torch.func`` engine.
"""

from __future__ import annotations

import warnings
from itertools import islice
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..data.base import Task
from ..layers import NormFn, batch_norm_explicit
from .base import LossFn, Order, Params, Rate, TaskFn
from .func import FuncBackend

#: Tasks adapted together at evaluation (no second-order graph is kept there, so a chunk costs little memory).
EVAL_CHUNK = 32


def stack_tasks(tasks: Sequence[Task]) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """``(xs, ys, xq, yq)`` with the tasks on a leading axis (``xs: (tasks, n_support, ...)``), or None if the
    tasks' sets differ in shape."""
    parts = [t.support[0] for t in tasks], [t.support[1] for t in tasks], [t.query[0] for t in tasks], \
        [t.query[1] for t in tasks]
    if any(len({p.shape for p in part}) != 1 for part in parts):
        return None
    return tuple(torch.stack(part) for part in parts)  # type: ignore[return-value]


def _shapes(tasks: Sequence[Task]) -> str:
    return ", ".join(sorted({f"{tuple(t.support[0].shape)}/{tuple(t.query[0].shape)}" for t in tasks}))


class VmapPrimitives:
    """The primitives inside ``vmap`` (one task's view): ``torch.func.grad`` for gradients."""

    def __init__(self, model: nn.Module, norm: NormFn) -> None:
        self.model, self.norm = model, norm

    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0):
        return torch.func.functional_call(self.model, params, (x,),
                                          {"return_features": return_features, "step": step, "norm": self.norm})

    def grad(self, loss_fn: LossFn, point: Params, names: Sequence[str], order: Order) -> Params:
        grads = torch.func.grad(lambda sub: loss_fn({**point, **sub}))({n: point[n] for n in names})
        return grads if order == "second" else {n: g.detach() for n, g in grads.items()}

    def step(self, params: Params, loss_fn: LossFn, rates: dict[str, Rate], order: Order,
             at: Params | None = None) -> Params:
        grads = self.grad(loss_fn, params if at is None else at, list(rates), order)
        return {**params, **{n: params[n] - rates[n] * grads[n] for n in rates}}


class BatchedBackend(FuncBackend):
    """The tasks of a meta-batch adapted together (``torch.func.vmap`` over tasks of the objective).

    Its ``forward``, ``grad`` and ``step`` are :class:`cml.engines.func.FuncBackend`'s (one task at a time: the
    recorders and the fallback for unstackable tasks use them); :meth:`map_tasks` is batched.
    """

    name = "batched"

    def __init__(self, model: nn.Module, vmap_norm: NormFn = batch_norm_explicit) -> None:
        """``vmap_norm``: how norm layers normalise inside ``vmap`` (the explicit formula; bench/vmap_batchnorm.py
        passes PyTorch's kernel to measure why)."""
        super().__init__(model)
        self._vmap = VmapPrimitives(model, vmap_norm)

    def map_tasks(self, fn: TaskFn, params: Params, tasks: Iterable[Task],
                  evaluation: bool = False) -> Iterator[tuple[Tensor, ...]]:
        """A meta-batch at once (training), or :data:`EVAL_CHUNK` tasks at a time (evaluation)."""
        stream = iter(tasks)
        size = EVAL_CHUNK if evaluation else None
        while chunk := list(islice(stream, size)):
            stacked = stack_tasks(chunk)
            if stacked is None:
                what = ("evaluation tasks", "they run") if evaluation else ("tasks", "this meta-batch runs")
                warnings.warn(f"batched engine: {what[0]} of shapes {_shapes(chunk)} cannot be stacked; {what[1]} on "
                              f"the per-task engine", stacklevel=2)
                yield from super().map_tasks(fn, params, chunk, evaluation)
                continue

            def one(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[Tensor, ...]:
                return fn(self._vmap, params, (xs, ys), (xq, yq))

            mapped = torch.func.vmap(one, randomness="error")
            if evaluation:
                with torch.no_grad():  # torch.func.grad still differentiates the support loss inside
                    yield mapped(*stacked)
            else:
                yield mapped(*stacked)
