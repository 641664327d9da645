"""The objective, written once: a task's inner loop, its weighted query losses, the meta-gradient over a
meta-batch and MAML-style evaluation, for every base learner, method and engine.

Parameters travel as ``dict[str, Tensor]`` and are never mutated. What varies is read from the tables, once per
call, into two small frozen plans:

- :class:`InnerSpec` (:func:`inner_spec`): which tensors adapt, each with its step size per step (the base's
  ``role_rates``, ``adapts`` and ``step_rates`` hooks; the method decides phi), the derivative order, the support
  loss (the method's ``support_loss``), the point each step's gradient is taken at (the base's
  ``inner_point``: Sharp-MAML) and how the heads predict (:class:`Prediction`: the base's ``task_inputs`` and
  ``task_logits``, which see the task's support set and query inputs, :class:`TaskContext`: AMM-GNN's
  modulation, G-Meta's prototypes);
- :class:`Plan` (:func:`training_plan`): the inner spec, the weights of the query losses after each inner step
  (the base's ``query_weights``: MAML++'s multi-step loss), the task's loss, whether the co-learner's query
  loss enters the outer objective, and the base's regulariser of the outer loss (``outer_regulariser``:
  AMM-GNN's);
- :class:`EvalPlan` (:func:`evaluation_plan`): the evaluation protocols of :data:`PROTOCOLS` (which tensors adapt
  at test time, on which head's support loss, and which head predicts the query set), each adaptation run once
  however many protocols read it.

:func:`task_objective` and :func:`eval_objective` are pure functions of an engine's primitives
(:mod:`cml.engines.base`): the per-task engines call them task by task, the batched engine ``vmap``s them. The
reductions (:func:`meta_gradient`, :func:`evaluate_tasks`) consume what the engine's ``map_tasks`` yields, a task
or a stack of tasks at a time, so a new loss, base behaviour or engine is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal, NamedTuple, Sequence

import torch
from torch import Tensor

from .bases import get_base
from .config import Config
from .data.base import Task
from .engines.base import Engine, Order, Params, Primitives, Rate
from .errors import NonFiniteLossError  # re-exported: defined with every other error in cml.errors
from .roles import role_of

if TYPE_CHECKING:
    from .bases import InputsFn, LogitsFn, RegulariserFn
    from .methods import HeadsLoss


def task_loss(cfg: Config, out: Tensor, y: Tensor) -> Tensor:
    """The task family's loss (MSE for regression, cross-entropy for classification)."""
    return cfg.family.loss(out, y)


def inner_rates(cfg: Config, names: Iterable[str], test_time: bool = False) -> dict[str, float]:
    """Which tensors the inner loop adapts, each with its base step size (the one place that decides it).

    psi and theta take the base learner's role rates (BOIL: head 0; ANIL: body 0), filtered by its ``adapts``
    hook (MAML++ keeps BatchNorm weights out); a rate of 0 means not adapted. phi is adapted only by a method
    that adapts it while meta-training (CL), at theta's rate; at test time every method adapts psi and theta
    only. ``inner_lr.*`` is never adapted.
    """
    base = get_base(cfg.base)
    roles = base.role_rates(cfg)
    out: dict[str, float] = {}
    for name in names:
        role = role_of(name)
        if role == "phi":
            rate = roles["theta"] if (cfg.spec.phi_in_inner_loop and not test_time) else 0.0
        elif role in ("psi", "theta"):
            rate = roles[role]
        else:
            rate = 0.0
        if rate and base.adapts(cfg, name):
            out[name] = float(rate)
    return out


class TaskContext(NamedTuple):
    """What one task shows the model besides the set it predicts: the support set and the query inputs.

    The objective carries it through the inner loop and the query losses, so that a base's prediction may read
    the support set (G-Meta's prototypes) or every node of the task (AMM-GNN's feature modulation). ``query_x``
    is None where a caller adapts without a query set (the recorders' end-of-training records).
    """

    support: tuple[Tensor, Tensor]
    query_x: Tensor | None = None


@dataclass(frozen=True)
class Prediction:
    """How the heads predict a set: the base's ``task_inputs`` and ``task_logits`` hooks, read once.

    ``prediction(prims, params, x, context, step)`` returns ``(meta_out, co_out)``: the model's forward on ``x``
    passed through ``inputs`` (when given), and the meta-learner's output turned into predictions by ``logits``
    from its output on the context's support set at the same parameters (when given). With neither (every base
    but G-Meta's and AMM-GNN's), it is the engine's forward itself.

    Attributes:
        inputs: None, or the base's :data:`cml.bases.InputsFn`.
        logits: None, or the base's :data:`cml.bases.LogitsFn`.
        ways: the classes of a task (what ``logits`` predicts).
    """

    inputs: "InputsFn | None" = None
    logits: "LogitsFn | None" = None
    ways: int = 0

    def __call__(self, prims: Primitives, params: Params, x: Tensor, context: TaskContext,
                 step: int = 0) -> tuple[Tensor, Tensor | None]:
        def feed(v: Tensor) -> Tensor:
            return v if self.inputs is None else self.inputs(params, v, context)

        meta, co = prims.forward(params, feed(x), step=step)[:2]
        if self.logits is not None:
            xs, ys = context.support
            # The support set predicting itself (the inner loop) needs no second forward.
            support_out = meta if x is xs else prims.forward(params, feed(xs), step=step)[0]
            meta = self.logits(meta, support_out, ys, self.ways)
        return meta, co


def prediction(cfg: Config) -> Prediction:
    """The heads' prediction for ``cfg``'s base (see :class:`Prediction`)."""
    base = get_base(cfg.base)
    return Prediction(base.task_inputs(cfg), base.task_logits(cfg), cfg.ways if cfg.family.classification else 0)


@dataclass(frozen=True)
class InnerSpec:
    """What one inner loop does; built by :func:`inner_spec` from the base-learner and method tables.

    Attributes:
        steps: SGD steps.
        rates: per adapted tensor, its step size at each step (``len == steps``); tensors absent are not
            adapted (phi for CML, BOIL's head, ANIL's body).
        order: ``second``, ``first`` or ``none`` (see :data:`cml.engines.base.Order`).
        loss: the support loss from ``(meta_out, co_out, y)``.
        point: None, or the base's inner gradient point (``point(prims, loss_fn, params, names, order)``:
            Sharp-MAML's perturbed parameters).
        predict: how the heads predict the support set (:class:`Prediction`).
    """

    steps: int
    rates: dict[str, tuple[Rate, ...]]
    order: Order
    loss: HeadsLoss
    point: Callable | None = None
    predict: Prediction = Prediction()

    def rates_at(self, k: int) -> dict[str, Rate]:
        return {n: r[k] for n, r in self.rates.items()}


def inner_spec(cfg: Config, params: Params, steps: int, order: Order, test_time: bool = False,
               roles: Sequence[str] | None = None, loss: HeadsLoss | None = None) -> InnerSpec:
    """The inner loop of ``cfg``'s base and method (see :class:`InnerSpec`). ``test_time`` selects MAML's
    inference for every method: adapt psi and theta on the meta-learner's loss with plain gradient steps.

    ``roles`` keeps only the tensors of those roles (an evaluation protocol that adapts psi alone: Eq. (9));
    ``loss`` replaces the method's support loss (Eq. (9) descends phi's)."""
    base = get_base(cfg.base)
    rates = {name: base.step_rates(cfg, params, name, rate, steps)
             for name, rate in inner_rates(cfg, params, test_time).items() if roles is None or role_of(name) in roles}
    point = None if test_time else base.inner_point(cfg)
    if loss is None:
        loss = cfg.spec.support_loss(cfg.family.loss, cfg.gamma, test_time)
    return InnerSpec(steps, rates, order, loss, point, prediction(cfg))


def adapt(prims: Primitives, spec: InnerSpec, params: Params, support: tuple[Tensor, Tensor],
          query_x: Tensor | None = None) -> list[Params]:
    """The inner loop: ``spec.steps`` SGD steps on the support loss. Returns the parameters before and after
    every step (``[params, after step 1, ..., after step N]``); the last entry is the adapted model.

    Step ``k`` (from 0) runs the forward with per-step norm row ``k``; its gradient is taken at
    ``spec.point(...)`` when the base gives one (Sharp-MAML), else at the current parameters. ``query_x``, the
    task's query inputs, is part of the context the base's prediction may read (:class:`TaskContext`).
    """
    x, y = support
    context = TaskContext(support, query_x)
    trajectory = [params]
    for k in range(spec.steps):
        def loss_fn(p: Params, k: int = k) -> Tensor:
            meta, co = spec.predict(prims, p, x, context, step=k)
            return spec.loss(meta, co, y)

        rates = spec.rates_at(k)
        at = spec.point(prims, loss_fn, params, list(rates), spec.order) if spec.point is not None else None
        params = prims.step(params, loss_fn, rates, spec.order, at=at)
        trajectory.append(params)
    return trajectory


@dataclass(frozen=True)
class Plan:
    """One outer step's (or one evaluation's) objective, read from the tables once.

    Attributes:
        inner: the inner loop.
        weights: the weight of the query losses after each inner step (the last one alone, or MAML++'s
            multi-step loss).
        loss: the task's loss ``loss(out, y)``.
        co_term: the co-learner's query loss enters the outer objective (weighted by ``gamma``).
        has_co: the model has a co-learner head (its predictions are measured: CML†).
        classification: accuracies are measured.
        gamma: the co-learner's weight.
        regulariser: None, or the base's term added to each task's meta-learner query loss (AMM-GNN's); None
            at evaluation.
    """

    inner: InnerSpec
    weights: tuple[float, ...]
    loss: Callable[[Tensor, Tensor], Tensor]
    co_term: bool
    has_co: bool
    classification: bool
    gamma: float
    regulariser: "RegulariserFn | None" = None

    @property
    def predict(self) -> Prediction:
        """How the heads predict (the inner loop's and the query losses' alike)."""
        return self.inner.predict

    def hits(self, out: Tensor | None, y: Tensor) -> Tensor:
        """The fraction of correct predictions (a 0-d tensor; zero where there is nothing to count)."""
        return _hits(self.classification, out, y)


def _hits(classification: bool, out: Tensor | None, y: Tensor) -> Tensor:
    if out is None or not classification:
        return y.new_zeros((), dtype=torch.get_default_dtype())
    return (out.argmax(1) == y).to(out.dtype).mean()


def _plan(cfg: Config, inner: InnerSpec, weights: tuple[float, ...]) -> Plan:
    spec = cfg.spec
    regulariser = get_base(cfg.base).outer_regulariser(cfg)
    return Plan(inner, weights, cfg.family.loss, spec.co_learner and spec.phi_in_outer_loss, spec.co_learner,
                cfg.family.classification, cfg.gamma, regulariser)


def outer_order(cfg: Config, outer_step: int) -> Order:
    """The derivative order of outer step ``outer_step`` (the base's ``outer_order`` hook)."""
    return get_base(cfg.base).outer_order(cfg, outer_step)


def training_plan(cfg: Config, params: Params, outer_step: int = 0, order: Order | None = None) -> Plan:
    """The objective of outer step ``outer_step`` (from 0): its derivative order (unless ``order`` is given) and
    query-loss weights come from the base learner."""
    base = get_base(cfg.base)
    order = base.outer_order(cfg, outer_step) if order is None else order
    return _plan(cfg, inner_spec(cfg, params, cfg.inner_steps, order), tuple(base.query_weights(cfg, outer_step)))


#: A head of the model: theta (``meta``) or phi (``co``).
Head = Literal["meta", "co"]


@dataclass(frozen=True)
class EvalProtocol:
    """One way to read a trained model on a task: what adapts on the support set, and who predicts the query set.

    Attributes:
        key: the suffix of its ``test.json`` keys after the family's metric (``acc`` or ``mse``): ``""`` is
            ``acc``, ``"_dagger_eq9"`` is ``acc_dagger_eq9``.
        adapts: the roles whose tensors adapt, each at the base learner's test-time step sizes (``()``: none).
        support: whose support loss the adaptation descends (theta's ``meta`` or phi's ``co``); None without
            adaptation.
        predicts: the head that predicts the query set (on the adapted features).
        needs_co: it reads or adapts on phi, so only a model with a co-learner has it.
        validated: also measured at every validation (``val.jsonl``); the others only in the final test.
        source: where the protocol comes from (README, "Evaluation protocols").
    """

    key: str
    adapts: tuple[str, ...]
    support: Head | None
    predicts: Head
    needs_co: bool
    validated: bool
    source: str


#: The evaluation protocols every engine computes (README, "Evaluation protocols"). Protocols with the same
#: ``adapts`` and ``support`` share one adaptation, so MAML's test and CML† cost one inner loop together.
PROTOCOLS: tuple[EvalProtocol, ...] = (
    EvalProtocol("", ("psi", "theta"), "meta", "meta", needs_co=False, validated=True,
                 source="MAML's test (Finn et al., 2017): adapt (psi, theta) on theta's support loss, predict with "
                        "theta'"),
    EvalProtocol("_dagger", ("psi", "theta"), "meta", "co", needs_co=True, validated=True,
                 source="the authors' code (JJongyn/CML test_cml.py --use-colearner): the same adaptation, phi "
                        "predicts on the adapted features"),
    EvalProtocol("_dagger_eq9", ("psi",), "co", "co", needs_co=True, validated=False,
                 source="the paper's Eq. (9): adapt psi alone on phi's support loss, phi predicts"),
    EvalProtocol("_dagger_noadapt", (), None, "co", needs_co=True, validated=False,
                 source="Table 4's \"CL† without adaptation\": phi on the unadapted features"),
)


@dataclass(frozen=True)
class EvalPlan:
    """An evaluation's protocols, read from the tables once (:func:`evaluation_plan`).

    Attributes:
        adaptations: the distinct inner loops the protocols need (None: no adaptation, the model as trained).
        readings: per protocol measured, ``(key, index into adaptations, predicting head)``, in
            :data:`PROTOCOLS` order.
        loss: the task's loss.
        classification: accuracies are measured.
        predict: how the heads predict (:class:`Prediction`: the base's hooks, as in training).
    """

    adaptations: tuple[InnerSpec | None, ...]
    readings: tuple[tuple[str, int, Head], ...]
    loss: Callable[[Tensor, Tensor], Tensor]
    classification: bool
    predict: Prediction = Prediction()

    def hits(self, out: Tensor, y: Tensor) -> Tensor:
        """The fraction of correct predictions (:meth:`Plan.hits`)."""
        return _hits(self.classification, out, y)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in self.readings)


def _phi_loss(loss: Callable[[Tensor, Tensor], Tensor]) -> HeadsLoss:
    def heads_loss(meta: Tensor, co: Tensor | None, y: Tensor) -> Tensor:
        assert co is not None, "a protocol on phi's loss needs a co-learner (EvalProtocol.needs_co)"
        return loss(co, y)

    return heads_loss


def evaluation_plan(cfg: Config, params: Params, steps: int, validation: bool = False) -> EvalPlan:
    """The evaluation of :data:`PROTOCOLS` with ``steps`` inner steps (no graph, plain gradient steps, the base's
    test-time rates): every protocol the model has (phi's need a co-learner), or with ``validation`` those
    measured at validation."""
    adaptations: list[InnerSpec | None] = []
    index: dict[tuple[tuple[str, ...], Head | None], int] = {}
    readings = []
    for p in PROTOCOLS:
        if (p.needs_co and not cfg.spec.co_learner) or (validation and not p.validated):
            continue
        where = (p.adapts, p.support)
        if where not in index:
            spec: InnerSpec | None = None
            if p.adapts:
                loss = None if p.support == "meta" else _phi_loss(cfg.family.loss)
                spec = inner_spec(cfg, params, steps, "none", test_time=True, roles=p.adapts, loss=loss)
                # ANIL's psi takes no step: Eq. (9) then adapts nothing.
                spec = spec if spec.rates else None
            index[where] = len(adaptations)
            adaptations.append(spec)
        readings.append((p.key, index[where], p.predicts))
    return EvalPlan(tuple(adaptations), tuple(readings), cfg.family.loss, cfg.family.classification,
                    prediction(cfg))


def query_losses(prims: Primitives, plan: Plan, trajectory: Sequence[Params], query: tuple[Tensor, Tensor],
                 support: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(meta loss, co loss, meta accuracy, co accuracy)`` of one task from its adapted trajectory.

    Both heads' query losses after inner step ``k`` are weighted by ``plan.weights[k - 1]`` (the co-learner's
    with the same weights); the co-learner's reads the adapted features psi' (not detached) through phi, which the
    inner loop left unchanged, so its gradient reaches psi and theta through the inner loop. The base's
    regulariser (AMM-GNN's), taken at the meta-parameters, is added to the meta loss once. The accuracies are
    the last step's. A quantity that does not exist is a zero (``vmap`` maps tensors only): ``plan`` says which.
    """
    xq, yq = query
    context = TaskContext(support, xq)
    meta_loss: Tensor | None = None
    co_loss: Tensor | None = None
    meta = co = None
    for k, w in enumerate(plan.weights, start=1):
        if w == 0:
            continue
        meta, co = plan.predict(prims, trajectory[k], xq, context, step=k - 1)
        m = plan.loss(meta, yq)
        c = plan.loss(co, yq) if co is not None and plan.co_term else None
        if w != 1.0:
            m, c = w * m, (None if c is None else w * c)
        meta_loss = m if meta_loss is None else meta_loss + m
        if c is not None:
            co_loss = c if co_loss is None else co_loss + c
    if not plan.weights[-1]:
        meta, co = plan.predict(prims, trajectory[-1], xq, context, step=len(plan.weights) - 1)
    assert meta_loss is not None, "query-loss weights must not all be zero"
    if plan.regulariser is not None:
        meta_loss = meta_loss + plan.regulariser(trajectory[0], context)
    zero = meta_loss.new_zeros(())
    return meta_loss, zero if co_loss is None else co_loss, plan.hits(meta, yq), plan.hits(co, yq)


def task_objective(prims: Primitives, params: Params, support: tuple[Tensor, Tensor],
                   query: tuple[Tensor, Tensor], *, plan: Plan) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One task's query losses and accuracies after adaptation (:func:`query_losses`): the function every engine
    maps over a meta-batch."""
    return query_losses(prims, plan, adapt(prims, plan.inner, params, support, query[0]), query, support)


def eval_objective(prims: Primitives, params: Params, support: tuple[Tensor, Tensor],
                   query: tuple[Tensor, Tensor], *, plan: EvalPlan) -> tuple[Tensor, ...]:
    """One task's query loss before adaptation, then the query loss and accuracy of each protocol of ``plan``
    (``(pre, loss_1, hits_1, loss_2, hits_2, ...)`` in ``plan.readings`` order).

    Each adaptation of the plan runs once; its query forward uses the per-step norm row of its last step (the
    unadapted model, row 0).
    """
    xq, yq = query
    context = TaskContext(support, xq)
    with torch.no_grad():
        outputs: list[tuple[Tensor, Tensor | None]] = []
        unadapted = plan.predict(prims, params, xq, context)
        pre = plan.loss(unadapted[0], yq)
    for spec in plan.adaptations:
        if spec is None:
            outputs.append(unadapted)
            continue
        adapted = adapt(prims, spec, params, support, xq)[-1]
        with torch.no_grad():
            outputs.append(plan.predict(prims, adapted, xq, context, step=spec.steps - 1))
    out = [pre]
    with torch.no_grad():
        for _, i, head in plan.readings:
            pred = outputs[i][0] if head == "meta" else outputs[i][1]
            assert pred is not None, "a protocol read phi on a model without one (EvalProtocol.needs_co)"
            out += [plan.loss(pred, yq), plan.hits(pred, yq)]
    return tuple(out)


@dataclass
class TaskLosses:
    """The query losses of one task after adaptation, the final step's accuracies, and the adapted parameters
    (the per-task view of :func:`task_objective`, for tests and diagnostics)."""

    meta: Tensor
    co: Tensor | None
    meta_acc: float | None
    co_acc: float | None
    adapted: Params

    def total(self, gamma: float) -> Tensor:
        return self.meta if self.co is None else self.meta + gamma * self.co


def task_losses(backend: Primitives, cfg: Config, params: Params, task: Task, order: Order,
                outer_step: int = 0) -> TaskLosses:
    """:func:`task_objective` for one task on a per-task engine, with the adapted parameters."""
    plan = training_plan(cfg, params, outer_step, order)
    trajectory = adapt(backend, plan.inner, params, task.support, task.query[0])
    meta, co, meta_hits, co_hits = query_losses(backend, plan, trajectory, task.query, task.support)
    return TaskLosses(meta, co if plan.co_term else None, meta_hits.item() if plan.classification else None,
                      co_hits.item() if plan.classification and plan.has_co else None, trajectory[-1])


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


def meta_gradient(backend: Engine, cfg: Config, params: Params, tasks: Sequence[Task],
                  split: bool = False, outer_step: int = 0) -> MetaGradient:
    """The outer gradient: mean over tasks of grad [L_m(psi', theta'; query) + gamma L_c(psi', phi; query)].

    One backward per chunk the engine yields (a task on the per-task engines, the meta-batch on the batched
    one) accumulates into the result. With ``split``, a second backward of the same graph gives the
    meta-learner's part alone (the recorders' gradient-diversity measurement). ``outer_step`` (from 0) sets the
    base's query-loss weights and derivative order.

    Raises:
        NonFiniteLossError: if a task's loss is NaN or infinite.
    """
    plan = training_plan(cfg, params, outer_step)
    names = list(params)
    leaves = [params[n] for n in names]
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    meta_part = {n: torch.zeros_like(p) for n, p in params.items()} if split else None
    sums = [0.0, 0.0, 0.0, 0.0]  # meta loss, co loss, meta accuracy, co accuracy
    n_tasks, seen = len(tasks), 0
    for out in backend.map_tasks(partial(task_objective, plan=plan), params, tasks):
        meta = out[0]
        per_task = meta + plan.gamma * out[1] if plan.co_term else meta  # () or (k,)
        values = per_task.detach().reshape(-1)
        bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
        if bad:
            raise NonFiniteLossError(f"non-finite outer loss {values[bad[0]].item()} (task {seen + bad[0] + 1} of "
                                     f"{n_tasks})")
        grads = torch.autograd.grad(per_task.sum() / n_tasks, leaves, allow_unused=True, retain_graph=split)
        for n, g in zip(names, grads):
            if g is not None:
                total[n] += g
        if meta_part is not None:
            for n, g in zip(names, torch.autograd.grad(meta.sum() / n_tasks, leaves, allow_unused=True)):
                if g is not None:
                    meta_part[n] += g
        for i, t in enumerate(out):
            sums[i] += t.detach().sum().item()
        seen += values.numel()
    return MetaGradient(
        total=total,
        meta_loss=sums[0] / n_tasks,
        co_loss=sums[1] / n_tasks if plan.co_term else None,
        meta_acc=sums[2] / n_tasks if plan.classification else None,
        co_acc=sums[3] / n_tasks if (plan.classification and plan.has_co) else None,
        meta_part=meta_part,
    )


def outer_gradient(backend: Engine, cfg: Config, params: Params, tasks: Sequence[Task], split: bool = False,
                   outer_step: int = 0) -> MetaGradient:
    """The gradient the outer optimiser steps with: :func:`meta_gradient`, formed by the base learner's
    ``outer_gradient`` hook (Sharp-MAML's upper level takes it again at an ascended point)."""
    def compute(at: Params, split: bool) -> MetaGradient:
        return meta_gradient(backend, cfg, at, tasks, split=split, outer_step=outer_step)

    return get_base(cfg.base).outer_gradient(cfg, compute, params, split)


@dataclass
class EvalResult:
    """Per-task query metrics of an evaluation, per protocol (:data:`PROTOCOLS`, by key: ``""`` theta' after
    MAML's adaptation, ``"_dagger"`` phi on the same adapted features, ...).

    Attributes:
        loss: per protocol measured, the query loss of every task.
        acc: per protocol measured, the query accuracy of every task (classification; empty otherwise).
        pre_loss: the query loss before adaptation (to show that adaptation helps).
    """

    loss: dict[str, list[float]]
    acc: dict[str, list[float]]
    pre_loss: list[float]

    @property
    def meta_loss(self) -> list[float]:
        return self.loss[""]

    @property
    def meta_acc(self) -> list[float]:
        return self.acc.get("", [])

    @property
    def co_loss(self) -> list[float]:
        """phi's loss on the adapted features (CML†, the authors' protocol); empty without a co-learner."""
        return self.loss.get("_dagger", [])

    @property
    def co_acc(self) -> list[float]:
        return self.acc.get("_dagger", [])


def evaluate_tasks(backend: Engine, cfg: Config, params: Params, tasks: Iterable[Task], steps: int,
                   validation: bool = False) -> EvalResult:
    """Every evaluation protocol of :data:`PROTOCOLS` the model has (with ``validation``, those measured at
    validation), on every task: MAML's (adapt (psi, theta) on the meta-learner's support loss, predict the query set
    with theta') and, with a co-learner, phi's readings (CML†, Eq. (9), without adaptation)."""
    plan = evaluation_plan(cfg, params, steps, validation)
    res = EvalResult({k: [] for k in plan.keys}, {k: [] for k in plan.keys} if plan.classification else {}, [])
    chunks: Iterator[tuple[Tensor, ...]] = backend.map_tasks(partial(eval_objective, plan=plan), params, tasks,
                                                             evaluation=True)
    for out in chunks:
        res.pre_loss.extend(out[0].reshape(-1).tolist())
        for i, key in enumerate(plan.keys):
            res.loss[key].extend(out[1 + 2 * i].reshape(-1).tolist())
            if plan.classification:
                res.acc[key].extend(out[2 + 2 * i].reshape(-1).tolist())
    return res
