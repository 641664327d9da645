"""Models: a feature extractor psi, a meta-learner head theta and, for CML, a co-learner head phi.

Parameter names fix the roles: ``features.*`` is psi, ``head.*`` is theta, ``co_head.*`` is phi. The
trainer, the diagnostics and the parameter counts all read the roles from the names (:func:`role_of`).

BatchNorm policy (stated once, here): every BatchNorm uses the statistics of the batch it sees, in
training and at test time (``track_running_stats=False``), as the authors' code does. higher never writes
running statistics back to the module, so running statistics could not be maintained through the inner
loop anyway; batch statistics make adaptation, CKA and t-SNE depend only on the task's own images.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from .config import Config, ConfigError

PSI, THETA, PHI = "features", "head", "co_head"


def role_of(name: str) -> str:
    """``psi``, ``theta`` or ``phi`` for a parameter name such as ``features.block1.conv.weight``."""
    top = name.split(".", 1)[0]
    roles = {PSI: "psi", THETA: "theta", PHI: "phi"}
    if top not in roles:
        raise ValueError(f"parameter {name!r} belongs to no role; expected a name under {', '.join(roles)}")
    return roles[top]


class ConvBlock(nn.Module):
    """conv3x3 -> BatchNorm (batch statistics) -> ReLU; pooling is applied by the caller."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.BatchNorm2d(c_out, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.conv(x)))


def _pooled(size: int, times: int) -> int:
    for _ in range(times):
        size //= 2
    return size


class Conv4(nn.Module):
    """Four blocks of conv3x3 -> BN -> ReLU -> max-pool 2 (Vinyals et al., 2016; Finn et al., 2017).

    ``forward`` returns every representation the heads and the diagnostics read: ``block1``..``block4``
    (after pooling), ``prepool`` (block 4 before its pooling, which the conv co-learner reads) and ``flat``
    (block 4 pooled and flattened, which the linear heads read).
    """

    def __init__(self, in_channels: int, filters: int, image_size: int) -> None:
        super().__init__()
        if _pooled(image_size, 4) < 1:
            raise ConfigError(f"image_size {image_size} is too small for four 2x2 poolings; use at least 16")
        self.block1 = ConvBlock(in_channels, filters)
        self.block2 = ConvBlock(filters, filters)
        self.block3 = ConvBlock(filters, filters)
        self.block4 = ConvBlock(filters, filters)
        self.filters = filters
        self.prepool_size = _pooled(image_size, 3)
        self.out_features = filters * _pooled(image_size, 4) ** 2

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        h = x
        for i, block in enumerate((self.block1, self.block2, self.block3), start=1):
            h = nn.functional.max_pool2d(block(h), 2)
            out[f"block{i}"] = h
        pre = self.block4(h)  # (n, filters, s, s), s = image_size // 8
        out["prepool"] = pre
        out["block4"] = nn.functional.max_pool2d(pre, 2)
        out["flat"] = out["block4"].flatten(1)
        return out


class MLP(nn.Module):
    """The sinusoid feature extractor: 1 -> hidden -> hidden with ReLU (Finn et al., 2017)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(1, hidden)
        self.layer2 = nn.Linear(hidden, hidden)
        self.out_features = hidden

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h1 = torch.relu(self.layer1(x))
        h2 = torch.relu(self.layer2(h1))
        return {"layer1": h1, "layer2": h2, "flat": h2}


class LinearHead(nn.Module):
    """A linear layer on the flattened features."""

    def __init__(self, in_features: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        return self.fc(feats["flat"])


class ConvHead(nn.Module):
    """The authors' conv co-learner: two conv blocks on block 4's pre-pool map (the second pooled), then a
    linear layer. More-MAML's ``blocks`` variant uses the same module as its meta-learner head."""

    def __init__(self, filters: int, prepool_size: int, out: int) -> None:
        super().__init__()
        self.block_a = ConvBlock(filters, filters)
        self.block_b = ConvBlock(filters, filters)
        self.fc = nn.Linear(filters * (prepool_size // 2) ** 2, out)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        h = self.block_b(self.block_a(feats["prepool"]))
        return self.fc(nn.functional.max_pool2d(h, 2).flatten(1))


class MetaModel(nn.Module):
    """psi (``features``), theta (``head``) and optionally phi (``co_head``).

    ``forward(x)`` returns ``(meta_out, co_out)``, ``co_out`` being None without a co-learner; with
    ``return_features=True`` it returns ``(meta_out, co_out, features)``.
    """

    def __init__(self, features: nn.Module, head: nn.Module, co_head: nn.Module | None) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.co_head = co_head

    def forward(self, x: Tensor, return_features: bool = False):
        feats = self.features(x)
        meta = self.head(feats)
        co = self.co_head(feats) if self.co_head is not None else None
        if return_features:
            return meta, co, feats
        return meta, co


def _build(cfg: Config, in_channels: int, width: int, meta_head: str, co_head: str | None) -> MetaModel:
    out = 1 if cfg.is_regression else cfg.ways
    if cfg.is_regression:
        features: nn.Module = MLP(width)
    elif cfg.is_graph:
        from .gnn import GCN  # in_channels: a node's input row (features + centre marker)

        features = GCN(in_channels, width, cfg.graph_layers, cfg.graph_modulation)
    else:
        features = Conv4(in_channels, width, cfg.image_size)

    def head(kind: str) -> nn.Module:
        if kind == "linear":
            return LinearHead(features.out_features, out)
        return ConvHead(width, features.prepool_size, out)

    return MetaModel(features, head(meta_head), head(co_head) if co_head else None)


def count(params: Iterable[Tensor]) -> int:
    return sum(p.numel() for p in params)


def more_maml_width(cfg: Config, in_channels: int) -> int:
    """The backbone width at which More-MAML's test-time parameter count is closest to CML's train-time count.

    Only widths above the base width count, so More-MAML always has more capacity than MAML even where
    CML's co-learner is smaller than one step of width (a linear co-learner).

    Raises:
        ConfigError: if no width comes within 5% (then the comparison would not be parameter-matched).
    """
    target = count(_build(cfg, in_channels, _base_width(cfg), "linear", cfg.co_learner).parameters())
    base = _base_width(cfg)
    best, best_gap = base, math.inf
    for width in range(base + 1, 4 * base + 1):
        n = count(_build(cfg, in_channels, width, "linear", None).parameters())
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
    return cfg.hidden if cfg.is_regression or cfg.is_graph else cfg.filters


def build_model(cfg: Config, in_channels: int = 1) -> MetaModel:
    """The model a method trains. Parameters are left as PyTorch creates them; call :func:`init_parameters`.

    - ``maml``, ``noisy-maml``: psi + linear theta.
    - ``cml``, ``cl``: psi + linear theta + phi (``cfg.co_learner``).
    - ``more-maml``: no phi; extra capacity in the meta-learner's path, sized to CML's train-time count:
      ``width`` widens psi, ``blocks`` uses the conv co-learner's architecture as theta.
    """
    if cfg.method == "more-maml":
        if cfg.more_capacity == "blocks":
            model = _build(cfg, in_channels, _base_width(cfg), "conv", None)
            target = count(_build(cfg, in_channels, _base_width(cfg), "linear", cfg.co_learner).parameters())
            if abs(count(model.parameters()) - target) > 0.05 * target:
                raise ConfigError(f"More-MAML 'blocks' has {count(model.parameters())} parameters, more than 5% "
                                  f"from CML's {target}; use --more-capacity width")
            return model
        return _build(cfg, in_channels, more_maml_width(cfg, in_channels), "linear", None)
    co = cfg.co_learner if cfg.has_co_learner else None
    return _build(cfg, in_channels, _base_width(cfg), "linear", co)


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``generator`` instead of the global RNG.

    Conv and linear weights: Kaiming-uniform with a = sqrt(5); biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    BatchNorm: weight 1, bias 0.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in)
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def parameter_counts(cfg: Config, in_channels: int = 1) -> dict[str, int]:
    """Parameters at train time and at test time for ``cfg.method`` (one function for every method).

    Test time drops phi for every method that evaluates with theta' (CML's co-learner is discarded). CML†
    needs theta to adapt and phi to predict, so its test count is the full train count.
    """
    model = build_model(cfg, in_channels)
    by_role = {"psi": 0, "theta": 0, "phi": 0}
    for name, p in model.named_parameters():
        by_role[role_of(name)] += p.numel()
    counts = {
        "train": sum(by_role.values()),
        "test": by_role["psi"] + by_role["theta"],
        **by_role,
    }
    if cfg.method == "cml":
        counts["test_dagger"] = counts["train"]
    return counts
