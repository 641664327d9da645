"""Models: a feature extractor psi, a meta-learner head theta and, for CML, a co-learner head phi, assembled
per run: psi from the task family (:mod:`cml.tasks`), the heads from the layers of :mod:`cml.layers` (the
BatchNorm policy is stated there), and the base learner's own norm layers and meta-parameters (:mod:`cml.bases`).
Roles are read from parameter names (:mod:`cml.roles`); which tensor adapts at which step size is decided once, by
:func:`cml.meta.inner_rates`.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from .bases import get_base
from .config import Config, ConfigError
from .layers import BatchNorm, ConvHead, EmbeddingHead, LinearHead, MetaModel, MLPHead, NormLayer, reset_norm_layers
from .meta import inner_rates
from .resnet import ResNetConv
from .roles import role_of


def _build(cfg: Config, in_channels: int, width: int, meta_head: str, co_head: str | None) -> MetaModel:
    out = cfg.family.outputs(cfg)
    base = get_base(cfg.base)
    norm_layer: NormLayer = base.norm_layer(cfg) or BatchNorm
    features = cfg.family.features(cfg, in_channels, width, norm_layer)

    def head(kind: str) -> nn.Module:
        if kind == "linear":
            return LinearHead(features.out_features, out)
        if kind == "mlp":  # one hidden layer as wide as the feature extractor's layers
            return MLPHead(features.out_features, width, out)
        if kind == "embedding":
            return EmbeddingHead()
        return ConvHead(features.prepool_channels, features.prepool_size, out, norm_layer, cfg.co_learner_depth)

    model = MetaModel(features, head(base.meta_head(cfg, meta_head)), head(co_head) if co_head else None)
    model.inner_lr = base.meta_parameters(cfg, inner_rates(cfg, [n for n, _ in model.named_parameters()]))
    return model


def count(params: Iterable[Tensor]) -> int:
    return sum(p.numel() for p in params)


def _count(cfg: Config, in_channels: int, width: int, meta_head: str, co_head: str | None) -> int:
    """The parameters of ``_build(...)``, built on the meta device: shapes only, no memory, no initialisation
    (a wide ResNet-12 is tens of millions of parameters, built once per width searched)."""
    with torch.device("meta"):
        return count(_build(cfg, in_channels, width, meta_head, co_head).parameters())


def more_maml_width(cfg: Config, in_channels: int) -> int:
    """The backbone width at which More-MAML's test-time parameter count is closest to CML's train-time count.

    The width is the family's (:meth:`cml.tasks.TaskFamily.width`): Conv-4's filters, the MLP's or GCN's hidden
    size, ResNet-12's last block, all four blocks widened by the same factor (:func:`cml.resnet.scaled_widths`).

    Only widths above the base width count, so More-MAML always has more capacity than MAML even where
    CML's co-learner is smaller than one step of width (a linear co-learner).

    Raises:
        ConfigError: if no width comes within 5% (then the comparison would not be parameter-matched).
    """
    target = _count(cfg, in_channels, _base_width(cfg), "linear", cfg.co_learner)
    base = _base_width(cfg)
    best, best_gap = base, math.inf
    for width in range(base + 1, 4 * base + 1):
        n = _count(cfg, in_channels, width, "linear", None)
        if abs(n - target) < best_gap:
            best, best_gap = width, abs(n - target)
        if n > target:
            break
    if best_gap > 0.05 * target:
        raise ConfigError(
            f"no backbone width matches CML's {target} train-time parameters within 5% (closest: width {best}); "
            f"with a conv co-learner use more_capacity 'blocks' (--more-capacity blocks)"
        )
    return best


def _base_width(cfg: Config) -> int:
    return cfg.family.width(cfg)


def build_model(cfg: Config, in_channels: int = 1) -> MetaModel:
    """The model a method trains. Parameters are left as PyTorch creates them; call :func:`init_parameters`.

    - ``none``, ``noisy``: psi + linear theta.
    - ``cml``, ``cl``, ``random``: psi + linear theta + phi (``cfg.co_learner``, ``cfg.co_learner_depth`` conv
      blocks for the conv one).
    - ``more``: no phi; extra capacity in the meta-learner's path, sized to CML's train-time count:
      ``width`` widens psi, ``blocks`` uses the conv co-learner's architecture as theta.

    With ``meta_head_like_co_learner`` theta has the co-learner's structure instead of a linear layer (the
    paper's Table 7), for every method but ``more``, which the config refuses.
    """
    if cfg.spec.extra_capacity:
        if cfg.more_capacity == "blocks":
            model = _build(cfg, in_channels, _base_width(cfg), "conv", None)
            target = _count(cfg, in_channels, _base_width(cfg), "linear", cfg.co_learner)
            if abs(count(model.parameters()) - target) > 0.05 * target:
                raise ConfigError(f"More-MAML 'blocks' has {count(model.parameters())} parameters, more than 5% "
                                  f"from CML's {target}; use --more-capacity width")
            return model
        return _build(cfg, in_channels, more_maml_width(cfg, in_channels), "linear", None)
    co = cfg.co_learner if cfg.has_co_learner else None
    theta = cfg.co_learner if cfg.meta_head_like_co_learner else "linear"
    return _build(cfg, in_channels, _base_width(cfg), theta, co)


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``generator`` instead of the global RNG.

    Conv and linear weights: Kaiming-uniform with a = sqrt(5); biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    BatchNorm (one or per step): weight 1, bias 0. Learnable inner rates keep the values they were built with.
    ResNet-12's convs (:class:`cml.resnet.ResNetConv`, no bias): Kaiming-normal with ``fan_out`` and the leaky-ReLU
    gain, the standard's initialisation (MetaOptNet, BOIL; why: :mod:`cml.resnet`).
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ResNetConv):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu", generator=generator)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in)
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    reset_norm_layers(model)


def parameter_counts(cfg: Config, in_channels: int = 1) -> dict[str, int]:
    """Parameters at train time and at test time for ``cfg``'s base and method (one function for all).

    Test time drops phi for every method that evaluates with theta' (CML's co-learner is discarded); learned
    inner rates stay (test-time adaptation uses them). CML† as the authors' code reads it needs theta to adapt
    and phi to predict, so its test count (``test_dagger``) is the full train count; by the paper's Eq. (9) phi
    predicts after psi alone adapted on phi's loss, so theta is not needed (``test_dagger_eq9``, for every method
    with a co-learner: the paper's Table 4 counts CML† and CL† so).
    """
    model = build_model(cfg, in_channels)
    by_role = {"psi": 0, "theta": 0, "phi": 0, "rate": 0}
    for name, p in model.named_parameters():
        by_role[role_of(name)] += p.numel()
    counts = {
        "train": sum(by_role.values()),
        "test": by_role["psi"] + by_role["theta"] + by_role["rate"],
        **by_role,
    }
    if cfg.spec.dagger:
        counts["test_dagger"] = counts["train"]
    if cfg.spec.co_learner:
        counts["test_dagger_eq9"] = by_role["psi"] + by_role["phi"] + by_role["rate"]
    return counts
