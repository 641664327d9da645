"""Recorders: what the trainer calls to write learning-dynamics records into a run folder.

Per recorded outer step (every ``record_interval`` steps), one line of ``dynamics.jsonl``:

- ``grad_norm_psi`` and ``grad_norm_blocks``: the norm of psi's meta-gradient (before any noise), whole and
  per block (Figure 3c);
- with a co-learner: ``cos_psi`` and ``cos_blocks``, the cosine similarity between grad_psi L_m and
  grad_psi (gamma L_c), and the two parts' norms ``grad_norm_psi_meta`` / ``grad_norm_psi_co`` (Figure 3b);
- ``inner_grad_norm_psi`` and ``inner_grad_norm_blocks``: the norm of the inner loop's support-set gradient on
  psi, whole and per block, on the same step's tasks (Figure 3c's second reading, as in BOIL's analysis; see
  :func:`inner_gradient_record`).

At the end of training (:meth:`Recorder.finish`), on ``record_tasks`` test tasks drawn from their own
generator:

- ``representations.json``: linear CKA (plain and debiased) between each layer's query representations
  before and after adaptation, from the first block to the head's output (the logits, layer ``output``), mean
  and 95% CI over tasks (BOIL's protocol; Figure 3d), and silhouette scores of the head's input features before
  and after adaptation (Figure 4's numbers);
- ``test_tasks.json``: the final test again, task by task (each test metric per task, and a digest of the
  tasks drawn), so that methods tested on the same tasks can be paired task by task (:func:`per_task_test_record`);
- ``features.npz``: one task's query features before and after adaptation, labels, and their joint t-SNE
  map (Figure 4);
- for sinusoid, ``fits.npz``: three test curves with support points and the predictions before and after
  adaptation (Figure 2).

Recording never touches the training generators or the update: the same seed gives bit-identical
parameters with recording on or off (tested). The measurements themselves are the pure functions of
:mod:`analysis`, which imports nothing from ``cml``; this module is the trainer's side that feeds them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from analysis.cka import linear_cka
from analysis.embedding import silhouette, tsne_embed
from analysis.gradients import block_of, blockwise_cosine_similarity, blockwise_grad_norm, cosine_similarity, grad_norm
from analysis.stats import normal_ci95

from . import records
from .config import Config
from .data.base import DataError, Task
from .engines.base import Engine, Params, Primitives
from .meta import InnerSpec, MetaGradient, adapt, evaluate_tasks, inner_spec
from .roles import role_of
from .seeds import generator
from .sinusoid import X_RANGE, SinusoidSampler

if TYPE_CHECKING:
    from .trainer import TaskSource

TSNE_QUERIES = 15  # queries per class for the t-SNE task: enough points for a readable map
OUTPUT_LAYER = records.OUTPUT_LAYER  # the head's output among the layers of representations.json


def psi_block(name: str) -> str:
    """``features.block1.conv.weight`` -> ``block1``: :func:`analysis.gradients.block_of` without the
    ``features.`` prefix that every psi parameter shares (the records' block names)."""
    return block_of(name).split(".", 1)[1]


def gradient_record(total: dict[str, Tensor], meta_part: dict[str, Tensor] | None) -> dict[str, Any]:
    """The scalars of Figure 3b-c for one outer step, from psi's meta-gradient and its meta-learner part.

    Args:
        total: the meta-gradient of every parameter (names as in the model).
        meta_part: the gradient of the meta-learner's loss alone, or None (no co-learner).
    """
    psi = {n: g for n, g in total.items() if role_of(n) == "psi"}
    out: dict[str, Any] = {"grad_norm_psi": grad_norm(psi), "grad_norm_blocks": blockwise_grad_norm(psi, psi_block)}
    if meta_part is not None:
        meta = {n: meta_part[n] for n in psi}
        co = {n: psi[n] - meta[n] for n in psi}  # grad of gamma * L_c
        out.update(
            cos_psi=cosine_similarity(meta, co),
            cos_blocks=blockwise_cosine_similarity(meta, co, psi_block),
            grad_norm_psi_meta=grad_norm(meta),
            grad_norm_psi_co=grad_norm(co),
        )
    return out


def _norm(tensors: Sequence[Tensor]) -> Tensor:
    # The L2 norm of tensors flattened and concatenated, as a tensor (it runs inside vmap).
    return torch.linalg.vector_norm(torch.cat([t.reshape(-1) for t in tensors]))


def inner_gradient_task(prims: Primitives, params: Params, support: tuple[Tensor, Tensor],
                        query: tuple[Tensor, Tensor], *, spec: InnerSpec,
                        blocks: dict[str, list[str]]) -> tuple[Tensor, ...]:
    """One task's inner-loop support-gradient norms on psi: ``(whole psi, block 1, ..., block B)``, 0-d tensors.

    At each inner step ``k`` the gradient of the inner loop's support loss (the method's: the meta-learner's
    alone for CML, with gamma times phi's for CL) with respect to every psi tensor is taken at the step's point of
    the trajectory the inner loop walks (the meta-parameters at step 1), whether the base adapts that tensor or
    not (ANIL's body too); each norm is the mean over the inner steps. Sharp-MAML's steps are taken at its
    perturbed point; the gradient measured here is the one at the trajectory's own point. A function of an
    engine's primitives, like :func:`cml.meta.task_objective`, so every engine maps it over tasks the same way.

    Args:
        prims: the engine's primitives.
        params: the meta-parameters.
        support: the task's support set.
        query: unused (the signature every engine maps).
        spec: the inner loop of training (:func:`cml.meta.inner_spec` at ``cfg.inner_steps``).
        blocks: block name -> its psi parameter names, in record order.
    """
    x, y = support
    # The points the gradients are taken at: the meta-parameters, then after each step but the last.
    trajectory = adapt(prims, dataclasses.replace(spec, steps=spec.steps - 1), params, support)
    names = [n for ns in blocks.values() for n in ns]
    totals: list[Tensor] = []
    for k in range(spec.steps):
        def loss_fn(p: Params, k: int = k) -> Tensor:
            meta, co = prims.forward(p, x, step=k)[:2]
            return spec.loss(meta, co, y)

        g = prims.grad(loss_fn, trajectory[k], names, "none")
        norms = [_norm([g[n] for n in names])] + [_norm([g[n] for n in ns]) for ns in blocks.values()]
        totals = norms if not totals else [a + b for a, b in zip(totals, norms)]
    return tuple(t / spec.steps for t in totals)


def psi_blocks(names: Sequence[str]) -> dict[str, list[str]]:
    """Block name -> psi parameter names (sorted), blocks in model order: the blocks of ``dynamics.jsonl``."""
    out: dict[str, list[str]] = {}
    for n in names:
        if role_of(n) == "psi":
            out.setdefault(psi_block(n), []).append(n)
    return {b: sorted(ns) for b, ns in out.items()}


def inner_gradient_record(backend: Engine, cfg: Config, params: Params, tasks: Sequence[Task]) -> dict[str, Any]:
    """Figure 3c's second reading for one outer step: the norm of the inner loop's support-set gradient on psi,
    whole and per block, each the mean over ``tasks`` of :func:`inner_gradient_task` (a task's own gradient norm,
    not the norm of the tasks' mean gradient), mapped over the tasks by the run's engine.

    Returns:
        ``{"inner_grad_norm_psi": float, "inner_grad_norm_blocks": {block: float}}``.
    """
    blocks = psi_blocks(list(params))
    spec = inner_spec(cfg, params, cfg.inner_steps, "none")
    sums = torch.zeros(len(blocks) + 1, dtype=torch.float64)
    count = 0
    for out in backend.map_tasks(partial(inner_gradient_task, spec=spec, blocks=blocks), params, tasks,
                                 evaluation=True):
        stacked = torch.stack([t.detach().reshape(-1).to("cpu", torch.float64) for t in out])  # (1 + blocks, k)
        sums += stacked.sum(1)
        count += stacked.shape[1]
    means = (sums / count).tolist()
    return {"inner_grad_norm_psi": means[0], "inner_grad_norm_blocks": dict(zip(blocks, means[1:]))}


def _digest_stream(tasks: Iterator[Task], digest: Any, device: torch.device) -> Iterator[Task]:
    # Hashes each task's tensors as it passes, so that the tasks are never all held at once (10,000 of them).
    for task in tasks:
        for part in (*task.support, *task.query):
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
        yield task.to(device)


def per_task_test_record(backend: Engine, cfg: Config, params: Params, source: "TaskSource",
                     device: torch.device) -> dict[str, Any]:
    """The final test task by task: the same tasks (the ``test`` stream of the run's seed) and the same evaluation
    as ``test.json``'s, with every test metric's per-task values and a SHA-256 digest of the tasks' tensors.

    Two runs whose digests are equal were tested on the same tasks, so their per-task values can be paired task
    by task (the claims page does). ``test.json``'s means are the means of these values when ``test.json`` was
    computed from the same parameters (the claims page checks it before pairing).
    """
    sampler = source.sampler("test", generator(cfg.seed, "test"), queries=cfg.test_queries)  # as Trainer.test draws
    digest = hashlib.sha256()
    stream = _digest_stream((sampler.sample() for _ in range(cfg.test_tasks)), digest, device)
    res = evaluate_tasks(backend, cfg, params, stream, cfg.test_inner_steps)
    values = {key: [float(v) for v in vs] for key, vs in cfg.family.results(res) if vs}
    return {"tasks": cfg.test_tasks, "digest": digest.hexdigest(), "values": values}


class Recorder:
    """Writes the learning-dynamics records of one run (see the module docstring for the files).

    The trainer calls it on recording steps: :meth:`inner_loop` with the step's tasks, before the update, then
    ``recorder(step, meta_gradient)``, which writes the step's line; :meth:`finish` takes what the end-of-training
    records need (the engine, the config, the task source and the device), not the trainer.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._inner: dict[str, Any] = {}
        self._step: dict[str, Any] = {}

    def inner_loop(self, backend: Engine, cfg: Config, params: Params, tasks: Sequence[Task]) -> None:
        """Measures the inner loop's support-set gradients of the coming step (:func:`inner_gradient_record`);
        written with the step's line."""
        self._inner = inner_gradient_record(backend, cfg, params, tasks)

    def __call__(self, step: int, mg: MetaGradient) -> None:
        inner, self._inner = self._inner, {}
        records.append_jsonl(self.run_dir / records.DYNAMICS,
                             {"step": step, **gradient_record(mg.total, mg.meta_part), **inner})

    def finish(self, backend: Engine, cfg: Config, source: "TaskSource", device: torch.device,
               step: int | None = None, tested: Engine | None = None) -> dict[str, Any]:
        """End-of-training records; returns what it wrote to ``representations.json``.

        Args:
            backend: the run's engine (its model holds the trained parameters).
            cfg: the run's config.
            source: the run's task source (its test split is sampled with the ``record`` stream).
            device: where the model lives.
            tested: an engine on the model the final test read (``select`` best-val: the best validation's
                weights), for ``test_tasks.json``; None: ``backend``'s model, the last one.
            step: the outer step the model was trained to, written into every end record (``step`` of
                ``representations.json``, a ``step`` array in ``features.npz``/``fits.npz``) so that a reader can
                tell a record of this run's end from one an earlier, shorter run left (None: not written).
        """
        self._step = {} if step is None else {"step": np.int64(step)}
        params: Params = dict(backend.model.named_parameters())
        tested = tested or backend
        per_task = per_task_test_record(tested, cfg, dict(tested.model.named_parameters()), source, device)
        records.write_json(self.run_dir / records.TEST_TASKS, {**per_task, **({} if step is None else {"step": step})})
        gen = generator(cfg.seed, "record")
        sampler = source.sampler("test", gen)
        tasks = [sampler.sample().to(device) for _ in range(cfg.record_tasks)]
        reps = [representations(backend, cfg, params, t.support, t.query[0]) for t in tasks]
        layers = list(reps[0][0])
        result: dict[str, Any] = {"tasks": len(tasks), "layers": layers, "cka": {}, "cka_debiased": {},
                                  **({} if step is None else {"step": step})}
        for layer in layers:
            for key, debiased in (("cka", False), ("cka_debiased", True)):
                values = [_cka_or_nan(before[layer], after[layer], debiased) for before, after in reps]
                result[key][layer] = _summary(values)
        if cfg.family.classification and cfg.queries >= 2:  # a silhouette needs labels, two points in some class
            for when, index in (("before", 0), ("after", 1)):
                values = [silhouette(r[index]["flat"].cpu().numpy(), t.query[1].cpu().numpy())
                          for r, t in zip(reps, tasks)]
                result[f"silhouette_{when}"] = _summary(values)
        # The task family's end-of-training record (cml.tasks.TaskFamily.end_record).
        writers = {records.FEATURES: self._tsne, records.FITS: self._fits}
        writers[cfg.family.end_record](backend, cfg, params, source, device, result)
        records.write_json(self.run_dir / records.REPRESENTATIONS, result)
        return result

    def _tsne(self, backend: Engine, cfg: Config, params: Params, source: "TaskSource",
              device: torch.device, result: dict[str, Any]) -> None:
        gen = generator(cfg.seed, "tsne")
        try:
            task = source.sampler("test", gen, queries=TSNE_QUERIES).sample()
        except DataError:  # classes too small for 15 queries: fall back to the run's own query count
            task = source.sampler("test", gen).sample()
        task = task.to(device)
        before, after = representations(backend, cfg, params, task.support, task.query[0])
        fb, fa = before["flat"].cpu().numpy(), after["flat"].cpu().numpy()
        labels = task.query[1].cpu().numpy()
        eb, ea = tsne_embed(fb, fa, seed=cfg.seed)
        records.atomic_savez(self.run_dir / records.FEATURES, before=fb, after=fa, labels=labels,
                             embed_before=eb, embed_after=ea, **self._step)
        result["tsne_task"] = {
            "silhouette_before": silhouette(fb, labels), "silhouette_after": silhouette(fa, labels),
            "points": int(len(labels)),
        }

    def _fits(self, backend: Engine, cfg: Config, params: dict[str, Tensor], source: "TaskSource",
              device: torch.device, result: dict[str, Any]) -> None:
        sampler = SinusoidSampler(cfg.shots, cfg.queries, generator(cfg.seed, "fits"))
        grid = torch.linspace(*X_RANGE, 200, device=device).unsqueeze(1)  # (200, 1)
        out: dict[str, list[np.ndarray]] = {k: [] for k in
                                            ("truth", "support_x", "support_y", "before", "after", "after_dagger")}
        for _ in range(3):
            task = sampler.sample()
            fn = sampler.last_function
            assert fn is not None, "the sampler names the function of the task it drew"
            support = (task.support[0].to(device), task.support[1].to(device))
            steps = cfg.test_inner_steps
            with torch.enable_grad():
                adapted = adapt(backend, inner_spec(cfg, params, steps, "none", test_time=True), params, support)[-1]
            with torch.no_grad():
                before, _ = backend.forward(params, grid)
                after, after_co = backend.forward(adapted, grid, step=steps - 1)
            out["truth"].append(fn(grid.cpu()).squeeze(1).numpy())
            out["support_x"].append(task.support[0].squeeze(1).numpy())
            out["support_y"].append(task.support[1].squeeze(1).numpy())
            out["before"].append(before.squeeze(1).cpu().numpy())
            out["after"].append(after.squeeze(1).cpu().numpy())
            if after_co is not None:
                out["after_dagger"].append(after_co.squeeze(1).cpu().numpy())
        arrays = {k: np.stack(v) for k, v in out.items() if v}
        records.atomic_savez(self.run_dir / records.FITS, x=grid.squeeze(1).cpu().numpy(), shots=cfg.shots, **arrays,
                             **self._step)


def _cka_or_nan(x: Tensor, y: Tensor, debiased: bool) -> float:
    # A constant representation (a dead ReLU layer early in training) has no CKA: count it, do not crash.
    try:
        return linear_cka(x, y, debiased=debiased)
    except ValueError:
        if torch.isfinite(x).all() and torch.isfinite(y).all():
            return float("nan")
        raise


def _summary(values: list[float]) -> dict[str, float | int | None]:
    """Mean and 95% CI over the tasks where the value is defined, and how many were undefined."""
    finite = [v for v in values if v == v]
    mean, ci = normal_ci95(finite) if finite else (float("nan"), float("nan"))
    return {"mean": mean, "ci95": ci, "undefined": len(values) - len(finite)}


def representations(backend, cfg, params: dict[str, Tensor], support: tuple[Tensor, Tensor],
                    xq: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Each layer's query representations before and after adaptation on ``support`` (BOIL's protocol).

    Returns two dicts layer -> ``(n_query, features)`` tensors: every feature-extractor block, ``flat`` (the
    head's input; for Conv-4 the same numbers as ``block4`` and therefore reported once as ``flat``) and
    :data:`OUTPUT_LAYER` (the head's output: the logits, or the regression's prediction).
    """
    steps = cfg.test_inner_steps
    with torch.enable_grad():
        adapted = adapt(backend, inner_spec(cfg, params, steps, "none", test_time=True), params, support, xq)[-1]
    with torch.no_grad():
        out_before, _, before = backend.forward(params, xq, return_features=True)
        out_after, _, after = backend.forward(adapted, xq, return_features=True, step=steps - 1)

    def pick(feats: dict[str, Tensor]) -> dict[str, Tensor]:
        # prepool/block4 (Conv-4) and layer2 (MLP) hold the same numbers as flat: keep each once.
        return {k: v.flatten(1).detach() for k, v in feats.items()
                if k not in ("prepool", "block4") and (k == "flat" or v is not feats["flat"])}

    return ({**pick(before), OUTPUT_LAYER: out_before.flatten(1).detach()},
            {**pick(after), OUTPUT_LAYER: out_after.flatten(1).detach()})
