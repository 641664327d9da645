"""``python -m cml``: train, evaluate, count parameters, manage data, sweep, report, TensorBoard, demo.

Every flag of ``train`` that sets a config field is generated from :class:`cml.config.Config`, so the CLI and
the config cannot drift apart: ``--inner-lr 0.1`` sets ``inner_lr``, ``--first-order``/``--no-first-order``
set ``first_order``. A flag left out keeps the preset's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import FIELD_CHOICES, METHODS, PRESETS, TASKS, Config, ConfigError, preset

_TYPES = {"int": int, "float": float, "str": str, "str | None": str}


def _add_config_flags(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    from .fieldhelp import attribute_docs, field_help, preset_defaults

    group = p.add_argument_group("config overrides (a flag left out keeps the --preset's value)")
    docs, defaults = attribute_docs(Config), preset_defaults()
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = field_help(f.name, docs, defaults)
        if f.type == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            # Choices are listed in the help but checked by Config, the one place that validates a value.
            metavar = _choices(FIELD_CHOICES[f.name]) if f.name in FIELD_CHOICES else f.name.upper()
            group.add_argument(flag, dest=f.name, type=_TYPES[f.type], default=None, metavar=metavar, help=text)


TENSORBOARD_HELP = ("also write TensorBoard event files into each run folder's tensorboard/, from its records "
                    "(losses, accuracies, psi gradient norms and cosines, CKA at the end), updated at every log line")
PRESET_HELP = ("quick (minutes on a CPU) or paper (the authors' settings); sets every config flag left out "
               "(default quick)")


def _choices(values: Sequence[str]) -> str:
    return "{" + ",".join(values) + "}"


def _field_help(name: str) -> str:
    from .fieldhelp import field_help

    return field_help(name)


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if f.name not in ("method", "task") and getattr(args, f.name, None) is not None}
    return preset(args.preset, args.task, args.method, **overrides)


def _run_name(cfg: Config) -> str:
    return f"{cfg.task}-{cfg.method}-s{cfg.seed}"


def cmd_train(args: argparse.Namespace) -> int:
    from .trainer import Trainer

    cfg = _config_from_args(args)
    run_dir = Path(args.out) / (args.name or _run_name(cfg))
    recorder = None
    if cfg.record_interval:
        from analysis.recorders import Recorder

        recorder = Recorder(run_dir)
    trainer = Trainer(cfg, run_dir, resume=args.resume, recorder=recorder)
    counts = trainer_counts(trainer)
    print(f"run folder: {run_dir}\n{counts}", file=sys.stderr)
    live = _live_tensorboard(trainer) if args.tensorboard else None
    result = trainer.train()
    if recorder is not None:
        recorder.finish(trainer)
    if live is not None:
        live.close()
    print(format_result(result))
    return 0


def _live_tensorboard(trainer):
    from .tensorboard import LiveExport

    live = LiveExport(trainer.run_dir)
    trainer.log_hooks.append(lambda _: live.update())
    print(f"TensorBoard events: {live.logdir} (tensorboard --logdir {live.logdir})", file=sys.stderr)
    return live


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from figures.runs import find_runs

    from .tensorboard import export_run

    runs = find_runs([Path(r) for r in args.runs])
    for run in runs:
        # Under --logdir, each run keeps its sweep folder's name above its own, so runs stay apart.
        logdir = Path(args.logdir) / run.path.parent.name / run.path.name if args.logdir else None
        print(export_run(run.path, logdir))
    print(f"{len(runs)} run(s); view with: tensorboard --logdir {args.logdir or ' '.join(args.runs)}",
          file=sys.stderr)
    return 0


def trainer_counts(trainer) -> str:
    from .models import parameter_counts

    c = parameter_counts(trainer.cfg, trainer.tasks.in_channels)
    return f"parameters: {c['train']} at train time, {c['test']} at test time (psi {c['psi']}, theta {c['theta']}, phi {c['phi']})"


def _phi_label(method: str) -> str:
    return "CML† (phi)" if method == "cml" else "phi head"


def format_result(r: dict[str, Any]) -> str:
    """One line of test results; phi's predictions are CML† for cml (for cl, its second head)."""
    if "acc" in r:
        text = f"{r['method']}: test accuracy {100 * r['acc']:.2f} ± {100 * r['acc_ci95']:.2f}% over {r['tasks']} tasks"
        if "acc_dagger" in r:
            text += f"; {_phi_label(r['method'])} {100 * r['acc_dagger']:.2f} ± {100 * r['acc_dagger_ci95']:.2f}%"
        return text
    text = f"{r['method']}: test MSE {r['mse']:.4f} ± {r['mse_ci95']:.4f} over {r['tasks']} tasks " \
           f"(before adaptation {r['mse_before']:.3f})"
    if "mse_dagger" in r:
        text += f"; {_phi_label(r['method'])} {r['mse_dagger']:.4f} ± {r['mse_dagger_ci95']:.4f}"
    return text


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data import load_folder_pool
    from .data.base import DataError, TaskSampler
    from .sinusoid import SinusoidSampler
    from .trainer import TaskSource, evaluate, generator, load_model

    model, cfg = load_model(Path(args.run))
    changes = {k: v for k, v in (("shots", args.shots), ("queries", args.queries), ("test_tasks", args.tasks),
                                 ("seed", args.seed), ("test_inner_steps", args.inner_steps)) if v is not None}
    if args.ways is not None and args.ways != cfg.ways and not cfg.is_regression:
        raise ConfigError(f"--ways {args.ways}: the run's heads were trained for {cfg.ways}-way tasks and have "
                          f"{cfg.ways} outputs; evaluate with --ways {cfg.ways}")
    if cfg.is_regression and (args.data is not None or args.ways is not None):
        raise ConfigError("--data and --ways apply to classification runs; this run is sinusoid regression")
    cfg = cfg.replace(progress=not args.no_progress, **changes)
    # The test stream: evaluating a run with its own settings reproduces its test.json.
    gen = generator(cfg.seed, "test")
    if cfg.is_regression:
        sampler = SinusoidSampler(cfg.shots, cfg.queries, gen)
        where = f"sinusoid, {cfg.shots}-shot"
    elif args.data is not None:
        pool = load_folder_pool(args.data, cfg.image_size, invert=args.invert)
        channels = int(pool.images(0).shape[1])
        expected = int(next(p for n, p in model.named_parameters()).shape[1])
        if channels != expected:
            raise DataError(f"{args.data} has {channels}-channel images; the run was trained on {expected}-channel "
                            f"images")
        sampler = TaskSampler(pool, cfg.ways, cfg.shots, cfg.queries, gen, split=f"folder {args.data}")
        where = f"{args.data}, {cfg.ways}-way {cfg.shots}-shot"
    else:
        sampler = TaskSource(cfg).sampler("test", gen)
        where = f"the test split of {cfg.task}, {cfg.ways}-way {cfg.shots}-shot"
    result = evaluate(model, cfg, sampler, cfg.test_tasks, torch.device("cpu"), progress=cfg.progress)
    result.update(method=cfg.method, task=cfg.task)
    print(f"{where}: " + format_result(result))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .models import parameter_counts

    in_channels = 3 if args.task in ("miniimagenet", "cifar-fs", "fc100", "flower") else 1
    print(f"{'method':12s} {'train':>9s} {'test':>9s}   ({args.preset} preset, {args.task})")
    for method in METHODS:
        overrides = {k: getattr(args, k) for k in ("co_learner", "filters", "ways", "image_size", "more_capacity")
                     if getattr(args, k) is not None}
        data = None if args.task in ("sinusoid", "fonts") else "-"
        cfg = preset(args.preset, args.task, method, data=data, **overrides)
        c = parameter_counts(cfg, in_channels)
        print(f"{method:12s} {c['train']:9d} {c['test']:9d}")
        if "test_dagger" in c:
            print(f"{'cml†':12s} {c['train']:9d} {c['test_dagger']:9d}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from . import data

    if args.data_cmd == "download":
        if args.name == "fonts":
            raise ConfigError("fonts needs no download: it is rendered locally from the fonts matplotlib ships "
                              "(on first use, then cached); `python -m cml data info --task fonts` renders it and "
                              "prints its splits")
        if args.name != "omniglot":
            raise ConfigError(f"only omniglot can be downloaded; get {args.name!r} from its source and point "
                              f"--data at it (README, 'Data sets')")
        from .data.omniglot import download_omniglot

        for path in download_omniglot(args.root):
            print(path)
        return 0
    splits = data.load_splits(args.task, args.data, args.image_size, seed=args.seed)
    print(splits.summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), Path(args.report), quick_steps=args.steps, test_tasks=args.test_tasks)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    cfg = _config_from_args(args)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    run_sweep(Path(args.out), cfg, methods=args.methods.split(","), seeds=seeds, tensorboard=args.tensorboard)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from figures.report import write_report

    path = write_report([Path(r) for r in args.runs], Path(args.output))
    print(path)
    return 0


def _prog() -> str:
    # The same parser serves `python -m cml` and the installed `cml` script; usage lines name the one typed.
    return "cml" if Path(sys.argv[0]).name == "cml" else "python -m cml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_prog(), description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"cml {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train one method into a run folder")
    t.add_argument("--method", required=True, metavar=_choices(METHODS), help=_field_help("method"))
    t.add_argument("--task", required=True, metavar=_choices(TASKS), help=_field_help("task"))
    t.add_argument("--preset", default="quick", metavar=_choices(PRESETS), help=PRESET_HELP)
    t.add_argument("--out", default="runs", help="parent folder of run folders (default runs/)")
    t.add_argument("--name", help="run folder name (default TASK-METHOD-sSEED)")
    t.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    t.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    _add_config_flags(t, skip=("method", "task"))
    t.set_defaults(func=cmd_train)

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
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("params", help="parameter counts of every method at train and test time")
    c.add_argument("--task", default="omniglot")
    c.add_argument("--preset", default="paper")
    c.add_argument("--co-learner", dest="co_learner")
    c.add_argument("--more-capacity", dest="more_capacity")
    c.add_argument("--filters", type=int)
    c.add_argument("--ways", type=int)
    c.add_argument("--image-size", dest="image_size", type=int)
    c.set_defaults(func=cmd_params)

    d = sub.add_parser("data", help="download or describe data sets")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    dl = dsub.add_parser("download", help="download a data set (omniglot), verifying its SHA-256")
    dl.add_argument("name")
    dl.add_argument("--root", required=True)
    info = dsub.add_parser("info", help="classes and images per split")
    info.add_argument("--task", required=True)
    info.add_argument("--data")
    info.add_argument("--image-size", type=int, default=28)
    info.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)

    s = sub.add_parser("sweep", help="methods x seeds on one task into one folder; resumes unfinished runs")
    s.add_argument("--methods", default="maml,noisy-maml,cml",
                   help=f"comma-separated methods, each one of {', '.join(METHODS)} (default maml,noisy-maml,cml)")
    s.add_argument("--seeds", default="0,1,2",
                   help="comma-separated seeds; intervals across seeds need 3 or more (default 0,1,2)")
    s.add_argument("--task", required=True, metavar=_choices(TASKS), help=_field_help("task"))
    s.add_argument("--preset", default="quick", metavar=_choices(PRESETS), help=PRESET_HELP)
    s.add_argument("--out", required=True, help="the sweep folder (one run folder per method and seed inside)")
    s.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    s.set_defaults(method="maml")
    _add_config_flags(s, skip=("method", "task", "seed"))
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("report", help="a multi-page PDF from run or sweep folders")
    r.add_argument("runs", nargs="+")
    r.add_argument("-o", "--output", required=True)
    r.set_defaults(func=cmd_report)

    b = sub.add_parser("tensorboard", help="write TensorBoard event files from the records of run or sweep folders")
    b.add_argument("runs", nargs="+", help="run folders, sweep folders, or folders above them")
    b.add_argument("--logdir", help="write the events under this folder (LOGDIR/<sweep>/<run>) instead of into "
                                    "each run folder's tensorboard/")
    b.set_defaults(func=cmd_tensorboard)

    m = sub.add_parser("demo", help="the README's main job: MAML vs CML on sinusoid and the font data set")
    m.add_argument("--out", default="runs/demo")
    m.add_argument("--report", default="reports/demo.pdf")
    m.add_argument("--steps", type=int, help="override the outer steps of every demo run (for a faster look)")
    m.add_argument("--test-tasks", type=int, help="override the number of test tasks of every demo run")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command. Errors in the user's input (config, data, run folders) end with a one-line message
    naming the value and exit status 2; anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)  # first: --help and --version need no torch import
    from .data.base import DataError
    from .meta import NonFiniteLossError
    from .records import RunFolderError

    try:
        return args.func(args)
    except (ConfigError, DataError, NonFiniteLossError, RunFolderError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
