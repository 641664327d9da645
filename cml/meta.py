"""The functional core: one inner loop, the outer losses of every method, and the meta-gradient.

Parameters travel as ``dict[str, Tensor]`` and are never mutated. Two engines evaluate the same maths:

- :class:`HigherBackend` (the trainer's engine): higher's ``monkeypatch`` for the functional forward and
  higher's ``DifferentiableSGD`` (through ``get_diff_optim``) for the differentiable inner step, public API only.
- :class:`FuncBackend`: ``torch.func.functional_call`` and ``torch.autograd.grad(create_graph=True)``.

Tests hold the two to the same meta-gradients in float64. Tasks are processed one at a time with one
backward each (gradients accumulated), which keeps one task's second-order graph alive at a time; keeping
every task's graph for a single backward, as the authors' code does, measured ~45% more peak memory here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import higher
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import Config
from .data.base import Task
from .models import role_of

Params = dict[str, Tensor]
# "second": differentiate through the inner loop; "first": the inner gradients are constants (first-order
# MAML), adapted parameters still depend on the initial ones with Jacobian I; "none": no graph (evaluation).
Order = Literal["second", "first", "none"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite."""


class HigherBackend:
    """Functional forward and differentiable SGD through higher's public API."""

    name = "higher"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        # copy_initial_weights=False: the module's own parameters are the starting fast weights, so
        # meta-gradients reach them (higher's documented MAML setting).
        self.fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
        self._diffopts: dict[tuple[tuple[str, ...], float, Order], higher.optim.DifferentiableOptimizer] = {}

    def forward(self, params: Params, x: Tensor, return_features: bool = False):
        return self.fmodel(x, params=[params[n] for n in self.names], return_features=return_features)

    def _diffopt(self, adapt: Sequence[str], lr: float, order: Order) -> higher.optim.DifferentiableOptimizer:
        key = (tuple(adapt), lr, order)
        if key not in self._diffopts:
            named = dict(self.model.named_parameters())
            sgd = torch.optim.SGD([named[n] for n in adapt], lr=lr)
            callback = (lambda grads: [None if g is None else g.detach() for g in grads]) if order == "first" else None
            self._diffopts[key] = higher.optim.get_diff_optim(
                sgd, self.model.parameters(), fmodel=self.fmodel, track_higher_grads=order != "none",
                grad_callback=callback,
            )
        return self._diffopts[key]

    def sgd_step(self, params: Params, loss: Tensor, adapt: Sequence[str], lr: float, order: Order) -> Params:
        new = self._diffopt(adapt, lr, order).step(loss, params=[params[n] for n in self.names])
        return dict(zip(self.names, new))


class FuncBackend:
    """Functional forward with ``torch.func.functional_call``; inner SGD with ``torch.autograd.grad``."""

    name = "func"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]

    def forward(self, params: Params, x: Tensor, return_features: bool = False):
        return torch.func.functional_call(self.model, params, (x,), {"return_features": return_features})

    def sgd_step(self, params: Params, loss: Tensor, adapt: Sequence[str], lr: float, order: Order) -> Params:
        grads = torch.autograd.grad(loss, [params[n] for n in adapt], create_graph=order == "second",
                                    allow_unused=True)
        new = dict(params)
        for n, g in zip(adapt, grads):
            if g is None:
                continue
            p = params[n] if order != "none" else params[n].detach()
            new[n] = p - lr * (g if order == "second" else g.detach())
            if order == "none":
                new[n].requires_grad_()
        return new


Backend = HigherBackend | FuncBackend


def make_backend(name: str, model: nn.Module) -> Backend:
    if name == "higher":
        return HigherBackend(model)
    if name == "func":
        return FuncBackend(model)
    raise ValueError(f"unknown backend {name!r}; choose 'higher' or 'func'")


def task_loss(cfg: Config, out: Tensor, y: Tensor) -> Tensor:
    """MSE for regression, cross-entropy for classification."""
    return F.mse_loss(out, y) if cfg.is_regression else F.cross_entropy(out, y)


def adapted_names(cfg: Config, names: Sequence[str], test_time: bool = False) -> list[str]:
    """What the inner loop adapts: psi and theta, never phi (CML's asymmetry); ``cl`` adapts phi too while
    meta-training. At test time every method adapts psi and theta only: phi is dropped."""
    symmetric = cfg.method == "cl" and not test_time
    return [n for n in names if symmetric or role_of(n) != "phi"]


def inner_loss(cfg: Config, meta: Tensor, co: Tensor | None, y: Tensor, test_time: bool = False) -> Tensor:
    """The support loss: the meta-learner's alone, so phi gets no inner gradient (CML's asymmetry); ``cl``
    trains every branch on the support set while meta-training. At test time it is MAML's for every method."""
    loss = task_loss(cfg, meta, y)
    if cfg.method == "cl" and not test_time:
        loss = loss + cfg.gamma * task_loss(cfg, co, y)
    return loss


def adapt(backend: Backend, cfg: Config, params: Params, support: tuple[Tensor, Tensor], steps: int,
          order: Order, test_time: bool = False) -> Params:
    """The inner loop: ``steps`` SGD steps of size ``cfg.inner_lr`` on the support loss. Returns new params.

    ``test_time`` selects MAML's inference for every method (adapt psi and theta on the meta-learner's loss).
    """
    x, y = support
    names = adapted_names(cfg, backend.names, test_time)
    for _ in range(steps):
        meta, co = backend.forward(params, x)
        params = backend.sgd_step(params, inner_loss(cfg, meta, co, y, test_time), names, cfg.inner_lr, order)
    return params


@dataclass
class TaskLosses:
    """The query losses of one task after adaptation, and the adapted parameters."""

    meta: Tensor
    co: Tensor | None
    meta_acc: float
    co_acc: float | None
    adapted: Params

    def total(self, gamma: float) -> Tensor:
        return self.meta if self.co is None else self.meta + gamma * self.co


def _accuracy(cfg: Config, out: Tensor | None, y: Tensor) -> float | None:
    if out is None or cfg.is_regression:
        return None
    return (out.argmax(1) == y).float().mean().item()


def task_losses(backend: Backend, cfg: Config, params: Params, task: Task, order: Order) -> TaskLosses:
    """Adapts on the support set, then evaluates both heads on the query set with the adapted parameters.

    For ``cml`` the co-learner's query loss reads the adapted features psi' (not detached) through phi,
    which the inner loop left unchanged, so its gradient reaches psi and theta through the inner loop.
    """
    adapted = adapt(backend, cfg, params, task.support, cfg.inner_steps, order)
    xq, yq = task.query
    meta, co = backend.forward(adapted, xq)
    return TaskLosses(
        meta=task_loss(cfg, meta, yq),
        co=None if co is None else task_loss(cfg, co, yq),
        meta_acc=_accuracy(cfg, meta, yq),
        co_acc=_accuracy(cfg, co, yq),
        adapted=adapted,
    )


@dataclass
class MetaGradient:
    """The meta-gradient of one outer step, averaged over tasks, and what was measured on the way.

    ``meta_part`` (when requested) is the gradient of the meta-learner's loss alone; the co-learner's part
    is ``total - meta_part``. ``total`` is computed exactly as without the split, so asking for the split
    does not change training.
    """

    total: Params
    meta_loss: float
    co_loss: float | None
    meta_acc: float | None
    co_acc: float | None
    meta_part: Params | None = None


def meta_gradient(backend: Backend, cfg: Config, params: Params, tasks: Sequence[Task],
                  split: bool = False) -> MetaGradient:
    """The outer gradient: mean over tasks of grad [L_m(psi', theta'; query) + gamma L_c(psi', phi; query)].

    One backward per task accumulates into the result. With ``split``, a second backward of the same
    graph gives the meta-learner's part alone (the recorders' gradient-diversity measurement).

    Raises:
        NonFiniteLossError: if a task's loss is NaN or infinite.
    """
    order: Order = "first" if cfg.first_order else "second"
    names = list(params)
    leaves = [params[n] for n in names]
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    meta_part = {n: torch.zeros_like(p) for n, p in params.items()} if split else None
    sums = {"meta": 0.0, "co": 0.0, "meta_acc": 0.0, "co_acc": 0.0}
    n_tasks = len(tasks)
    for task in tasks:
        tl = task_losses(backend, cfg, params, task, order)
        loss = tl.total(cfg.gamma) / n_tasks
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite outer loss {loss.item()}")
        grads = torch.autograd.grad(loss, leaves, allow_unused=True, retain_graph=split)
        for n, g in zip(names, grads):
            if g is not None:
                total[n] += g
        if split:
            for n, g in zip(names, torch.autograd.grad(tl.meta / n_tasks, leaves, allow_unused=True)):
                if g is not None:
                    meta_part[n] += g
        sums["meta"] += tl.meta.item()
        if tl.co is not None:
            sums["co"] += tl.co.item()
        if tl.meta_acc is not None:
            sums["meta_acc"] += tl.meta_acc
        if tl.co_acc is not None:
            sums["co_acc"] += tl.co_acc
    has_co, cls = cfg.has_co_learner, not cfg.is_regression
    return MetaGradient(
        total=total,
        meta_loss=sums["meta"] / n_tasks,
        co_loss=sums["co"] / n_tasks if has_co else None,
        meta_acc=sums["meta_acc"] / n_tasks if cls else None,
        co_acc=sums["co_acc"] / n_tasks if (cls and has_co) else None,
        meta_part=meta_part,
    )


@dataclass
class EvalResult:
    """Per-task query metrics of an evaluation: loss and accuracy with theta' and, where phi exists, with phi."""

    meta_loss: list[float]
    meta_acc: list[float]
    co_loss: list[float]
    co_acc: list[float]
    pre_loss: list[float]


def evaluate_tasks(backend: Backend, cfg: Config, params: Params, tasks, steps: int) -> EvalResult:
    """MAML-style evaluation: adapt (psi, theta) on each support set with the meta-learner's loss, predict the
    query set with theta'.

    ``co_*`` (phi on the adapted features: CML dagger for ``cml``) are filled when the model has a co-learner;
    ``pre_loss`` is the query loss before adaptation (to show that adaptation helps).
    """
    res = EvalResult([], [], [], [], [])
    for task in tasks:
        xq, yq = task.query
        with torch.no_grad():
            pre, _ = backend.forward(params, xq)
            res.pre_loss.append(task_loss(cfg, pre, yq).item())
        with torch.enable_grad():
            adapted = adapt(backend, cfg, params, task.support, steps, "none", test_time=True)
        with torch.no_grad():
            meta, co = backend.forward(adapted, xq)
            res.meta_loss.append(task_loss(cfg, meta, yq).item())
            if not cfg.is_regression:
                res.meta_acc.append(_accuracy(cfg, meta, yq))
            if co is not None:
                res.co_loss.append(task_loss(cfg, co, yq).item())
                if not cfg.is_regression:
                    res.co_acc.append(_accuracy(cfg, co, yq))
    return res
