"""``python -m cml``: train, evaluate, count parameters, manage data, sweep, report, paper tables, TensorBoard, demo.

Every flag of ``train`` that sets a config field is generated from :class:`cml.config.Config`, so the CLI and
the config cannot drift apart: ``--inner-lr 0.1`` sets ``inner_lr``, ``--first-order``/``--no-first-order``
set ``first_order``. A flag left out keeps the value of ``--config FILE`` (a JSON of config fields: any run's
``config.json`` is one), and a field the file leaves out keeps the preset's value: flags > file > preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__, ray_engine, slurm_engine
from .bases import BASES, get_base
from .config import BACKENDS, DEVICES, FIELD_CHOICES, PRESETS, SELECTS, TASKS, Config, ConfigError, preset
from .errors import Interrupted, UserError
from .fields import check_choice, check_keys, field_types, info, parse_text, show
from .methods import LEGACY, LEGACY_BASE, METHODS, display_name, get_method
from .runindex import COLUMNS
from .sweep import ENGINES

DEFAULT_PRESET = "quick"
_FROM_CONFIG = " Default: the --config file's; required without one."
_CONFIG_HELP = ("a JSON file of config fields (any run's config.json is one); flags given beside it override it, "
                "fields it leaves out keep the preset's value")
# Chosen by their own flags (the base and method pick the preset's values before the overrides apply).
_AXES = ("base", "method", "task")


_OVERRIDES = ("a flag left out keeps the value that --preset, --base and --method give it; the defaults below say "
              "where they differ")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per config field, listed by the field's ``--help`` group (:class:`cml.fields.FieldInfo`).

    A flag's value stays text here: :func:`given_fields` types it with :func:`cml.fields.parse_text`, the parser
    ``--grid`` uses, so that a wrong value is one ``error:`` line naming the flag (argparse would print its usage
    and exit from inside the parser).
    """
    from .fieldhelp import field_help, preset_defaults

    defaults, groups = preset_defaults(), {}
    types = field_types(Config)
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        title = info(Config, f.name).group
        if title not in groups:
            groups[title] = p.add_argument_group(f"config overrides: {title}")
        group, text = groups[title], field_help(f.name, defaults)
        if types[f.name] is bool:
            group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            metavar = _choices(FIELD_CHOICES[f.name]) if f.name in FIELD_CHOICES else f.name.upper()
            group.add_argument(_flag(f.name), dest=f.name, default=None, metavar=metavar, help=text)


TENSORBOARD_HELP = ("also write TensorBoard event files into each run folder's tensorboard/, from its records "
                    "(losses, accuracies, psi gradient norms and cosines, CKA at the end), updated at every log line")
WANDB_HELP = ("also log the run to Weights & Biases (its records and config.json, the tags TensorBoard uses), "
              "live at every log line; WANDB_MODE=offline keeps it on disk; needs the wandb package")
DRY_RUN_HELP = ("print the resolved config (as config.json would hold it) and what would happen to the run folder, "
                "then stop, writing nothing")
PRESET_HELP = ("quick (minutes on a CPU), paper (the CML paper's settings) or maml-paper (the MAML paper's "
               "sinusoid setting; sinusoid only); sets every config flag left out (default quick)")


def _choices(values: Sequence[Any]) -> str:
    return "{" + ",".join(map(show, values)) + "}"


def _field_help(name: str) -> str:
    from .fieldhelp import field_help

    return field_help(name)


def read_config_file(path: str | Path, cls: type = Config) -> dict[str, Any]:
    """The config fields in a ``--config`` JSON file (any run's ``config.json`` is one), checked for unknown keys
    (of ``cls``'s fields); their values are typed when the config is built (:func:`cml.fields.coerce`).

    Raises:
        ConfigError: one line naming the file, if it is missing, not JSON, not an object, or has unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file; give a JSON file of config fields (a run's config.json "
                          f"is one)")
    from .records import RunFolderError, parse_json

    try:
        values = parse_json(path.read_bytes().decode("utf-8"), path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    except RunFolderError as e:  # an integer of thousands of digits, nesting thousands deep
        raise ConfigError(f"--config {str(e).split('; ')[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of config fields, got a {type(values).__name__}")
    check_keys(cls, values, f"--config {path}")
    from .fields import coerce

    types = field_types(cls)
    for key, value in values.items():  # each value of its field's type, the file named (a NUL byte in a path too)
        try:
            coerce(key, types[key], value)
        except ConfigError as e:
            raise ConfigError(f"--config {path}: {e}") from None
    return values


def given_fields(args: argparse.Namespace, cls: type = Config) -> dict[str, Any]:
    """The config fields set by flags on the command line, typed (:func:`cml.fields.parse_text`; ``--data none``
    is None). A flag left out is None in ``args`` (argparse's default for every config field), so that a given
    flag can override ``--config`` and a missing one cannot.

    Args:
        cls: the config class the flags were made from.

    Raises:
        ConfigError: naming the flag, if its value is not of its field's type.
    """
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if isinstance(value, str) and f.name not in _AXES:  # the axes choose the preset: checked there
            value = parse_text(cls, f.name, value, _flag(f.name))
        elif value is None:
            continue
        out[f.name] = value
    return out


def _config_from_args(args: argparse.Namespace, method: str | None = None) -> Config:
    """The run's config: the preset, then the ``--config`` file's fields, then the flags given.

    Args:
        method: the method to use whatever the flags and file say (a sweep's start config is the base alone).
    """
    flags = given_fields(args)
    explicit = {**(read_config_file(args.config) if args.config else {}), **flags}
    if method is not None:
        explicit["method"] = method
    for axis in ("task", "method"):
        if explicit.get(axis) is None:
            raise ConfigError(f"--{axis} is required (or a --config file that sets {axis})")
    rest = {k: v for k, v in explicit.items() if k not in _AXES}
    cfg = preset(args.preset or DEFAULT_PRESET, explicit["task"], explicit["method"],
                 base=explicit.get("base") or "maml", **rest)
    # preset() treats None as "not given"; a file's explicit null (data, head_inner_lr) must win over the preset.
    nulls = {k: None for k, v in rest.items() if v is None}
    cfg = cfg.replace(**nulls) if nulls else cfg
    check_applicable(flags, cfg.task)
    return cfg


def check_applicable(values: dict[str, Any], task: str, how: Callable[[str], str] | None = None) -> None:
    """Refuses a setting given for a field its task does not read (``--ways 3`` on sinusoid regression, ``--filters``
    on the MLP): a field's :attr:`cml.fields.FieldInfo.tasks`. A value equal to the field's default is let through
    (it changes nothing, and any run's ``config.json`` holds one).

    Args:
        values: the fields given (flags, or ``--grid`` values).
        how: the setting as the user wrote it, from the field's name (default: its flag).

    Raises:
        ConfigError: one line naming the flag, the task and the tasks that read it.
    """
    from .fieldhelp import task_group
    from .tasks import get_task

    family = get_task(task).family.name
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    for name, value in values.items():
        tasks = info(Config, name).tasks
        if tasks and family not in tasks and value != defaults[name]:
            readers = [t for t in TASKS if get_task(t).family.name in tasks]
            raise ConfigError(f"{(how or _flag)(name)} does not apply to {task} (only {task_group(readers)} read "
                              f"{name}); remove it")


def _require_exporters(args: argparse.Namespace) -> None:
    """``--tensorboard`` and ``--wandb`` need their packages: checked before any folder is made."""
    if getattr(args, "tensorboard", False):
        from .tensorboard import require_tensorboard

        require_tensorboard()
    if getattr(args, "wandb", False):
        from .wandb_export import require_wandb

        require_wandb()


def cmd_train(args: argparse.Namespace) -> int:
    from . import records

    if args.resume and args.restart:
        raise ConfigError("--resume continues a run and --restart moves it aside to train afresh; pass one")
    _require_exporters(args)
    cfg = _config_from_args(args)
    if args.name is not None:
        check_name(args.name)
    run_dir = Path(args.out) / (args.name or records.run_folder_name(cfg.variant, cfg.seed, cfg.task))
    if args.resume:
        from .resume import resume_config

        # The run's own config.json, with the flags given checked against it: none has to be typed again.
        cfg = resume_config(run_dir, given_fields(args), read_config_file(args.config) if args.config else None,
                            args.config)
    if args.dry_run:
        from .dryrun import train_plan

        print(train_plan(cfg, run_dir, resume=args.resume, restart=args.restart))
        return 0
    return _train(args, cfg, run_dir, resume=args.resume, restart=args.restart)


def _train(args: argparse.Namespace, cfg: Config, run_dir: Path, resume: bool, restart: bool = False,
           continues: bool | None = None) -> int:
    """Trains (or continues) one run into ``run_dir``, holding its lock: the body of ``train`` and ``resume``.

    Args:
        continues: the command continues the run (its ``command.json`` keeps the commands before it; for a sweep's
            cell, the sweep folder's gets it); default ``resume``.
    """
    from . import records
    from .resume import resuming_text
    from .trainer import Trainer

    _check_memory(cfg)  # before the lock: a config that cannot fit creates no folder
    with records.FolderLock(run_dir):  # one writer per run folder, for the whole run
        if restart and run_dir.exists():
            print(f"moved {run_dir} aside to {records.move_aside(run_dir)}", file=sys.stderr)
        recorder = None
        if cfg.record_interval:
            from .recording import Recorder

            recorder = Recorder(run_dir)
        trainer = Trainer(cfg, run_dir, resume=resume, recorder=recorder)
        # Once the folder is known to be trainable, before the first step: a killed run keeps its command.
        keep = resume if continues is None else continues
        # A sweep's cell has no command.json of its own: what continues it is recorded with the sweep's commands.
        source = run_dir.parent if keep and (run_dir.parent / records.SWEEP).is_file() else run_dir
        records.append_command(source, records.command_entry(args.argv, trainer.cfg.to_dict(), _prog()), keep=keep)
        counts = trainer_counts(trainer)
        print(f"run folder: {run_dir}\n{counts}", file=sys.stderr)
        if resume:
            print(resuming_text(run_dir, trainer.step, trainer.cfg.steps), file=sys.stderr)
        live = _live_tensorboard(trainer) if args.tensorboard else None
        board = _live_wandb(trainer, "resume" if resume else "train") if getattr(args, "wandb", False) else None
        result = trainer.train()
        trainer.finish_recording()
        for exporter in (live, board):
            if exporter is not None:
                exporter.close()
    print(format_result(result))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from . import records
    from .resume import resume_config

    _require_exporters(args)
    run_dir = Path(args.run)
    cfg = resume_config(run_dir, given_fields(args))
    has_checkpoint = os.path.lexists(run_dir / records.CHECKPOINT)  # a link in its place is refused, not ignored
    if args.dry_run:
        from .dryrun import train_plan

        print(train_plan(cfg, run_dir, resume=has_checkpoint, restart=False))
        return 0
    if not has_checkpoint:
        # Killed before its first checkpoint: nothing to continue, so it starts again with its own settings.
        print(f"{run_dir} holds no checkpoint yet: training it from step 0 of {cfg.steps} with its "
              f"{records.CONFIG}", file=sys.stderr)
    return _train(args, cfg, run_dir, resume=has_checkpoint, continues=True)


def _live_wandb(trainer, job_type: str):
    from .wandb_export import WandbExport

    board = WandbExport(trainer.run_dir, job_type)
    trainer.log_hooks.append(board.hook)
    print(f"Weights & Biases run: {board.run.name} ({board.run.id}, {'offline' if board.run.offline else 'online'})",
          file=sys.stderr)
    return board


#: The longest --name, in bytes: its lock file ``.NAME.lock`` and the name ``--restart`` moves it aside to
#: (``NAME.aside-TIME``) must fit the 255-byte limit of a file name.
MAX_NAME_BYTES = 200


def check_name(name: str) -> None:
    """``--name`` must be one folder name inside ``--out``: not empty, ``.`` or ``..``, no path separator, no NUL,
    at most :data:`MAX_NAME_BYTES` bytes.

    Raises:
        ConfigError: naming the value and what a name may be.
    """
    separators = [c for c in (os.sep, os.altsep) if c]
    problem = None
    if name in ("", ".", ".."):
        problem = "is not a folder name"
    elif any(c in name for c in separators):
        problem = "holds a path separator: it would name a folder outside --out, or a path of folders"
    elif "\0" in name:
        problem = "holds a NUL byte"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = (f"is {len(name.encode('utf-8', 'surrogateescape'))} bytes long; at most {MAX_NAME_BYTES} fit "
                   f"a file name with its lock file and the name --restart moves it aside to")
    if problem:
        raise ConfigError(f"--name {name[:80]!r}{'...' if len(name) > 80 else ''} {problem}; --name is the run "
                          f"folder's own name, made inside --out (put the folders above it in --out)")


def _check_memory(cfg: Config) -> None:
    from . import memory
    from .trainer import resolve_device

    memory.check(cfg, cfg.task_entry.channels, resolve_device(cfg.device))


def _live_tensorboard(trainer):
    from .tensorboard import LiveExport

    live = LiveExport(trainer.run_dir)
    trainer.log_hooks.append(live.hook)
    print(f"TensorBoard events: {live.logdir} (tensorboard --logdir {live.logdir})", file=sys.stderr)
    return live


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from figures.runs import find_runs

    from .tensorboard import export_run

    from . import records

    runs = find_runs([Path(r) for r in args.runs])
    for run in runs:
        # Under --logdir, each run keeps its sweep folder's name above its own, so runs stay apart.
        logdir = Path(args.logdir) / run.path.parent.name / run.path.name if args.logdir else None
        if logdir is None:  # into the run folder: one writer there, or a live --tensorboard loses its event file
            with records.FolderLock(run.path):
                print(export_run(run.path, logdir))
        else:
            print(export_run(run.path, logdir))
    print(f"{len(runs)} run(s); view with: tensorboard --logdir {args.logdir or ' '.join(args.runs)}",
          file=sys.stderr)
    return 0


def trainer_counts(trainer) -> str:
    from .models import parameter_counts

    c = parameter_counts(trainer.cfg, trainer.tasks.in_channels)
    rates = f", learned inner rates {c['rate']}" if c["rate"] else ""
    return (f"parameters: {c['train']} at train time, {c['test']} at test time (psi {c['psi']}, theta {c['theta']}, "
            f"phi {c['phi']}{rates})")


def _phi_label(method: str) -> str:
    return "CML† (phi)" if get_method(method).dagger else "phi head"


def result_name(r: dict[str, Any]) -> str:
    """The printed name of a test record's cell ("BOIL + CML"); records from before bases read as MAML's."""
    base = r.get("base", LEGACY_BASE)
    return display_name(get_base(base).label if base in BASES else base, base, r["method"])


def _mean_ci(r: dict[str, Any], key: str, scale: float, fmt: str, unit: str = "") -> str:
    # A CI over one task does not exist (None): say so rather than print "± nan".
    ci = r.get(f"{key}_ci95")
    if ci is None or ci != ci:
        return f"{scale * r[key]:{fmt}}{unit} (95% CI unavailable: {r['tasks']} task)"
    return f"{scale * r[key]:{fmt}} ± {scale * ci:{fmt}}{unit}"


def _tasks(r: dict[str, Any]) -> str:
    return f"{r['tasks']} task{'' if r['tasks'] == 1 else 's'}"


#: How a line of results names phi's readings (cml.meta.PROTOCOLS), after the co-learner's label.
_PHI_READINGS = (("_dagger", ""), ("_dagger_eq9", " by Eq. (9)"), ("_dagger_noadapt", " without adaptation"))


def format_result(r: dict[str, Any]) -> str:
    """One line of test results; phi's predictions are CML† for cml (for cl, its second head): as the authors'
    code reads them, by the paper's Eq. (9), and without adaptation (each where the record has it)."""
    classification = "acc" in r
    metric, scale, fmt, unit = ("acc", 100, ".2f", "%") if classification else ("mse", 1, ".4f", "")
    if classification:
        text = f"{result_name(r)}: test accuracy {_mean_ci(r, 'acc', 100, '.2f', '%')} over {_tasks(r)}"
    else:
        text = f"{result_name(r)}: test MSE {_mean_ci(r, 'mse', 1, '.4f')} over {_tasks(r)} " \
               f"(before adaptation {r['mse_before']:.3f})"
    for key, how in _PHI_READINGS:
        if metric + key in r:
            value = (_mean_ci(r, metric + key, scale, fmt, unit) if r[metric + key] is not None else
                     "undefined (adaptation diverged)")
            text += f"; {_phi_label(r['method'])}{how} {value}"
    return text


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_folder_pool
    from .data.base import DataError, TaskSampler
    from . import memory
    from .records import CHECKPOINT
    from .seeds import generator
    from .trainer import BEST_VAL, TaskSource, evaluate, load_best, load_checkpoint, model_from_checkpoint, \
        resolve_device, use_threads

    state = load_checkpoint(Path(args.run))
    model, cfg = model_from_checkpoint(state, Path(args.run) / CHECKPOINT)
    # The run's own config.json says how far it is to train (a run extended with --resume --steps says so there
    # before its next checkpoint is written).
    trained, planned = state["step"], max(cfg.steps, _planned_steps(Path(args.run)))
    # The checkpoint the run's final test read (its select), unless --select says otherwise.
    which = args.select or cfg.select
    step = load_best(Path(args.run), model, cfg) if which == BEST_VAL else trained
    changes = {k: v for k, v in (("shots", args.shots), ("queries", args.queries), ("test_tasks", args.tasks),
                                 ("seed", args.seed), ("test_inner_steps", args.inner_steps), ("device", args.device),
                                 ("backend", args.backend), ("threads", args.threads)) if v is not None}
    if args.queries is not None:
        changes["test_queries"] = args.queries  # the test's own count, where the run set one (Tan et al.'s 10)
    family = cfg.family
    if not family.classification and (args.data is not None or args.ways is not None):
        raise ConfigError(f"--data and --ways apply to classification runs; this run is {cfg.task} regression")
    if args.ways is not None and args.ways != cfg.ways:
        raise ConfigError(f"--ways {args.ways}: the run's heads were trained for {cfg.ways}-way tasks and have "
                          f"{cfg.ways} outputs; evaluate with --ways {cfg.ways}")
    if args.data is not None and not family.eval_folders:
        raise ConfigError(f"--data applies to image runs; a {cfg.task} run is evaluated on the test classes of its "
                          f"own data (its config's data)")
    cfg = cfg.replace(progress=args.progress is not False, **changes)
    # The run's own thread count (none recorded: the process's), so that its own settings reproduce test.json.
    cfg = use_threads(cfg)
    try:
        device = resolve_device(cfg.device)
    except ConfigError as e:
        raise ConfigError(f"{e} (the run's device is {cfg.device!r}; choose another with evaluate --device)") from None
    memory.check(cfg, int(next(p for _, p in model.named_parameters()).shape[1]), device)
    model.to(device)
    # The test stream: evaluating a run with its own settings reproduces its test.json.
    gen = generator(cfg.seed, "test")
    if args.data is not None:
        from .data import looks_inverted

        pool = load_folder_pool(args.data, cfg.image_size, invert=args.invert)
        channels = int(pool.images(0).shape[1])
        expected = int(next(p for n, p in model.named_parameters()).shape[1])
        if channels != expected:
            raise DataError(f"{args.data} has {channels}-channel images; the run was trained on {expected}-channel "
                            f"images")
        if len(pool) < cfg.ways:
            # evaluate cannot lower ways: the run's heads have one output per way.
            raise DataError(f"{args.data} has {len(pool)} class folders, fewer than the {cfg.ways} ways the run was "
                            f"trained for; give a folder with at least {cfg.ways} classes")
        if channels == 1 and not args.invert and looks_inverted(pool):
            warnings.warn(f"{args.data}: its images are mostly light (dark strokes on light paper?), inverted "
                          f"relative to the light-on-dark images cml trains on; if so, add --invert", stacklevel=2)
        sampler = TaskSampler(pool, cfg.ways, cfg.shots, cfg.test_queries or cfg.queries, gen,
                              split=f"folder {args.data}",
                              device=device)
        where = f"{args.data}, {cfg.ways}-way {cfg.shots}-shot"
    else:
        sampler = TaskSource(cfg, device=device).sampler("test", gen, queries=cfg.test_queries)
        where = family.describe(cfg)
    result = evaluate(model, cfg, sampler, cfg.test_tasks, device, progress=cfg.progress)
    result.update(method=cfg.method, base=cfg.base, task=cfg.task, selected=which, selected_step=step)
    # In the result's own line, so that the number is never copied without it.
    partial = ("" if not (isinstance(trained, int) and trained < planned) else
               f" [checkpoint of step {trained} of the run's {planned}: the run has not finished, this evaluates "
               f"its partial model]" if which != BEST_VAL else
               f" [the run has trained {trained} of its {planned} steps: it has not finished, and its best validation "
               f"so far is evaluated]")
    print(f"{where}: " + format_result(result) + partial + f" [{which} checkpoint, step {step}]")
    return 0


def _planned_steps(run_dir: Path) -> int:
    from . import records

    try:
        steps = records.read_json(run_dir / records.CONFIG).get("steps")
    except (records.RunFolderError, FileNotFoundError):
        return 0
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else 0


def cmd_params(args: argparse.Namespace) -> int:
    from .models import parameter_counts

    from .tasks import get_task

    task = get_task(args.task)
    bases = _split_list(args.bases, "--bases", BASES)
    check_applicable({k: getattr(args, k) for k in ("filters", "ways", "image_size") if getattr(args, k) is not None},
                     args.task)
    print(f"{'cell':18s} {'train':>9s} {'test':>9s}   name ({args.preset} preset, {args.task})")
    for base in bases:
        for method in METHODS:
            overrides = {k: getattr(args, k) for k in ("co_learner", "filters", "ways", "image_size", "more_capacity",
                                                       "co_learner_depth", "meta_head_like_co_learner",
                                                       "backbone") if getattr(args, k) is not None}
            if get_method(method).extra_capacity:  # More sizes its own head (the config refuses the same heads)
                overrides.pop("meta_head_like_co_learner", None)
            if args.resnet_widths is not None:
                overrides["resnet_widths"] = parse_text(Config, "resnet_widths", args.resnet_widths, "--resnet-widths")
            data = "-" if task.needs_data else None
            cfg = preset(args.preset, args.task, method, base=base, data=data, **overrides)
            c = parameter_counts(cfg, task.channels)
            name = display_name(get_base(base).label, base, method)
            print(f"{cfg.variant:18s} {c['train']:9d} {c['test']:9d}   {name}")
            if "test_dagger" in c:
                print(f"{cfg.variant + '†':18s} {c['train']:9d} {c['test_dagger']:9d}   {name}†")
    return 0


def _split_list(text: str, flag: str, allowed: Sequence[str] | None = None) -> list[str]:
    """A comma-separated flag value, each item checked against ``allowed`` (one line naming the bad one)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{flag} {text!r}: expected a comma-separated list")
    for item in items:
        if allowed is not None:
            check_choice(f"{flag} value", item, allowed)
    return items


def cmd_data(args: argparse.Namespace) -> int:
    from .tasks import TASK_TABLE, get_task

    if args.data_cmd == "download":
        entry = TASK_TABLE.get(args.name)
        if entry is None or entry.downloader is None:
            if entry is not None and entry.no_download:
                raise ConfigError(entry.no_download)
            fetchable = ", ".join(n for n, e in TASK_TABLE.items() if e.downloader is not None)
            raise ConfigError(f"only {fetchable} can be downloaded; get {args.name!r} from its source and point "
                              f"--data at it (README, 'Data sets')")
        for path in entry.downloader()(args.root):
            print(path)
        return 0
    task = get_task(args.task)
    print(task.family.data_summary(task, args.data, args.image_size, args.seed))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), Path(args.report), quick_steps=args.steps, test_tasks=args.test_tasks,
                    argv=args.argv, prog=_prog(), threads=args.threads, progress=args.progress is not False)


# The Ray engine's placement flags (their defaults live in cml.ray_engine.RayOptions).
_RAY_FLAGS = ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "address")
# The SLURM engine's flags (their defaults live in cml.slurm_engine.SlurmOptions).
_SLURM_FLAGS = ("slurm_executor", "partition", "time", "gpus_per_task", "cpus_per_task", "mem", "array_parallelism",
                "slurm_opt", "no_wait")


def _engine_options(args: argparse.Namespace, engine: str, flags: Sequence[str], make: Callable[..., Any],
                    what: str) -> Any:
    """The options of sweep engine ``engine`` from its flags (``make(**given)``), or None under another engine,
    where a flag of its given is refused in one line."""
    given = {f: getattr(args, f) for f in flags if getattr(args, f) is not None}
    if args.engine == engine:
        return make(**given)
    if given:
        raise ConfigError(f"--{next(iter(given)).replace('_', '-')} {what}; add --engine {engine} or remove it")
    return None


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import records
    from .sweep import parse_grid, run_sweep, summary

    grid = parse_grid(args.grid or [])
    given = given_fields(args)
    both = [f for f in grid if f in given]
    if both:
        raise ConfigError(f"--{both[0].replace('_', '-')} and --grid {both[0]}=... both set {both[0]}; keep one")
    if not args.dry_run:
        _require_exporters(args)
    cfg = _config_from_args(args, method="none")
    for name, values in grid.items():
        for value in values:
            check_applicable({name: value}, cfg.task, lambda n, v=value: f"--grid {n}={show(v)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    bases = _split_list(args.bases, "--bases", BASES) if args.bases else [cfg.base]
    methods = _split_list(args.methods, "--methods", METHODS + tuple(LEGACY))
    options = _engine_options(args, "ray", _RAY_FLAGS, ray_engine.RayOptions, "places Ray trials")
    slurm_options = _engine_options(args, "slurm", _SLURM_FLAGS, slurm_engine.options_from_flags,
                                    "submits SLURM jobs")
    out = Path(args.out)
    if args.dry_run:
        from .dryrun import sweep_plan

        print(sweep_plan(out, cfg, methods=methods, seeds=seeds, bases=bases,
                         preset_name=args.preset or DEFAULT_PRESET, grid=grid, engine=args.engine))
        return 0
    result = run_sweep(out, cfg, methods=methods, seeds=seeds, bases=bases, preset_name=args.preset or DEFAULT_PRESET,
                       restart=args.restart, tensorboard=args.tensorboard, grid=grid, engine=args.engine,
                       ray_options=options, slurm_options=slurm_options,
                       command=records.command_entry(args.argv, cfg.to_dict(), _prog()), wandb=args.wandb)
    # Printed whatever --progress says: the one place a sweep's results are shown.
    print(summary(result, out / records.AGGREGATE))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .runindex import index, runs_table

    roots = [Path(r) for r in args.folders]
    print(runs_table(index(roots), roots, sort=args.sort))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .runindex import compare_text, index

    roots = [Path(r) for r in args.runs]
    # Only runs can be compared: a sweep's cells not started yet have nothing to show.
    print(compare_text([e for e in index(roots) if e.state != "not started"], roots))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from figures.report import write_report

    path = write_report([Path(r) for r in args.runs], Path(args.output))
    print(path)
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from .paper import format_tables

    tables = _split_list(args.table, "--table") if args.table else None
    try:
        print(format_tables(tables, _prog()), end="")
    except KeyError as e:
        raise ConfigError(f"--table {args.table}: {e.args[0]}") from None
    return 0


def _prog() -> str:
    # The same parser serves `python -m cml` and the installed `cml` script; usage lines name the one typed.
    return "cml" if Path(sys.argv[0]).name == "cml" else "python -m cml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_prog(), description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"cml {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    train_help = "meta-train one base learner + method into a run folder"
    t = sub.add_parser("train", help=train_help, description=f"{train_help}. Config overrides: {_OVERRIDES}.")
    t.add_argument("--method", metavar=_choices(METHODS), help=_field_help("method") + _FROM_CONFIG)
    t.add_argument("--base", metavar=_choices(BASES), help=_field_help("base"))
    t.add_argument("--task", metavar=_choices(TASKS), help=_field_help("task") + _FROM_CONFIG)
    t.add_argument("--preset", metavar=_choices(PRESETS), help=PRESET_HELP)
    t.add_argument("--config", metavar="FILE", help=_CONFIG_HELP)
    t.add_argument("--out", default="runs", help="parent folder of run folders (default runs/)")
    t.add_argument("--name", help="run folder name (default TASK-VARIANT-sSEED, e.g. fonts-boil_cml-s0)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run from its last checkpoint, with the settings of its config.json (a flag "
                        "given must agree with them, but --steps may extend the run; cml resume RUN needs no flags)")
    t.add_argument("--restart", action="store_true",
                   help="move the run folder aside (to NAME.aside-TIME; nothing is deleted) and train afresh")
    t.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    t.add_argument("--wandb", action="store_true", help=WANDB_HELP)
    t.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    _add_config_flags(t, skip=_AXES)
    t.set_defaults(func=cmd_train)

    resume_help = "continue a run from its folder, with its own config.json (no flags to retype)"
    u = sub.add_parser("resume", help=resume_help,
                       description=f"{resume_help}. Says at which step it resumes; --steps N trains further; any "
                                   f"other config flag must agree with the run's config.json (a run continues with "
                                   f"its own settings). A run killed before its first checkpoint starts again from "
                                   f"step 0 with its config.json.")
    u.add_argument("run", help="the run folder (a train run, or a sweep's cell)")
    u.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    u.add_argument("--wandb", action="store_true", help=WANDB_HELP)
    u.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    _add_config_flags(u, skip=_AXES)
    u.set_defaults(func=cmd_resume)

    e = sub.add_parser("evaluate", help="evaluate a saved run on its test split or on a folder of class folders")
    e.add_argument("run", help="a run folder written by train")
    e.add_argument("--data", help="a folder of class folders (root/<class>/*.png); default: the run's test split")
    e.add_argument("--invert", action="store_true",
                   help="invert the folder's grayscale images (dark strokes on light paper, as Omniglot's PNGs)")
    e.add_argument("--ways", type=int, help="classes per task (must be the run's own; default: the run's)")
    e.add_argument("--shots", type=int, help="support examples per class (default: the run's)")
    e.add_argument("--queries", type=int, help="query examples per class (default: the run's)")
    e.add_argument("--tasks", type=int, help="number of test tasks (default: the run's test_tasks)")
    e.add_argument("--inner-steps", type=int, help="adaptation steps (default: the run's test_inner_steps)")
    e.add_argument("--seed", type=int, help="seed of the test tasks (default: the run's, reproducing its test.json)")
    e.add_argument("--device", choices=DEVICES, help="where to evaluate (default: the run's device)")
    e.add_argument("--backend", choices=BACKENDS,
                   help="engine (default: the run's; batched adapts the tasks in chunks, auto the faster on the "
                        "device)")
    e.add_argument("--select", choices=SELECTS,
                   help="the checkpoint to evaluate: last, or best-val (best.pt, the best validation's; a run "
                        "trained with --select best-val keeps it) (default: the run's select, the one its test read)")
    e.add_argument("--threads", type=int,
                   help="torch CPU threads (default: the run's, so that its own settings reproduce its test.json bit "
                        "for bit; the process's for a run that recorded none)")
    e.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar over the test tasks (default on)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("params", help="parameter counts of every method at train and test time")
    c.add_argument("--task", default="omniglot", metavar=_choices(TASKS),
                   help="the task whose model is counted (default omniglot)")
    c.add_argument("--bases", default="maml",
                   help=f"comma-separated base learners, each one of {', '.join(BASES)} (default maml)")
    c.add_argument("--preset", default=DEFAULT_PRESET, metavar=_choices(PRESETS),
                   help=f"the preset whose model sizes are counted (default {DEFAULT_PRESET}, as train's; the paper's "
                        f"Table 4 counts: --preset paper)")
    c.add_argument("--co-learner", dest="co_learner", metavar=_choices(FIELD_CHOICES["co_learner"]),
                   help="the co-learner head (default: the preset's)")
    c.add_argument("--more-capacity", dest="more_capacity", metavar=_choices(FIELD_CHOICES["more_capacity"]),
                   help="how More gets its extra parameters (default: the preset's)")
    c.add_argument("--co-learner-depth", dest="co_learner_depth", type=int, metavar="0-4",
                   help="the conv co-learner's conv blocks, the paper's Table 8 (default: the preset's, 2)")
    c.add_argument("--meta-head-like-co-learner", dest="meta_head_like_co_learner", action="store_true",
                   default=None, help="theta of the co-learner's structure, the paper's Table 7 (every method but "
                                      "more, which sizes its own)")
    c.add_argument("--backbone", metavar=_choices(FIELD_CHOICES["backbone"]),
                   help="the image feature extractor (default: the preset's, conv4)")
    c.add_argument("--filters", type=int, help="channels of every Conv-4 block (default: the preset's)")
    c.add_argument("--resnet-widths", dest="resnet_widths", metavar="W1,W2,W3,W4",
                   help="the four ResNet-12 blocks' channels (default: the preset's, 64,160,320,640)")
    c.add_argument("--ways", type=int, help="classes per task, the heads' outputs (default: the preset's)")
    c.add_argument("--image-size", dest="image_size", type=int,
                   help="side of the input images (default: the preset's)")
    c.set_defaults(func=cmd_params)

    d = sub.add_parser("data", help="download or describe data sets")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dl = dsub.add_parser("download", help="download a data set (omniglot), verifying its SHA-256")
    dl.add_argument("name", help="the data set: omniglot (fonts is rendered locally; the others come from their "
                                 "own sources, README 'Data sets')")
    dl.add_argument("--root", required=True, help="the folder to download and unpack into")
    info = dsub.add_parser("info", help="classes and images per split")
    info.add_argument("--task", required=True, metavar=_choices(TASKS), help="the data set to describe")
    info.add_argument("--data", help="its root folder (fonts: an optional cache folder; graph: an optional .npz)")
    info.add_argument("--image-size", type=int, default=28, help="side of the images as loaded (default 28)")
    info.add_argument("--seed", type=int, default=0,
                      help="passed to the loader (fonts: its distortions; splits never depend on it) (default 0)")
    d.set_defaults(func=cmd_data)

    sweep_help = ("bases x methods x --grid fields x seeds on one task into one folder, by this process, Ray Tune "
                  "or SLURM; resumes unfinished runs")
    s = sub.add_parser("sweep", help=sweep_help, description=f"{sweep_help}. Config overrides: {_OVERRIDES}.")
    s.add_argument("--bases", help=f"comma-separated base learners, each one of {', '.join(BASES)} (default maml, "
                                   f"or the --config file's base)")
    s.add_argument("--methods", default="none,noisy,cml",
                   help=f"comma-separated methods, each one of {', '.join(METHODS)} (none is the base alone; "
                        f"{', '.join(LEGACY)}: the older names on MAML) (default none,noisy,cml)")
    s.add_argument("--seeds", default="0,1,2",
                   help="comma-separated seeds; intervals across seeds need 3 or more (default 0,1,2)")
    s.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...",
                   help="vary any other config field, e.g. --grid gamma=0,0.5,1 --grid co_learner=linear,conv "
                        "(repeatable; every combination is a cell, named by its values: "
                        "cml-gamma_0.5-co_learner_conv-s0)")
    s.add_argument("--task", metavar=_choices(TASKS), help=_field_help("task") + _FROM_CONFIG)
    s.add_argument("--preset", metavar=_choices(PRESETS), help=PRESET_HELP)
    s.add_argument("--config", metavar="FILE",
                   help=_CONFIG_HELP + "; its base, method and seed are the cells' (--bases, --methods, --seeds)")
    s.add_argument("--out", required=True, help="the sweep folder (one run folder per cell and seed inside)")
    s.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    s.add_argument("--wandb", action="store_true",
                   help="log each cell to Weights & Biases from its records once it is finished (every engine; a "
                        "finished cell not logged before too); needs the wandb package")
    s.add_argument("--dry-run", action="store_true",
                   help="print the cells this command would train (and which are finished, to resume or to start) "
                        "and the config they start from, then stop, writing nothing")
    s.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: the cells one after another in this process (default); ray: one Ray Tune trial "
                        "per cell (needs ray[tune]); slurm: one SLURM job-array task per cell (needs submitit)")
    s.add_argument("--cpus-per-trial", type=float, help="ray: CPUs per trial (default 1)")
    s.add_argument("--gpus-per-trial", type=float,
                   help="ray: GPUs per trial, fractional to share a GPU (0.25: four trials per GPU; default 0)")
    s.add_argument("--max-concurrent", type=int, help="ray: the most trials at once (default: as resources allow)")
    s.add_argument("--address", help="ray: join this Ray cluster (auto, or HOST:PORT from `ray start --head`) "
                                     "instead of starting one here")
    s.add_argument("--slurm-executor", choices=("slurm", "local"),
                   help="slurm: submit with sbatch (default); local: run the same tasks as subprocesses of this "
                        "machine, every cell at once (to try a sweep without a cluster)")
    s.add_argument("--partition", help="slurm: the partition (default: the cluster's)")
    s.add_argument("--time", type=int, metavar="MINUTES",
                   help="slurm: each task's time limit in minutes; a cell that needs longer is requeued and resumes "
                        "from its checkpoint (default 60)")
    s.add_argument("--gpus-per-task", type=int, help="slurm: GPUs per task (default 0)")
    s.add_argument("--cpus-per-task", type=int, help="slurm: CPUs per task, and the torch threads of each (default 1)")
    s.add_argument("--mem",
                   help="slurm: memory per task's node, as sbatch takes it: 16G, 500M (default: the cluster's)")
    s.add_argument("--array-parallelism", type=int, metavar="N",
                   help="slurm: the most array tasks running at once (default 256)")
    s.add_argument("--slurm-opt", action="append", metavar="KEY=VALUE",
                   help="slurm: any other sbatch option, written as #SBATCH --KEY=VALUE (repeatable), e.g. "
                        "--slurm-opt account=mylab --slurm-opt qos=high")
    s.add_argument("--no-wait", action="store_true", default=None,
                   help="slurm: submit and return at once; the same command run later collects the finished cells "
                        "and submits none twice")
    s.add_argument("--restart", action="store_true",
                   help="move a damaged sweep.json or damaged cells aside (nothing is deleted) and redo them")
    _add_config_flags(s, skip=_AXES + ("seed",))
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("report", help="a multi-page PDF from run or sweep folders")
    r.add_argument("runs", nargs="+", help="run folders, sweep folders, or folders above them")
    r.add_argument("-o", "--output", required=True, help="the PDF to write (A4 pages)")
    r.set_defaults(func=cmd_report)

    paper = sub.add_parser("paper", help="the paper's published tables, each value with the command that reproduces "
                                         "it here")
    paper.add_argument("--table", help="comma-separated tables to print (1,2,3,4,5,7,8,9; default all)")
    paper.set_defaults(func=cmd_paper)

    b = sub.add_parser("tensorboard", help="write TensorBoard event files from the records of run or sweep folders")
    b.add_argument("runs", nargs="+", help="run folders, sweep folders, or folders above them")
    b.add_argument("--logdir", help="write the events under this folder (LOGDIR/<sweep>/<run>) instead of into "
                                    "each run folder's tensorboard/")
    b.set_defaults(func=cmd_tensorboard)

    m = sub.add_parser("demo", help="the README's main job: MAML vs CML on sinusoid and the font data set")
    m.add_argument("--out", default="runs/demo", help="parent folder of the demo's sweep folders (default runs/demo)")
    m.add_argument("--report", default="reports/demo.pdf", help="the PDF to write (default reports/demo.pdf)")
    m.add_argument("--steps", type=int, help="override the outer steps of every demo run (for a faster look)")
    m.add_argument("--test-tasks", type=int, help="override the number of test tasks of every demo run")
    m.add_argument("--threads", type=int,
                   help="torch CPU threads of every demo run (default: the process's; the README's table says the "
                        "count it was made at, and the same count on the same torch build and CPU gives it exactly)")
    m.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="the overall bar (cells done of all, ETA) and each run's bar (default on)")
    m.set_defaults(func=cmd_demo)

    x = sub.add_parser("runs", help="list run folders and sweep cells: task, base, method, seed, steps, result, state")
    x.add_argument("folders", nargs="*", default=["runs"],
                   help="run folders, sweep folders, or folders above them (default runs/)")
    x.add_argument("--sort", choices=COLUMNS,
                   help="order by a column (result: the best first; steps: the most trained first; default: the "
                        "order found)")
    x.set_defaults(func=cmd_runs)

    y = sub.add_parser("compare", help="two or more runs side by side: config differences, results, paired "
                                       "differences")
    y.add_argument("runs", nargs="+",
                   help="run folders (or sweep folders: their runs); runs differing only by seed form one column")
    y.set_defaults(func=cmd_compare)
    return p


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def _with_one_line_warnings(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``func(args)`` with each warning shown as the CLI shows an error: one ``warning:`` line, without the source
    line the user did not write (warnings recorded by a caller, as pytest does, stay recorded)."""
    before = warnings.formatwarning
    warnings.formatwarning = _one_line
    try:
        return func(args)
    finally:
        warnings.formatwarning = before


# Errors of the environment a path leads to (the user's to fix, never a bug), as the one line they print.
_PATH_ERRORS = {
    errno.EROFS: "it is on a read-only file system",
    errno.ENAMETOOLONG: "a file name in it is too long for the file system (255 bytes)",
    errno.ENOTDIR: "a file stands where a folder of it must be",
    errno.EISDIR: "it is a folder where a file must be",
    errno.ELOOP: "it goes through too many symbolic links",
    errno.EFBIG: "the file grew beyond the file system's (or this process's) size limit",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command. Errors in the user's input (a :class:`cml.errors.UserError`: config, data, run folders, a
    diverged run) end with a one-line message naming the value and exit status 2, and so do a path the user may
    not write (permissions, a read-only file system, a name too long) and a full disk; SIGINT and SIGTERM end with
    one line saying where training stopped (:mod:`cml.interrupt`) and status 130 or 143; a closed pipe
    (``cml params | head``) ends quietly with status 141, as a process ended by SIGPIPE; anything else is a bug
    and keeps its traceback (a builtin ``FileNotFoundError`` included: a missing file the user named is a
    ``MissingFileError``)."""
    from . import interrupt

    args = build_parser().parse_args(argv)  # first: --help and --version need no torch import
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: train and sweep record it
    try:
        with interrupt.handled():
            return _with_one_line_warnings(args.func, args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(e.message, file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # The reader of stdout is gone (`| head`): nothing more can be shown. Point stdout at /dev/null so that
        # the interpreter's own flush at exit does not print the same error again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 128 + signal.SIGPIPE
    except PermissionError as e:
        # An --out, --data or -o the user may not write or read: theirs to fix, not a bug.
        print(f"error: permission denied: {e.filename or e}; choose a folder you can write (--out) or fix its "
              f"permissions", file=sys.stderr)
        return 2
    except OSError as e:
        # Records turn a full disk into a DiskFullError; this catches the other writes (the report's PDF), and the
        # paths that cannot be written at all. Any other OSError is a bug: raised again, with its traceback.
        if e.errno not in (errno.ENOSPC, errno.EDQUOT) and not (e.errno in _PATH_ERRORS and e.filename):
            raise
        print(f"error: {_os_error_line(e)}", file=sys.stderr)
        return 2


def _os_error_line(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full while writing {e.filename or 'a file'}; free space there and run the command again"
    return (f"cannot write {e.filename}: {_PATH_ERRORS[e.errno]}; choose another path (--out, --name, -o or "
            f"--logdir)")
