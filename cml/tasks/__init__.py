"""The task table: every task a run can name (``--task``), grouped in families, each row holding its behaviour.

A *family* (:class:`TaskFamily`, one module of this package: ``sinusoid.py``, ``image.py``, ``graph.py``) says what
its tasks are: their loss and metric, how their data loads and their tasks are sampled, which feature extractor
reads them, which records the recorder writes for them, which config combinations they refuse, and their
``quick``/``paper`` presets. A *task* (:class:`TaskEntry`) is one name of a family with its data set's own facts
beside its loader: channels, whether it needs ``--data``, the image size the paper uses it at.

The config, the model builder, the trainer, the CLI, sweeps and figures read this table; no module outside it
compares a task's name. A new image data set is one :class:`TaskEntry` in ``image.py``; a new family is one file
here defining ``FAMILY`` and ``TASKS``.

The CLI reads the table to build its parser before torch is imported (a few seconds here): behaviour that needs
torch, the data modules or the models imports them inside the hook, for start-up time only.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..config import Config
    from ..layers import NormLayer
    from ..meta import EvalResult


@dataclass(frozen=True)
class TaskFamily:
    """One family of tasks and its behaviour.

    Attributes:
        name: ``sinusoid``, ``image`` or ``graph``.
        help_group: how help texts name the family's tasks together (``image tasks``).
        field_label: how a field's help names the family when the field is read for it alone (``graph task``).
        classification: N-way classification (accuracies, ``ways``), else regression.
        metric: the test record's main key (``acc`` or ``mse``); ``higher_is_better`` says which way is good.
        norm_layers: its models have BatchNorm layers (MAML++'s per-step rows, a base's ``image`` presets).
        width_field: the config field that sets the feature extractor's width (``filters`` or ``hidden``).
        end_record: the record file the recorder writes for it at the end of training beside
            ``representations.json`` (``features.npz``: t-SNE of features; ``fits.npz``: fitted curves).
        summary_fields: config fields of its own that a report lists beside the common ones.
        eval_folders: ``evaluate --data FOLDER`` applies (a folder of class folders of images).
        presets: per preset name, the config values the family sets.
        loss: ``loss(out, y)``: the task loss.
        results: ``results(eval_result)``: the test record's ``(key, per-task values)`` pairs.
        check: ``check(cfg)``: raises :class:`cml.config.ConfigError` on a combination the family refuses.
        load: ``load(cfg)``: the data a run samples from (None when tasks are generated).
        in_channels: ``in_channels(data)``: the width of one input row (image channels; a node's features).
        sampler: ``sampler(cfg, data, split, generator, ways, shots, queries, device)``: a task sampler.
        features: ``features(cfg, in_channels, width, norm_layer)``: the feature extractor psi.
        describe: ``describe(cfg)``: the setting in words (``fonts, 5-way 1-shot``).
        data_summary: ``data_summary(entry, data, image_size, seed)``: what ``cml data info`` prints.
    """

    name: str
    help_group: str
    field_label: str
    classification: bool
    metric: str
    higher_is_better: bool
    norm_layers: bool
    width_field: str
    end_record: str
    summary_fields: tuple[str, ...]
    eval_folders: bool
    presets: dict[str, dict[str, Any]]
    loss: Callable[["Tensor", "Tensor"], "Tensor"]
    results: Callable[["EvalResult"], list[tuple[str, list[float]]]]
    check: Callable[["Config"], None]
    load: Callable[["Config"], Any]
    in_channels: Callable[[Any], int]
    sampler: Callable[..., Any]
    features: Callable[["Config", int, int, "NormLayer"], "nn.Module"]
    describe: Callable[["Config"], str]
    data_summary: Callable[["TaskEntry", "str | None", int, int], str]

    def outputs(self, cfg: "Config") -> int:
        """The heads' outputs: ``ways`` classes, or one regression target."""
        return cfg.ways if self.classification else 1


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


def classification_results(res: "EvalResult") -> list[tuple[str, list[float]]]:
    """A classification test record: accuracy with theta' and with phi (CML†), and the query loss."""
    return [("acc", res.meta_acc), ("acc_dagger", res.co_acc), ("loss", res.meta_loss)]


def cross_entropy(out: "Tensor", y: "Tensor") -> "Tensor":
    from torch.nn import functional as F  # torch: see the package docstring

    return F.cross_entropy(out, y)


def classification_check(cfg: "Config") -> None:
    """What every classification family refuses."""
    if cfg.ways < 2:
        raise ConfigError(f"ways must be at least 2 for classification (one class is always right), got {cfg.ways}")


def shape_of(cfg: "Config") -> str:
    """``5-way 1-shot``."""
    return f"{cfg.ways}-way {cfg.shots}-shot"


def no_image_options(cfg: "Config", what: str) -> None:
    """The image-only options a family without images refuses (conv heads, rotations)."""
    if cfg.co_learner == "conv":
        raise ConfigError(f"co_learner 'conv' needs an image task; {what} uses co_learner 'linear'")
    if cfg.more_capacity == "blocks":
        raise ConfigError(f"more_capacity 'blocks' needs an image task; use 'width' for {what}")
    if cfg.rotations:
        raise ConfigError(f"rotations apply to image tasks, not {what}")


def _discover() -> dict[str, TaskEntry]:
    found: dict[str, TaskEntry] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        family, tasks = getattr(module, "FAMILY", None), getattr(module, "TASKS", None)
        if not isinstance(family, TaskFamily) or not isinstance(tasks, tuple):
            raise TypeError(f"cml/tasks/{info.name}.py defines no FAMILY = TaskFamily(...) and TASKS = (...)")
        for entry in tasks:
            if entry.name in found:
                raise ValueError(f"two tasks are named {entry.name!r}")
            found[entry.name] = entry
    # The order help texts and errors list them in: regression, images, graphs.
    order = ["sinusoid", "image", "graph"]
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[1].family.name)
                       if kv[1].family.name in order else len(order)))


TASK_TABLE: dict[str, TaskEntry] = _discover()
TASKS: tuple[str, ...] = tuple(TASK_TABLE)
FAMILIES: dict[str, TaskFamily] = {e.family.name: e.family for e in TASK_TABLE.values()}


def get_task(name: str) -> TaskEntry:
    """The table entry of task ``name``.

    Raises:
        KeyError: naming the known tasks.
    """
    try:
        return TASK_TABLE[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


__all__ = ["FAMILIES", "TASKS", "TASK_TABLE", "TaskEntry", "TaskFamily", "get_task"]
