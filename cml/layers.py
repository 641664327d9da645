"""Building blocks of every model: parameter roles, the BatchNorm policy, and the layers the task families'
models are made of. Nothing here reads a config: :mod:`cml.models` assembles these per run.

**Roles** (:mod:`cml.roles`): ``features.*`` is psi, ``head.*`` is theta, ``co_head.*`` is phi, ``inner_lr.*``
a base learner's meta-parameters that are not weights.

**BatchNorm policy** (stated once, here): every BatchNorm uses the statistics of the batch it sees, in training and
at test time (no running statistics), as the authors' code does. higher never writes running statistics back to
the module, so they could not be maintained through the inner loop anyway; batch statistics make adaptation, CKA
and t-SNE depend only on the task's own images.

**How it normalises** is an argument of every forward (``norm``, as ``step`` is), never a module-wide switch: the
per-task engines pass :func:`batch_norm_kernel` (PyTorch's kernel), the batched engine :func:`batch_norm_explicit`
(the same maths written out), because ``torch.func.vmap`` over the kernel gives wrong second-order
meta-gradients (README, "The batched engine").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


BN_EPS = 1e-5
#: ``norm(x, weight, bias, eps)``: how a norm layer normalises ``x: (N, C, H, W)`` with batch statistics.
NormFn = Callable[[Tensor, Tensor, Tensor, float], Tensor]


def batch_norm_kernel(x: Tensor, weight: Tensor, bias: Tensor, eps: float = BN_EPS) -> Tensor:
    """PyTorch's batch-norm kernel with batch statistics (what ``nn.BatchNorm2d(track_running_stats=False)``
    computes)."""
    return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)


def batch_norm_explicit(x: Tensor, weight: Tensor, bias: Tensor, eps: float = BN_EPS) -> Tensor:
    """Batch normalisation written out: per-channel mean and biased variance over (N, H, W) of ``x: (N, C, H,
    W)``, the same maths as :func:`batch_norm_kernel`."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


class BatchNorm(nn.BatchNorm2d):
    """One BatchNorm layer (weight and bias of shape ``(C,)``) under the policy above; ``norm`` says how."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=BN_EPS, track_running_stats=False)

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        return norm(x, self.weight, self.bias, self.eps)


class StepNorm(nn.Module):
    """Norm weights and biases per inner step, of shape ``(steps, C)``: step ``k`` normalises with row ``k``
    (steps beyond the last row use the last), with batch statistics as every norm layer here. MAML++'s per-step
    BatchNorm (:mod:`cml.bases.maml_pp`)."""

    def __init__(self, channels: int, steps: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(steps, channels))
        self.bias = nn.Parameter(torch.zeros(steps, channels))

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        k = min(step, self.weight.shape[0] - 1)
        return norm(x, self.weight[k], self.bias[k], BN_EPS)


#: Makes a block's norm layer for ``channels`` channels (a base learner may give its own: MAML++'s per-step rows).
NormLayer = Callable[[int], nn.Module]


def reset_norm_layers(model: nn.Module) -> None:
    """Weight 1 and bias 0 for every norm layer of ``model`` (modules named ``norm``, see :func:`is_norm`)."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.rsplit(".", 1)[-1] == "norm":
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


class ConvBlock(nn.Module):
    """conv3x3 -> norm layer (batch statistics) -> ReLU; pooling is applied by the caller."""

    def __init__(self, c_in: int, c_out: int, norm_layer: NormLayer = BatchNorm) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = norm_layer(c_out)

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        return torch.relu(self.norm(self.conv(x), step=step, norm=norm))


def pooled(size: int, times: int) -> int:
    """The side of a ``size`` map after ``times`` 2x2 poolings."""
    for _ in range(times):
        size //= 2
    return size


class Conv4(nn.Module):
    """Four blocks of conv3x3 -> BN -> ReLU -> max-pool 2 (Vinyals et al., 2016; Finn et al., 2017).

    ``forward`` returns every representation the heads and the diagnostics read: ``block1``..``block4``
    (after pooling), ``prepool`` (block 4 before its pooling, which the conv co-learner reads: ``prepool_channels``
    channels of side ``prepool_size``) and ``flat`` (block 4 pooled and flattened, which the linear heads read).
    Every image backbone has these keys and attributes (:class:`cml.resnet.ResNet12` too).
    """

    def __init__(self, in_channels: int, filters: int, image_size: int, norm_layer: NormLayer = BatchNorm) -> None:
        super().__init__()
        if pooled(image_size, 4) < 1:
            raise ValueError(f"image_size {image_size} is too small for four 2x2 poolings; use at least 16")
        self.block1 = ConvBlock(in_channels, filters, norm_layer)
        self.block2 = ConvBlock(filters, filters, norm_layer)
        self.block3 = ConvBlock(filters, filters, norm_layer)
        self.block4 = ConvBlock(filters, filters, norm_layer)
        self.filters = filters
        self.prepool_channels = filters
        self.prepool_size = pooled(image_size, 3)
        self.out_features = filters * pooled(image_size, 4) ** 2

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        h = x
        for i, block in enumerate((self.block1, self.block2, self.block3), start=1):
            h = F.max_pool2d(block(h, step, norm), 2)
            out[f"block{i}"] = h
        pre = self.block4(h, step, norm)  # (n, filters, s, s), s = image_size // 8
        out["prepool"] = pre
        out["block4"] = F.max_pool2d(pre, 2)
        out["flat"] = out["block4"].flatten(1)
        return out


class MLP(nn.Module):
    """The sinusoid feature extractor: 1 -> hidden -> hidden with ReLU (Finn et al., 2017)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(1, hidden)
        self.layer2 = nn.Linear(hidden, hidden)
        self.out_features = hidden

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> dict[str, Tensor]:
        h1 = torch.relu(self.layer1(x))
        h2 = torch.relu(self.layer2(h1))
        return {"layer1": h1, "layer2": h2, "flat": h2}


class LinearHead(nn.Module):
    """A linear layer on the flattened features."""

    def __init__(self, in_features: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out)

    def forward(self, feats: dict[str, Tensor], step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        return self.fc(feats["flat"])


class MLPHead(nn.Module):
    """One hidden layer with ReLU and a linear output on the flattened features: the CML paper's co-learner on
    graphs ("one hidden layer of 16 and a linear output", the GCN's width) and on the sinusoid (of 40)."""

    def __init__(self, in_features: int, hidden: int, out: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden)
        self.fc = nn.Linear(hidden, out)

    def forward(self, feats: dict[str, Tensor], step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        return self.fc(torch.relu(self.hidden(feats["flat"])))


class EmbeddingHead(nn.Module):
    """No head: the flattened features themselves, which a base learner turns into predictions from the support
    set (G-Meta's prototypical loss, :mod:`cml.bases.gmeta`). It has no parameters."""

    def forward(self, feats: dict[str, Tensor], step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        return feats["flat"]


#: The conv head's blocks by position (``block_a`` first): the authors' two-block co-learner keeps its names.
CONV_HEAD_BLOCKS = ("block_a", "block_b", "block_c", "block_d")


class ConvHead(nn.Module):
    """The conv co-learner: ``depth`` conv blocks on block 4's pre-pool map, the last one pooled, then a linear
    layer; ``depth`` 0 is the linear layer alone on the pre-pool map (the paper's Table 8, Conv(0)-Conv(4)). The
    authors' co-learner is ``depth`` 2. More-MAML's ``blocks`` variant, and theta with heads of the same
    structure (Table 7), use the same module as the meta-learner head."""

    def __init__(self, filters: int, prepool_size: int, out: int, norm_layer: NormLayer = BatchNorm,
                 depth: int = 2) -> None:
        super().__init__()
        if not 0 <= depth <= len(CONV_HEAD_BLOCKS):
            raise ValueError(f"a conv head has 0 to {len(CONV_HEAD_BLOCKS)} blocks, got {depth}")
        self.blocks = list(CONV_HEAD_BLOCKS[:depth])
        for name in self.blocks:
            setattr(self, name, ConvBlock(filters, filters, norm_layer))
        side = prepool_size // 2 if depth else prepool_size
        self.fc = nn.Linear(filters * side ** 2, out)

    def forward(self, feats: dict[str, Tensor], step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        h = feats["prepool"]  # (n, filters, s, s)
        for name in self.blocks:
            h = getattr(self, name)(h, step, norm)
        if self.blocks:
            h = F.max_pool2d(h, 2)
        return self.fc(h.flatten(1))


class MetaModel(nn.Module):
    """psi (``features``), theta (``head``), optionally phi (``co_head``) and a base learner's meta-parameters
    that are not weights (``inner_lr``: MAML++'s learnable inner step sizes).

    ``forward(x, step=k, norm=fn)`` returns ``(meta_out, co_out)``, ``co_out`` being None without a co-learner;
    with ``return_features=True`` it returns ``(meta_out, co_out, features)``. ``step`` is the inner step whose
    per-step norm row to use (ignored without per-step BatchNorm); ``norm`` how norm layers normalise.
    """

    def __init__(self, features: nn.Module, head: nn.Module, co_head: nn.Module | None,
                 inner_lr: nn.ParameterDict | None = None) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.co_head = co_head
        self.inner_lr = inner_lr

    def forward(self, x: Tensor, return_features: bool = False, step: int = 0, norm: NormFn = batch_norm_kernel):
        feats = self.features(x, step=step, norm=norm)
        meta = self.head(feats, step=step, norm=norm)
        co = self.co_head(feats, step=step, norm=norm) if self.co_head is not None else None
        if return_features:
            return meta, co, feats
        return meta, co
