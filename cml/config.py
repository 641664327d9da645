"""The run configuration: one typed, validated dataclass, and the ``quick`` and ``paper`` presets.

The resolved config is written to every run folder (``config.json``) and into every checkpoint, so a run
can always be told apart from another and resumed with exactly the settings it started with.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bases import BASES, base_options, get_base
from .methods import LEGACY, METHODS, get_method, upgrade

TASKS = ("sinusoid", "omniglot", "fonts", "folder", "miniimagenet", "cifar-fs", "fc100", "flower", "graph")
#: Tasks whose images are RGB (the rest are one-channel), and tasks that need no ``--data`` path (generated, or an
#: optional cache or file).
RGB_TASKS = ("miniimagenet", "cifar-fs", "fc100", "flower")
NO_DATA_TASKS = ("sinusoid", "fonts", "graph")
CO_LEARNERS = ("linear", "conv")
BACKENDS = ("higher", "func", "batched", "auto")
PRESETS = ("quick", "paper")
NOISE_MODES = ("absolute", "relative")
MORE_CAPACITIES = ("width", "blocks")
SHARP_VARIANTS = ("lower", "upper", "both")
DEVICES = ("cpu", "cuda", "auto")
#: The allowed values of every enumerated field: checked by ``Config`` and listed by the CLI's ``--help``.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "base": BASES, "method": METHODS, "task": TASKS, "co_learner": CO_LEARNERS, "backend": BACKENDS,
    "noise_mode": NOISE_MODES, "more_capacity": MORE_CAPACITIES, "sharp_variant": SHARP_VARIANTS, "device": DEVICES,
}
#: Older values a field still accepts (read as a current one on construction), listed by ``--help`` beside
#: :data:`FIELD_CHOICES`.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {"method": tuple(LEGACY)}


def in_channels_of(task: str) -> int:
    """Input channels of a task's images (1 for sinusoid's scalar inputs; the generated graph's node features and
    the centre marker for ``graph``)."""
    if task == "graph":
        from .data.graph import SBM_FEATURES

        return SBM_FEATURES + 1
    return 3 if task in RGB_TASKS else 1


def needs_data_path(task: str) -> bool:
    return task not in NO_DATA_TASKS


# The largest float32: a step size, weight or noise scale above it overflows inside the float32 update.
FLOAT32_MAX = 3.4028234663852886e38


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


def _check_graph(cfg: "Config") -> None:
    """The graph task's own constraints (its model is a GCN with linear heads, its inputs are subgraphs)."""
    if cfg.max_nodes < 2:
        raise ConfigError(f"max_nodes must be at least 2 (the centre and a neighbour), got {cfg.max_nodes}")
    if cfg.co_learner == "conv":
        raise ConfigError("co_learner 'conv' needs an image task; the graph task uses co_learner 'linear'")
    if cfg.more_capacity == "blocks":
        raise ConfigError("more_capacity 'blocks' needs an image task; use 'width' for the graph task")
    if cfg.rotations:
        raise ConfigError("rotations apply to image tasks, not to the graph task")


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Field names are the CLI's flag names (``--inner-lr`` sets inner_lr).

    The Attributes section below is the one description of each field: ``python -m cml train --help`` prints
    it for every flag (:mod:`cml.fieldhelp`), with the presets' defaults and :data:`FIELD_CHOICES`.

    Attributes:
        base: the base learner: how a task is adapted and the outer step taken (``maml``, ``maml++``, ``boil``,
            ``sharp-maml``, ``anil``; see :mod:`cml.bases`).
        method: what is added to the base: ``none``, ``cml``, ``noisy``, ``more`` or ``cl`` (see
            :mod:`cml.methods`; the older names ``maml``, ``noisy-maml``, ``more-maml`` are read as ``none``,
            ``noisy``, ``more`` on the ``maml`` base).
        task: ``sinusoid``, a few-shot image data set (see ``cml.data.DATASETS``) or ``graph`` (few-shot node
            classification, :mod:`cml.data.graph`).
        data: path of the data set's root (None for ``sinusoid``; for ``fonts``, an optional cache folder; for
            ``graph``, an optional ``.npz`` graph, the generated graph when None).
        ways, shots, queries: N-way K-shot with Q queries per class (regression: ``shots`` support points,
            ``queries`` query points).
        image_size: side of the square input images.
        filters: channels of every Conv-4 block.
        hidden: width of the sinusoid MLP's hidden layers and of the graph task's GCN layers.
        hops: graph task: radius of each node's local subgraph (G-Meta: 2).
        max_nodes: graph task: the cap on a subgraph's nodes (larger neighbourhoods are sampled down).
        graph_layers: graph task: GCN layers (G-Meta: 2).
        graph_modulation: graph task: AMM-GNN-style task-conditioned modulation of the node features before
            the GCN (:class:`cml.gnn.TaskModulation`).
        co_learner: ``linear`` (a second linear head) or ``conv`` (two conv blocks on block 4's pre-pool map,
            then a linear layer, as in the authors' code). Used by ``cml`` and ``cl``; ``more-maml`` is sized
            against it.
        gamma: weight of the co-learner's loss in the outer objective.
        inner_lr: the inner-loop SGD step (alpha).
        head_inner_lr: the head's (theta's) inner step; None: the base's own (``inner_lr``; BOIL 0).
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
        msl: MAML++: the multi-step loss (the query loss after every inner step, annealed weights).
        msl_anneal_steps: MAML++: outer steps over which the multi-step loss anneals to the last step alone.
        learn_inner_lr: MAML++: learnable inner step sizes, one per tensor and per inner step.
        per_step_bn: MAML++: BatchNorm weights and biases per inner step (image tasks).
        first_order_steps: MAML++: outer steps trained first-order before switching to second order.
        cosine_lr: MAML++: cosine annealing of the outer learning rate from ``meta_lr`` to ``min_meta_lr``.
        min_meta_lr: MAML++: the outer learning rate at the end of cosine annealing.
        sharp_variant: Sharp-MAML: where the sharpness-aware perturbation acts: ``lower``, ``upper``, ``both``.
        sharp_rho_lower: Sharp-MAML: the inner-step perturbation radius rho (0: none).
        sharp_rho_upper: Sharp-MAML: the outer-step (SAM) perturbation radius rho (0: none).
        backend: ``higher`` (the per-task engine), ``func`` (the independent torch.func implementation),
            ``batched`` (every task of a meta-batch at once: :mod:`cml.batched`) or ``auto`` (the faster on the
            run's device; the trainer writes the one it chose into ``config.json``).
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

    base: str = "maml"
    method: str = "cml"
    task: str = "sinusoid"
    data: str | None = None
    ways: int = 5
    shots: int = 1
    queries: int = 15
    image_size: int = 28
    filters: int = 64
    hidden: int = 40
    hops: int = 2
    max_nodes: int = 32
    graph_layers: int = 2
    graph_modulation: bool = False
    co_learner: str = "linear"
    gamma: float = 1.0
    inner_lr: float = 0.4
    head_inner_lr: float | None = None
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
    msl: bool = False
    msl_anneal_steps: int = 0
    learn_inner_lr: bool = False
    per_step_bn: bool = False
    first_order_steps: int = 0
    cosine_lr: bool = False
    min_meta_lr: float = 0.0
    sharp_variant: str = "both"
    sharp_rho_lower: float = 0.0
    sharp_rho_upper: float = 0.0
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
        _check_types(self)
        if isinstance(self.method, str) and isinstance(self.base, str):
            # Configs written before bases existed: ``maml``, ``noisy-maml``, ``more-maml`` on the maml base.
            try:
                object.__setattr__(self, "method", upgrade(self.base, self.method))
            except ValueError as e:
                raise ConfigError(str(e)) from None

        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")

        for name, allowed in FIELD_CHOICES.items():
            one_of(name, allowed)
        for name in ("ways", "shots", "queries", "image_size", "filters", "hidden", "meta_batch", "steps",
                     "inner_steps", "test_inner_steps", "val_tasks", "test_tasks", "record_tasks", "hops",
                     "graph_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("inner_lr", "meta_lr"):
            value = getattr(self, name)
            if not value > 0 or value != value or value == float("inf"):
                raise ConfigError(f"{name} (a step size) must be positive and finite, got {value}")
        for name in ("gamma", "noise_std"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be non-negative and finite, got {getattr(self, name)}")
        for name in ("inner_lr", "meta_lr", "gamma", "noise_std"):
            if getattr(self, name) > FLOAT32_MAX:
                raise ConfigError(f"{name} must be at most {FLOAT32_MAX:.4g} (the largest float32), got "
                                  f"{getattr(self, name)!r}")
        if not self.is_regression and self.ways < 2:
            raise ConfigError(f"ways must be at least 2 for classification (one class is always right), "
                              f"got {self.ways}")
        for name in ("min_meta_lr", "sharp_rho_lower", "sharp_rho_upper"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.head_inner_lr is not None and not (0 <= self.head_inner_lr < float("inf")):
            raise ConfigError(f"head_inner_lr must be non-negative and finite (0 freezes the head), got "
                              f"{self.head_inner_lr}")
        for name in ("log_interval", "val_interval", "checkpoint_interval", "record_interval", "msl_anneal_steps",
                     "first_order_steps"):
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
        if self.task == "graph":
            _check_graph(self)
        if self.more_capacity == "blocks" and self.co_learner != "conv":
            raise ConfigError("more_capacity 'blocks' mirrors the conv co-learner; set co_learner 'conv' or "
                              "more_capacity 'width'")
        self._check_base()
        if get_method(self.method).gradient_noise and self.noise_std == 0:
            raise ConfigError(f"method {self.method!r} needs noise_std > 0 (e.g. --noise-std 0.1); with 0 it is the "
                              f"base alone (--method none)")
        if self.task == "sinusoid" and self.data is not None:
            raise ConfigError(f"task 'sinusoid' generates its own data; remove data={self.data!r}")
        if needs_data_path(self.task) and self.data is None:
            raise ConfigError(f"task {self.task!r} needs a data path (--data PATH); see README, 'Data sets'")

    def _check_base(self) -> None:
        """Base-specific options only under their base; combinations without meaning refused, saying why."""
        defaults = {f.name: f.default for f in dataclasses.fields(Config)}
        for option, owner in base_options().items():
            if owner != self.base and getattr(self, option) != defaults[option]:
                raise ConfigError(f"{option} is an option of base {owner!r}, not of {self.base!r}; remove it or "
                                  f"use --base {owner}")
        if self.per_step_bn and self.task in ("sinusoid", "graph"):
            raise ConfigError(f"per_step_bn needs BatchNorm layers, which the {self.task} model has not; use "
                              f"--no-per-step-bn")
        rates = get_base(self.base).role_rates(self)
        if not any(rates.values()):
            raise ConfigError(f"base {self.base!r} with these step sizes adapts nothing in the inner loop "
                              f"(inner_lr {self.inner_lr}, head_inner_lr {self.head_inner_lr}); raise one of them")

    @property
    def is_regression(self) -> bool:
        return self.task == "sinusoid"

    @property
    def spec(self):
        """This config's method-table entry (:class:`cml.methods.Method`)."""
        return get_method(self.method)

    @property
    def is_graph(self) -> bool:
        return self.task == "graph"

    @property
    def has_co_learner(self) -> bool:
        """Whether the model carries a co-learner head phi (cml, and cl's second branch)."""
        return self.spec.co_learner

    @property
    def variant(self) -> str:
        """The cell's name in run folders and figures (:func:`cml.methods.variant_key`)."""
        from .methods import variant_key

        return variant_key(self.base, self.method)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "Config":
        """Builds a config, rejecting unknown keys (a typo must not be silently ignored)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must be a mapping of config fields to values, got a "
                              f"{type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(repr, set(values) - known)) if any(not isinstance(k, str) for k in values) \
            else sorted(set(values) - known)
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
        """The config saved in a run folder.

        Raises:
            ConfigError: if there is no file at ``path``.
            RunFolderError: if the file is damaged or holds an invalid config (naming the file and the fix).
        """
        from .records import damaged, read_json

        if not Path(path).is_file():
            raise ConfigError(f"no config at {path}; is this a run folder written by `python -m cml train`?")
        values = read_json(Path(path))
        try:
            return cls.from_dict(values, source=str(path))
        except ConfigError as e:
            raise damaged(Path(path), f"not a valid config ({e})") from None


_TYPE_CHECKS = {
    "bool": (lambda v: isinstance(v, bool), "a boolean (true/false)"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "float | None": (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
                     "a number or null"),
}


def _check_types(cfg: Config) -> None:
    # Types first, so that every later check compares values of the declared type.
    for f in dataclasses.fields(cfg):
        ok, kind = _TYPE_CHECKS[f.type]
        value = getattr(cfg, f.name)
        if not ok(value):
            raise ConfigError(f"{f.name} must be {kind}, got {value!r}")


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
    # G-Meta (Huang & Zitnik, 2020): 3-way 3-shot, 24 queries per class, meta-batch 8, 5 inner steps (10 at
    # test), 2 GCN layers of 64, 2-hop subgraphs, Adam 1e-3. G-Meta's inner step is 1e-3 on its own
    # prototypical loss; on a linear head's cross-entropy that barely moves, so both presets use 0.1 here.
    ("paper", "graph"): dict(ways=3, shots=3, queries=24, hidden=64, graph_layers=2, hops=2, max_nodes=32,
                             inner_lr=0.1, inner_steps=5, test_inner_steps=10, meta_batch=8, meta_lr=1e-3,
                             steps=10000, gamma=1.0, co_learner="linear", val_interval=500, val_tasks=300,
                             test_tasks=600, checkpoint_interval=500, log_interval=50),
    # Minutes on 2 CPU cores: G-Meta's task shape, fewer steps and tasks.
    ("quick", "graph"): dict(ways=3, shots=3, queries=24, hidden=64, graph_layers=2, hops=2, max_nodes=32,
                             inner_lr=0.1, inner_steps=5, test_inner_steps=10, meta_batch=8, meta_lr=1e-3,
                             steps=300, gamma=1.0, co_learner="linear", val_interval=100, val_tasks=50,
                             test_tasks=300, checkpoint_interval=100, log_interval=20),
}


# The resolution each image benchmark is used at in the paper's setting (Omniglot and fonts: 28).
PAPER_IMAGE_SIZE = {"miniimagenet": 84, "flower": 84, "cifar-fs": 32, "fc100": 32}


def preset(name: str, task: str, method: str, base: str = "maml", **overrides: Any) -> Config:
    """The ``quick`` or ``paper`` config for a task, base learner and method, with ``overrides`` applied last.

    The base's own preset values (:attr:`cml.bases.BaseLearner.presets`) and the method's defaults
    (:attr:`cml.methods.Method.defaults`) come between the preset and the overrides.

    Raises:
        ConfigError: on an unknown preset, task or method, or an invalid override.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if base not in BASES:
        raise ConfigError(f"unknown base {base!r}; choose one of: {', '.join(BASES)}")
    try:
        spec = get_method(method)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    family = task if task in ("sinusoid", "graph") else "image"
    values: dict[str, Any] = dict(_PRESETS[(name, family)])
    values.update(task=task, method=method, base=base)
    kind = "image" if family == "image" else "sinusoid"  # a base's presets: with or without BatchNorm layers
    if name == "paper" and task in PAPER_IMAGE_SIZE:
        values["image_size"] = PAPER_IMAGE_SIZE[task]
    values.update(get_base(base).preset_values(name, kind, task))
    values.update(dict(spec.defaults))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config.from_dict(values, source=f"preset {name!r} with overrides")
