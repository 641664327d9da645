"""The test-time cost of the evaluation protocols (cml.meta.PROTOCOLS), per task, on each engine.

A final test of a method with a co-learner measures four protocols: theta' and CML† (the authors' reading: one
adaptation of (psi, theta) on theta's loss, read by both heads), the paper's Eq. (9) (a second adaptation: psi
alone, on phi's loss) and phi without adaptation (no adaptation: the forward the loss before adaptation already
takes). Validation measures the first two only, as every test did before. This times both sets on the same tasks,
interleaved in one process (``--rounds`` rounds, the median per cell), for the quick presets' models: fonts (Conv-4/32,
28x28x1, 5-way 1-shot, 5 queries, 3 test steps, the conv co-learner) and sinusoid (MLP 1-40-40-1, 10 shots, 10
queries, 10 test steps, the linear co-learner). Random images stand in for fonts: the time does not depend on them.

Run: ``.venv/bin/python bench/eval_protocols.py --tasks 200 --rounds 5``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from cml.config import preset
from cml.data.base import Task
from cml.engines import make_backend
from cml.meta import evaluate_tasks
from cml.models import build_model, init_parameters


def fonts_tasks(n: int, gen: torch.Generator, ways: int = 5, shots: int = 1, queries: int = 5) -> list[Task]:
    labels = torch.arange(ways)
    return [Task((torch.rand(ways * shots, 1, 28, 28, generator=gen), labels.repeat_interleave(shots)),
                 (torch.rand(ways * queries, 1, 28, 28, generator=gen), labels.repeat_interleave(queries)))
            for _ in range(n)]


def sinusoid_tasks(n: int, gen: torch.Generator, shots: int = 10, queries: int = 10) -> list[Task]:
    out = []
    for _ in range(n):
        xs, xq = 10 * torch.rand(shots, 1, generator=gen) - 5, 10 * torch.rand(queries, 1, generator=gen) - 5
        out.append(Task((xs, torch.sin(xs)), (xq, torch.sin(xq))))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=200, help="tasks per cell (default 200)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported (default 5)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    settings = {"fonts": (preset("quick", "fonts", "cml"), fonts_tasks(args.tasks, gen)),
                "sinusoid": (preset("quick", "sinusoid", "cml"), sinusoid_tasks(args.tasks, gen))}
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, (cfg, tasks) in settings.items():
            model = build_model(cfg, 1)
            init_parameters(model, torch.Generator().manual_seed(1))
            params = dict(model.named_parameters())
            for engine in ("higher", "batched"):
                backend = make_backend(engine, model)
                for protocols, validation in (("theta' + CML†", True), ("all four", False)):
                    start = time.perf_counter()
                    evaluate_tasks(backend, cfg, params, tasks, cfg.test_inner_steps, validation=validation)
                    times.setdefault((name, engine, protocols), []).append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.tasks} tasks per cell, median of "
          f"{args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.1f}\n")
    print("| task | engine | theta' + CML† (ms/task) | all four protocols (ms/task) | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name in settings:
        for engine in ("higher", "batched"):
            two, four = (statistics.median(times[(name, engine, k)]) / args.tasks * 1e3
                         for k in ("theta' + CML†", "all four"))
            print(f"| {name} | {engine} | {two:.2f} | {four:.2f} | {four / two:.2f} |")


if __name__ == "__main__":
    main()
