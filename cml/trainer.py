"""The meta-training loop for every base learner and method, with validation, checkpoints, resume and the
final test. It reads the base-learner and method tables through the config and :mod:`cml.meta`; it never
compares a method's or a base's name.

The trainer writes records into a run folder (see :mod:`cml.records`); figures read only those records.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from . import interrupt, memory, records
from .config import Config, ConfigError, differing_fields
from .data.base import Task
from .bases import get_base
from .engines import make_backend, resolve_backend
from .errors import Interrupted, MissingFileError, OutputExistsError
from .meta import EvalResult, MetaGradient, NonFiniteLossError, evaluate_tasks, outer_gradient
from .models import MetaModel, build_model, init_parameters, parameter_counts
from .roles import role_of
from .records import BEST_CHECKPOINT, CHECKPOINT
from .seeds import generator

# What every checkpoint holds (see Trainer.save_checkpoint); a file without these keys is not a cml checkpoint.
CHECKPOINT_KEYS = ("model", "optimizer", "train_gen", "noise_gen", "step", "elapsed", "config")
# What best.pt holds (see Trainer.save_checkpoint): the weights of the best validation, its step and value.
BEST_KEYS = ("model", "step", "value", "metric", "config")
#: ``select`` values: the last checkpoint, or the one with the best validation metric.
LAST, BEST_VAL = "last", "best-val"
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


def use_threads(cfg: Config) -> Config:
    """Sets torch's CPU thread count (for the whole process) to the config's, and returns the config with the count
    it runs at: ``threads`` None resolves to the process's count (``torch.get_num_threads()``), as ``backend auto``
    resolves to an engine, so that ``config.json`` says what ran.

    Raises:
        ConfigError: if torch refuses the count.
    """
    n = torch.get_num_threads() if cfg.threads is None else cfg.threads
    if torch.get_num_threads() != n:
        try:
            torch.set_num_threads(n)
        except RuntimeError as e:
            raise ConfigError(f"threads {n}: torch cannot use that many ({e})") from None
    return cfg if cfg.threads == n else cfg.replace(threads=n)


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
    # phi's own adaptation (Eq. (9)) may diverge where theta's did not: its numbers are then undefined (null),
    # said in a warning, while the run's own result stands.
    diverged = {key for key, losses in res.loss.items() if key and not all(math.isfinite(v) for v in losses)}
    metric = cfg.family.metric

    def put(key: str, values: list[float]) -> None:
        if values:
            if key.startswith(metric) and key[len(metric):] in diverged:
                out[key] = out[key + "_ci95"] = None
                return
            mean, ci = normal_ci95(values)
            # One task has no CI: None (null in test.json, "unavailable" on screen), never NaN.
            out[key], out[key + "_ci95"] = mean, ci if math.isfinite(ci) else None

    for key, values in cfg.family.results(res):
        put(key, values)
    for key in sorted(diverged):
        warnings.warn(f"{metric}{key} in the {where}: adaptation diverged on some tasks (a non-finite query loss); "
                      f"written as null", stacklevel=2)
    return out


def evaluate(model: MetaModel, cfg: Config, sampler: Sampler, n_tasks: int, device: torch.device,
             progress: bool = False, desc: str = "eval", validation: bool = False) -> dict[str, Any]:
    """Evaluates ``n_tasks`` tasks drawn from ``sampler`` and summarises them (see :func:`summarize`): every
    evaluation protocol (:data:`cml.meta.PROTOCOLS`), or with ``validation`` those validation measures."""
    from tqdm.auto import tqdm

    backend = make_backend(cfg.backend, model)
    params = dict(model.named_parameters())
    tasks = (sampler.sample().to(device) for _ in range(n_tasks))
    tasks = tqdm(tasks, total=n_tasks, desc=desc, disable=not progress, leave=False)
    return summarize(cfg, evaluate_tasks(backend, cfg, params, tasks, cfg.test_inner_steps, validation), desc)


class Trainer:
    """Meta-trains one method into a run folder.

    Args:
        cfg: the run's config.
        run_dir: the run folder (created if absent).
        splits: preloaded data splits, to share one load between runs; loaded from ``cfg`` when None.
        resume: continue from ``run_dir/checkpoint.pt``. Only ``steps`` may differ from the saved config.
        recorder: called as ``recorder(step, meta_gradient)`` on recording steps (learning-dynamics
            diagnostics); on those steps the meta-gradient carries the meta-learner's part separately. A recorder
            with an ``inner_loop(engine, cfg, params, tasks)`` method is first given the step's tasks.
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
        cfg = use_threads(cfg)  # before anything is computed: sums depend on it
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
        #: With ``select`` best-val: the best validation so far, ``{"step", "value", "model"}`` (its weights), kept
        #: in checkpoint.pt too so that a resumed run keeps the right best checkpoint.
        self.best: dict[str, Any] | None = None
        self._best_written: int | None = None  # the step of the best.pt on disk, written by this process
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
        diff = differing_fields(saved, cfg)
        if diff:
            raise ConfigError(f"cannot resume {self.run_dir}: {', '.join(diff)} differ from the saved "
                              f"config.json; only steps may change on resume")
        # threads None continues at the run's own count (the process's, for a run that recorded none).
        threads = {} if cfg.threads is None else {"threads": cfg.threads}
        return saved.replace(steps=cfg.steps, progress=cfg.progress, **threads)

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
            **({"best": self.best} if self.best is not None else {}),
            RECORD_STEPS: {name: records.last_step(self.run_dir / name) for name in records.STEP_RECORDS},
        }, self.run_dir / CHECKPOINT)
        self._write_best()

    def _write_best(self) -> None:
        """best.pt from the best validation held in checkpoint.pt, after it: the two files always agree once the
        checkpoint is written (a resumed run writes best.pt again from the checkpoint's copy)."""
        if self.best is None or self._best_written == self.best["step"]:
            return
        records.atomic_torch_save({"model": self.best["model"], "step": self.best["step"],
                                   "value": self.best["value"], "metric": self.cfg.family.metric,
                                   "config": self.cfg.to_dict()}, self.run_dir / BEST_CHECKPOINT)
        self._best_written = self.best["step"]

    def _consider_best(self, val: dict[str, Any]) -> bool:
        """With ``select`` best-val, keeps the weights of this validation if its metric (accuracy, or MSE for
        regression) beats every earlier one (the earliest wins a tie); returns whether it did."""
        if self.cfg.select != BEST_VAL:
            return False
        family = self.cfg.family
        value = float(val[family.metric])
        if self.best is not None:
            better = value > self.best["value"] if family.higher_is_better else value < self.best["value"]
            if not better:
                return False
        self.best = {"step": self.step, "value": value,
                     "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
        return True

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(self.run_dir)
        saved = _checkpoint_config(state, path)
        differ = differing_fields(saved, self.cfg)
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
        _load_weights(self.model, state["model"], path, self.cfg)
        window = state.get("window", [])
        if not (isinstance(window, list) and all(
                isinstance(w, dict) and all(isinstance(k, str) and (v is None or _finite_number(v))
                                            for k, v in w.items()) for w in window)
                and len({frozenset(w) for w in window}) <= 1):
            raise records.damaged(path, "its window (the steps since the last log line) is not a list of records of "
                                        "the same numbers, one per step")
        try:
            self.optimizer.load_state_dict(_saved_optimizer(self.cfg, self.model, state["optimizer"]))
            self.train_gen.set_state(state["train_gen"])
            self.noise_gen.set_state(state["noise_gen"])
            self.elapsed = float(state["elapsed"])
            self.window = [dict(w) for w in window]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise records.damaged(path, f"its optimizer or generator state does not fit this run "
                                        f"({type(e).__name__})") from None
        self.step = step
        if self.cfg.select == BEST_VAL:
            if "best" in state:
                self.best = _saved_best(state["best"], self.model, path, self.cfg)
                self._write_best()  # a best.pt written after this checkpoint belongs to steps trained again
            else:  # no validation before this checkpoint: any best.pt belongs to steps trained again
                (self.run_dir / BEST_CHECKPOINT).unlink(missing_ok=True)
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
            if hasattr(self.recorder, "inner_loop"):  # the inner loop's support gradients, on this step's tasks
                self.recorder.inner_loop(self.backend, cfg, params, tasks)
            self.recorder(self.step + 1, mg)
        # Before any noise: the norm of the meta-gradient the method itself produced.
        psi_norm = math.sqrt(sum(float(g.pow(2).sum()) for n, g in mg.total.items() if role_of(n) == "psi"))
        if cfg.spec.perturb_gradient is not None:
            cfg.spec.perturb_gradient(cfg, mg.total, self.noise_gen)
        clip = get_base(cfg.base).clip_gradient(cfg)
        if clip is not None:  # after the method's noise: it bounds the gradient Adam steps with, noise included
            clip(mg.total)
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
                        desc=f"validation at step {self.step}", validation=True)

    def train(self) -> dict[str, Any]:
        """Trains up to ``cfg.steps`` outer steps, then tests; returns the test record (also ``test.json``)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        # Named by the run folder: its task, cell, grid values and seed (two seeds of a sweep are two names).
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.run_dir.name, disable=not cfg.progress)
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
            line = self.validate()
            if self._consider_best(line):  # after the last checkpoint: write it again with the new best
                self.save_checkpoint()
            records.append_jsonl(val_path, {"step": self.step, **line})
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
            line = self.validate()
            self._consider_best(line)  # written with the next checkpoint (this step's, at the last step)
            records.append_jsonl(self.run_dir / records.VAL, {"step": self.step, **line})
        if validated or not self.window:  # the window empties when a metrics line is written
            for hook in self.log_hooks:
                hook(self)
        if (cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0) or self.step == cfg.steps:
            self.save_checkpoint()

    def test(self) -> dict[str, Any]:
        """The final test of the selected checkpoint (``select``: the last, or the best validation's) into
        ``test.json``, which names it (``selected``, ``selected_step``)."""
        model, selected_step = self.model, self.step
        if self.cfg.select == BEST_VAL:
            if self.best is None:
                raise MissingFileError(f"{self.run_dir}: select best-val, but no validation has been kept yet; "
                                       f"train the run (its last step validates)")
            model = build_model(self.cfg, self.tasks.in_channels).to(self.device)
            model.load_state_dict(self.best["model"])
            selected_step = self.best["step"]
        sampler = self.tasks.sampler("test", generator(self.cfg.seed, "test"), queries=self.cfg.test_queries)
        result = evaluate(model, self.cfg, sampler, self.cfg.test_tasks, self.device,
                          progress=self.cfg.progress, desc="test")
        result.update(step=self.step, method=self.cfg.method, base=self.cfg.base, variant=self.cfg.variant,
                      task=self.cfg.task, shots=self.cfg.shots,
                      ways=self.cfg.ways if self.cfg.family.classification else None,
                      params=parameter_counts(self.cfg, self.tasks.in_channels), train_time=self.elapsed,
                      selected=self.cfg.select, selected_step=selected_step)
        records.write_json(self.run_dir / records.TEST, result)
        return result

    def finish_recording(self) -> dict[str, Any] | None:
        """The recorder's end-of-training records (t-SNE, CKA, fits), if a recorder is attached; returns what
        it wrote to ``representations.json``."""
        if self.recorder is not None and hasattr(self.recorder, "finish"):
            tested = None
            if self.cfg.select == BEST_VAL and self.best is not None:  # test_tasks.json reads what test.json read
                model = build_model(self.cfg, self.tasks.in_channels).to(self.device)
                model.load_state_dict(self.best["model"])
                tested = make_backend(self.cfg.backend, model)
            return self.recorder.finish(self.backend, self.cfg, self.tasks, self.device, step=self.step,
                                        tested=tested)
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


def _load_weights(model: MetaModel, weights: Any, path: Path, cfg: Config) -> None:
    """``model.load_state_dict`` with a one-line error naming what does not fit (another method's weights), each
    tensor first read as this version holds it (the base's ``load_saved`` hook)."""
    if not isinstance(weights, dict):
        raise records.damaged(path, "its model entry is not a state dict")
    load_saved = get_base(cfg.base).load_saved
    weights = {k: load_saved(cfg, k, v) if isinstance(v, Tensor) else v for k, v in weights.items()}
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


def _saved_optimizer(cfg: Config, model: MetaModel, state: Any) -> Any:
    """The optimiser's saved state with each parameter's tensors read as this version holds them (the base's
    ``load_saved``: Adam's moments of MAML++'s per-step rows); the state is indexed in parameter order."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
        return state  # load_state_dict says what is wrong with it
    names = [n for n, _ in model.named_parameters()]
    load_saved = get_base(cfg.base).load_saved
    per_param = {i: ({k: load_saved(cfg, names[i], v) if isinstance(v, Tensor) and v.ndim else v
                      for k, v in st.items()} if isinstance(i, int) and 0 <= i < len(names) and isinstance(st, dict)
                     else st)
                 for i, st in state["state"].items()}
    return {**state, "state": per_param}


def _saved_best(best: Any, model: MetaModel, path: Path, cfg: Config) -> dict[str, Any]:
    """The best validation kept in a checkpoint, its weights checked against the model."""
    if not isinstance(best, dict) or not {"step", "value", "model"} <= set(best):
        raise records.damaged(path, "its best-validation entry lacks step, value or weights")
    probe = build_model(cfg, _in_channels(best["model"], path))
    _load_weights(probe, best["model"], path, cfg)
    return {"step": int(best["step"]), "value": float(best["value"]), "model": probe.state_dict()}


def _in_channels(weights: Any, path: Path) -> int:
    first = next((v for k, v in weights.items() if isinstance(v, Tensor) and k.endswith("weight")
                  and v.ndim in (2, 4)), None) if isinstance(weights, dict) else None
    if first is None:
        raise records.damaged(path, "holds no weight matrix to size the model by; it is not a cml checkpoint")
    return int(first.shape[1])


def load_model(run_dir: Path, in_channels: int | None = None, select: str = LAST) -> tuple[MetaModel, Config]:
    """The trained model and config of a run folder: its last checkpoint, or with ``select`` best-val the weights
    of its best validation (``best.pt``, :func:`load_best`)."""
    model, cfg = model_from_checkpoint(load_checkpoint(run_dir), Path(run_dir) / CHECKPOINT, in_channels)
    if select == BEST_VAL:
        load_best(run_dir, model, cfg)
    return model, cfg


def model_from_checkpoint(state: dict[str, Any], path: Path, in_channels: int | None = None
                          ) -> tuple[MetaModel, Config]:
    """The model and config of a loaded checkpoint (:func:`load_checkpoint`) read from ``path``."""
    cfg = _checkpoint_config(state, path)
    if in_channels is None:
        in_channels = _in_channels(state["model"], path)
    model = build_model(cfg, in_channels)
    _load_weights(model, state["model"], path, cfg)
    return model, cfg


def load_best(run_dir: Path, model: MetaModel, cfg: Config) -> int:
    """Loads a run's ``best.pt`` (the weights of its best validation) into ``model``; returns its step.

    Raises:
        MissingFileError: if the run kept none (it does not select best-val, or has not validated yet).
        RunFolderError: if the file is damaged or foreign (naming it and the fix).
    """
    path = Path(run_dir) / BEST_CHECKPOINT
    if not os.path.lexists(path):
        why = ("it selects the last checkpoint (select last)" if cfg.select != BEST_VAL else
               "it has not validated yet")
        raise MissingFileError(f"no {BEST_CHECKPOINT} in {run_dir}: {why}; evaluate its last checkpoint "
                               f"(--select last)")
    state = read_best(run_dir)
    _load_weights(model, state["model"], path, cfg)
    return int(state["step"])


def read_best(run_dir: Path) -> dict[str, Any]:
    """A run's ``best.pt``, loaded with ``weights_only=True``, with every key it must hold.

    Raises:
        MissingFileError: if there is none.
        RunFolderError: if it is truncated, foreign, or lacks a key (naming the file and the fix).
    """
    path = Path(run_dir) / BEST_CHECKPOINT
    if not os.path.lexists(path):
        raise MissingFileError(f"no {BEST_CHECKPOINT} in {run_dir}")
    try:
        with records.open_record(path) as f:  # never through a link
            state = torch.load(f, map_location="cpu", weights_only=True)
    except records.RunFolderError:
        raise
    except Exception as e:  # a truncated or foreign file: say which, and what to do
        raise records.damaged(path, f"cannot read it ({type(e).__name__}); it is damaged or not written by cml") \
            from None
    missing = [k for k in BEST_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["step"], int):
        raise records.damaged(path, f"lacks {', '.join(missing) or 'a step'}; it is not a cml best-validation "
                                    f"checkpoint")
    return state
