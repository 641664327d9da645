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
from typing import Any, Literal, get_args

from . import fields
from .bases import BASES, base_options, get_base
from .errors import ConfigError  # re-exported: defined with every other error in cml.errors
from .fields import check_choice, option
from .methods import LEGACY, METHODS, get_method, upgrade
from .paper import DEFAULT_BACKBONE
from .tasks import FAMILIES, TASKS, TaskEntry, TaskFamily, get_task
from .bases.gmeta import GmetaLoss
from .tasks.image import RESNET12_WIDTHS
from .tasks.graph import GraphReadout, GraphSplit

#: The task families the presets are written for (:mod:`cml.tasks`); a field's
#: :attr:`cml.fields.FieldInfo.tasks` names them.
TASK_FAMILIES = tuple(FAMILIES)
# The closed sets of values (their Literal is the field's type; the tuples are what other modules import).
CoLearner = Literal["linear", "conv", "mlp"]
Select = Literal["last", "best-val"]
NoiseMode = Literal["absolute", "relative"]
MoreCapacity = Literal["width", "blocks"]
SharpVariant = Literal["lower", "upper", "both"]
Device = Literal["cpu", "cuda", "auto"]
Backbone = Literal["conv4", "resnet12"]
CO_LEARNERS: tuple[str, ...] = get_args(CoLearner)
SELECTS: tuple[str, ...] = get_args(Select)
NOISE_MODES: tuple[str, ...] = get_args(NoiseMode)
MORE_CAPACITIES: tuple[str, ...] = get_args(MoreCapacity)
SHARP_VARIANTS: tuple[str, ...] = get_args(SharpVariant)
DEVICES: tuple[str, ...] = get_args(Device)
BACKBONES: tuple[str, ...] = get_args(Backbone)
# An engine registry may add backends: a str field with choices, not a Literal.
BACKENDS = ("higher", "func", "batched", "auto")
#: Every preset name; a task family offers those of its ``presets`` (``maml-paper``: sinusoid only).
PRESETS = ("quick", "paper", "maml-paper")
#: The preset whose base-learner and method values a preset takes (the MAML paper's sinusoid setting is a paper one).
PRESET_BASIS = {"maml-paper": "paper"}
#: Values a preset sets for every task before the family's own: the paper reports "the model with the best
#: validation accuracy" (Section 4; its code tests the best-validation checkpoint).
PRESET_COMMON: dict[str, dict[str, Any]] = {"paper": {"select": "best-val"}}
#: The conv co-learner's depths (the paper's Table 8: 0-4 conv layers before its linear layer).
CO_LEARNER_DEPTHS = range(0, 5)
#: The authors' conv co-learner: two conv blocks, the second pooled, then a linear layer.
AUTHORS_CO_LEARNER_DEPTH = 2
# The --help sections of the config flags, in the order they are listed.
AXES, DATA, SHAPE, MODEL, GRAPH = "what is trained", "data", "task shape", "model", "graph task"
METHOD, INNER, OUTER = "method", "inner loop", "outer loop"
BASE, RUN, RECORDS = "base learner options (each read by one base learner)", "engine and run", "records"


def task_family(task: str) -> str:
    """The family of a task (one of :data:`TASK_FAMILIES`): the presets and field metadata are per family."""
    return get_task(task).family.name


# The largest float32: a step size, weight or noise scale above it overflows inside the float32 update.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Config:
    """Everything that defines a run. Field names are the CLI's flag names (``--inner-lr`` sets inner_lr).

    Each field is declared with :func:`cml.fields.option`: its help text, ``--help`` group, allowed values and
    the task families it applies to are its metadata (:class:`cml.fields.FieldInfo`), and its type is its
    annotation. ``python -m cml train --help`` prints them for every flag (:mod:`cml.fieldhelp`), with the
    presets' defaults; the Attributes section below is generated from the same metadata. Which base learner
    reads a field is that base's row (its ``options``, :mod:`cml.bases`), so the metadata does not repeat it.
    """

    base: str = option("maml", "the base learner: how a task is adapted and the outer step taken (maml, maml++, "
                       "boil, sharp-maml, anil; gmeta and amm-gnn on graphs; see cml.bases)", group=AXES,
                       choices=BASES)
    method: str = option("cml", "what is added to the base: none, cml, noisy, more or cl (see cml.methods; the older "
                         "names maml, noisy-maml, more-maml are read as none, noisy, more on the maml base)",
                         group=AXES, choices=METHODS, aliases=tuple(LEGACY))
    task: str = option("sinusoid", "sinusoid, a few-shot image data set (see cml.data.DATASETS) or graph (few-shot "
                       "node classification, cml.data.graph)", group=AXES, choices=TASKS)
    data: str | None = option(None, "path of the data set's root (None for sinusoid; for fonts, an optional cache "
                              "folder; for graph, an optional .npz graph, the generated graph when None)", group=DATA)
    ways: int = option(5, "classes per task (N of N-way K-shot; sinusoid regression has none)", group=SHAPE,
                       tasks=("image", "graph"))
    shots: int = option(1, "support examples per class (K of N-way K-shot; sinusoid: support points)", group=SHAPE)
    queries: int = option(15, "query examples per class (sinusoid: query points)", group=SHAPE)
    test_queries: int | None = option(None, "query examples per class in the final test; None: queries (Tan et al.'s "
                                      "node classification: 5 in training and validation, 10 at test)", group=SHAPE)
    image_size: int = option(28, "side of the square input images", group=SHAPE, tasks=("image",))
    backbone: Backbone = option(DEFAULT_BACKBONE, "the image feature extractor: conv4 (four conv-BN-ReLU-pool "
                                "blocks, --filters wide) or resnet12 (four residual blocks, --resnet-widths; "
                                "cml.resnet)", group=MODEL, tasks=("image",))
    filters: int = option(64, "channels of every Conv-4 block (backbone conv4)", group=MODEL, tasks=("image",))
    resnet_widths: tuple[int, ...] = option(RESNET12_WIDTHS, "the four ResNet-12 blocks' channels (backbone "
                                            "resnet12; small widths for CPU tests)", group=MODEL, tasks=("image",))
    hidden: int = option(40, "width of the sinusoid MLP's hidden layers and of the graph task's GCN layers",
                         group=MODEL, tasks=("sinusoid", "graph"))
    hops: int = option(2, "radius of each node's local subgraph (G-Meta: 2)", group=GRAPH, tasks=("graph",))
    max_nodes: int = option(32, "the cap on a subgraph's nodes (larger neighbourhoods are sampled down)",
                            group=GRAPH, tasks=("graph",))
    graph_layers: int = option(2, "GCN layers (G-Meta: 2)", group=GRAPH, tasks=("graph",))
    graph_modulation: bool = option(False, "AMM-GNN-style task-conditioned modulation of the node features before "
                                    "the GCN (cml.gnn.TaskModulation)", group=GRAPH, tasks=("graph",))
    graph_readout: GraphReadout | None = option(None, "how a node's embedding is read from its subgraph's GCN outputs: "
                                                "centre (the centre node) or mean (over the subgraph's nodes); None: "
                                                "the base learner's (mean for gmeta, centre otherwise)", group=GRAPH,
                                                tasks=("graph",))
    graph_split: GraphSplit | None = option(None, "the paper's data set a --data graph file is (its class split: "
                                            "citeseer 2/2/2, amazon-computer 4/3/3, corafull 40/15/15; its class "
                                            "count is checked); runs with it are set beside the paper's Table 3",
                                            group=GRAPH, tasks=("graph",))
    co_learner: CoLearner = option("linear", "linear (a second linear head), conv (conv blocks on block 4's pre-pool "
                                   "map, then a linear layer, as in the authors' code; image tasks) or mlp (a hidden "
                                   "layer as wide as the feature extractor's, ReLU, then an output: the paper's "
                                   "co-learner on the sinusoid and on graphs). Used by cml, cl and random; "
                                   "more-maml is sized against it",
                                   group=METHOD)
    co_learner_depth: int = option(AUTHORS_CO_LEARNER_DEPTH, "the conv co-learner's conv blocks before its linear "
                                   "layer, 0-4 (the paper's Table 8; the last block is pooled; 0: a linear layer on "
                                   "block 4's pre-pool map); 2 is the authors' co-learner", group=METHOD,
                                   tasks=("image",))
    meta_head_like_co_learner: bool = option(False, "the meta-learner head theta gets the conv co-learner's structure "
                                             "(the paper's Table 7: heads of the same capacity)", group=METHOD,
                                             tasks=("image",))
    gamma: float = option(1.0, "weight of the co-learner's loss in the outer objective", group=METHOD)
    inner_lr: float = option(0.4, "the inner-loop SGD step (alpha)", group=INNER)
    head_inner_lr: float | None = option(None, "the head's (theta's) inner step; None: the base's own (inner_lr; "
                                         "BOIL 0)", group=INNER)
    inner_steps: int = option(1, "inner SGD steps during meta-training", group=INNER)
    test_inner_steps: int = option(3, "inner SGD steps at validation and test time", group=INNER)
    meta_lr: float = option(1e-3, "Adam's learning rate (beta)", group=OUTER)
    meta_batch: int = option(4, "tasks per outer step", group=OUTER)
    steps: int = option(1000, "outer steps", group=OUTER)
    first_order: bool = option(False, "drop the second-order terms of the meta-gradient (FOMAML-style) for every "
                               "method", group=OUTER)
    noise_std: float = option(0.0, "noisy-maml's Gaussian noise scale sigma", group=METHOD)
    noise_mode: NoiseMode = option("relative", "absolute (noise ~ N(0, sigma^2) per element) or relative (per "
                                   "tensor, noise with expected norm sigma * ||grad||: element std sigma * ||grad|| "
                                   "/ sqrt(numel))", group=METHOD)
    more_capacity: MoreCapacity = option("width", "how more-maml gets its extra parameters: width (wider backbone) "
                                         "or blocks (the co-learner's conv blocks placed in the meta-learner's path; "
                                         "image tasks with a conv co-learner)", group=METHOD)
    rotations: bool = option(False, "rotate each sampled class by a random multiple of 90 degrees (Omniglot "
                             "augmentation)", group=DATA, tasks=("image",))
    split: str = option("default", "which split of the data set's classes into train, val and test its loader uses",
                        group=DATA, tasks=("image",))
    msl: bool = option(False, "the multi-step loss (the query loss after every inner step, annealed weights)",
                       group=BASE)
    msl_anneal_steps: int = option(0, "outer steps over which the multi-step loss anneals to the last step alone",
                                   group=BASE)
    learn_inner_lr: bool = option(False, "learnable inner step sizes, one per tensor and per inner step", group=BASE)
    per_step_bn: bool = option(False, "BatchNorm weights and biases per inner step (image tasks)", group=BASE)
    first_order_steps: int = option(0, "outer steps trained first-order before switching to second order",
                                    group=BASE)
    cosine_lr: bool = option(False, "cosine annealing of the outer learning rate from meta_lr to min_meta_lr",
                             group=BASE)
    min_meta_lr: float = option(0.0, "the outer learning rate at the end of cosine annealing", group=BASE)
    sharp_variant: SharpVariant = option("both", "where the sharpness-aware perturbation acts: lower, upper, both",
                                         group=BASE)
    sharp_rho_lower: float = option(0.0, "the inner-step perturbation radius rho (0: none)", group=BASE)
    sharp_rho_upper: float = option(0.0, "the outer-step (SAM) perturbation radius rho (0: none)", group=BASE)
    grad_clamp: float = option(0.0, "clamp each element of the weights' meta-gradient to +-grad_clamp before the "
                               "outer step, after any method noise (the reference: 10 on ImageNet-like sets; 0: off)",
                               group=BASE)
    gmeta_loss: GmetaLoss = option("ce", "ce (Tan et al.'s G-Meta: a linear head, cross-entropy, mean readout) or "
                                   "proto (the original G-Meta's prototypical loss: softmax over minus the squared "
                                   "distances to the support set's class means, centre readout)", group=BASE)
    backend: str = option("higher", "higher (the per-task engine), func (the independent torch.func "
                          "implementation), batched (every task of a meta-batch at once: cml.engines.batched) or "
                          "auto (the faster on the run's device; the trainer writes the one it chose into "
                          "config.json)",
                          group=RUN, choices=BACKENDS)
    seed: int = option(0, "seeds every generator of the run", group=RUN)
    log_interval: int = option(10, "outer steps between metrics.jsonl lines", group=RECORDS)
    val_interval: int = option(0, "outer steps between validations (0: only at the end)", group=RECORDS)
    val_tasks: int = option(100, "tasks per validation", group=RECORDS)
    test_tasks: int = option(600, "tasks in the final test (>= 600 for classification in the paper preset)",
                             group=RECORDS)
    select: Select = option("last", "the checkpoint the final test and evaluate read: last, or best-val (the one with "
                            "the best validation accuracy, MSE for regression, kept beside the last as best.pt)",
                            group=RECORDS)
    checkpoint_interval: int = option(0, "outer steps between checkpoints (0: only at the end)", group=RECORDS)
    record_interval: int = option(0, "outer steps between learning-dynamics records (0: off)", group=RECORDS)
    record_tasks: int = option(20, "test tasks used for the CKA and t-SNE records", group=RECORDS)
    device: Device = option("cpu", "cpu, cuda or auto", group=RUN)
    threads: int | None = option(None, "torch's CPU threads (torch.set_num_threads): a sum split across threads "
                                 "adds in another order, so the same seed gives bit-identical numbers only at the "
                                 "same count (with the same torch build and device); none: the process's count "
                                 "when the run starts (torch.get_num_threads(), e.g. OMP_NUM_THREADS), which the "
                                 "trainer writes into config.json", group=RUN)
    progress: bool = option(True, "show progress bars", group=RUN)

    def __post_init__(self) -> None:
        # Types first, so that every later check compares values of the declared type (a Literal's choices are
        # checked with its type; a JSON list becomes the tuple its field declares).
        for name, tp in fields.field_types(type(self)).items():
            value = getattr(self, name)
            typed = fields.coerce(name, tp, value)
            if typed is not value:
                object.__setattr__(self, name, typed)
        # Configs written before bases existed: ``maml``, ``noisy-maml``, ``more-maml`` on the maml base.
        try:
            object.__setattr__(self, "method", upgrade(self.base, self.method))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for f in dataclasses.fields(self):
            allowed = fields.info(type(self), f.name).choices
            if allowed:
                check_choice(f.name, getattr(self, f.name), allowed)
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
        for name in ("min_meta_lr", "sharp_rho_lower", "sharp_rho_upper", "grad_clamp"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be non-negative and finite, got {getattr(self, name)}")
        if self.test_queries is not None and self.test_queries < 1:
            raise ConfigError(f"test_queries must be a positive integer or none (then queries), got "
                              f"{self.test_queries}")
        if self.head_inner_lr is not None and not (0 <= self.head_inner_lr < float("inf")):
            raise ConfigError(f"head_inner_lr must be non-negative and finite (0 freezes the head), got "
                              f"{self.head_inner_lr}")
        # Every step size and radius is used in float32: above the largest float32 it overflows to inf there.
        for name in ("head_inner_lr", "min_meta_lr", "sharp_rho_lower", "sharp_rho_upper", "grad_clamp"):
            if (getattr(self, name) or 0) > FLOAT32_MAX:
                raise ConfigError(f"{name} must be at most {FLOAT32_MAX:.4g} (the largest float32), got "
                                  f"{getattr(self, name)!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be a positive integer (or none: the process's count), got "
                              f"{self.threads}")
        for name in ("log_interval", "val_interval", "checkpoint_interval", "record_interval", "msl_anneal_steps",
                     "first_order_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (off/end only) or positive, got {getattr(self, name)}")
        if self.log_interval == 0:
            raise ConfigError("log_interval must be positive, got 0")
        self.family.check(self)
        self._check_heads()
        self._check_base()
        if get_method(self.method).gradient_noise and self.noise_std == 0:
            raise ConfigError(f"method {self.method!r} needs noise_std > 0 (e.g. --noise-std 0.1); with 0 it is the "
                              f"base alone (--method none)")
        if self.task_entry.needs_data and self.data is None:
            raise ConfigError(f"task {self.task!r} needs a data path (--data PATH); see README, 'Data sets'")

    def _check_heads(self) -> None:
        """The co-learner's kind, depth and the same-capacity heads, where they mean something."""
        kinds = self.family.co_learners
        if self.co_learner not in kinds:
            raise ConfigError(f"co_learner {self.co_learner!r} does not apply to task {self.task!r} (its models take "
                              f"{' or '.join(kinds)}; conv needs images)")
        if self.more_capacity == "blocks" and self.co_learner != "conv":
            raise ConfigError("more_capacity 'blocks' mirrors the conv co-learner; set co_learner 'conv' or "
                              "more_capacity 'width'")
        if self.co_learner_depth not in CO_LEARNER_DEPTHS:
            raise ConfigError(f"co_learner_depth must be 0 to 4 (the conv co-learner's conv blocks), got "
                              f"{self.co_learner_depth}")
        if self.co_learner_depth != AUTHORS_CO_LEARNER_DEPTH and self.co_learner != "conv":
            raise ConfigError(f"co_learner_depth counts the conv co-learner's blocks; co_learner {self.co_learner!r} "
                              f"has none: set --co-learner conv (image tasks) or remove co_learner_depth")
        if self.meta_head_like_co_learner:
            if self.co_learner != "conv":
                raise ConfigError(f"meta_head_like_co_learner gives theta the conv co-learner's structure; with "
                                  f"co_learner {self.co_learner!r} set --co-learner conv (image tasks) or remove it")
            if get_method(self.method).extra_capacity:
                raise ConfigError(f"method {self.method!r} sizes its own extra capacity; meta_head_like_co_learner "
                                  f"applies to the other methods (use --more-capacity blocks for a conv head)")

    def _check_base(self) -> None:
        """Base-specific options only under their base; combinations without meaning refused, saying why."""
        base = get_base(self.base)
        if not base.runs_on(self.family):
            raise ConfigError(f"base {self.base!r} runs on {', '.join(base.families)} tasks only ({base.why_only}); "
                              f"task {self.task!r} is a {self.family.name} task")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, owner in base_options().items():
            if owner != self.base and getattr(self, name) != defaults[name]:
                raise ConfigError(f"{name} is an option of base {owner!r}, not of {self.base!r}; remove it or "
                                  f"use --base {owner}")
        if self.per_step_bn and not self.family.norm_layers:
            raise ConfigError(f"per_step_bn needs BatchNorm layers, which the {self.task} model has not; use "
                              f"--no-per-step-bn")
        rates = base.role_rates(self)
        if not any(rates.values()):
            raise ConfigError(f"base {self.base!r} with these step sizes adapts nothing in the inner loop "
                              f"(inner_lr {self.inner_lr}, head_inner_lr {self.head_inner_lr}); raise one of them")
        base.check(self)

    @property
    def task_entry(self) -> TaskEntry:
        """This config's task-table entry (:class:`cml.tasks.TaskEntry`)."""
        return get_task(self.task)

    @property
    def family(self) -> TaskFamily:
        """This config's task family (:class:`cml.tasks.TaskFamily`): its loss, data, model and records."""
        return get_task(self.task).family

    @property
    def spec(self):
        """This config's method-table entry (:class:`cml.methods.Method`)."""
        return get_method(self.method)

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
        """Builds a config from Python or JSON values, rejecting unknown keys (a typo must not be silently
        ignored); each value is checked against its field's type (:func:`cml.fields.coerce`)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must be a mapping of config fields to values, got a "
                              f"{type(values).__name__}")
        fields.check_keys(cls, values, source)
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        return type(self).from_dict({**self.to_dict(), **changes}, source="override")

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


#: The fields a resumed run may change: how long it trains (``steps``, to extend it) and whether it shows bars.
RESUMABLE = ("steps", "progress")


def differing_fields(saved: Config, given: Config) -> list[str]:
    """The fields in which ``given`` contradicts a run's ``saved`` config, sorted: every field but
    :data:`RESUMABLE`, and ``threads`` only where both name a count (None is "the process's count", resolved when
    a run starts; a config written before threads were recorded has None, and any count continues it).
    """
    a, b = saved.to_dict(), given.to_dict()
    return sorted(k for k in a if k not in RESUMABLE and a[k] != b[k]
                  and not (k == "threads" and (a[k] is None or b[k] is None)))


# Every annotation is resolved and checked supported now: a field the parser cannot read fails at import, naming
# itself, rather than every Config().
fields.field_types(Config)


def field_description(name: str) -> str:
    """A config field's description: its help text, after the base learner that reads it (from the base's
    ``options``, :mod:`cml.bases`) or the one task family it applies to (``MAML++: the multi-step loss ...``,
    ``graph task: GCN layers ...``).

    Raises:
        KeyError: if ``name`` is not a config field.
    """
    meta = fields.info(Config, name)
    owner = base_options().get(name)
    if owner is not None:
        return f"{get_base(owner).label}: {meta.help}"
    if len(meta.tasks) == 1:
        return f"{FAMILIES[meta.tasks[0]].field_label}: {meta.help}"
    return meta.help


Config.__doc__ = (Config.__doc__ or "").rstrip() + "\n\n" + fields.attributes_doc(Config, field_description)
#: The allowed values of every enumerated field: checked by ``Config`` and listed by the CLI's ``--help``.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    f.name: c for f in dataclasses.fields(Config) if (c := fields.choices(Config, f.name))}
#: Older values a field still accepts (read as a current one on construction), listed by ``--help`` beside
#: :data:`FIELD_CHOICES`.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    f.name: a for f in dataclasses.fields(Config) if (a := fields.info(Config, f.name).aliases)}


def preset(name: str, task: str, method: str, base: str = "maml", **overrides: Any) -> Config:
    """The ``quick`` or ``paper`` config for a task, base learner and method, with ``overrides`` applied last.

    The task family's preset (:attr:`cml.tasks.TaskFamily.presets`, then its values for the ``backbone`` override
    if one is given, :attr:`cml.tasks.TaskFamily.backbone_presets`, with the data set's paper image size), the
    base's own preset values (:attr:`cml.bases.BaseLearner.presets`) and the method's defaults
    (:attr:`cml.methods.Method.defaults`) come between the preset and the overrides.

    Raises:
        ConfigError: on an unknown preset, task or method, or an invalid override.
    """
    check_choice("preset", name, PRESETS)
    check_choice("task", task, TASKS)
    family = get_task(task).family
    if name not in family.presets:
        raise ConfigError(f"preset {name!r} does not apply to task {task!r} (its presets: "
                          f"{', '.join(p for p in PRESETS if p in family.presets)}); maml-paper is the MAML paper's "
                          f"sinusoid setting")
    check_choice("base", base, BASES)
    try:
        spec = get_method(method)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    entry = get_task(task)
    basis = PRESET_BASIS.get(name, name)
    values: dict[str, Any] = dict(PRESET_COMMON.get(name, {}))
    values.update(entry.family.presets[name])
    # A backbone's own values (ResNet-12's widths, the paper's Table 9) sit on the family's preset; a backbone the
    # family has none for is left to the family's check to accept or refuse.
    values.update(entry.family.backbone_presets.get(overrides.get("backbone") or "", {}).get(basis, {}))
    values.update(task=task, method=method, base=base)
    if basis == "paper" and entry.paper_image_size is not None:
        values["image_size"] = entry.paper_image_size
    values.update(get_base(base).preset_values(basis, entry))
    values.update(dict(spec.defaults))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config.from_dict(values, source=f"preset {name!r} with overrides")
