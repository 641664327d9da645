"""Sharp-MAML (Abbas, Xiao, Chen, Chen & Chen, ICML 2022): sharpness-aware MAML. This file is its algorithm:

- lower level (``sharp_variant`` ``lower`` or ``both``, radius ``sharp_rho_lower``; hook ``inner_point``):
  g = grad L_support(theta), e = rho g / (||g|| + 1e-12), and the inner update uses the gradient at theta + e
  (the graph through e kept at second order);
- upper level (``upper`` or ``both``, radius ``sharp_rho_upper``; hook ``outer_gradient``): SAM around the outer
  Adam step: ascend by rho g / ||g|| on the meta-parameters, recompute the meta-loss there (with the co-learner's
  term when CML is on), and descend from the original point with that gradient.

The reference code's default rho is 0.05 (its README's example uses 0.0005); the presets use 0.05. With both
radii 0, Sharp-MAML is MAML bit for bit (tested). Test-time adaptation takes plain gradient steps.

References: Foret et al., Sharpness-Aware Minimization, ICLR 2021; Abbas et al., Sharp-MAML, ICML 2022.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import TYPE_CHECKING, Sequence

from . import BaseLearner

if TYPE_CHECKING:
    from ..config import Config
    from ..engines.base import LossFn, Order, Params, Primitives
    from ..meta import MetaGradient
    from ..tasks import TaskEntry
    from . import OuterFn, PointFn


def lower_rho(cfg: "Config") -> float:
    """The inner-step radius; 0 for the ``upper`` variant."""
    return cfg.sharp_rho_lower if cfg.sharp_variant in ("lower", "both") else 0.0


def upper_rho(cfg: "Config") -> float:
    """The outer-step (SAM) radius; 0 for the ``lower`` variant."""
    return cfg.sharp_rho_upper if cfg.sharp_variant in ("upper", "both") else 0.0


def _inner_point(cfg: "Config") -> "PointFn | None":
    rho = lower_rho(cfg)
    if not rho:
        return None

    def point(prims: "Primitives", loss_fn: "LossFn", params: "Params", names: Sequence[str],
              order: "Order") -> "Params":
        grads = prims.grad(loss_fn, params, names, order)  # joint norm over the adapted tensors
        # Summed left to right, as Python's sum would (0 + the first term is that term exactly).
        norm = functools.reduce(operator.add, [g.pow(2).sum() for g in grads.values()]).sqrt()
        return {**params, **{n: params[n] + rho * grads[n] / (norm + 1e-12) for n in names}}

    return point


def _outer_gradient(cfg: "Config", compute: "OuterFn", params: "Params", split: bool) -> "MetaGradient":
    """The meta-gradient at ``params + rho g / ||g||`` on the same tasks (the descent then starts from
    ``params``). What it returns (losses, accuracies, the split) is measured at the point it was taken."""
    rho = upper_rho(cfg)
    mg = compute(params, split and not rho)
    if not rho:
        return mg
    import torch  # see the package docstring

    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in mg.total.values()))
    with torch.no_grad():
        ascended = {n: (p + rho * mg.total[n] / (norm + 1e-12)).detach().requires_grad_() for n, p in params.items()}
    return compute(ascended, split)


def _paper(task: "TaskEntry") -> dict:
    # The paper's Table 1 runs Sharp-MAML with 5 inner steps; the reference's MiniImagenet command takes them at step
    # size 0.1 (--num-steps 5 --step-size 0.1), and its test script reuses the training config's steps.
    return dict(inner_steps=5, test_inner_steps=5, inner_lr=0.1) if task.family.norm_layers else {}


# The algorithm is the two hooks above; the options are its config fields, the presets the reference's radii.
BASE = BaseLearner("sharp-maml", "Sharp-MAML", inner_point=_inner_point, outer_gradient=_outer_gradient,
                   reference="Abbas et al., Sharp-MAML: Sharpness-Aware Model-Agnostic Meta Learning, ICML 2022",
                   summary="MAML with sharpness-aware (SAM) perturbations of the inner step, the outer step, or both",
                   options=("sharp_variant", "sharp_rho_lower", "sharp_rho_upper"),
                   presets={"*": dict(sharp_variant="both", sharp_rho_lower=0.05, sharp_rho_upper=0.05),
                            "paper": _paper})
