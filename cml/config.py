"""The run configuration: one typed, validated dataclass, and the ``quick`` and ``paper`` presets.

The resolved config is written to every run folder (``config.json``) and into every checkpoint, so a run
can always be told apart from another and resumed with exactly the settings it started with.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("maml", "cml", "noisy-maml", "more-maml", "cl")
TASKS = ("sinusoid", "omniglot", "fonts", "folder", "miniimagenet", "cifar-fs", "fc100", "flower")
CO_LEARNERS = ("linear", "conv")
BACKENDS = ("higher", "func")
PRESETS = ("quick", "paper")
NOISE_MODES = ("absolute", "relative")
MORE_CAPACITIES = ("width", "blocks")
DEVICES = ("cpu", "cuda", "auto")
#: The allowed values of every enumerated field: checked by ``Config`` and listed by the CLI's ``--help``.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "method": METHODS, "task": TASKS, "co_learner": CO_LEARNERS, "backend": BACKENDS, "noise_mode": NOISE_MODES,
    "more_capacity": MORE_CAPACITIES, "device": DEVICES,
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Field names are the CLI's flag names (``--inner-lr`` sets inner_lr).

    The Attributes section below is the one description of each field: ``python -m cml train --help`` prints
    it for every flag (:mod:`cml.fieldhelp`), with the presets' defaults and :data:`FIELD_CHOICES`.

    Attributes:
        method: the meta-learning method (README, "Methods").
        task: ``sinusoid`` regression or a few-shot image data set (README, "Data sets").
        data: path of the data set's root (None for ``sinusoid``; for ``fonts``, an optional cache folder).
        ways, shots, queries: N-way K-shot with Q queries per class (regression: ``shots`` support points,
            ``queries`` query points).
        image_size: side of the square input images.
        filters: channels of every Conv-4 block.
        hidden: width of the sinusoid MLP's hidden layers.
        co_learner: ``linear`` (a second linear head) or ``conv`` (two conv blocks on block 4's pre-pool map,
            then a linear layer, as in the authors' code). Used by ``cml`` and ``cl``; ``more-maml`` is sized
            against it.
        gamma: weight of the co-learner's loss in the outer objective.
        inner_lr: the inner-loop SGD step (alpha).
        inner_steps: inner SGD steps during meta-training.
        test_inner_steps: inner SGD steps at validation and test time.
        meta_lr: Adam's learning rate (beta).
        meta_batch: tasks per outer step.
        steps: outer steps.
        first_order: drop the second-order terms of the meta-gradient (FOMAML-style) for every method.
        noise_std: noisy-maml's Gaussian noise scale sigma.
        noise_mode: ``absolute`` (noise ~ N(0, sigma^2) per element) or ``relative`` (per tensor, noise with
            expected norm sigma * ||grad||: element std sigma * ||grad|| / sqrt(numel)).
        more_capacity: how more-maml gets its extra parameters: ``width`` (wider backbone) or ``blocks``
            (the co-learner's conv blocks placed in the meta-learner's path; image tasks with a conv co-learner).
        rotations: rotate each sampled class by a random multiple of 90 degrees (Omniglot augmentation).
        split: data-set split option passed to the loader (e.g. Omniglot ``lake`` or ``vinyals``).
        backend: ``higher`` (the engine) or ``func`` (the independent torch.func implementation).
        seed: seeds every generator of the run.
        log_interval: outer steps between ``metrics.jsonl`` lines.
        val_interval: outer steps between validations (0: only at the end).
        val_tasks: tasks per validation.
        test_tasks: tasks in the final test (>= 600 for classification in the paper preset).
        checkpoint_interval: outer steps between checkpoints (0: only at the end).
        record_interval: outer steps between learning-dynamics records (0: off).
        record_tasks: test tasks used for the CKA and t-SNE records.
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: show progress bars.
    """

    method: str = "cml"
    task: str = "sinusoid"
    data: str | None = None
    ways: int = 5
    shots: int = 1
    queries: int = 15
    image_size: int = 28
    filters: int = 64
    hidden: int = 40
    co_learner: str = "linear"
    gamma: float = 1.0
    inner_lr: float = 0.4
    inner_steps: int = 1
    test_inner_steps: int = 3
    meta_lr: float = 1e-3
    meta_batch: int = 4
    steps: int = 1000
    first_order: bool = False
    noise_std: float = 0.0
    noise_mode: str = "relative"
    more_capacity: str = "width"
    rotations: bool = False
    split: str = "default"
    backend: str = "higher"
    seed: int = 0
    log_interval: int = 10
    val_interval: int = 0
    val_tasks: int = 100
    test_tasks: int = 600
    checkpoint_interval: int = 0
    record_interval: int = 0
    record_tasks: int = 20
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")

        for name, allowed in FIELD_CHOICES.items():
            one_of(name, allowed)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool",) and not isinstance(value, bool):
                raise ConfigError(f"{f.name} must be a boolean (true/false), got {value!r}")
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{f.name} must be an integer, got {value!r}")
            if f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{f.name} must be a number, got {value!r}")
        for name in ("ways", "shots", "queries", "image_size", "filters", "hidden", "meta_batch", "steps",
                     "inner_steps", "test_inner_steps", "val_tasks", "test_tasks", "record_tasks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("inner_lr", "meta_lr"):
            value = getattr(self, name)
            if not value > 0 or value != value or value == float("inf"):
                raise ConfigError(f"{name} (a step size) must be positive and finite, got {value}")
        for name in ("gamma", "noise_std"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        for name in ("log_interval", "val_interval", "checkpoint_interval", "record_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (off/end only) or positive, got {getattr(self, name)}")
        if self.log_interval == 0:
            raise ConfigError("log_interval must be positive, got 0")
        if self.task == "sinusoid":
            if self.co_learner == "conv":
                raise ConfigError("co_learner 'conv' needs an image task; sinusoid uses co_learner 'linear'")
            if self.more_capacity == "blocks":
                raise ConfigError("more_capacity 'blocks' needs an image task; use 'width' for sinusoid")
            if self.rotations:
                raise ConfigError("rotations apply to image tasks, not sinusoid")
        if self.more_capacity == "blocks" and self.co_learner != "conv":
            raise ConfigError("more_capacity 'blocks' mirrors the conv co-learner; set co_learner 'conv' or "
                              "more_capacity 'width'")
        if self.method == "noisy-maml" and self.noise_std == 0:
            raise ConfigError("noisy-maml needs noise_std > 0 (e.g. --noise-std 0.1); with 0 it is plain maml")
        if self.task == "sinusoid" and self.data is not None:
            raise ConfigError(f"task 'sinusoid' generates its own data; remove data={self.data!r}")
        if self.task not in ("sinusoid", "fonts") and self.data is None:
            raise ConfigError(f"task {self.task!r} needs a data path (--data PATH); see README, 'Data sets'")

    @property
    def is_regression(self) -> bool:
        return self.task == "sinusoid"

    @property
    def has_co_learner(self) -> bool:
        """Whether the model carries a co-learner head phi (cml, and cl's second branch)."""
        return self.method in ("cml", "cl")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "Config":
        """Builds a config, rejecting unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in {source}: {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        return Config.from_dict({**self.to_dict(), **changes}, source="override")

    def save(self, path: Path) -> None:
        from .records import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"no config at {path}; is this a run folder written by `python -m cml train`?") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None
        return cls.from_dict(values, source=str(path))


# Settings shared by a preset across methods; method-specific ones (noise, capacity) are added by `preset`.
_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # MAML (Finn et al., 2017) sinusoid: 1-40-40-1, alpha 0.01, meta-batch 25, Adam 1e-3, 70k steps.
    ("paper", "sinusoid"): dict(shots=10, queries=10, hidden=40, inner_lr=0.01, inner_steps=1,
                                test_inner_steps=10, meta_batch=25, meta_lr=1e-3, steps=70000,
                                val_interval=1000, val_tasks=100, test_tasks=600, checkpoint_interval=1000,
                                log_interval=100, co_learner="linear"),
    # The authors' released settings for images: Conv-4/64, alpha 0.5, one inner step, meta-batch 4,
    # 15 queries, Adam 1e-3, 30,000 steps, gamma 1.0, conv co-learner.
    ("paper", "image"): dict(filters=64, inner_lr=0.5, inner_steps=1, test_inner_steps=1, meta_batch=4,
                             queries=15, meta_lr=1e-3, steps=30000, gamma=1.0, co_learner="conv",
                             val_interval=500, val_tasks=300, test_tasks=600, checkpoint_interval=500,
                             log_interval=50),
    # Minutes on 2 CPU cores.
    ("quick", "sinusoid"): dict(shots=10, queries=10, hidden=40, inner_lr=0.01, inner_steps=1,
                                test_inner_steps=10, meta_batch=10, meta_lr=1e-3, steps=3000,
                                val_interval=500, val_tasks=100, test_tasks=600, checkpoint_interval=500,
                                log_interval=50, co_learner="linear"),
    ("quick", "image"): dict(filters=32, inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch=4,
                             queries=5, meta_lr=2e-3, steps=600, gamma=1.0, co_learner="conv",
                             val_interval=200, val_tasks=50, test_tasks=600, checkpoint_interval=200,
                             log_interval=20),
}


# The resolution each image benchmark is used at in the paper's setting (Omniglot and fonts: 28).
PAPER_IMAGE_SIZE = {"miniimagenet": 84, "flower": 84, "cifar-fs": 32, "fc100": 32}


def preset(name: str, task: str, method: str, **overrides: Any) -> Config:
    """The ``quick`` or ``paper`` config for a task and method, with ``overrides`` applied last.

    Raises:
        ConfigError: on an unknown preset, task or method, or an invalid override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    values: dict[str, Any] = dict(_PRESETS[(name, "sinusoid" if task == "sinusoid" else "image")])
    values.update(task=task, method=method)
    if name == "paper" and task in PAPER_IMAGE_SIZE:
        values["image_size"] = PAPER_IMAGE_SIZE[task]
    if method == "noisy-maml":
        values.update(noise_std=0.5, noise_mode="relative")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config.from_dict(values, source=f"preset {name!r} with overrides")
