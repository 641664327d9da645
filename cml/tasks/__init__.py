"""The task table: every task a run can name (``--task``), grouped in families, each row holding its behaviour.

A *family* (a :class:`TaskFamily` subclass, one module of this package: ``sinusoid.py``, ``image.py``,
``graph.py``) says what its tasks are: their loss and metric, how their data loads and their tasks are sampled,
which feature extractor reads them, which records the recorder writes for them, which config combinations they
refuse, and their ``quick``/``paper`` presets. A *task* (:class:`TaskEntry`) is one name of a family with its data
set's own facts beside its loader: channels, whether it needs ``--data``, the image size the paper uses it at.

The config, the model builder, the trainer, the CLI, sweeps and figures read this table; no module outside it
compares a task's name (``tests/test_layering.py``). A new image data set is one :class:`TaskEntry` in
``image.py``; a new family is one file here defining ``FAMILY`` (an instance of its class) and ``TASKS``.

The CLI reads the table to build its parser before torch is imported (a few seconds here): behaviour that needs
torch, the data modules or the models imports them inside the method, for start-up time only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from ..errors import ConfigError
from ..registry import lookup, ordered, row_modules

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..config import Config
    from ..layers import NormLayer
    from ..meta import EvalResult


class TaskFamily(ABC):
    """One family of tasks: its facts (class attributes) and its behaviour (methods).

    Attributes:
        name: ``sinusoid``, ``image`` or ``graph``.
        help_group: how help texts name the family's tasks together (``image tasks``).
        field_label: how a field's help names the family when the field is read for it alone (``graph task``).
        classification: N-way classification (accuracies, ``ways``), else regression.
        metric: the test record's main key (``acc`` or ``mse``); ``higher_is_better`` says which way is good.
        norm_layers: its models have BatchNorm layers (MAML++'s per-step rows, a base's image presets).
        width_field: the config field that sets the feature extractor's width (``filters`` or ``hidden``).
        co_learners: the co-learner kinds (``co_learner``) its models can carry; the config refuses the others.
        end_record: the record file the recorder writes for it at the end of training beside
            ``representations.json`` (``features.npz``: t-SNE of features; ``fits.npz``: fitted curves).
        summary_fields: config fields of its own that a report lists beside the common ones.
        eval_folders: ``evaluate --data FOLDER`` applies (a folder of class folders of images).
        presets: per preset name, the config values the family sets.
        backbone_presets: per backbone (the config's ``backbone``) and preset name, the values a run with that
            backbone sets on top of ``presets`` (images: ResNet-12's widths; the paper's Table 9).
    """

    name: ClassVar[str]
    help_group: ClassVar[str]
    field_label: ClassVar[str]
    classification: ClassVar[bool]
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    norm_layers: ClassVar[bool] = False
    width_field: ClassVar[str]
    co_learners: ClassVar[tuple[str, ...]] = ("linear",)
    end_record: ClassVar[str]
    summary_fields: ClassVar[tuple[str, ...]] = ()
    eval_folders: ClassVar[bool] = False
    presets: ClassVar[dict[str, dict[str, Any]]]
    backbone_presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}

    def outputs(self, cfg: "Config") -> int:
        """The heads' outputs: ``ways`` classes, or one regression target."""
        return cfg.ways if self.classification else 1

    def check(self, cfg: "Config") -> None:
        """Raises :class:`cml.errors.ConfigError` on a combination the family refuses (by default, none)."""
        return None

    def width(self, cfg: "Config") -> int:
        """The feature extractor's width (the ``width`` :meth:`features` is built at): the value of
        ``width_field``."""
        return int(getattr(cfg, self.width_field))

    def paper_dataset(self, config: Mapping[str, Any]) -> str | None:
        """The data set a run with ``config`` (a ``config.json``) is on, by the paper's name (:mod:`cml.paper`):
        its task, for a family whose tasks are data sets."""
        return config.get("task")

    @abstractmethod
    def loss(self, out: "Tensor", y: "Tensor") -> "Tensor":
        """The task loss."""

    @abstractmethod
    def results(self, res: "EvalResult") -> list[tuple[str, list[float]]]:
        """The test record's ``(key, per-task values)`` pairs."""

    @abstractmethod
    def load(self, cfg: "Config") -> Any:
        """The data a run samples from (None when tasks are generated)."""

    @abstractmethod
    def in_channels(self, data: Any) -> int:
        """The width of one input row of ``data`` (image channels; a node's features)."""

    @abstractmethod
    def sampler(self, cfg: "Config", data: Any, split: str, gen: "torch.Generator", ways: int, shots: int,
                queries: int, device: "torch.device | None" = None) -> Any:
        """A task sampler of ``split`` drawing from ``gen``."""

    @abstractmethod
    def features(self, cfg: "Config", in_channels: int, width: int, norm_layer: "NormLayer") -> "nn.Module":
        """The feature extractor psi."""

    def example_shape(self, cfg: "Config", in_channels: int) -> tuple[int, ...]:
        """The shape of one example as psi reads it (without the batch axis), for the memory estimate of
        :mod:`cml.memory`: by default one row of ``in_channels`` values (a sinusoid's x; a graph's node, a lower
        bound of its subgraph)."""
        return (in_channels,)

    @abstractmethod
    def describe(self, cfg: "Config") -> str:
        """The setting in words (``fonts, 5-way 1-shot``)."""

    @abstractmethod
    def data_summary(self, entry: "TaskEntry", data: str | None, image_size: int, seed: int) -> str:
        """What ``cml data info`` prints."""


class Classification(TaskFamily):
    """What every N-way classification family shares: cross-entropy, accuracies, at least two ways."""

    classification = True
    metric = "acc"
    higher_is_better = True

    def loss(self, out: "Tensor", y: "Tensor") -> "Tensor":
        from torch.nn import functional as F  # torch: see the package docstring

        return F.cross_entropy(out, y)

    def results(self, res: "EvalResult") -> list[tuple[str, list[float]]]:
        """The accuracy of every evaluation protocol measured (``acc`` with theta'; ``acc_dagger``,
        ``acc_dagger_eq9``, ``acc_dagger_noadapt`` with phi: :data:`cml.meta.PROTOCOLS`), and theta's query
        loss."""
        return [(f"acc{key}", values) for key, values in res.acc.items()] + [("loss", res.meta_loss)]

    def check(self, cfg: "Config") -> None:
        if cfg.ways < 2:
            raise ConfigError(f"ways must be at least 2 for classification (one class is always right), got "
                              f"{cfg.ways}")

    def describe(self, cfg: "Config") -> str:
        return f"the test split of {cfg.task}, {shape_of(cfg)}"


@dataclass(frozen=True)
class TaskEntry:
    """One task name and its data set's facts, beside its loader.

    Attributes:
        name: the config value (``--task``).
        family: its family.
        summary: one line for help texts.
        needs_data: a run needs ``--data PATH`` (else the data is generated, or the path optional).
        channels: input channels when no data is at hand (``cml params``); the loaded data's own otherwise.
        rgb: the images are RGB (MAML++'s MiniImagenet-style presets apply).
        paper_image_size: the side the paper uses the images at (``--preset paper``); None: the family's.
        loader: ``loader()`` -> the data set's load function (imported on first use), or None.
        downloader: ``downloader()`` -> its download function ``download(root) -> files``, or None.
        no_download: why ``cml data download`` does not fetch it, when that is not "get it from its source".
        splits: the ``--split`` values its loader takes, its own (what ``default`` reads as) first; empty: the
            data set has one split.
    """

    name: str
    family: TaskFamily
    summary: str
    needs_data: bool
    channels: int = 1
    rgb: bool = False
    paper_image_size: int | None = None
    loader: Callable[[], Callable[..., Any]] | None = field(default=None, compare=False)
    downloader: Callable[[], Callable[..., Any]] | None = field(default=None, compare=False)
    no_download: str | None = None
    splits: tuple[str, ...] = ()


def shape_of(cfg: "Config") -> str:
    """``5-way 1-shot``."""
    return f"{cfg.ways}-way {cfg.shots}-shot"


def no_image_options(cfg: "Config", what: str) -> None:
    """The image-only options a family without images refuses (image backbones, blocks capacity, rotations; the
    conv co-learner is refused with the family's own kinds, :attr:`TaskFamily.co_learners`)."""
    from ..paper import DEFAULT_BACKBONE

    if cfg.backbone != DEFAULT_BACKBONE:
        raise ConfigError(f"backbone {cfg.backbone!r} is an image backbone; {what} has its own model (remove "
                          f"--backbone)")
    if cfg.more_capacity == "blocks":
        raise ConfigError(f"more_capacity 'blocks' needs an image task; use 'width' for {what}")
    if cfg.rotations:
        raise ConfigError(f"rotations apply to image tasks, not {what}")


def _discover() -> dict[str, TaskEntry]:
    found: dict[str, TaskEntry] = {}
    for module in row_modules(__name__, __path__, "TASKS"):
        if not isinstance(getattr(module, "FAMILY", None), TaskFamily):
            raise TypeError(f"{module.__name__} defines no FAMILY, an instance of its TaskFamily")
        for entry in module.TASKS:
            if entry.name in found:
                raise ValueError(f"two tasks are named {entry.name!r}")
            found[entry.name] = entry
    # The order help texts and errors list them in: regression, images, graphs, then other families.
    families = ordered(list(dict.fromkeys(e.family.name for e in found.values())), ["sinusoid", "image", "graph"])
    return dict(sorted(found.items(), key=lambda kv: families.index(kv[1].family.name)))


TASK_TABLE: dict[str, TaskEntry] = _discover()
TASKS: tuple[str, ...] = tuple(TASK_TABLE)
FAMILIES: dict[str, TaskFamily] = {e.family.name: e.family for e in TASK_TABLE.values()}


def get_task(name: str) -> TaskEntry:
    """The table entry of task ``name``.

    Raises:
        KeyError: naming the known tasks.
    """
    return lookup(TASK_TABLE, name, "task")


__all__ = ["Classification", "FAMILIES", "TASKS", "TASK_TABLE", "TaskEntry", "TaskFamily", "get_task"]
