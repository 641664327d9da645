"""The meta-training loop for every base learner and method, with validation, checkpoints, resume and the
final test. It reads the base-learner and method tables through the config and :mod:`cml.meta`; it never
compares a method's or a base's name.

The trainer writes records into a run folder (see :mod:`cml.records`); figures read only those records.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from . import interrupt, memory, records
from .config import Config, ConfigError
from .data.base import Task
from .bases import get_base
from .engines import make_backend, resolve_backend
from .errors import Interrupted, MissingFileError, OutputExistsError
from .meta import EvalResult, MetaGradient, NonFiniteLossError, evaluate_tasks, outer_gradient
from .models import MetaModel, build_model, init_parameters, parameter_counts
from .roles import role_of
from .records import CHECKPOINT
from .seeds import generator

# What every checkpoint holds (see Trainer.save_checkpoint); a file without these keys is not a cml checkpoint.
CHECKPOINT_KEYS = ("model", "optimizer", "train_gen", "noise_gen", "step", "elapsed", "config")
# Since the second fault matrix a checkpoint also holds "record_steps": the step of the last line of each
# JSON-lines record when it was written, so that resume can tell a line cut short after the checkpoint (dropped,
# and written again) from a line it needs that was lost (refused: it cannot be written again without training).
RECORD_STEPS = "record_steps"


class Sampler(Protocol):
    def sample(self) -> Task: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


class TaskSource:
    """Makes the samplers of a run: one per split, each with its own generator derived from the seed.

    The task family (:mod:`cml.tasks`) loads the data and makes the samplers.

    Args:
        cfg: the run's config.
        splits: preloaded data (the family's ``load(cfg)``: image pools, a graph's class split); loaded from
            ``cfg`` when None (None again for generated tasks).
        device: where image samplers keep their classes and make tasks (None: the CPU pools themselves).
    """

    def __init__(self, cfg: Config, splits=None, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = device
        self.splits = splits if splits is not None else cfg.family.load(cfg)
        if self.splits is not None and cfg.family.classification:
            for split in ("train", "val", "test"):
                pool = self.splits[split]
                if len(pool) < cfg.ways:
                    # Checked here so that the error comes before any training.
                    self.sampler(split, torch.Generator())

    @property
    def in_channels(self) -> int:
        return self.cfg.family.in_channels(self.splits)

    def sampler(self, split: str, gen: torch.Generator, ways: int | None = None, shots: int | None = None,
                queries: int | None = None) -> Sampler:
        cfg = self.cfg
        return cfg.family.sampler(cfg, self.splits, split, gen, ways or cfg.ways, shots or cfg.shots,
                                  queries or cfg.queries, self.device)


def summarize(cfg: Config, res: EvalResult, where: str = "evaluation") -> dict[str, Any]:
    """Means and 95% normal CIs (1.96 sd / sqrt(n)) over tasks of an evaluation.

    Raises:
        NonFiniteLossError: if adaptation diverged (a non-finite query loss) on any task: a mean over the
            other tasks would hide it.
    """
    from analysis.stats import normal_ci95

    bad = sum(not math.isfinite(v) for v in res.meta_loss)
    if bad:
        raise NonFiniteLossError(
            f"test-time adaptation diverged in the {where}: the query loss is not finite on {bad} of "
            f"{len(res.meta_loss)} tasks; lower --inner-lr or --test-inner-steps")
    out: dict[str, Any] = {"tasks": len(res.meta_loss)}

    def put(key: str, values: list[float]) -> None:
        if values:
            mean, ci = normal_ci95(values)
            # One task has no CI: None (null in test.json, "unavailable" on screen), never NaN.
            out[key], out[key + "_ci95"] = mean, ci if math.isfinite(ci) else None

    for key, values in cfg.family.results(res):
        put(key, values)
    return out


def evaluate(model: MetaModel, cfg: Config, sampler: Sampler, n_tasks: int, device: torch.device,
             progress: bool = False, desc: str = "eval") -> dict[str, Any]:
    """Evaluates ``n_tasks`` tasks drawn from ``sampler`` and summarises them (see :func:`summarize`)."""
    from tqdm.auto import tqdm

    backend = make_backend(cfg.backend, model)
    params = dict(model.named_parameters())
    tasks = (sampler.sample().to(device) for _ in range(n_tasks))
    tasks = tqdm(tasks, total=n_tasks, desc=desc, disable=not progress, leave=False)
    return summarize(cfg, evaluate_tasks(backend, cfg, params, tasks, cfg.test_inner_steps), desc)


class Trainer:
    """Meta-trains one method into a run folder.

    Args:
        cfg: the run's config.
        run_dir: the run folder (created if absent).
        splits: preloaded data splits, to share one load between runs; loaded from ``cfg`` when None.
        resume: continue from ``run_dir/checkpoint.pt``. Only ``steps`` may differ from the saved config.
        recorder: called as ``recorder(step, meta_gradient)`` on recording steps (learning-dynamics
            diagnostics); on those steps the meta-gradient carries the meta-learner's part separately.
    """

    def __init__(self, cfg: Config, run_dir: Path, splits=None, resume: bool = False,
                 recorder: Callable[[int, MetaGradient], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.backend == "auto":  # config.json (and a resume's check) then name the engine that ran
            cfg = cfg.replace(backend=resolve_backend(cfg.backend, self.device))
        if resume:
            cfg = self._check_resume(cfg)
        elif os.path.lexists(self.run_dir / CHECKPOINT):
            raise OutputExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it, --restart "
                                    f"to move it aside and train afresh, or choose another --out/--name")
        else:
            check_run_folder(self.run_dir)
        # Before the data loads and the model is built: a config that cannot fit is one line, not an OOM kill.
        memory.check(cfg, cfg.task_entry.channels, self.device)
        self.cfg = cfg
        self.tasks = TaskSource(cfg, splits, self.device)
        self.model = build_model(cfg, self.tasks.in_channels)
        init_parameters(self.model, generator(cfg.seed, "init"))
        self.model.to(self.device)
        self.backend = make_backend(cfg.backend, self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.meta_lr)
        self.train_gen = generator(cfg.seed, "train")
        self.noise_gen = generator(cfg.seed, "noise")
        self.train_sampler = self.tasks.sampler("train", self.train_gen)
        self.step = 0
        self.elapsed = 0.0
        self.window: list[dict[str, float | None]] = []
        self.recorder = recorder
        #: Called as ``hook(trainer)`` after each step that appended to metrics.jsonl or val.jsonl (e.g. the
        #: live TensorBoard export, which reads those records).
        self.log_hooks: list[Callable[["Trainer"], None]] = []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._load_checkpoint()
            self._remove_stale_end_records()
            cfg.save(self.run_dir / records.CONFIG)  # the new step count, once the checkpoint has loaded
        else:
            for name in records.STEP_RECORDS:
                (self.run_dir / name).unlink(missing_ok=True)
            cfg.save(self.run_dir / records.CONFIG)

    # -- checkpoints ---------------------------------------------------------------------------------

    def _check_resume(self, cfg: Config) -> Config:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            raise MissingFileError(f"cannot resume: {path} does not exist; train without --resume first")
        saved = Config.load(self.run_dir / records.CONFIG)
        diff = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - {"steps", "progress"}
        if diff:
            raise ConfigError(f"cannot resume {self.run_dir}: {', '.join(sorted(diff))} differ from the saved "
                              f"config.json; only steps may change on resume")
        return saved.replace(steps=cfg.steps, progress=cfg.progress)

    def save_checkpoint(self) -> None:
        records.atomic_torch_save({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_gen": self.train_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "step": self.step,
            "elapsed": self.elapsed,
            # The steps since the last log line: resuming from a checkpoint between two log lines must
            # average the same steps as an uninterrupted run.
            "window": self.window,
            "config": self.cfg.to_dict(),
            RECORD_STEPS: {name: records.last_step(self.run_dir / name) for name in records.STEP_RECORDS},
        }, self.run_dir / CHECKPOINT)

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(self.run_dir)
        saved = _checkpoint_config(state, path)
        differ = sorted(k for k, v in saved.to_dict().items()
                        if k not in ("steps", "progress") and self.cfg.to_dict()[k] != v)
        if differ:
            verb = "differs" if len(differ) == 1 else "differ"
            raise records.damaged(path, f"written by a run with other settings than its config.json "
                                        f"({', '.join(differ)} {verb}); it belongs to another run")
        step = state["step"]
        if not isinstance(step, int) or step < 0:
            raise records.damaged(path, f"its step {step!r} is not a count of steps")
        if self.cfg.steps < step:
            raise ConfigError(f"--steps {self.cfg.steps} is fewer than the {step} steps {self.run_dir} has "
                              f"trained; a run cannot be shortened: resume with --steps {step} or more")
        _load_weights(self.model, state["model"], path)
        window = state.get("window", [])
        if not (isinstance(window, list) and all(
                isinstance(w, dict) and all(isinstance(k, str) and (v is None or _finite_number(v))
                                            for k, v in w.items()) for w in window)
                and len({frozenset(w) for w in window}) <= 1):
            raise records.damaged(path, "its window (the steps since the last log line) is not a list of records of "
                                        "the same numbers, one per step")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.train_gen.set_state(state["train_gen"])
            self.noise_gen.set_state(state["noise_gen"])
            self.elapsed = float(state["elapsed"])
            self.window = [dict(w) for w in window]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise records.damaged(path, f"its optimizer or generator state does not fit this run "
                                        f"({type(e).__name__})") from None
        self.step = step
        written = state.get(RECORD_STEPS)
        if written is not None and not (isinstance(written, dict) and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in written.values())):
            raise records.damaged(path, f"its {RECORD_STEPS} is not the last step of each record")
        # Lines written after the checkpoint belong to steps that will be trained again; a line cut short by a
        # crash is dropped with them. A line the checkpoint was written after is needed: if it is gone (its last
        # line damaged, the file deleted), training again is the only way to write it.
        for name in records.STEP_RECORDS:
            record = self.run_dir / name
            kept = None
            if os.path.lexists(record):
                kept = [r for r in records.read_jsonl(record, drop_partial_last=True) if r["step"] <= self.step]
            needed = (written or {}).get(name)
            if needed is not None and (not kept or kept[-1]["step"] < min(needed, self.step)):
                found = ("does not exist" if kept is None else
                         f"ends at step {kept[-1]['step']}" if kept else "holds no whole line")
                raise records.damaged(record, f"{found}, but the checkpoint of step {self.step} was written after "
                                              f"its line of step {needed}; the lost lines (a damaged last line, or a "
                                              f"deleted file) cannot be written again without training again",
                                      records._RESTART)
            if kept is not None:
                records.truncate_jsonl(record, kept)

    def _remove_stale_end_records(self) -> None:
        """Removes the end-of-run records (test, representations, features or fits) of another step than the one
        this run ends at: a run extended with ``--resume --steps N`` must not show its earlier end as its result
        while it trains (they are written again when it ends)."""
        present = [self.run_dir / n for n in records.END_RECORDS if os.path.lexists(self.run_dir / n)]
        for path in present:
            records.refuse_link(path)  # a link or a folder in a record's place is the user's to move, not ours
        test = self.run_dir / records.TEST
        try:
            test_step = records.read_json(test).get("step") if test in present else None
        except records.RunFolderError:
            test_step = -1  # damaged: stale, and written again at the end
        for path in present:
            try:
                step = record_step(path)
            except records.RunFolderError:
                step = -1
            if step is None:
                step = test_step  # an older record without its step: it was written with test.json
            if step is not None and step != self.cfg.steps:
                path.unlink()

    # -- training ------------------------------------------------------------------------------------

    def outer_step(self, record: bool) -> dict[str, float | None]:
        """One outer step; returns its scalars (losses, accuracies, the norm of psi's meta-gradient)."""
        cfg = self.cfg
        tasks = [self.train_sampler.sample().to(self.device) for _ in range(cfg.meta_batch)]
        params = dict(self.model.named_parameters())
        try:
            mg = outer_gradient(self.backend, cfg, params, tasks, split=record and cfg.spec.phi_in_outer_loss,
                                outer_step=self.step)
        except NonFiniteLossError as e:
            last = f"the last good checkpoint ({self.run_dir / CHECKPOINT})" if (
                self.run_dir / CHECKPOINT).exists() else "no checkpoint (none was written yet)"
            raise NonFiniteLossError(f"{e} at outer step {self.step + 1}; training stopped and kept {last}; "
                                     f"lower --meta-lr or --inner-lr") from None
        bad = [n for n, g in mg.total.items() if not torch.isfinite(g).all()]
        if bad:
            raise NonFiniteLossError(f"non-finite meta-gradient of {', '.join(bad[:3])} at outer step "
                                     f"{self.step + 1} (the loss was finite); training stopped before the update; "
                                     f"lower --meta-lr or --inner-lr")
        if record and self.recorder is not None:
            self.recorder(self.step + 1, mg)
        # Before any noise: the norm of the meta-gradient the method itself produced.
        psi_norm = math.sqrt(sum(float(g.pow(2).sum()) for n, g in mg.total.items() if role_of(n) == "psi"))
        if cfg.spec.perturb_gradient is not None:
            cfg.spec.perturb_gradient(cfg, mg.total, self.noise_gen)
        frozen = cfg.spec.frozen  # roles the method never updates (the random co-learner): no gradient, no step
        for name, p in self.model.named_parameters():
            p.grad = None if role_of(name) in frozen else mg.total[name]
        for group in self.optimizer.param_groups:
            group["lr"] = get_base(cfg.base).outer_lr(cfg, self.step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # After the update, noise included: a non-finite weight stops training before any checkpoint holds it.
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            last = f"the last good checkpoint ({self.run_dir / CHECKPOINT})" if (
                self.run_dir / CHECKPOINT).exists() else "no checkpoint (none was written yet)"
            noisy = cfg.spec.gradient_noise
            cause = "lower --noise-std or --meta-lr" if noisy else "lower --meta-lr"
            raise NonFiniteLossError(f"non-finite weights ({', '.join(bad[:3])}) after the update of outer step "
                                     f"{self.step + 1}{' (noise included)' if noisy else ''}; "
                                     f"training stopped and kept {last}; {cause}")
        return {"meta_loss": mg.meta_loss, "co_loss": mg.co_loss, "meta_acc": mg.meta_acc, "co_acc": mg.co_acc,
                "grad_norm_psi": psi_norm}

    def validate(self) -> dict[str, Any]:
        # Fresh generator each time: every validation sees the same tasks, so curves are comparable.
        sampler = self.tasks.sampler("val", generator(self.cfg.seed, "val"))
        return evaluate(self.model, self.cfg, sampler, self.cfg.val_tasks, self.device,
                        desc=f"validation at step {self.step}")

    def train(self) -> dict[str, Any]:
        """Trains up to ``cfg.steps`` outer steps, then tests; returns the test record (also ``test.json``)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"{cfg.variant} {cfg.task}", disable=not cfg.progress)
        start = time.perf_counter() - self.elapsed
        interrupt.progress(self.step, cfg.steps)
        with interrupt.deferred():  # SIGINT/SIGTERM: this step's records and a checkpoint, then stop
            while self.step < cfg.steps:
                self._train_step(start, bar)
                interrupt.progress(self.step, cfg.steps)
                signum = interrupt.pending()
                if signum is not None:
                    bar.close()
                    if not (cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0) and \
                            self.step != cfg.steps:
                        self.save_checkpoint()
                    raise Interrupted(signum, self.step, cfg.steps)
        bar.close()
        val_path = self.run_dir / records.VAL
        done = val_path.exists() and any(r["step"] == self.step for r in records.read_jsonl(val_path))
        if not done:  # a run resumed after its last checkpoint has validated already
            records.append_jsonl(val_path, {"step": self.step, **self.validate()})
            for hook in self.log_hooks:
                hook(self)
        return self.test()

    def _train_step(self, start: float, bar: Any) -> None:
        """One outer step and the records of its step (metrics, validation, checkpoint)."""
        cfg = self.cfg
        record = cfg.record_interval > 0 and (self.step + 1) % cfg.record_interval == 0
        self.window.append(self.outer_step(record))
        self.step += 1
        self.elapsed = time.perf_counter() - start
        bar.update(1)
        if self.step % cfg.log_interval == 0 or self.step == cfg.steps:
            line = _mean_metrics(self.window)
            records.append_jsonl(self.run_dir / records.METRICS, {"step": self.step, "time": self.elapsed, **line})
            bar.set_postfix({k: f"{v:.3g}" for k, v in line.items() if v is not None})
            self.window = []
        validated = bool(cfg.val_interval) and self.step % cfg.val_interval == 0
        if validated:
            records.append_jsonl(self.run_dir / records.VAL, {"step": self.step, **self.validate()})
        if validated or not self.window:  # the window empties when a metrics line is written
            for hook in self.log_hooks:
                hook(self)
        if (cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0) or self.step == cfg.steps:
            self.save_checkpoint()

    def test(self) -> dict[str, Any]:
        sampler = self.tasks.sampler("test", generator(self.cfg.seed, "test"))
        result = evaluate(self.model, self.cfg, sampler, self.cfg.test_tasks, self.device,
                          progress=self.cfg.progress, desc="test")
        result.update(step=self.step, method=self.cfg.method, base=self.cfg.base, variant=self.cfg.variant,
                      task=self.cfg.task, shots=self.cfg.shots,
                      ways=self.cfg.ways if self.cfg.family.classification else None,
                      params=parameter_counts(self.cfg, self.tasks.in_channels), train_time=self.elapsed)
        records.write_json(self.run_dir / records.TEST, result)
        return result

    def finish_recording(self) -> dict[str, Any] | None:
        """The recorder's end-of-training records (t-SNE, CKA, fits), if a recorder is attached; returns what
        it wrote to ``representations.json``."""
        if self.recorder is not None and hasattr(self.recorder, "finish"):
            return self.recorder.finish(self.backend, self.cfg, self.tasks, self.device, step=self.step)
        return None


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_run_folder(run_dir: Path) -> None:
    """Refuses to start a run in a folder that is not a cml run folder: one holding files cml does not write there,
    one of its names as a symbolic link, or a ``config.json`` that is not a cml config. A fresh run replaces the
    records of its folder, so it would overwrite or delete the user's own files.

    Raises:
        OutputExistsError: naming the folder and what in it is foreign.
    """
    run_dir = Path(run_dir)
    foreign = records.foreign_entries(run_dir)
    if foreign:
        listed = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise OutputExistsError(f"{run_dir} is not a cml run folder (it holds {listed}); a new run would overwrite "
                                f"or delete files there: choose another --out/--name, or empty the folder")
    config = run_dir / records.CONFIG
    if os.path.lexists(config):
        from .fields import check_keys

        try:
            check_keys(Config, records.read_json(config), str(config))
        except (records.RunFolderError, ConfigError) as e:
            raise OutputExistsError(f"{run_dir} is not a cml run folder: its {records.CONFIG} is not a config "
                                    f"written by cml ({e}); a new run would overwrite it: choose another "
                                    f"--out/--name") from None


def record_step(path: Path) -> int | None:
    """The step an end-of-run record belongs to (``test.json``'s and ``representations.json``'s ``step``, an
    ``.npz`` record's ``step`` array); None for a record written before records carried it.

    Raises:
        RunFolderError: if the record is damaged.
    """
    path = Path(path)
    if path.suffix == ".npz":
        arrays = records.load_npz(path)
        return int(arrays["step"]) if "step" in arrays else None
    return records.read_json(path).get("step")


def _mean_metrics(window: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Means over the steps since the last log line (None where a method has no such quantity)."""
    out: dict[str, float | None] = {}
    for key in window[0]:
        values = [m[key] for m in window if m[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """A run's checkpoint, loaded with ``weights_only=True`` (no code execution), with every key it must hold.

    Raises:
        MissingFileError: if there is none (a FileNotFoundError).
        RunFolderError: if it is truncated, foreign, or lacks a key (naming the file and the fix).
    """
    path = Path(run_dir) / CHECKPOINT
    if not os.path.lexists(path):
        raise MissingFileError(f"no checkpoint at {path}; is {run_dir} a run folder that finished a step?")
    try:
        with records.open_record(path) as f:  # never through a link
            state = torch.load(f, map_location="cpu", weights_only=True)
    except records.RunFolderError:
        raise
    except Exception as e:  # a truncated or foreign file: say which, and what to do
        raise records.damaged(path, f"cannot read checkpoint ({type(e).__name__}); it is damaged or not "
                                    f"written by cml") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise records.damaged(path, f"lacks {', '.join(missing)}; it is not a cml checkpoint")
    return state


def _checkpoint_config(state: dict[str, Any], path: Path) -> Config:
    try:
        return Config.from_dict(state["config"], source=f"the config inside {path}")
    except ConfigError as e:
        raise records.damaged(path, f"holds an invalid config ({e})") from None


def _load_weights(model: MetaModel, weights: Any, path: Path) -> None:
    """``model.load_state_dict`` with a one-line error naming what does not fit (another method's weights)."""
    if not isinstance(weights, dict):
        raise records.damaged(path, "its model entry is not a state dict")
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    shapes = sorted(k for k in set(own) & set(weights)
                    if not isinstance(weights[k], Tensor) or weights[k].shape != own[k].shape)
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra), ("other shapes of", shapes)) if keys]
        raise records.damaged(path, f"its weights do not fit this run's model ({'; '.join(parts)}); they were "
                                    f"written by another method or architecture")
    # Training stops before a checkpoint can hold a non-finite weight: one here is damage, and evaluating or
    # resuming from it would only report a diverged adaptation.
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise records.damaged(path, f"holds non-finite weights (NaN or infinite values in {', '.join(bad[:3])}"
                                    f"{' ...' if len(bad) > 3 else ''}), which cml never saves; it is damaged or was "
                                    f"not written by cml")
    model.load_state_dict(weights)


def load_model(run_dir: Path, in_channels: int | None = None) -> tuple[MetaModel, Config]:
    """The trained model and config of a run folder."""
    return model_from_checkpoint(load_checkpoint(run_dir), Path(run_dir) / CHECKPOINT, in_channels)


def model_from_checkpoint(state: dict[str, Any], path: Path, in_channels: int | None = None
                          ) -> tuple[MetaModel, Config]:
    """The model and config of a loaded checkpoint (:func:`load_checkpoint`) read from ``path``."""
    cfg = _checkpoint_config(state, path)
    if in_channels is None:
        first = next((v for k, v in state["model"].items() if isinstance(v, Tensor) and k.endswith("weight")
                      and v.ndim in (2, 4)), None) if isinstance(state["model"], dict) else None
        if first is None:
            raise records.damaged(path, "holds no weight matrix to size the model by; it is not a cml checkpoint")
        in_channels = int(first.shape[1])
    model = build_model(cfg, in_channels)
    _load_weights(model, state["model"], path)
    return model, cfg
