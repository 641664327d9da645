"""Time per task and peak memory of the per-task engine (``higher``) and the batched engine, by meta-batch size.

Settings (issue 9): Conv-4, 5-way, second order, CML with a linear co-learner, on

- ``28px 1-shot``: 28x28x1 images, ``--inner-steps-28`` inner steps (default 1);
- ``84px 5-shot``: 84x84x3 images, ``--inner-steps-84`` inner steps (default 5);

at meta-batch 1, 4, 16 and 32 (``--batches``). A cell is the trainer's whole outer step (sampling from a
device-resident pool of random images, the meta-gradient, Adam) timed over ``--rounds`` steps after one warm-up
step; the table gives the median divided by the meta-batch. Each cell runs in its own process, so its memory is
its own: on CUDA the peak of ``torch.cuda.max_memory_allocated`` during the steps; on the CPU the growth of the
process's peak resident set (``ru_maxrss``) over its size before the first step.

Run: ``.venv/bin/python bench/batched.py --device cuda`` (the issue's settings; bench/gpu_check.sh)
     ``.venv/bin/python bench/batched.py --device cpu --filters 8 --queries 5 --inner-steps-84 1 --rounds 3``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cml.config import Config
from cml.data.base import ClassPool, Splits
from cml.trainer import Trainer

#: name -> (image size, channels, shots)
SETTINGS = {"28px 1-shot": (28, 1, 1), "84px 5-shot": (84, 3, 5)}
ENGINES = ("higher", "batched")


def random_splits(size: int, channels: int, per_class: int, classes: int = 20) -> Splits:
    rng = np.random.default_rng(0)
    shape = (per_class, size, size) if channels == 1 else (per_class, size, size, channels)
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(classes)]
    pool = ClassPool([f"c{i}" for i in range(classes)], [lambda a=a: a for a in arrays], "random bench images")
    return Splits(pool, pool, pool, "random")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_cell(args, setting: str, engine: str, batch: int) -> dict:
    """One cell in this process: seconds per task (median over rounds) and peak memory in bytes."""
    size, channels, shots = SETTINGS[setting]
    steps = args.inner_steps_28 if size == 28 else args.inner_steps_84
    cfg = Config(method="cml", task="omniglot", data="bench", image_size=size, filters=args.filters, ways=5,
                 shots=shots, queries=args.queries, meta_batch=batch, inner_steps=steps, test_inner_steps=steps,
                 inner_lr=0.4, backend=engine, co_learner="linear", steps=10**9, progress=False,
                 checkpoint_interval=0, val_interval=0, device=args.device)
    trainer = Trainer(cfg, Path(tempfile.mkdtemp(prefix="cml-batched-")),
                      splits=random_splits(size, channels, shots + args.queries))
    cuda = trainer.device.type == "cuda"

    def step() -> None:
        trainer.outer_step(False)
        trainer.step += 1
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        step()  # warm-up outside the memory measurement (cuDNN workspaces, caching allocator)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
        step()
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"s_per_task": statistics.median(times) / batch, "peak_bytes": max(peak - base, 0)}


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    p.add_argument("--batches", default="1,4,16,32")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated: {', '.join(SETTINGS)}")
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--inner-steps-28", type=int, default=1)
    p.add_argument("--inner-steps-84", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in each cell (default 1)")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # "setting|engine|batch": run one cell, print JSON
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA device; use --device cpu")
    if args.cell:
        setting, engine, batch = args.cell.split("|")
        print(json.dumps(run_cell(args, setting, engine, int(batch))))
        return
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        sys.exit(f"error: unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    batches = [int(b) for b in args.batches.split(",")]
    passthrough = [a for a in sys.argv[1:]]
    mem = "peak CUDA MiB" if args.device == "cuda" else "peak RSS growth MiB"
    print(f"{machine(args.device)}; Conv-4/{args.filters}, 5-way, {args.queries} queries, CML (linear co-learner), "
          f"second order, inner steps: 28px {args.inner_steps_28}, 84px {args.inner_steps_84}; median of "
          f"{args.rounds} outer steps per cell, one process per cell")
    print(f"| setting | meta-batch | per-task ms/task | {mem} | batched ms/task | {mem} | per-task/batched |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for setting in settings:
        for batch in batches:
            cells = {}
            for engine in ENGINES:
                out = subprocess.run([sys.executable, __file__, *passthrough, "--cell", f"{setting}|{engine}|{batch}"],
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"error: cell {setting}, {engine}, meta-batch {batch} failed:\n{out.stderr[-2000:]}")
                cells[engine] = json.loads(out.stdout.strip().splitlines()[-1])
            h, b = cells["higher"], cells["batched"]
            print(f"| {setting} | {batch} | {1e3 * h['s_per_task']:.1f} | {h['peak_bytes'] / 2**20:.0f} | "
                  f"{1e3 * b['s_per_task']:.1f} | {b['peak_bytes'] / 2**20:.0f} | "
                  f"{h['s_per_task'] / b['s_per_task']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
