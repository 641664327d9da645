"""The independent second engine: ``torch.func.functional_call`` for the forward and
``torch.autograd.grad(create_graph=True)`` for the inner step. Tests hold it and higher's engine to the same
meta-gradients in float64."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossFn, Order, Params, PerTaskEngine, Rate


class FuncBackend(PerTaskEngine):
    """Functional forward with ``torch.func.functional_call``; inner SGD with ``torch.autograd.grad``."""

    name = "func"

    def forward(self, params: Params, x: Tensor, return_features: bool = False, step: int = 0):
        return torch.func.functional_call(self.model, params, (x,),
                                          {"return_features": return_features, "step": step, "norm": self.norm})

    def step(self, params: Params, loss_fn: LossFn, rates: dict[str, Rate], order: Order,
             at: Params | None = None) -> Params:
        """``params - rate * grad loss``, the gradient taken at ``at`` when given (Sharp-MAML)."""
        names = list(rates)
        point = params if at is None else at
        grads = torch.autograd.grad(loss_fn(point), [point[n] for n in names], create_graph=order == "second",
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
