"""What an engine is: the two primitives the objective (:mod:`cml.meta`) is written in, and one way to map it
over tasks.

The objective — a task's inner loop and its weighted query losses — is one pure function of a
:class:`Primitives` object. An engine supplies:

- ``forward(params, x, step=k)``: the functional forward, returning ``(meta_out, co_out)`` (and the features
  with ``return_features=True``);
- ``grad(loss_fn, point, names, order)``: the gradient of ``loss_fn`` at ``point`` with respect to ``names``;
- ``step(params, loss_fn, rates, order, at=None)``: one differentiable SGD step, ``params - rate * grad``, the
  gradient taken at ``at`` when given (Sharp-MAML's perturbed point);
- ``map_tasks(fn, params, tasks)``: ``fn(prims, params, support, query)`` for every task, yielding its outputs
  chunk by chunk. The per-task engines call ``fn`` once per task with themselves as the primitives (one task's
  second-order graph alive at a time); the batched engine ``vmap``s it over stacked tasks with primitives written
  for ``vmap``.

Every engine is also a per-task :class:`Primitives` (the recorders adapt one task at a time with it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Iterable, Iterator, Literal, Protocol, Sequence, Union

import torch
from torch import Tensor, nn

from ..data.base import Task
from ..layers import NormFn, batch_norm_kernel

Params = dict[str, Tensor]
# A step size: a number, or a 0-d tensor (a learnable MAML++ rate, differentiated through).
Rate = Union[float, Tensor]
# "second": differentiate through the inner loop; "first": the inner gradients are constants (first-order
# MAML), adapted parameters still depend on the initial ones with Jacobian I; "none": no graph (evaluation).
Order = Literal["second", "first", "none"]
#: ``loss_fn(params)``: a scalar loss as a function of all parameters.
LossFn = Callable[[Params], Tensor]


class Primitives(Protocol):
    """The operations the objective is written in (see the module docstring)."""

    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0) -> tuple: ...

    def grad(self, loss_fn: LossFn, point: Params, names: Sequence[str], order: Order) -> Params: ...

    def step(self, params: Params, loss_fn: LossFn, rates: dict[str, Rate], order: Order,
             at: Params | None = None) -> Params: ...


#: ``fn(prims, params, support, query)`` -> a tuple of tensors (0-d per task, or ``(tasks,)`` when mapped).
TaskFn = Callable[[Primitives, Params, tuple[Tensor, Tensor], tuple[Tensor, Tensor]], tuple[Tensor, ...]]


class Engine(Primitives, Protocol):
    """An engine: per-task primitives, and a way to map a per-task function over tasks.

    Attributes:
        name: the config value (``--backend``).
        model: the model whose parameters ``params`` name.
    """

    name: ClassVar[str]
    model: nn.Module

    def map_tasks(self, fn: TaskFn, params: Params, tasks: Iterable[Task],
                  evaluation: bool = False) -> Iterator[tuple[Tensor, ...]]:
        """``fn`` on every task, yielded in order, chunk by chunk: each yielded tuple holds 0-d tensors (one
        task) or ``(k,)`` tensors (k tasks). With ``evaluation``, ``fn`` runs without a graph to the
        meta-parameters (order ``none``)."""
        ...


class PerTaskEngine(ABC):
    """Shared by the per-task engines: gradients with ``torch.autograd.grad`` and ``fn`` called task by task.

    Args:
        model: the model whose parameters ``params`` name.
        norm: how norm layers normalise (:mod:`cml.layers`; PyTorch's kernel).
    """

    name: ClassVar[str]

    def __init__(self, model: nn.Module, norm: NormFn = batch_norm_kernel) -> None:
        self.model = model
        self.norm = norm
        self.names = [n for n, _ in model.named_parameters()]

    @abstractmethod
    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0) -> tuple:
        """The functional forward at ``params``."""

    @abstractmethod
    def step(self, params: Params, loss_fn: LossFn, rates: dict[str, Rate], order: Order,
             at: Params | None = None) -> Params:
        """One differentiable SGD step (see the module docstring)."""

    def grad(self, loss_fn: LossFn, point: Params, names: Sequence[str], order: Order) -> Params:
        """Zeros for a tensor the loss does not reach; detached unless ``order`` is ``second``."""
        grads = torch.autograd.grad(loss_fn(point), [point[n] for n in names], create_graph=order == "second",
                                    allow_unused=True)
        return {n: torch.zeros_like(point[n]) if g is None else (g if order == "second" else g.detach())
                for n, g in zip(names, grads)}

    def map_tasks(self, fn: TaskFn, params: Params, tasks: Iterable[Task],
                  evaluation: bool = False) -> Iterator[tuple[Tensor, ...]]:
        for task in tasks:
            with torch.enable_grad():  # evaluation's inner steps still take gradients (of the support loss)
                out = fn(self, params, task.support, task.query)
            yield tuple(t.detach() for t in out) if evaluation else out
