"""Few-shot image classification: N-way K-shot tasks over the classes of an image data set, Conv-4 or ResNet-12
(``backbone``; BatchNorm under the policy of :mod:`cml.layers`), cross-entropy; t-SNE features are its
end-of-training record.

Each data set is one :class:`TaskEntry` below, its facts beside its loader (README, "Data sets", says where to get
each and the layouts expected):

* ``omniglot``: Omniglot from the official zips (:mod:`cml.data.omniglot`), 1 channel.
* ``fonts``: characters rendered from matplotlib's fonts, no download (:mod:`cml.data.fonts`), 1 channel.
* ``folder``: any image folder, ``root/{train,val,test}/<class>/*.png|jpg`` or ``root/<class>/...``; channels
  detected from the first image.
* ``miniimagenet``: Ravi & Larochelle's split, pickle or image-folder release, RGB, 84 px in the paper.
* ``cifar-fs``, ``fc100``: CIFAR-100 with Bertinetto et al.'s and Oreshkin et al.'s splits, RGB, 32 px.
* ``flower``: VGG Flower (Oxford 102) with Meta-Dataset's class split, RGB, 32 px in the paper.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError
from ..records import FEATURES
from . import Classification, TaskEntry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..config import Config
    from ..layers import NormLayer


#: The second backbone (the config's ``backbone``; the first, ``conv4``, is the default) and ResNet-12's standard
#: widths (TADAM, MetaOptNet).
RESNET12 = "resnet12"
RESNET12_WIDTHS: tuple[int, ...] = (64, 160, 320, 640)
#: Four 2x2 poolings in either backbone: the smallest image side they leave a pixel of.
MIN_IMAGE_SIZE = 16


def _lazy(module: str, name: str) -> Callable[[], Callable[..., Any]]:
    """The function ``module.name``, imported when first asked for (torch: see the package docstring)."""
    return lambda: getattr(importlib.import_module(module), name)


class Image(Classification):
    name = "image"
    help_group = field_label = "image tasks"
    norm_layers = True
    width_field = "filters"
    co_learners = ("linear", "conv")
    end_record = FEATURES
    eval_folders = True
    presets = {
        # The authors' released settings for images: Conv-4/64, alpha 0.5, one inner step, meta-batch 4,
        # 15 queries, Adam 1e-3, 30,000 steps, gamma 1.0, conv co-learner.
        "paper": dict(filters=64, inner_lr=0.5, inner_steps=1, test_inner_steps=1, meta_batch=4, queries=15,
                      meta_lr=1e-3, steps=30000, gamma=1.0, co_learner="conv", val_interval=500, val_tasks=300,
                      test_tasks=600, checkpoint_interval=500, log_interval=50),
        # Minutes on 2 CPU cores.
        "quick": dict(filters=32, inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch=4, queries=5,
                      meta_lr=2e-3, steps=600, gamma=1.0, co_learner="conv", val_interval=200, val_tasks=50,
                      test_tasks=600, checkpoint_interval=200, log_interval=20),
    }
    # What ``--backbone resnet12`` sets on top of the preset above (cml.config.preset). paper: the paper's Table 9
    # (MAML and CML on ResNet-12, CIFAR-FS, VGG Flower, FC100) states no setting of its own, so it is the image
    # protocol above (alpha 0.5 on every tensor, one inner step, meta-batch 4, 15 queries, Adam 1e-3, 30,000 steps,
    # gamma 1, the conv co-learner on block 4's pre-pool map) on the standard widths; 0.5 is also the inner step
    # of BOIL's code (the code line the authors' code comes from), which runs its ResNet with the same step
    # arguments as its 4-conv. quick: a quarter of the widths, for minutes on a CPU.
    backbone_presets = {
        RESNET12: {"paper": dict(backbone=RESNET12, resnet_widths=RESNET12_WIDTHS),
                   "quick": dict(backbone=RESNET12, resnet_widths=(16, 40, 80, 160))},
    }

    def load(self, cfg: "Config"):
        from ..data import load_splits

        # The data set is a fixed artefact (the fonts data set's seed-0 rendering), whatever the run's seed: runs
        # with different seeds differ in initialisation and task order, not in their data.
        options: dict[str, Any] = {} if cfg.split == "default" else {"split": cfg.split}
        return load_splits(cfg.task, cfg.data, cfg.image_size, **options)

    def check(self, cfg: "Config") -> None:
        super().check(cfg)
        if cfg.backbone == RESNET12:
            if len(cfg.resnet_widths) != 4 or min(cfg.resnet_widths) < 1:
                raise ConfigError(f"resnet_widths must be four positive channel counts (one per block), got "
                                  f"{cfg.resnet_widths}; e.g. --resnet-widths 64,160,320,640")
            if cfg.image_size < MIN_IMAGE_SIZE:
                raise ConfigError(f"image_size {cfg.image_size} is too small for ResNet-12's four 2x2 poolings; use "
                                  f"at least {MIN_IMAGE_SIZE}")
        elif tuple(cfg.resnet_widths) != RESNET12_WIDTHS:
            raise ConfigError(f"resnet_widths is read by backbone {RESNET12!r} only (this run's is {cfg.backbone!r}); "
                              f"remove it or add --backbone {RESNET12}")

    def width(self, cfg: "Config") -> int:
        """Conv-4's ``filters``; ResNet-12's last block's channels (More-MAML widens every block by one factor,
        :func:`cml.resnet.scaled_widths`)."""
        return cfg.resnet_widths[-1] if cfg.backbone == RESNET12 else cfg.filters

    def in_channels(self, splits: Any) -> int:
        return int(splits.train.images(0).shape[1])

    def sampler(self, cfg: "Config", splits: Any, split: str, gen: "torch.Generator", ways: int, shots: int,
                queries: int, device: "torch.device | None" = None):
        from ..data.base import TaskSampler

        return TaskSampler(splits[split], ways, shots, queries, gen, rotations=cfg.rotations and split == "train",
                           split=split, device=device)

    def features(self, cfg: "Config", in_channels: int, width: int, norm_layer: "NormLayer") -> "nn.Module":
        """Conv-4 ``width`` filters wide, or ResNet-12 with ``resnet_widths`` scaled to a last block of ``width``
        channels (the config's own widths when ``width`` is :meth:`width`)."""
        from ..layers import Conv4, pooled

        if pooled(cfg.image_size, 4) < 1:
            raise ConfigError(f"image_size {cfg.image_size} is too small for four 2x2 poolings; use at least 16")
        if cfg.backbone == RESNET12:
            from ..resnet import ResNet12, scaled_widths

            return ResNet12(in_channels, scaled_widths(cfg.resnet_widths, width), cfg.image_size, norm_layer)
        return Conv4(in_channels, width, cfg.image_size, norm_layer)

    def example_shape(self, cfg: "Config", in_channels: int) -> tuple[int, ...]:
        return (in_channels, cfg.image_size, cfg.image_size)

    def data_summary(self, entry: TaskEntry, data: str | None, image_size: int, seed: int) -> str:
        from ..data import load_splits

        return load_splits(entry.name, data, image_size, seed=seed).summary()


FAMILY = Image()
_DATA = "cml.data"
TASKS = (
    TaskEntry("omniglot", FAMILY, "Omniglot (official zips; `cml data download omniglot`)", needs_data=True,
              loader=_lazy("cml.data.omniglot", "load_omniglot"),
              downloader=_lazy("cml.data.omniglot", "download_omniglot"), splits=("lake", "vinyals")),
    TaskEntry("fonts", FAMILY, "glyphs rendered from matplotlib's fonts, split by script (no download)",
              needs_data=False, loader=_lazy("cml.data.fonts", "load_fonts"),
              no_download="fonts needs no download: it is rendered locally from the fonts matplotlib ships (on first "
                          "use, then cached); `python -m cml data info --task fonts` renders it and prints its splits"),
    TaskEntry("folder", FAMILY, "any folder of class folders of images", needs_data=True,
              loader=_lazy(_DATA, "load_folder")),
    TaskEntry("miniimagenet", FAMILY, "MiniImagenet (Ravi & Larochelle's split)", needs_data=True, channels=3,
              rgb=True, paper_image_size=84, loader=_lazy("cml.data.benchmarks", "load_miniimagenet")),
    TaskEntry("cifar-fs", FAMILY, "CIFAR-FS (Bertinetto et al.'s CIFAR-100 split)", needs_data=True, channels=3,
              rgb=True, paper_image_size=32, loader=_lazy("cml.data.benchmarks", "load_cifar_fs")),
    TaskEntry("fc100", FAMILY, "FC100 (Oreshkin et al.'s CIFAR-100 split)", needs_data=True, channels=3, rgb=True,
              paper_image_size=32, loader=_lazy("cml.data.benchmarks", "load_fc100")),
    # 32 px as the paper's protocol says (and BOIL's code, which the authors' comes from, sizes its VGG Flower
    # heads for 32 px images), in Tables 2 and 9 alike.
    TaskEntry("flower", FAMILY, "VGG Flower (Meta-Dataset's split)", needs_data=True, channels=3, rgb=True,
              paper_image_size=32, loader=_lazy("cml.data.benchmarks", "load_flower")),
)
