"""MAML++ (Antoniou, Edwards & Storkey, How to train your MAML, ICLR 2019), as the reference code
HowToTrainYourMAMLPytorch implements it. This file is MAML++'s algorithm: each trick is a hook of the row below and
its own switch (``--no-msl`` etc.), so an ablation turns them on one at a time; with every switch off MAML++ is MAML
with BatchNorm kept out of the inner loop, bit for bit (tested; MAML itself on a model without BatchNorm).

- ``msl``: the multi-step loss, the query losses after every inner step weighted by :func:`msl_weights` over
  ``msl_anneal_steps`` outer steps (hook ``query_weights``);
- ``learn_inner_lr``: one learnable inner step size per tensor and per step, initialised to the tensor's rate
  (hooks ``meta_parameters`` and ``step_rates``);
- ``per_step_bn``: BatchNorm weights and biases of shape ``[steps, C]``, indexed by the inner step and learned in
  the outer loop only (hook ``norm_layer``, :class:`cml.layers.StepNorm`). The reference always normalises with
  batch statistics, as this project does, so per-step running statistics would not change any output and are not
  kept;
- ``first_order_steps``: derivative-order annealing, first order for that many outer steps, then second order
  (hook ``outer_order``);
- ``cosine_lr``: cosine annealing of the outer learning rate from ``meta_lr`` to ``min_meta_lr`` (hook
  ``outer_lr``);
- ``grad_clamp``: each element of the weights' meta-gradient clamped to +-``grad_clamp`` before the Adam step, after
  any method noise (hook ``clip_gradient``); the reference clamps to +-10 on ImageNet-like data sets (the RGB
  benchmarks' paper preset), the network's weights only, not the learned rates.

BatchNorm weights are never adapted in the inner loop, whichever switches are on: the reference never adapts them,
in any configuration (hook ``adapts``). Learned rates and per-step BatchNorm rows are sized by the *training* inner
steps (:func:`rate_rows`): a test-time step beyond them uses the last trained row (rows beyond would get no gradient
in training and keep their initial values). The reference's argparse default task learning rate is 0.1 while its
JSON configs say 0.01 (a key the code never reads), so the reference ran with 0.1: the presets use 0.1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import BaseLearner, config_order, constant_lr, constant_rates, last_step_only
from ..roles import is_norm, rate_key, role_of

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..config import Config
    from ..engines.base import Order, Params, Rate
    from ..layers import NormLayer
    from ..tasks import TaskEntry
    from . import GradientFn

_SWITCHES = dict(msl=True, learn_inner_lr=True, per_step_bn=True, cosine_lr=True)
# The reference's epochs are 500 outer steps each.
_EPOCH = 500


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


def rate_rows(cfg: "Config") -> int:
    """Learnable rates and per-step BatchNorm rows: one per *training* inner step. A test-time step beyond them uses
    the last row (:class:`cml.layers.StepNorm` and the learned rates clamp the step), since a row no training step
    reads would get no gradient and keep its initial value."""
    return cfg.inner_steps


def _adapts(cfg: "Config", name: str) -> bool:
    return not is_norm(name)  # the reference never adapts BatchNorm in the inner loop


def _step_rates(cfg: "Config", params: "Params", name: str, rate: float, steps: int) -> tuple["Rate", ...]:
    if not cfg.learn_inner_lr:
        return constant_rates(cfg, params, name, rate, steps)
    learned = params[f"inner_lr.{rate_key(name)}"]  # (rate_rows,)
    return tuple(learned[min(k, learned.shape[0] - 1)] for k in range(steps))


def _query_weights(cfg: "Config", outer_step: int) -> tuple[float, ...]:
    if not cfg.msl:
        return last_step_only(cfg, outer_step)
    return tuple(msl_weights(cfg.inner_steps, outer_step, cfg.msl_anneal_steps))


def _outer_order(cfg: "Config", outer_step: int) -> "Order":
    return "first" if outer_step < cfg.first_order_steps else config_order(cfg, outer_step)


def _outer_lr(cfg: "Config", step: int) -> float:
    """``min + (meta_lr - min) (1 + cos(pi step / steps)) / 2`` with cosine annealing, else ``meta_lr``."""
    if not cfg.cosine_lr:
        return constant_lr(cfg, step)
    return cfg.min_meta_lr + 0.5 * (cfg.meta_lr - cfg.min_meta_lr) * (1 + math.cos(math.pi * step / cfg.steps))


def _clip_gradient(cfg: "Config") -> "GradientFn | None":
    """The reference's ``param.grad.data.clamp_(-10, 10)`` on the classifier's parameters (not the learned rates,
    which it keeps in another module)."""
    if not cfg.grad_clamp:
        return None
    bound = cfg.grad_clamp

    def clamp(grads: "Params") -> None:
        for name, g in grads.items():
            if role_of(name) != "rate":
                g.clamp_(-bound, bound)

    return clamp


def _load_saved(cfg: "Config", name: str, saved: "Tensor") -> "Tensor":
    """Checkpoints written before the rows were sized by the training steps hold ``max(inner_steps,
    test_inner_steps)`` rows; those beyond the training steps were never trained (no gradient: Adam left them at
    their initial values, with zero moments), so they are dropped."""
    per_step = name.startswith("inner_lr.") or (cfg.per_step_bn and is_norm(name))
    rows = rate_rows(cfg)
    return saved[:rows] if per_step and saved.ndim >= 1 and saved.shape[0] > rows else saved


def _norm_layer(cfg: "Config") -> "NormLayer | None":
    if not cfg.per_step_bn:
        return None
    from ..layers import StepNorm  # torch: see the package docstring

    rows = rate_rows(cfg)
    return lambda channels: StepNorm(channels, rows)


def _meta_parameters(cfg: "Config", rates: dict[str, float]) -> "nn.ParameterDict | None":
    if not cfg.learn_inner_lr:
        return None
    import torch  # see the package docstring
    from torch import nn

    rows = rate_rows(cfg)
    return nn.ParameterDict({rate_key(n): nn.Parameter(torch.full((rows,), rate)) for n, rate in rates.items()})


def _quick(task: "TaskEntry") -> dict:
    # Minutes on 2 CPU cores: two inner steps (the multi-step loss needs more than one) at the quick preset's
    # own step size, annealed over the first third of the run.
    if not task.family.norm_layers:  # no BatchNorm in the MLP or the GCN
        return dict(msl=True, learn_inner_lr=True, cosine_lr=True, inner_steps=2, msl_anneal_steps=1000,
                    min_meta_lr=1e-5)
    return dict(_SWITCHES, inner_steps=2, test_inner_steps=3, msl_anneal_steps=200, min_meta_lr=1e-5)


def _paper(task: "TaskEntry") -> dict:
    if not task.family.norm_layers:
        return dict(msl=True, learn_inner_lr=True, cosine_lr=True, msl_anneal_steps=10 * _EPOCH, min_meta_lr=1e-5)
    if task.rgb:  # the reference's MiniImagenet config for the RGB benchmarks
        # MiniImagenet 5-way: 48 filters, 84 px, 5 inner steps, 2 tasks per batch, 15 queries, MSL over 15 of
        # 100 epochs, meta LR 1e-3 and minimum LR 1e-3 (so no annealing in effect), gradients clamped to +-10.
        return dict(_SWITCHES, filters=48, inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=2,
                    queries=15, meta_lr=1e-3, steps=100 * _EPOCH, msl_anneal_steps=15 * _EPOCH, min_meta_lr=1e-3,
                    grad_clamp=10.0)
    # Omniglot: 64 filters, 28 px, 5 inner steps, 8 tasks per batch, MSL over 10 of 100 epochs, min LR 1e-5.
    return dict(_SWITCHES, filters=64, inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=8,
                steps=100 * _EPOCH, msl_anneal_steps=10 * _EPOCH, min_meta_lr=1e-5)


BASE = BaseLearner(
    name="maml++",
    label="MAML++",
    reference="Antoniou, Edwards & Storkey, How to train your MAML, ICLR 2019",
    summary="MAML with the multi-step loss, learnable per-step inner rates, per-step BatchNorm, "
            "derivative-order annealing and a cosine outer learning rate",
    adapts=_adapts,
    step_rates=_step_rates,
    query_weights=_query_weights,
    outer_order=_outer_order,
    outer_lr=_outer_lr,
    norm_layer=_norm_layer,
    meta_parameters=_meta_parameters,
    clip_gradient=_clip_gradient,
    load_saved=_load_saved,
    options=("msl", "msl_anneal_steps", "learn_inner_lr", "per_step_bn", "first_order_steps", "cosine_lr",
             "min_meta_lr", "grad_clamp"),
    presets={"quick": _quick, "paper": _paper},
)
