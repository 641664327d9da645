"""The functional core: one inner loop, the outer losses of every base learner and method, and the
meta-gradient.

Parameters travel as ``dict[str, Tensor]`` and are never mutated. The inner loop reads a small
:class:`InnerSpec` (which tensors adapt, each with its step size per step; the derivative order; the support
loss; Sharp-MAML's radius), built from the base-learner and method tables by :func:`inner_spec`; it never sees
the whole config. Two engines evaluate the same maths:

- :class:`HigherBackend` (the trainer's engine): higher's ``monkeypatch`` for the functional forward and
  higher's ``DifferentiableSGD`` (through ``get_diff_optim``) for the differentiable inner step, public API only.
- :class:`FuncBackend`: ``torch.func.functional_call`` and ``torch.autograd.grad(create_graph=True)``.

Tests hold the two to the same meta-gradients in float64. Tasks are processed one at a time with one
backward each (gradients accumulated), which keeps one task's second-order graph alive at a time; keeping
every task's graph for a single backward, as the authors' code does, measured ~45% more peak memory here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, Union

import higher
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import Config
from .data.base import Task
from .models import inner_rates, rate_key

Params = dict[str, Tensor]
# A step size: a number, or a 0-d tensor (a learnable MAML++ rate, differentiated through).
Rate = Union[float, Tensor]
# "second": differentiate through the inner loop; "first": the inner gradients are constants (first-order
# MAML), adapted parameters still depend on the initial ones with Jacobian I; "none": no graph (evaluation).
Order = Literal["second", "first", "none"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite."""


class HigherBackend:
    """Functional forward and differentiable SGD through higher's public API.

    The differentiable optimiser has one parameter group per adapted tensor, so that each step's per-tensor
    rates reach it through ``override={"lr": [...]}`` (higher's documented way to pass tensors, learnable
    ones included, as optimiser settings).
    """

    name = "higher"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        # copy_initial_weights=False: the module's own parameters are the starting fast weights, so
        # meta-gradients reach them (higher's documented MAML setting).
        self.fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
        self._diffopts: dict[tuple[tuple[str, ...], Order], higher.optim.DifferentiableOptimizer] = {}

    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0):
        return self.fmodel(x, params=[params[n] for n in self.names], return_features=return_features, step=step)

    def _diffopt(self, adapt: Sequence[str], order: Order) -> higher.optim.DifferentiableOptimizer:
        key = (tuple(adapt), order)
        if key not in self._diffopts:
            named = dict(self.model.named_parameters())
            sgd = torch.optim.SGD([{"params": [named[n]]} for n in adapt], lr=1.0)
            callback = (lambda grads: [None if g is None else g.detach() for g in grads]) if order == "first" else None
            self._diffopts[key] = higher.optim.get_diff_optim(
                sgd, self.model.parameters(), fmodel=self.fmodel, track_higher_grads=order != "none",
                grad_callback=callback,
            )
        return self._diffopts[key]

    def sgd_step(self, params: Params, loss: Tensor, rates: dict[str, Rate], order: Order,
                 at: Params | None = None) -> Params:
        """``params - rate * grad loss``; with ``at``, the gradient is taken at ``at`` (Sharp-MAML's perturbed
        point): higher steps ``at`` and the result is shifted back by ``at - params``."""
        names = list(rates)
        point = params if at is None else at
        new = self._diffopt(names, order).step(loss, params=[point[n] for n in self.names],
                                               override={"lr": [rates[n] for n in names]})
        new = dict(zip(self.names, new))
        if at is not None:
            new = {n: (new[n] - (at[n] - params[n]) if n in rates else params[n]) for n in self.names}
        return new


class FuncBackend:
    """Functional forward with ``torch.func.functional_call``; inner SGD with ``torch.autograd.grad``."""

    name = "func"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]

    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0):
        return torch.func.functional_call(self.model, params, (x,), {"return_features": return_features, "step": step})

    def sgd_step(self, params: Params, loss: Tensor, rates: dict[str, Rate], order: Order,
                 at: Params | None = None) -> Params:
        """``params - rate * grad loss``, the gradient taken at ``at`` when given (Sharp-MAML)."""
        names = list(rates)
        point = params if at is None else at
        grads = torch.autograd.grad(loss, [point[n] for n in names], create_graph=order == "second",
                                    allow_unused=True)
        new = dict(params)
        for n, g in zip(names, grads):
            if g is None:
                continue
            p = params[n] if order != "none" else params[n].detach()
            new[n] = p - rates[n] * (g if order == "second" else g.detach())
            if order == "none":
                new[n] = new[n].detach().requires_grad_()
        return new


Backend = HigherBackend | FuncBackend


def make_backend(name: str, model: nn.Module) -> Backend:
    """The engine ``name`` (``higher``, ``func``, ``batched``: :mod:`cml.batched`; ``auto``: the faster one on
    the device the model's parameters are on, :func:`cml.batched.resolve_backend`)."""
    from .batched import BatchedBackend, resolve_backend

    name = resolve_backend(name, next(model.parameters()).device) if name == "auto" else name
    if name == "higher":
        return HigherBackend(model)
    if name == "func":
        return FuncBackend(model)
    if name == "batched":
        return BatchedBackend(model)
    raise ValueError(f"unknown backend {name!r}; choose 'higher', 'func', 'batched' or 'auto'")


def task_loss(cfg: Config, out: Tensor, y: Tensor) -> Tensor:
    """MSE for regression, cross-entropy for classification."""
    return F.mse_loss(out, y) if cfg.is_regression else F.cross_entropy(out, y)


@dataclass(frozen=True)
class InnerSpec:
    """What one inner loop does; built by :func:`inner_spec` from the base-learner and method tables.

    Attributes:
        steps: SGD steps.
        rates: per adapted tensor, its step size at each step (``len == steps``); tensors absent are not
            adapted (phi for CML, BOIL's head, ANIL's body).
        order: ``second``, ``first`` or ``none`` (see :data:`Order`).
        loss: the support loss from ``(meta_out, co_out, y)``.
        sam_rho: Sharp-MAML's lower-level radius (0: the plain gradient).
    """

    steps: int
    rates: dict[str, tuple[Rate, ...]]
    order: Order
    loss: Callable[[Tensor, Tensor | None, Tensor], Tensor]
    sam_rho: float = 0.0

    def rates_at(self, k: int) -> dict[str, Rate]:
        return {n: r[k] for n, r in self.rates.items()}


def support_loss(cfg: Config, test_time: bool = False) -> Callable[[Tensor, Tensor | None, Tensor], Tensor]:
    """The inner loss: the meta-learner's alone, so phi gets no inner gradient (CML's asymmetry); a method
    that adapts phi (CL) adds phi's loss while meta-training. At test time it is the meta-learner's for all."""
    with_phi = cfg.spec.phi_in_inner_loop and not test_time

    def loss(meta: Tensor, co: Tensor | None, y: Tensor) -> Tensor:
        out = task_loss(cfg, meta, y)
        if with_phi:
            out = out + cfg.gamma * task_loss(cfg, co, y)
        return out

    return loss


def inner_spec(cfg: Config, params: Params, steps: int, order: Order, test_time: bool = False) -> InnerSpec:
    """The inner loop of ``cfg``'s base and method: which tensors adapt (:func:`cml.models.inner_rates`), at
    which rate per step (MAML++'s learnable rates are read from ``params``, so meta-gradients reach them), the
    support loss and Sharp-MAML's lower-level radius. ``test_time`` selects MAML's inference for every
    method (adapt psi and theta on the meta-learner's loss; phi dropped)."""
    rates: dict[str, tuple[Rate, ...]] = {}
    for name, rate in inner_rates(cfg, params, test_time).items():
        if cfg.learn_inner_lr:
            learned = params[f"inner_lr.{rate_key(name)}"]  # (inner_rate_steps,)
            rates[name] = tuple(learned[min(k, learned.shape[0] - 1)] for k in range(steps))
        else:
            rates[name] = (rate,) * steps
    # Sharpness-aware steps regularise meta-training; test-time adaptation takes plain gradient steps.
    # (The radii are Sharp-MAML's options: the config refuses them under any other base.)
    lower = cfg.sharp_variant in ("lower", "both") and not test_time
    rho = cfg.sharp_rho_lower if lower else 0.0
    return InnerSpec(steps, rates, order, support_loss(cfg, test_time), rho)


def adapt(backend: Backend, spec: InnerSpec, params: Params, support: tuple[Tensor, Tensor]) -> list[Params]:
    """The inner loop: ``spec.steps`` SGD steps on the support loss. Returns the parameters before and after
    every step (``[params, after step 1, ..., after step N]``); the last entry is the adapted model.

    Step ``k`` (from 0) runs the forward with per-step BatchNorm row ``k``. With ``spec.sam_rho`` > 0
    (Sharp-MAML's lower level), the step's gradient is taken at ``params + e``, ``e = rho g / (||g|| + 1e-12)``
    with ``g`` the support gradient at ``params`` (joint norm over the adapted tensors; the graph through ``e``
    is kept at second order).
    """
    x, y = support
    trajectory = [params]
    for k in range(spec.steps):
        meta, co = backend.forward(params, x, step=k)[:2]
        loss = spec.loss(meta, co, y)
        rates = spec.rates_at(k)
        at = None
        if spec.sam_rho:
            names = list(rates)
            grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=spec.order == "second",
                                        allow_unused=True)
            grads = [torch.zeros_like(params[n]) if g is None else (g if spec.order == "second" else g.detach())
                     for n, g in zip(names, grads)]
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
            at = dict(params)
            for n, g in zip(names, grads):
                at[n] = params[n] + spec.sam_rho * g / (norm + 1e-12)
            meta, co = backend.forward(at, x, step=k)[:2]
            loss = spec.loss(meta, co, y)
        params = backend.sgd_step(params, loss, rates, spec.order, at=at)
        trajectory.append(params)
    return trajectory


def msl_weights(steps: int, outer_step: int, anneal_steps: int) -> list[float]:
    """MAML++'s multi-step loss weights of the query losses after each of ``steps`` inner steps.

    They start at 1/N each; non-final weights decay as ``max(1/N - e/(N E), 0.03/N)`` and the final one grows
    as ``min(1/N + e (N-1)/(N E), 1 - (N-1) 0.03/N)``, ``e`` the outer step, ``E`` = ``anneal_steps``. From
    ``e >= E`` only the final step counts: ``[0, ..., 0, 1]``. (N = 5, E = 15, e = 5: [0.133 x4, 0.467].)

    References: Antoniou, Edwards & Storkey, How to train your MAML, ICLR 2019 (the reference code's
    ``get_per_step_loss_importance_vector``, with epochs here expressed in outer steps).
    """
    if outer_step >= anneal_steps:
        return [0.0] * (steps - 1) + [1.0]
    n = steps
    decay = 1.0 / n / anneal_steps
    floor = 0.03 / n
    weights = [max(1.0 / n - outer_step * decay, floor) for _ in range(n - 1)]
    weights.append(min(1.0 / n + outer_step * (n - 1) * decay, 1.0 - (n - 1) * floor))
    return weights


def outer_order(cfg: Config, outer_step: int) -> Order:
    """First order where the config asks for it, and for MAML++'s first ``first_order_steps`` outer steps."""
    return "first" if cfg.first_order or outer_step < cfg.first_order_steps else "second"


@dataclass
class TaskLosses:
    """The query losses of one task after adaptation (MAML++'s multi-step loss: the weighted sum over steps),
    the final step's accuracies, and the adapted parameters."""

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


def task_losses(backend: Backend, cfg: Config, params: Params, task: Task, order: Order,
                outer_step: int = 0) -> TaskLosses:
    """Adapts on the support set, then evaluates both heads on the query set with the adapted parameters.

    For ``cml`` the co-learner's query loss reads the adapted features psi' (not detached) through phi,
    which the inner loop left unchanged, so its gradient reaches psi and theta through the inner loop. With
    the multi-step loss both heads' query losses after every inner step are weighted by :func:`msl_weights`
    (the co-learner's with the same weights).
    """
    spec = inner_spec(cfg, params, cfg.inner_steps, order)
    trajectory = adapt(backend, spec, params, task.support)
    xq, yq = task.query
    n = cfg.inner_steps
    weights = msl_weights(n, outer_step, cfg.msl_anneal_steps) if cfg.msl else [0.0] * (n - 1) + [1.0]
    meta_loss: Tensor | None = None
    co_loss: Tensor | None = None
    for k, w in enumerate(weights, start=1):
        if w == 0:
            continue
        meta, co = backend.forward(trajectory[k], xq, step=k - 1)[:2]
        m = task_loss(cfg, meta, yq)
        c = None if co is None or not cfg.spec.phi_in_outer_loss else task_loss(cfg, co, yq)
        if w != 1.0:
            m, c = w * m, (None if c is None else w * c)
        meta_loss = m if meta_loss is None else meta_loss + m
        if c is not None:
            co_loss = c if co_loss is None else co_loss + c
    final_meta, final_co = (meta, co) if weights[-1] else backend.forward(trajectory[-1], xq, step=n - 1)[:2]
    return TaskLosses(
        meta=meta_loss,
        co=co_loss,
        meta_acc=_accuracy(cfg, final_meta, yq),
        co_acc=_accuracy(cfg, final_co, yq),
        adapted=trajectory[-1],
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
                  split: bool = False, outer_step: int = 0) -> MetaGradient:
    """The outer gradient: mean over tasks of grad [L_m(psi', theta'; query) + gamma L_c(psi', phi; query)].

    One backward per task accumulates into the result. With ``split``, a second backward of the same
    graph gives the meta-learner's part alone (the recorders' gradient-diversity measurement).
    ``outer_step`` (from 0) sets MAML++'s multi-step-loss weights and derivative order.

    Raises:
        NonFiniteLossError: if a task's loss is NaN or infinite.
    """
    if hasattr(backend, "meta_gradient"):  # the batched engine: every task at once (cml.batched)
        return backend.meta_gradient(cfg, params, tasks, split, outer_step)
    order = outer_order(cfg, outer_step)
    names = list(params)
    leaves = [params[n] for n in names]
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    meta_part = {n: torch.zeros_like(p) for n, p in params.items()} if split else None
    sums = {"meta": 0.0, "co": 0.0, "meta_acc": 0.0, "co_acc": 0.0}
    n_tasks = len(tasks)
    for task in tasks:
        tl = task_losses(backend, cfg, params, task, order, outer_step)
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
        co_loss=sums["co"] / n_tasks if (has_co and cfg.spec.phi_in_outer_loss) else None,
        meta_acc=sums["meta_acc"] / n_tasks if cls else None,
        co_acc=sums["co_acc"] / n_tasks if (cls and has_co) else None,
        meta_part=meta_part,
    )


def upper_rho(cfg: Config) -> float:
    """Sharp-MAML's upper-level (SAM) radius; 0 for every other base and for the ``lower`` variant."""
    return cfg.sharp_rho_upper if cfg.sharp_variant in ("upper", "both") else 0.0


def outer_gradient(backend: Backend, cfg: Config, params: Params, tasks: Sequence[Task], split: bool = False,
                   outer_step: int = 0) -> MetaGradient:
    """The gradient the outer optimiser steps with: :func:`meta_gradient`, or for Sharp-MAML's upper level
    that gradient taken again at ``params + rho g / ||g||`` on the same tasks (SAM; the descent then starts
    from ``params``). What it returns (losses, accuracies, the split) is measured at the point it was taken.

    References: Foret et al., Sharpness-Aware Minimization, ICLR 2021; Abbas et al., Sharp-MAML, ICML 2022.
    """
    rho = upper_rho(cfg)
    mg = meta_gradient(backend, cfg, params, tasks, split=split and not rho, outer_step=outer_step)
    if not rho:
        return mg
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in mg.total.values()))
    with torch.no_grad():
        ascended = {n: (p + rho * mg.total[n] / (norm + 1e-12)).detach().requires_grad_() for n, p in params.items()}
    return meta_gradient(backend, cfg, ascended, tasks, split=split, outer_step=outer_step)


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
    if hasattr(backend, "evaluate_tasks"):  # the batched engine: tasks in chunks (cml.batched)
        return backend.evaluate_tasks(cfg, params, tasks, steps)
    res = EvalResult([], [], [], [], [])
    for task in tasks:
        xq, yq = task.query
        with torch.no_grad():
            pre, _ = backend.forward(params, xq)
            res.pre_loss.append(task_loss(cfg, pre, yq).item())
        with torch.enable_grad():
            adapted = adapt(backend, inner_spec(cfg, params, steps, "none", test_time=True), params, task.support)[-1]
        with torch.no_grad():
            meta, co = backend.forward(adapted, xq, step=steps - 1)
            res.meta_loss.append(task_loss(cfg, meta, yq).item())
            if not cfg.is_regression:
                res.meta_acc.append(_accuracy(cfg, meta, yq))
            if co is not None:
                res.co_loss.append(task_loss(cfg, co, yq).item())
                if not cfg.is_regression:
                    res.co_acc.append(_accuracy(cfg, co, yq))
    return res
