"""The base-learner axis: how a task is adapted and how the outer step is taken.

Each base learner is one module in this package that defines ``BASE = BaseLearner(...)``; the registry below
finds every such module, so adding a base is one new file (plus its tests): no edit to the engines, the trainer's
loop, the CLI's parser, the figures or the run-folder format. A :class:`BaseLearner` row holds the base's
*behaviour*: which tensors its inner loop adapts and at which step sizes, the point its inner gradient is taken
at, the weights of the query losses after each inner step, the derivative order, the outer learning rate, how the
outer gradient is formed, and any meta-parameters or norm layers of its own. Every hook defaults to MAML's
behaviour; the objective (:mod:`cml.meta`) and the trainer call the hooks and never read a base's options.

- MAML++ (``maml_pp.py``): multi-step loss weights, learnable per-step rates, per-step BatchNorm rows,
  derivative-order annealing, a cosine outer learning rate;
- Sharp-MAML (``sharp_maml.py``): the sharpness-aware inner gradient point (lower level) and the SAM outer
  gradient (upper level);
- BOIL and ANIL: per-role step sizes (``role_rates``) alone;
- G-Meta and AMM-GNN as Tan et al. (2022) run them (``gmeta.py``, ``amm_gnn.py``; graph tasks only,
  ``families``): the GCN's readout (``readout``), G-Meta's prototypical predictions from the support set
  (``meta_head``, ``task_logits``), AMM-GNN's per-task feature modulation (``feature_options``, ``task_inputs``,
  ``adapts``) and its cosine regulariser in the outer loss (``outer_regulariser``).

The table is read by the CLI to build its parser, before torch is imported (a few seconds here): hooks that need
torch import it inside their bodies, for start-up time only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..registry import lookup, ordered, row_modules

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..config import Config
    from ..engines.base import LossFn, Order, Params, Primitives, Rate
    from ..layers import NormLayer
    from ..meta import MetaGradient, TaskContext
    from ..tasks import TaskEntry, TaskFamily

    #: ``point(prims, loss_fn, params, names, order)``: the parameters at which an inner step's gradient is taken.
    PointFn = Callable[[Primitives, LossFn, Params, Sequence[str], Order], Params]
    #: ``compute(params, split)``: the meta-gradient at ``params`` (:func:`cml.meta.meta_gradient` on the batch).
    OuterFn = Callable[[Params, bool], MetaGradient]
    #: ``post(grads)``: changes the meta-gradient (``{name: tensor}``) in place before the outer step.
    GradientFn = Callable[[Params], None]
    #: ``inputs(params, x, context)``: a set's inputs as the model is fed them, given the task (AMM-GNN's
    #: modulation of the node features by the task's own nodes).
    InputsFn = Callable[[Params, Tensor, TaskContext], Tensor]
    #: ``logits(out, support_out, support_y, ways)``: the meta-learner's predictions ``(n, ways)`` from its outputs
    #: on a set (``out``) and on the task's support set (G-Meta's distances to the support prototypes).
    LogitsFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]
    #: ``regulariser(params, context)``: a 0-d term added to each task's outer loss (AMM-GNN's cosine term).
    RegulariserFn = Callable[[Params, TaskContext], Tensor]


def maml_rates(cfg: "Config") -> dict[str, float]:
    """MAML's inner step sizes: the body (psi) at ``inner_lr``, the head (theta) at ``head_inner_lr`` (default
    ``inner_lr``)."""
    return {"psi": cfg.inner_lr, "theta": cfg.inner_lr if cfg.head_inner_lr is None else cfg.head_inner_lr}


def every_tensor(cfg: "Config", name: str) -> bool:
    """MAML adapts every tensor of the roles its rates adapt."""
    return True


def constant_rates(cfg: "Config", params: "Params", name: str, rate: float, steps: int) -> tuple["Rate", ...]:
    """The same step size at every inner step."""
    return (rate,) * steps


def last_step_only(cfg: "Config", outer_step: int) -> tuple[float, ...]:
    """The query loss after the last inner step alone."""
    return (0.0,) * (cfg.inner_steps - 1) + (1.0,)


def config_order(cfg: "Config", outer_step: int) -> "Order":
    """Second order, or first where the config asks for it (``first_order``)."""
    return "first" if cfg.first_order else "second"


def constant_lr(cfg: "Config", step: int) -> float:
    """``meta_lr`` at every outer step."""
    return cfg.meta_lr


def plain_outer_gradient(cfg: "Config", compute: "OuterFn", params: "Params", split: bool) -> "MetaGradient":
    """The meta-gradient at the meta-parameters themselves."""
    return compute(params, split)


def _none(cfg: "Config") -> None:
    return None


def saved_as_is(cfg: "Config", name: str, saved: "Tensor") -> "Tensor":
    """A saved tensor loads as it was saved."""
    return saved


def centre_readout(cfg: "Config") -> str:
    """A graph node is its centre node's embedding (G-Meta's original readout)."""
    return "centre"


def same_head(cfg: "Config", kind: str) -> str:
    """The meta-learner's head is the kind the method asks for (a linear layer; More-MAML's conv blocks)."""
    return kind


def no_options(cfg: "Config") -> dict[str, Any]:
    """The task family's feature extractor as the family builds it."""
    return {}


def no_check(cfg: "Config") -> None:
    """Nothing beyond the options and the step sizes (checked for every base)."""
    return None


def _no_parameters(cfg: "Config", rates: dict[str, float]) -> None:
    return None


@dataclass(frozen=True)
class BaseLearner:
    """One base learner: a row of the table, with its behaviour. Every hook defaults to MAML's.

    Attributes:
        name: the config value (``--base``); also the run-folder prefix.
        label: the printed name ("BOIL").
        reference: the paper it comes from.
        summary: one line for help texts and the README.
        role_rates: the inner step size of psi's and theta's tensors, given the config; a rate of 0 means the
            role is not adapted in the inner loop (BOIL's head, ANIL's body). phi, where a method adapts it
            (CL), takes theta's rate.
        adapts: ``adapts(cfg, name)``: whether a tensor of an adapted role is adapted (MAML++ keeps its
            BatchNorm weights out of the inner loop).
        step_rates: ``step_rates(cfg, params, name, rate, steps)``: the tensor's step size at each inner step,
            given its base rate; may read meta-parameters from ``params`` (MAML++'s learnable rates), so that
            meta-gradients reach them.
        inner_point: ``inner_point(cfg)``: None, or a :data:`PointFn` giving the point at which each
            meta-training inner step's gradient is taken (Sharp-MAML's lower level). Test-time adaptation always
            takes plain gradient steps.
        query_weights: ``query_weights(cfg, outer_step)``: the weight of the query losses after each of the
            ``cfg.inner_steps`` inner steps (MAML++'s multi-step loss).
        outer_order: ``outer_order(cfg, outer_step)``: ``second`` or ``first`` (MAML++'s annealing).
        outer_lr: ``outer_lr(cfg, step)``: the outer learning rate at outer step ``step`` (from 0), a function of
            the step alone so that a resumed run continues its schedule (MAML++'s cosine annealing).
        outer_gradient: ``outer_gradient(cfg, compute, params, split)``: the gradient the outer optimiser steps
            with, from ``compute(params, split)`` (Sharp-MAML's SAM step recomputes it at an ascended point).
        norm_layer: ``norm_layer(cfg)``: None (one BatchNorm per block), or a factory of the base's own norm
            layers (MAML++'s per-step rows).
        meta_parameters: ``meta_parameters(cfg, rates)``: None, or a ``ParameterDict`` of meta-parameters
            that are not weights, stored as the model's ``inner_lr`` (MAML++'s learnable rates, built from the
            adapted tensors' base ``rates``).
        clip_gradient: ``clip_gradient(cfg)``: None, or a :data:`GradientFn` the trainer applies to the
            meta-gradient after the method's perturbation (noise) and before the optimiser step (MAML++'s
            element-wise clamp on ImageNet-like sets).
        load_saved: ``load_saved(cfg, name, tensor)``: a tensor of a checkpoint as this version's model holds
            it (MAML++'s per-step rows, which earlier versions sized by the test-time steps too); applied to
            weights and to the optimiser's per-tensor state.
        families: the task families the base runs on (:mod:`cml.tasks`); empty: every family. The config
            refuses any other, saying ``why_only``.
        why_only: the reason a base with ``families`` runs on those alone (one clause, for the error).
        readout: ``readout(cfg)``: how a graph node's embedding is read from its subgraph's GCN outputs when
            ``graph_readout`` is not set: ``centre`` (the centre node) or ``mean`` (the mean over the subgraph's
            nodes: Tan et al.'s G-Meta). Read by the graph family alone.
        meta_head: ``meta_head(cfg, kind)``: the meta-learner's head, given the kind the method asks for
            (``linear``; More-MAML's ``conv``): ``embedding`` gives no head, the features themselves, which
            ``task_logits`` turns into predictions (G-Meta's prototypical loss).
        feature_options: ``feature_options(cfg)``: keyword arguments the base adds to its task family's feature
            extractor (AMM-GNN's attribute-modulation weights, part of the GCN).
        task_inputs: ``task_inputs(cfg)``: None, or an :data:`InputsFn` through which every set's inputs pass
            before the model sees them, in the inner loop, the query losses and evaluation alike (AMM-GNN).
        task_logits: ``task_logits(cfg)``: None (the meta-learner's head output is its prediction), or a
            :data:`LogitsFn` giving the predictions from the outputs on a set and on the task's support set, at
            the same parameters (G-Meta's prototypes). The loss on them is still the family's (cross-entropy).
        outer_regulariser: ``outer_regulariser(cfg)``: None, or a :data:`RegulariserFn` whose value is added to
            each task's meta-learner query loss while meta-training (AMM-GNN's cosine term); never at evaluation.
        check: ``check(cfg)``: raises :class:`cml.errors.ConfigError` on a setting the base cannot run (AMM-GNN
            needs 10 nodes per task).
        options: the config fields that only this base reads (MAML++'s switches, Sharp-MAML's radii). The
            config refuses a value other than the field's default under any other base.
        presets: per preset name (``quick``/``paper``, and ``*`` for both), config values the base sets when
            chosen; each may be a dict, or a function of the task's table entry (:class:`cml.tasks.TaskEntry`)
            returning one.
    """

    name: str
    label: str
    reference: str
    summary: str
    role_rates: Callable[["Config"], dict[str, float]] = maml_rates
    adapts: Callable[["Config", str], bool] = every_tensor
    step_rates: Callable[["Config", "Params", str, float, int], tuple["Rate", ...]] = constant_rates
    inner_point: Callable[["Config"], "PointFn | None"] = _none
    query_weights: Callable[["Config", int], tuple[float, ...]] = last_step_only
    outer_order: Callable[["Config", int], "Order"] = config_order
    outer_lr: Callable[["Config", int], float] = constant_lr
    outer_gradient: Callable[["Config", "OuterFn", "Params", bool], "MetaGradient"] = plain_outer_gradient
    norm_layer: Callable[["Config"], "NormLayer | None"] = _none
    meta_parameters: Callable[["Config", dict[str, float]], "nn.ParameterDict | None"] = _no_parameters
    clip_gradient: Callable[["Config"], "GradientFn | None"] = _none
    load_saved: Callable[["Config", str, "Tensor"], "Tensor"] = saved_as_is
    families: tuple[str, ...] = ()
    why_only: str = ""
    readout: Callable[["Config"], str] = centre_readout
    meta_head: Callable[["Config", str], str] = same_head
    feature_options: Callable[["Config"], dict[str, Any]] = no_options
    task_inputs: Callable[["Config"], "InputsFn | None"] = _none
    task_logits: Callable[["Config"], "LogitsFn | None"] = _none
    outer_regulariser: Callable[["Config"], "RegulariserFn | None"] = _none
    check: Callable[["Config"], None] = no_check
    options: tuple[str, ...] = ()
    presets: dict[str, Any] = field(default_factory=dict)

    def runs_on(self, family: "TaskFamily") -> bool:
        """Whether the base runs on the tasks of ``family`` (see ``families``)."""
        return not self.families or family.name in self.families

    def preset_values(self, preset: str, task: "TaskEntry") -> dict[str, Any]:
        """The values this base sets in ``preset`` for ``task``."""
        out: dict[str, Any] = {}
        for key in ("*", preset):
            values = self.presets.get(key, {})
            out.update(values(task) if callable(values) else values)
        return out


def _discover() -> dict[str, BaseLearner]:
    found: dict[str, BaseLearner] = {}
    for module in row_modules(__name__, __path__, "BASE"):
        base = module.BASE
        if not isinstance(base, BaseLearner):
            raise TypeError(f"{module.__name__}.BASE is not a BaseLearner")
        if base.name in found:
            raise ValueError(f"two base learners are named {base.name!r}")
        found[base.name] = base
    # MAML first (the default), the rest in the paper's Table 1 order, ANIL, the paper's Table 3 graph bases in its
    # order, then any others by name.
    return {n: found[n] for n in ordered(list(found), ["maml", "maml++", "boil", "sharp-maml", "anil", "gmeta",
                                                       "amm-gnn"])}


BASE_TABLE: dict[str, BaseLearner] = _discover()
BASES: tuple[str, ...] = tuple(BASE_TABLE)


def get_base(name: str) -> BaseLearner:
    """The table entry of base learner ``name``.

    Raises:
        KeyError: naming the known bases.
    """
    return lookup(BASE_TABLE, name, "base learner")


def graph_readout(cfg: "Config") -> str:
    """The graph readout a run uses: ``graph_readout`` when set, else its base's (``readout``)."""
    return cfg.graph_readout or get_base(cfg.base).readout(cfg)


def base_options() -> dict[str, str]:
    """Every base-specific config field and the base that reads it."""
    return {opt: b.name for b in BASE_TABLE.values() for opt in b.options}
