"""The batched engine: every task of a meta-batch adapted at once, for the GPU.

The per-task engines (:mod:`cml.meta`) run the tasks of a meta-batch one after another, so a GPU waits on
kernel launches. Here the tasks are stacked on a leading axis and one function, the whole inner loop and the
query losses of one task, is mapped over that axis with ``torch.func.vmap``; inside it every inner step's
gradient is ``torch.func.grad`` of the support loss. One backward of the mean query loss through the mapped
function then gives the meta-gradient (and, for the recorders' split, a second backward of the same graph).

BatchNorm keeps this project's policy (:mod:`cml.models`): statistics of the batch it sees, here each task's
own batch, since the mapped function sees one task. It is computed with the explicit formula
(:func:`cml.models.explicit_batch_norm`): ``vmap`` over PyTorch's batch-norm kernel gives wrong second-order
meta-gradients (measured: README, "The batched engine").

What it supports is what :func:`cml.meta.task_losses` does, and tests hold the two to the same meta-gradients
in float64 for every method, base learner and derivative order: per-tensor, per-step and learnable inner rates,
the multi-step loss, per-step BatchNorm, Sharp-MAML's lower level (and its upper level, which
:func:`cml.meta.outer_gradient` takes by calling this engine twice), derivative-order annealing and the split.
A meta-batch whose tasks cannot be stacked (their sets differ in shape) is said to be so in one warning and
runs on the per-task engine.
"""

from __future__ import annotations

import warnings
from functools import partial
from itertools import islice
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .config import Config
from .data.base import Task
from .meta import (EvalResult, FuncBackend, InnerSpec, MetaGradient, NonFiniteLossError, Order, Params, evaluate_tasks,
                   inner_spec, meta_gradient, msl_weights, outer_order, task_loss)
from .models import explicit_batch_norm, role_of

#: Tasks adapted together at evaluation (no second-order graph is kept there, so a chunk costs little memory).
EVAL_CHUNK = 32
#: What ``backend="auto"`` runs on each kind of device. On the CPU the per-task engine is faster (bench/batched.py:
#: vmap's batched convolutions cost more than the loop they replace; README, "The batched engine").
AUTO_BACKEND = {"cpu": "higher", "cuda": "batched"}


def resolve_backend(name: str, device: torch.device | str) -> str:
    """The engine ``name`` runs as on ``device``: itself, or for ``auto`` the device's entry of
    :data:`AUTO_BACKEND` (the per-task engine on a device not listed)."""
    if name != "auto":
        return name
    return AUTO_BACKEND.get(torch.device(device).type, "higher")


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


class BatchedBackend(FuncBackend):
    """The tasks of a meta-batch adapted together (``torch.func.vmap`` over tasks of the inner loop).

    Its ``forward`` and ``sgd_step`` are :class:`cml.meta.FuncBackend`'s (one task at a time: the recorders
    and the per-task fallback use them); :meth:`meta_gradient` and :meth:`evaluate_tasks` are batched, and
    :func:`cml.meta.meta_gradient` and :func:`cml.meta.evaluate_tasks` hand over to them.
    """

    name = "batched"
    #: How norm layers normalise inside ``vmap`` (bench/vmap_batchnorm.py swaps in PyTorch's kernel to measure it).
    norm_context = staticmethod(explicit_batch_norm)

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self._per_task = FuncBackend(model)

    # -- one task, written for vmap ------------------------------------------------------------------

    def _forward(self, params: Params, x: Tensor, step: int) -> tuple[Tensor, Tensor | None]:
        return torch.func.functional_call(self.model, params, (x,), {"step": step})[:2]

    def _adapt(self, spec: InnerSpec, params: Params, x: Tensor, y: Tensor) -> list[Params]:
        """:func:`cml.meta.adapt` for one task inside ``vmap``: the same steps, with each support gradient
        from ``torch.func.grad`` (constants at first order; Sharp-MAML's at the perturbed point)."""
        names = list(spec.rates)
        trajectory = [params]
        for k in range(spec.steps):
            def support(adapted: Params, k: int = k, base: Params = params) -> Tensor:
                meta, co = self._forward({**base, **adapted}, x, k)
                return spec.loss(meta, co, y)

            point = {n: params[n] for n in names}
            grads = self._grad(support, point, spec.order)
            if spec.sam_rho:
                norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
                at = {n: params[n] + spec.sam_rho * grads[n] / (norm + 1e-12) for n in names}
                grads = self._grad(support, at, spec.order)
            rates = spec.rates_at(k)
            params = {**params, **{n: params[n] - rates[n] * grads[n] for n in names}}
            trajectory.append(params)
        return trajectory

    @staticmethod
    def _grad(fn, point: Params, order: Order) -> Params:
        grads = torch.func.grad(fn)(point)
        return grads if order == "second" else {n: g.detach() for n, g in grads.items()}

    def _task(self, cfg: Config, spec: InnerSpec, weights: list[float], params: Params, xs: Tensor, ys: Tensor,
              xq: Tensor, yq: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One task's (meta loss, co loss, meta accuracy, co accuracy) as :func:`cml.meta.task_losses` computes
        them (zeros where a quantity does not exist: ``vmap`` returns tensors only)."""
        trajectory = self._adapt(spec, params, xs, ys)
        meta_loss = co_loss = zero = xq.new_zeros(())
        for k, w in enumerate(weights, start=1):
            if w == 0:
                continue
            meta, co = self._forward(trajectory[k], xq, k - 1)
            m = task_loss(cfg, meta, yq)
            c = task_loss(cfg, co, yq) if co is not None and cfg.spec.phi_in_outer_loss else None
            if w != 1.0:
                m, c = w * m, (None if c is None else w * c)
            meta_loss = meta_loss + m
            if c is not None:
                co_loss = co_loss + c
        if not weights[-1]:
            meta, co = self._forward(trajectory[-1], xq, len(weights) - 1)
        return meta_loss, co_loss, self._hits(cfg, meta, yq, zero), self._hits(cfg, co, yq, zero)

    @staticmethod
    def _hits(cfg: Config, out: Tensor | None, y: Tensor, zero: Tensor) -> Tensor:
        if out is None or cfg.is_regression:
            return zero
        return (out.argmax(1) == y).to(zero.dtype).mean()

    # -- the meta-gradient ---------------------------------------------------------------------------

    def meta_gradient(self, cfg: Config, params: Params, tasks: Sequence[Task], split: bool = False,
                      outer_step: int = 0) -> MetaGradient:
        """:func:`cml.meta.meta_gradient` with every task adapted at once (same arguments, same result).

        Raises:
            NonFiniteLossError: if a task's loss is NaN or infinite.
        """
        stacked = stack_tasks(tasks)
        if stacked is None:
            warnings.warn(f"batched engine: tasks of shapes {_shapes(tasks)} cannot be stacked; this meta-batch runs "
                          f"on the per-task engine", stacklevel=2)
            return meta_gradient(self._per_task, cfg, params, tasks, split, outer_step)
        order = outer_order(cfg, outer_step)
        spec = inner_spec(cfg, params, cfg.inner_steps, order)
        n = cfg.inner_steps
        weights = msl_weights(n, outer_step, cfg.msl_anneal_steps) if cfg.msl else [0.0] * (n - 1) + [1.0]
        with self.norm_context():
            meta, co, meta_acc, co_acc = torch.func.vmap(
                partial(self._task, cfg, spec, weights, params), randomness="error")(*stacked)  # each (tasks,)
        has_co = cfg.has_co_learner and cfg.spec.phi_in_outer_loss
        per_task = meta + cfg.gamma * co if has_co else meta
        bad = (~torch.isfinite(per_task)).nonzero().flatten().tolist()
        if bad:
            raise NonFiniteLossError(f"non-finite outer loss {per_task[bad[0]].item()} (task {bad[0] + 1} of "
                                     f"{len(tasks)})")
        names = list(params)
        leaves = [params[name] for name in names]
        n_tasks = len(tasks)
        grads = torch.autograd.grad(per_task.sum() / n_tasks, leaves, allow_unused=True, retain_graph=split)
        total = {name: torch.zeros_like(p) if g is None else g for name, p, g in zip(names, leaves, grads)}
        meta_part = None
        if split:
            grads = torch.autograd.grad(meta.sum() / n_tasks, leaves, allow_unused=True)
            meta_part = {name: torch.zeros_like(p) if g is None else g for name, p, g in zip(names, leaves, grads)}
        cls = not cfg.is_regression
        return MetaGradient(
            total=total,
            meta_loss=meta.detach().mean().item(),
            co_loss=co.detach().mean().item() if has_co else None,
            meta_acc=meta_acc.mean().item() if cls else None,
            co_acc=co_acc.mean().item() if (cls and cfg.has_co_learner) else None,
            meta_part=meta_part,
        )

    # -- evaluation ----------------------------------------------------------------------------------

    def _eval_task(self, cfg: Config, spec: InnerSpec, params: Params, xs: Tensor, ys: Tensor, xq: Tensor,
                   yq: Tensor) -> tuple[Tensor, ...]:
        pre, _ = self._forward(params, xq, 0)
        adapted = self._adapt(spec, params, xs, ys)[-1]
        meta, co = self._forward(adapted, xq, spec.steps - 1)
        zero = xq.new_zeros(())
        co_loss = zero if co is None else task_loss(cfg, co, yq)
        return (task_loss(cfg, pre, yq), task_loss(cfg, meta, yq), self._hits(cfg, meta, yq, zero), co_loss,
                self._hits(cfg, co, yq, zero))

    def evaluate_tasks(self, cfg: Config, params: Params, tasks: Iterable[Task], steps: int) -> EvalResult:
        """:func:`cml.meta.evaluate_tasks` with tasks adapted :data:`EVAL_CHUNK` at a time."""
        res = EvalResult([], [], [], [], [])
        spec = inner_spec(cfg, params, steps, "none", test_time=True)
        has_co = any(role_of(n) == "phi" for n in params)
        tasks = iter(tasks)
        while chunk := list(islice(tasks, EVAL_CHUNK)):
            stacked = stack_tasks(chunk)
            if stacked is None:
                warnings.warn(f"batched engine: evaluation tasks of shapes {_shapes(chunk)} cannot be stacked; they "
                              f"run on the per-task engine", stacklevel=2)
                part = evaluate_tasks(self._per_task, cfg, params, chunk, steps)
                for field in ("pre_loss", "meta_loss", "meta_acc", "co_loss", "co_acc"):
                    getattr(res, field).extend(getattr(part, field))
                continue
            with torch.no_grad(), self.norm_context():
                pre, meta, meta_acc, co, co_acc = (t.tolist() for t in torch.func.vmap(
                    partial(self._eval_task, cfg, spec, params), randomness="error")(*stacked))
            res.pre_loss.extend(pre)
            res.meta_loss.extend(meta)
            if not cfg.is_regression:
                res.meta_acc.extend(meta_acc)
            if has_co:
                res.co_loss.extend(co)
                if not cfg.is_regression:
                    res.co_acc.extend(co_acc)
        return res
