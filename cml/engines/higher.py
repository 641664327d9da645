"""The trainer's default engine: higher's ``monkeypatch`` for the functional forward and higher's
``DifferentiableSGD`` (through ``get_diff_optim``) for the differentiable inner step, public API only."""

from __future__ import annotations

from typing import Sequence

import higher
import torch
from torch import Tensor, nn

from .base import LossFn, Order, Params, PerTaskEngine, Rate


class HigherBackend(PerTaskEngine):
    """Functional forward and differentiable SGD through higher's public API.

    The differentiable optimiser has one parameter group per adapted tensor, so that each step's per-tensor
    rates reach it through ``override={"lr": [...]}`` (higher's documented way to pass tensors, learnable
    ones included, as optimiser settings).
    """

    name = "higher"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        # copy_initial_weights=False: the module's own parameters are the starting fast weights, so
        # meta-gradients reach them (higher's documented MAML setting).
        self.fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
        self._diffopts: dict[tuple[tuple[str, ...], Order], higher.optim.DifferentiableOptimizer] = {}

    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0):
        return self.fmodel(x, params=[params[n] for n in self.names], return_features=return_features, step=step,
                           norm=self.norm)

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

    def step(self, params: Params, loss_fn: LossFn, rates: dict[str, Rate], order: Order,
             at: Params | None = None) -> Params:
        """``params - rate * grad loss``; with ``at``, the gradient is taken at ``at`` (Sharp-MAML's perturbed
        point): higher steps ``at`` and the result is shifted back by ``at - params``."""
        names = list(rates)
        point = params if at is None else at
        new = self._diffopt(names, order).step(loss_fn(point), params=[point[n] for n in self.names],
                                               override={"lr": [rates[n] for n in names]})
        new = dict(zip(self.names, new))
        if at is not None:
            new = {n: (new[n] - (at[n] - params[n]) if n in rates else params[n]) for n in self.names}
        return new
