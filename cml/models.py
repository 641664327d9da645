"""Models: a feature extractor psi, a meta-learner head theta and, for CML, a co-learner head phi.

Parameter names fix the roles: ``features.*`` is psi, ``head.*`` is theta, ``co_head.*`` is phi, and
``inner_lr.*`` holds meta-parameters that are not weights (MAML++'s learnable inner step sizes). The trainer,
the diagnostics and the parameter counts all read the roles from the names (:func:`role_of`); which tensor
adapts at which step size is decided once, by :func:`inner_rates`.

BatchNorm policy (stated once, here): every BatchNorm uses the statistics of the batch it sees, in
training and at test time (``track_running_stats=False``), as the authors' code does. higher never writes
running statistics back to the module, so running statistics could not be maintained through the inner
loop anyway; batch statistics make adaptation, CKA and t-SNE depend only on the task's own images.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from .bases import get_base
from .config import Config, ConfigError

PSI, THETA, PHI, RATES = "features", "head", "co_head", "inner_lr"
ROLES = {PSI: "psi", THETA: "theta", PHI: "phi", RATES: "rate"}


def role_of(name: str) -> str:
    """``psi``, ``theta``, ``phi`` or ``rate`` for a parameter name such as ``features.block1.conv.weight``."""
    top = name.split(".", 1)[0]
    if top not in ROLES:
        raise ValueError(f"parameter {name!r} belongs to no role; expected a name under {', '.join(ROLES)}")
    return ROLES[top]


def is_norm(name: str) -> bool:
    """Whether a parameter is a BatchNorm weight or bias (every norm layer here is a module named ``norm``)."""
    return "norm" in name.split(".")[:-1]


def rate_key(name: str) -> str:
    """The key of a tensor's learnable inner step sizes: ``features.block1.conv.weight`` ->
    ``features-block1-conv-weight`` (parameter names never contain ``-``; module keys cannot contain ``.``)."""
    return name.replace(".", "-")


def inner_rates(cfg: Config, names: Iterable[str], test_time: bool = False) -> dict[str, float]:
    """Which tensors the inner loop adapts, each with its base step size (the one place that decides it).

    psi and theta take the base learner's role rates (BOIL: head 0; ANIL: body 0); a rate of 0 means not
    adapted. phi is adapted only by a method that adapts it while meta-training (CL), at theta's rate; at
    test time every method adapts psi and theta only. With MAML++'s learnable rates or per-step BatchNorm,
    BatchNorm weights are not adapted (the reference's default). ``inner_lr.*`` is never adapted.
    """
    roles = get_base(cfg.base).role_rates(cfg)
    freeze_norm = cfg.learn_inner_lr or cfg.per_step_bn
    out: dict[str, float] = {}
    for name in names:
        role = role_of(name)
        if role == "phi":
            rate = roles["theta"] if (cfg.spec.phi_in_inner_loop and not test_time) else 0.0
        elif role in ("psi", "theta"):
            rate = roles[role]
        else:
            rate = 0.0
        if rate and not (freeze_norm and is_norm(name)):
            out[name] = float(rate)
    return out


BN_EPS = 1e-5
# Read by every norm layer's forward; set only by :func:`explicit_batch_norm` (the batched engine).
_explicit_norm = False


@contextmanager
def explicit_batch_norm() -> Iterator[None]:
    """Inside this context every norm layer normalises with :func:`batch_norm_explicit` instead of PyTorch's
    batch-norm kernel. The batched engine runs under it: ``torch.func.vmap`` over the kernel gives wrong
    second-order meta-gradients (README, "The batched engine"), over the explicit formula exact ones."""
    global _explicit_norm
    previous, _explicit_norm = _explicit_norm, True
    try:
        yield
    finally:
        _explicit_norm = previous


def batch_norm_explicit(x: Tensor, weight: Tensor, bias: Tensor, eps: float = BN_EPS) -> Tensor:
    """Batch normalisation written out: per-channel mean and biased variance over (N, H, W) of ``x: (N, C, H,
    W)``, the same maths as ``F.batch_norm(..., training=True)`` with batch statistics."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def inner_rate_steps(cfg: Config) -> int:
    """Learnable rates and per-step BatchNorm weights are kept for every step training or testing takes."""
    return max(cfg.inner_steps, cfg.test_inner_steps)


class StepNorm(nn.Module):
    """MAML++'s per-step BatchNorm: weight and bias of shape ``(steps, C)``; step ``k`` normalises with row
    ``k`` (batch statistics, as every norm layer here)."""

    def __init__(self, channels: int, steps: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(steps, channels))
        self.bias = nn.Parameter(torch.zeros(steps, channels))

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        k = min(step, self.weight.shape[0] - 1)
        if _explicit_norm:
            return batch_norm_explicit(x, self.weight[k], self.bias[k])
        return nn.functional.batch_norm(x, None, None, self.weight[k], self.bias[k], training=True, eps=BN_EPS)


class ConvBlock(nn.Module):
    """conv3x3 -> BatchNorm (batch statistics) -> ReLU; pooling is applied by the caller.

    Args:
        norm_steps: 0 for one BatchNorm; k > 0 for MAML++'s per-step BatchNorm with k rows.
    """

    def __init__(self, c_in: int, c_out: int, norm_steps: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = StepNorm(c_out, norm_steps) if norm_steps else nn.BatchNorm2d(c_out, eps=BN_EPS, track_running_stats=False)

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        h = self.conv(x)
        if isinstance(self.norm, StepNorm):
            return torch.relu(self.norm(h, step))
        if _explicit_norm:
            return torch.relu(batch_norm_explicit(h, self.norm.weight, self.norm.bias, self.norm.eps))
        return torch.relu(self.norm(h))


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

    def __init__(self, in_channels: int, filters: int, image_size: int, norm_steps: int = 0) -> None:
        super().__init__()
        if _pooled(image_size, 4) < 1:
            raise ConfigError(f"image_size {image_size} is too small for four 2x2 poolings; use at least 16")
        self.block1 = ConvBlock(in_channels, filters, norm_steps)
        self.block2 = ConvBlock(filters, filters, norm_steps)
        self.block3 = ConvBlock(filters, filters, norm_steps)
        self.block4 = ConvBlock(filters, filters, norm_steps)
        self.filters = filters
        self.prepool_size = _pooled(image_size, 3)
        self.out_features = filters * _pooled(image_size, 4) ** 2

    def forward(self, x: Tensor, step: int = 0) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        h = x
        for i, block in enumerate((self.block1, self.block2, self.block3), start=1):
            h = nn.functional.max_pool2d(block(h, step), 2)
            out[f"block{i}"] = h
        pre = self.block4(h, step)  # (n, filters, s, s), s = image_size // 8
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

    def forward(self, x: Tensor, step: int = 0) -> dict[str, Tensor]:
        h1 = torch.relu(self.layer1(x))
        h2 = torch.relu(self.layer2(h1))
        return {"layer1": h1, "layer2": h2, "flat": h2}


class LinearHead(nn.Module):
    """A linear layer on the flattened features."""

    def __init__(self, in_features: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out)

    def forward(self, feats: dict[str, Tensor], step: int = 0) -> Tensor:
        return self.fc(feats["flat"])


class ConvHead(nn.Module):
    """The authors' conv co-learner: two conv blocks on block 4's pre-pool map (the second pooled), then a
    linear layer. More-MAML's ``blocks`` variant uses the same module as its meta-learner head."""

    def __init__(self, filters: int, prepool_size: int, out: int, norm_steps: int = 0) -> None:
        super().__init__()
        self.block_a = ConvBlock(filters, filters, norm_steps)
        self.block_b = ConvBlock(filters, filters, norm_steps)
        self.fc = nn.Linear(filters * (prepool_size // 2) ** 2, out)

    def forward(self, feats: dict[str, Tensor], step: int = 0) -> Tensor:
        h = self.block_b(self.block_a(feats["prepool"], step), step)
        return self.fc(nn.functional.max_pool2d(h, 2).flatten(1))


class MetaModel(nn.Module):
    """psi (``features``), theta (``head``), optionally phi (``co_head``) and MAML++'s learnable inner step
    sizes (``inner_lr``, one ``(steps,)`` vector per adapted tensor, keyed by :func:`rate_key`).

    ``forward(x, step=k)`` returns ``(meta_out, co_out)``, ``co_out`` being None without a co-learner; with
    ``return_features=True`` it returns ``(meta_out, co_out, features)``. ``step`` is the inner step whose
    per-step BatchNorm row to use (ignored without per-step BatchNorm).
    """

    def __init__(self, features: nn.Module, head: nn.Module, co_head: nn.Module | None,
                 inner_lr: nn.ParameterDict | None = None) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.co_head = co_head
        self.inner_lr = inner_lr

    def forward(self, x: Tensor, return_features: bool = False, step: int = 0):
        feats = self.features(x, step=step)
        meta = self.head(feats, step=step)
        co = self.co_head(feats, step=step) if self.co_head is not None else None
        if return_features:
            return meta, co, feats
        return meta, co


def _build(cfg: Config, in_channels: int, width: int, meta_head: str, co_head: str | None) -> MetaModel:
    out = 1 if cfg.is_regression else cfg.ways
    norm_steps = inner_rate_steps(cfg) if cfg.per_step_bn else 0
    if cfg.is_regression:
        features: nn.Module = MLP(width)
    elif cfg.is_graph:
        from .gnn import GCN  # in_channels: a node's input row (features + centre marker)

        features = GCN(in_channels, width, cfg.graph_layers, cfg.graph_modulation)
    else:
        features = Conv4(in_channels, width, cfg.image_size, norm_steps)

    def head(kind: str) -> nn.Module:
        if kind == "linear":
            return LinearHead(features.out_features, out)
        return ConvHead(width, features.prepool_size, out, norm_steps)

    model = MetaModel(features, head(meta_head), head(co_head) if co_head else None)
    if cfg.learn_inner_lr:
        rates = inner_rates(cfg, [n for n, _ in model.named_parameters()])
        model.inner_lr = nn.ParameterDict({
            rate_key(n): nn.Parameter(torch.full((inner_rate_steps(cfg),), rate)) for n, rate in rates.items()})
    return model


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

    - ``none``, ``noisy``: psi + linear theta.
    - ``cml``, ``cl``: psi + linear theta + phi (``cfg.co_learner``).
    - ``more``: no phi; extra capacity in the meta-learner's path, sized to CML's train-time count:
      ``width`` widens psi, ``blocks`` uses the conv co-learner's architecture as theta.
    """
    if cfg.spec.extra_capacity:
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
    BatchNorm (one or per step): weight 1, bias 0. Learnable inner rates keep the values they were built with.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in)
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, (nn.BatchNorm2d, StepNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def parameter_counts(cfg: Config, in_channels: int = 1) -> dict[str, int]:
    """Parameters at train time and at test time for ``cfg``'s base and method (one function for all).

    Test time drops phi for every method that evaluates with theta' (CML's co-learner is discarded); learned
    inner rates stay (test-time adaptation uses them). CML† needs theta to adapt and phi to predict, so its
    test count is the full train count.
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
    return counts
