"""Recorders: what the trainer calls to write learning-dynamics records into a run folder.

Per recorded outer step (every ``record_interval`` steps), one line of ``dynamics.jsonl``:

- ``grad_norm_psi`` and ``grad_norm_blocks``: the norm of psi's meta-gradient (before any noise), whole and
  per block (Figure 3c);
- with a co-learner: ``cos_psi`` and ``cos_blocks``, the cosine similarity between grad_psi L_m and
  grad_psi (gamma L_c), and the two parts' norms ``grad_norm_psi_meta`` / ``grad_norm_psi_co`` (Figure 3b).

At the end of training (:meth:`Recorder.finish`), on ``record_tasks`` test tasks drawn from their own
generator:

- ``representations.json``: linear CKA (plain and debiased) between each layer's query representations
  before and after adaptation, mean and 95% CI over tasks (BOIL's protocol; Figure 3d), and silhouette
  scores of the head's input features before and after adaptation (Figure 4's numbers);
- ``features.npz``: one task's query features before and after adaptation, labels, and their joint t-SNE
  map (Figure 4);
- for sinusoid, ``fits.npz``: three test curves with support points and the predictions before and after
  adaptation (Figure 2).

Recording never touches the training generators or the update: the same seed gives bit-identical
parameters with recording on or off (tested). The measurements themselves are the pure functions of
:mod:`analysis`, which imports nothing from ``cml``; this module is the trainer's side that feeds them.
"""

from __future__ import annotations

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
from .data.base import DataError
from .engines.base import Engine
from .meta import MetaGradient, adapt, inner_spec
from .roles import role_of
from .seeds import generator
from .sinusoid import X_RANGE, SinusoidSampler

if TYPE_CHECKING:
    from .trainer import TaskSource

TSNE_QUERIES = 15  # queries per class for the t-SNE task: enough points for a readable map


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


class Recorder:
    """Writes the learning-dynamics records of one run (see the module docstring for the files).

    The trainer calls it on recording steps (``recorder(step, meta_gradient)``); :meth:`finish` takes what the
    end-of-training records need (the engine, the config, the task source and the device), not the trainer.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._step: dict[str, Any] = {}

    def __call__(self, step: int, mg: MetaGradient) -> None:
        records.append_jsonl(self.run_dir / records.DYNAMICS,
                             {"step": step, **gradient_record(mg.total, mg.meta_part)})

    def finish(self, backend: Engine, cfg: Config, source: "TaskSource", device: torch.device,
               step: int | None = None) -> dict[str, Any]:
        """End-of-training records; returns what it wrote to ``representations.json``.

        Args:
            backend: the run's engine (its model holds the trained parameters).
            cfg: the run's config.
            source: the run's task source (its test split is sampled with the ``record`` stream).
            device: where the model lives.
            step: the outer step the model was trained to, written into every end record (``step`` of
                ``representations.json``, a ``step`` array in ``features.npz``/``fits.npz``) so that a reader can
                tell a record of this run's end from one an earlier, shorter run left (None: not written).
        """
        self._step = {} if step is None else {"step": np.int64(step)}
        params = dict(backend.model.named_parameters())
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

    def _tsne(self, backend: Engine, cfg: Config, params: dict[str, Tensor], source: "TaskSource",
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
            support = tuple(t.to(device) for t in task.support)
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

    Returns two dicts layer -> ``(n_query, features)`` tensors: every feature-extractor block and ``flat``
    (the head's input; for Conv-4 the same numbers as ``block4`` and therefore reported once as ``flat``).
    """
    steps = cfg.test_inner_steps
    with torch.enable_grad():
        adapted = adapt(backend, inner_spec(cfg, params, steps, "none", test_time=True), params, support)[-1]
    with torch.no_grad():
        _, _, before = backend.forward(params, xq, return_features=True)
        _, _, after = backend.forward(adapted, xq, return_features=True, step=steps - 1)

    def pick(feats: dict[str, Tensor]) -> dict[str, Tensor]:
        # prepool/block4 (Conv-4) and layer2 (MLP) hold the same numbers as flat: keep each once.
        return {k: v.flatten(1).detach() for k, v in feats.items()
                if k not in ("prepool", "block4") and (k == "flat" or v is not feats["flat"])}

    return pick(before), pick(after)
