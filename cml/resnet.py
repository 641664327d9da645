"""ResNet-12, the second image backbone (``--backbone resnet12``), under the BatchNorm policy of :mod:`cml.layers`.

The few-shot ResNet-12 of TADAM and MetaOptNet, as BOIL's MAML code uses it: four residual blocks, each

    x -> [conv3x3 -> norm -> LeakyReLU(0.1)] -> [conv3x3 -> norm -> LeakyReLU(0.1)] -> [conv3x3 -> norm]
      + [conv1x1 -> norm](x)  -> LeakyReLU(0.1) -> max-pool 2x2,

the last norm before the residual add, a 1x1 conv + norm shortcut in every block (every block changes the width
and pools), widths 64-160-320-640 by default (:data:`cml.tasks.image.RESNET12_WIDTHS`). Convs have no bias: the
norm after each subtracts its batch mean, so a bias would have zero gradient (a dead parameter in the counts).
Conv weights are initialised Kaiming-normal with ``fan_out`` and the leaky-ReLU gain, as MetaOptNet and BOIL do
(:func:`cml.models.init_parameters` reads :class:`ResNetConv`); under batch statistics the weight scale does not
change the forward but does set how far one inner step of a given size moves it, so the standard's init goes with
the standard's step size.

Every norm layer is the block's ``norm_layer`` (MAML++'s per-step rows, :class:`cml.layers.StepNorm`) and
normalises as the forward's ``norm=`` says (PyTorch's kernel on the per-task engines, the explicit formula inside
the batched engine's ``vmap``). Parameter names: ``block{1-4}.layer{1-3}.conv.weight``,
``block{1-4}.layer{1-3}.norm.{weight,bias}``, ``block{1-4}.shortcut.{conv,norm}...``: a norm layer is a module
named ``norm`` (:func:`cml.roles.is_norm`), and the recorders' blocks are ``block1``..``block4``
(:func:`cml.recording.psi_block`).

DropBlock (MetaOptNet's regulariser on blocks 3-4) is not implemented: it draws a random mask in every forward,
which would need a generator per task inside the engines (``vmap`` runs with ``randomness="error"``) and would
make the meta-gradient a random function of the parameters, so the float64 parity tests could not hold; BOIL's
MAML ResNet, the code line the CML authors' code comes from, builds it with a drop rate of 0 anyway.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from .layers import BatchNorm, NormFn, NormLayer, batch_norm_kernel, pooled

#: The negative slope of every LeakyReLU (MetaOptNet's and BOIL's).
SLOPE = 0.1
#: ResNet-12's blocks, each ending in a 2x2 max-pooling: an image must survive four.
BLOCKS = 4
MIN_IMAGE_SIZE = 2**BLOCKS


class ResNetConv(nn.Conv2d):
    """A ResNet-12 conv (no bias), initialised Kaiming-normal ``fan_out`` by :func:`cml.models.init_parameters`."""


class ConvNorm(nn.Module):
    """conv (3x3 padded, or 1x1) -> norm layer (batch statistics)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, norm_layer: NormLayer = BatchNorm) -> None:
        super().__init__()
        self.conv = ResNetConv(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.norm = norm_layer(c_out)

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        return self.norm(self.conv(x), step=step, norm=norm)


class ResBlock(nn.Module):
    """One residual block; the forward returns its map *before* the block's pooling (the caller pools, so that
    block 4's pre-pool map can feed the conv co-learner)."""

    def __init__(self, c_in: int, c_out: int, norm_layer: NormLayer = BatchNorm) -> None:
        super().__init__()
        self.layer1 = ConvNorm(c_in, c_out, 3, norm_layer)
        self.layer2 = ConvNorm(c_out, c_out, 3, norm_layer)
        self.layer3 = ConvNorm(c_out, c_out, 3, norm_layer)
        self.shortcut = ConvNorm(c_in, c_out, 1, norm_layer)

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> Tensor:
        h = F.leaky_relu(self.layer1(x, step, norm), SLOPE)
        h = F.leaky_relu(self.layer2(h, step, norm), SLOPE)
        h = self.layer3(h, step, norm)  # no activation before the add
        return F.leaky_relu(h + self.shortcut(x, step, norm), SLOPE)


def check_widths(widths: Sequence[int]) -> None:
    """Raises ValueError unless ``widths`` is four positive channel counts."""
    if len(widths) != BLOCKS or any(int(w) < 1 for w in widths):
        raise ValueError(f"ResNet-12 needs four positive block widths, got {tuple(widths)}")


def scaled_widths(widths: Sequence[int], last: int) -> tuple[int, ...]:
    """``widths`` scaled by one factor so that the last block has ``last`` channels (each rounded, at least 1):
    how More-MAML widens a ResNet-12 (``scaled_widths((64, 160, 320, 640), 800)`` is ``(80, 200, 400, 800)``)."""
    check_widths(widths)
    factor = last / widths[-1]
    return tuple(max(1, round(w * factor)) for w in widths[:-1]) + (int(last),)


class ResNet(nn.Module):
    """:class:`ResBlock` s with 2x2 max-pooling after each, one block per width: ResNet-12 is four
    (:class:`ResNet12`); fewer make the small networks the finite-difference tests can afford.

    ``forward`` returns the representations the heads and the recorders read, with the same keys as
    :class:`cml.layers.Conv4`: ``block1``..``blockN`` (after pooling), ``prepool`` (the last block before its
    pooling: the conv co-learner's input, ``(n, widths[-1], s, s)`` with ``s = image_size // 2**(N-1)``) and
    ``flat`` (the last block pooled and flattened: the linear heads' input).

    Args:
        in_channels: image channels.
        widths: the blocks' channels, one per block.
        image_size: the side of the square images (at least ``2**N``: N poolings).
        norm_layer: makes each norm layer (:data:`cml.layers.NormLayer`).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], image_size: int,
                 norm_layer: NormLayer = BatchNorm) -> None:
        super().__init__()
        w = tuple(int(v) for v in widths)
        if not w or min(w) < 1:
            raise ValueError(f"a ResNet needs one or more positive block widths, got {tuple(widths)}")
        if pooled(image_size, len(w)) < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(w)} 2x2 poolings; use at least "
                             f"{2 ** len(w)}")
        for i, (c_in, c_out) in enumerate(zip((in_channels,) + w[:-1], w), start=1):
            self.add_module(f"block{i}", ResBlock(c_in, c_out, norm_layer))
        self.widths = w
        self.prepool_channels = w[-1]
        self.prepool_size = pooled(image_size, len(w) - 1)
        self.out_features = w[-1] * pooled(image_size, len(w)) ** 2

    def forward(self, x: Tensor, step: int = 0, norm: NormFn = batch_norm_kernel) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        blocks = list(self.children())
        h = x
        for i, block in enumerate(blocks[:-1], start=1):
            h = F.max_pool2d(block(h, step, norm), 2)
            out[f"block{i}"] = h
        pre = blocks[-1](h, step, norm)  # (n, widths[-1], s, s)
        out["prepool"] = pre
        out[f"block{len(blocks)}"] = F.max_pool2d(pre, 2)
        out["flat"] = out[f"block{len(blocks)}"].flatten(1)
        return out


class ResNet12(ResNet):
    """ResNet-12: four residual blocks of three 3x3 convs (the twelve of its name; the 1x1 shortcuts are not
    counted), ``widths`` four channel counts (the standard's 64-160-320-640 by default in the config)."""

    def __init__(self, in_channels: int, widths: Sequence[int], image_size: int,
                 norm_layer: NormLayer = BatchNorm) -> None:
        check_widths(widths)
        if pooled(image_size, BLOCKS) < 1:
            raise ValueError(f"image_size {image_size} is too small for ResNet-12's four 2x2 poolings; use at least "
                             f"{MIN_IMAGE_SIZE}")
        super().__init__(in_channels, widths, image_size, norm_layer)
