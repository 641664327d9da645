"""Seconds per meta-training step of ResNet-12 at the paper's Table 9 setting, on this machine.

Setting: ``--preset paper --backbone resnet12`` as on CIFAR-FS (32x32 RGB, widths 64-160-320-640, 5-way 1-shot,
15 queries, meta-batch 4, one inner step of 0.5, second order, Adam; CML with the conv co-learner on block 4's
640-channel map), on random images (the step's cost does not depend on their content). Each variant is the
trainer's own outer step (:meth:`cml.trainer.Trainer.outer_step`); variants run interleaved, one step per round,
after ``--warmup`` untimed rounds; each step's wall-clock and CPU time (all threads) are printed as it ends, then
a table of the medians, with the load average (the CPU time tells a busy machine's step from a slow one).

Run: ``OMP_NUM_THREADS=2 .venv/bin/python bench/resnet_step.py [--rounds 1] [--backend higher] [--shots 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cml.config import preset
from cml.data.base import ClassPool, Splits
from cml.models import parameter_counts
from cml.trainer import Trainer


def random_rgb_splits(classes: int = 10, per_class: int = 20, size: int = 32) -> Splits:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (per_class, size, size, 3), dtype=np.uint8) for _ in range(classes)]
    pool = ClassPool([f"c{i}" for i in range(classes)], [lambda a=a: a for a in arrays], "random bench images")
    return Splits(pool, pool, pool, "random")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--warmup", type=int, default=0, help="untimed rounds first (default 0: a step takes minutes and "
                                                           "its one-time costs are a small part of it)")
    p.add_argument("--backend", default="higher", choices=("higher", "func", "batched"))
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--methods", default="none,cml", help="comma-separated methods (default none,cml)")
    args = p.parse_args()
    splits = random_rgb_splits()
    steps, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            cfg = preset("paper", "cifar-fs", method, data="bench", backbone="resnet12", shots=args.shots,
                         backend=args.backend, progress=False, val_interval=0, checkpoint_interval=0)
            counts[method] = parameter_counts(cfg, 3)["train"]
            trainer = Trainer(cfg, Path(tmp) / method, splits=splits)
            steps[method] = trainer
        for _ in range(args.warmup):
            for trainer in steps.values():
                trainer.outer_step(False)
        times: dict[str, list[float]] = {k: [] for k in steps}
        cpu: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.rounds):
            for name, trainer in steps.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                trainer.outer_step(False)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                # seen as it goes: a step takes minutes
                print(f"{name}: {times[name][-1]:.1f} s wall, {cpu[name][-1]:.1f} s CPU", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ResNet-12 64-160-320-640, 32x32x3, 5-way "
          f"{args.shots}-shot, 15 queries, meta-batch 4, 1 inner step, second order, {args.backend} engine; "
          f"{args.rounds} interleaved round(s) after {args.warmup} warm-up round(s); load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| method | train parameters | wall s/step (median) | CPU s/step (all threads) | 30,000 steps at that "
          "wall rate |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {counts[name]:,} | {med:.1f} | {statistics.median(cpu[name]):.1f} | "
              f"{med * 30000 / 86400:.1f} days |")


if __name__ == "__main__":
    main()
