"""Seconds per meta-step and peak autograd memory: maml and cml on both backends, against a minimal loop.

Setting (issue 2): 28x28 1-channel images, Conv-4 with 64 filters, 5-way 1-shot, 15 queries, meta-batch 4,
5 inner steps, second order. Every variant runs one step per round, interleaved, in this one process, so
machine noise hits all of them alike; the table gives medians and ratios.

"minimal" is a hand-written torch.func MAML step (functional_call + autograd.grad, one backward per task,
Adam): the floor the trainer is held to. "cml+rec k" is a CML step with the learning-dynamics recorder
on every k-th of its steps (k = 1: every step). A step of every variant runs in every round, so the k = 10
variant records in one round out of ten: its cost is a mean over the rounds, and the recording overheads
are ratios of means (the other ratios are of medians).

Peak memory is the peak of the bytes held by tensors that autograd saved for backward (storage-deduplicated),
measured with ``torch.autograd.graph.saved_tensors_hooks``: on the CPU that is the part of memory the
method's graph costs, and it is measured in-process.

With ``--bases maml,maml++,boil,sharp-maml,anil`` it instead times every base learner (issue 7): for each base,
a minimal hand-written loop of that base (no cml.meta code: functional_call, autograd.grad and the base's rule
for what adapts, its rates, its multi-step loss and its SAM steps written out), the trainer's step of the base
alone, and the trainer's step of the base + CML with a linear co-learner; the table's ratios are base/minimal
(goal <= 1.05) and +CML/base (goal <= 1.05).

Run: ``.venv/bin/python bench/step_time.py [--rounds 20] [--filters 64] [--inner-steps 5]`` (``make bench``; the
package installed, as ``make`` does: ``pip install -e .``)
     ``.venv/bin/python bench/step_time.py --bases maml,maml++,boil,sharp-maml,anil --inner-steps 2``
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from cml.config import Config
from cml.data.base import ClassPool, Splits, TaskSampler
from cml.models import build_model, init_parameters
from cml.recording import Recorder
from cml.seeds import generator
from cml.trainer import Trainer


class SavedTensorMeter:
    """Tracks live bytes of tensors saved for backward, counting each storage once, and their peak."""

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  # storage ptr -> [refcount, bytes]
        self.current = 0
        self.peak = 0
        self.generation = 0

    def _release(self, ptr: int, generation: int) -> None:
        if generation != self.generation:  # saved during an earlier measurement
            return
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[ptr]

    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.live:
            self.live[ptr][0] += 1
        else:
            self.live[ptr] = [1, storage.nbytes()]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        holder = _Holder(t)
        weakref.finalize(holder, self._release, ptr, self.generation)
        return holder

    @staticmethod
    def unpack(holder: "_Holder") -> torch.Tensor:
        return holder.tensor

    @contextmanager
    def measure(self):
        self.current = self.peak = 0
        self.generation += 1
        self.live.clear()
        with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
            yield self


class _Holder:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def random_splits(classes: int = 20, per_class: int = 20, size: int = 28) -> Splits:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (per_class, size, size), dtype=np.uint8) for _ in range(classes)]
    pool = ClassPool([f"c{i}" for i in range(classes)], [lambda a=a: a for a in arrays], "random bench images")
    return Splits(pool, pool, pool, "random")


def bench_config(method: str, backend: str, args, record_interval: int = 0, base: str = "maml") -> Config:
    from cml.bases import get_base

    # The base's own switches (MAML++'s, Sharp-MAML's radii) as its quick preset sets them, at this setting.
    own = {k: v for k, v in get_base(base).preset_values("quick", "image", "omniglot").items()
           if k in get_base(base).options}
    return Config(base=base, method=method, task="omniglot", data="bench", image_size=28, filters=args.filters,
                  ways=5, shots=1, queries=15, meta_batch=4, inner_steps=args.inner_steps,
                  test_inner_steps=args.inner_steps, inner_lr=0.4, backend=backend, co_learner=args.co_learner,
                  steps=10**9, progress=False, record_interval=record_interval, checkpoint_interval=0,
                  val_interval=0, **{**own, "msl_anneal_steps": 10**9} if base == "maml++" else own)


def minimal_base_step_factory(base: str, args, splits: Splits):
    """A hand-written second-order step of one base learner on torch.func, written out without cml.meta:
    BOIL adapts ``features.*`` only, ANIL ``head.*`` only; MAML++ sums the query loss of every step with equal
    weights (the weights while annealing), uses its learnable per-step rates and per-step BatchNorm rows and
    leaves norm layers unadapted; Sharp-MAML takes each inner gradient at the perturbed point and the outer
    gradient at the SAM-ascended point. The model comes from ``build_model`` so that parameters are the same.
    """
    cfg = bench_config("none", "func", args, base=base)
    model = build_model(cfg, 1)
    init_parameters(model, generator(0, "init"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = TaskSampler(splits.train, 5, 1, 15, generator(0, "train"))
    ce = torch.nn.functional.cross_entropy
    n_steps = cfg.inner_steps

    def adapts(name: str) -> bool:
        if base == "boil":
            return name.startswith("features.")
        if base == "anil":
            return name.startswith("head.")
        if base == "maml++":
            return name.startswith(("features.", "head.")) and ".norm." not in name
        return name.startswith(("features.", "head."))

    def forward(params, x, k):
        return torch.func.functional_call(model, params, (x,), {"step": k})[0]

    def outer_grads(params):
        grads = {n: torch.zeros_like(p) for n, p in params.items()}
        for task in tasks:
            (xs, ys), (xq, yq) = task
            fast = params
            outer = 0.0
            for k in range(n_steps):
                names = [n for n in fast if adapts(n)]
                loss = ce(forward(fast, xs, k), ys)
                at = fast
                if base == "sharp-maml":
                    g0 = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=True)
                    norm = torch.sqrt(sum(g.pow(2).sum() for g in g0))
                    at = {**fast, **{n: fast[n] + cfg.sharp_rho_lower * g / (norm + 1e-12) for n, g in zip(names, g0)}}
                    loss = ce(forward(at, xs, k), ys)
                g = torch.autograd.grad(loss, [at[n] for n in names], create_graph=True)
                rate = (lambda n, k=k: params["inner_lr." + n.replace(".", "-")][k]) if base == "maml++" else (
                    lambda n: cfg.inner_lr)
                fast = {**fast, **{n: fast[n] - rate(n) * gi for n, gi in zip(names, g)}}
                if base == "maml++":  # the multi-step loss, uniform weights at the start of annealing
                    outer = outer + ce(forward(fast, xq, k), yq) / n_steps
            if base != "maml++":
                outer = ce(forward(fast, xq, n_steps - 1), yq)
            for (n, _), gi in zip(params.items(), torch.autograd.grad(outer / cfg.meta_batch, list(params.values()),
                                                                       allow_unused=True)):
                if gi is not None:
                    grads[n] += gi
        return grads

    tasks: list = []

    def step() -> None:
        tasks[:] = [sampler.sample() for _ in range(cfg.meta_batch)]
        params = dict(model.named_parameters())
        grads = outer_grads(params)
        if base == "sharp-maml":
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
            with torch.no_grad():
                ascended = {n: (p + cfg.sharp_rho_upper * grads[n] / (norm + 1e-12)).requires_grad_()
                            for n, p in params.items()}
            grads = outer_grads(ascended)
        for n, p in params.items():
            p.grad = grads[n]
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def bases_main(args, splits: Splits, tmp: Path) -> None:
    """The per-base table: minimal loop, trainer base alone, trainer base + CML (func engine and higher)."""
    bases = args.bases.split(",")
    steps = {}
    for base in bases:
        steps[f"{base} minimal"] = minimal_base_step_factory(base, args, splits)
        steps[f"{base} alone"] = trainer_step_factory(bench_config("none", "func", args, base=base), splits, tmp)
        steps[f"{base} +cml"] = trainer_step_factory(bench_config("cml", "func", args, base=base), splits, tmp)
        steps[f"{base} alone higher"] = trainer_step_factory(bench_config("none", "higher", args, base=base), splits,
                                                             tmp)
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Conv-4/{args.filters}, 28x28x1, 5-way "
          f"1-shot, 15 queries, meta-batch 4, {args.inner_steps} inner steps, second order, {args.co_learner} "
          f"co-learner; {args.rounds} interleaved rounds; medians")
    print("| base | minimal s/step | trainer s/step (func) | trainer/minimal | +CML s/step | +CML/alone | "
          "higher s/step | higher/func |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for base in bases:
        m, a, c, h = (med[f"{base} {v}"] for v in ("minimal", "alone", "+cml", "alone higher"))
        print(f"| {base} | {m:.4f} | {a:.4f} | {a / m:.3f} | {c:.4f} | {c / a:.3f} | {h:.4f} | {h / a:.3f} |")


def minimal_step_factory(args, splits: Splits):
    """A hand-written second-order MAML step on torch.func; no trainer code but the model and the sampler."""
    cfg = bench_config("maml", "func", args)
    model = build_model(cfg, 1)
    init_parameters(model, generator(0, "init"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = TaskSampler(splits.train, 5, 1, 15, generator(0, "train"))
    ce = torch.nn.functional.cross_entropy

    def step() -> None:
        params = dict(model.named_parameters())
        grads = {n: torch.zeros_like(p) for n, p in params.items()}
        for _ in range(cfg.meta_batch):
            (xs, ys), (xq, yq) = sampler.sample()
            fast = params
            for _ in range(cfg.inner_steps):
                loss = ce(torch.func.functional_call(model, fast, (xs,))[0], ys)
                g = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                fast = {n: p - cfg.inner_lr * gi for (n, p), gi in zip(fast.items(), g)}
            outer = ce(torch.func.functional_call(model, fast, (xq,))[0], yq) / cfg.meta_batch
            for (n, _), gi in zip(params.items(), torch.autograd.grad(outer, list(params.values()))):
                grads[n] += gi
        for n, p in params.items():
            p.grad = grads[n]
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def trainer_step_factory(cfg: Config, splits: Splits, tmp: Path):
    run_dir = tmp / f"{cfg.variant}-{cfg.backend}-{cfg.record_interval}"
    recorder = Recorder(run_dir) if cfg.record_interval else None
    trainer = Trainer(cfg, run_dir, splits=splits, recorder=recorder)

    def step() -> None:
        record = cfg.record_interval > 0 and (trainer.step + 1) % cfg.record_interval == 0
        trainer.outer_step(record)
        trainer.step += 1

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20, help="a multiple of 10 (the k = 10 recorder's period)")
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--inner-steps", type=int, default=5)
    p.add_argument("--co-learner", default="linear", choices=("linear", "conv"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--bases", default="", help="comma-separated base learners: time each against its own minimal "
                                               "loop and with CML (instead of the default table)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cml-bench-"))
    splits = random_splits()
    if args.bases:
        bases_main(args, splits, tmp)
        return
    steps = {"minimal (torch.func)": minimal_step_factory(args, splits)}
    for method in ("maml", "cml"):
        for backend in ("higher", "func"):
            steps[f"{method} {backend}"] = trainer_step_factory(bench_config(method, backend, args), splits, tmp)
    steps["cml+rec k=1 higher"] = trainer_step_factory(bench_config("cml", "higher", args, 1), splits, tmp)
    steps["cml+rec k=10 higher"] = trainer_step_factory(bench_config("cml", "higher", args, 10), splits, tmp)
    meter = SavedTensorMeter()
    times: dict[str, list[float]] = {k: [] for k in steps}
    peaks: dict[str, int] = {}
    for name, step in steps.items():  # warm-up, and the memory measurement
        with meter.measure():
            step()
        peaks[name] = meter.peak
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Conv-4/{args.filters}, 28x28x1, 5-way "
          f"1-shot, 15 queries, meta-batch 4, {args.inner_steps} inner steps, second order, {args.co_learner} "
          f"co-learner; {args.rounds} interleaved rounds")
    print("| variant | median s/step | mean s/step | vs minimal | vs maml (same backend) | peak saved MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in steps:
        backend = "func" if "func" in name and "minimal" not in name else "higher"
        ref = med.get(f"maml {backend}")
        vs_maml = f"{med[name] / ref:.3f}" if ref and "minimal" not in name else ""
        print(f"| {name} | {med[name]:.4f} | {mean[name]:.4f} | {med[name] / med['minimal (torch.func)']:.3f} | "
              f"{vs_maml} | {peaks[name] / 2**20:.1f} |")
    print()
    print(f"cml/maml: higher {med['cml higher'] / med['maml higher']:.3f}, "
          f"func {med['cml func'] / med['maml func']:.3f} (goal <= 1.05)")
    print(f"trainer/minimal: maml higher {med['maml higher'] / med['minimal (torch.func)']:.3f}, maml func "
          f"{med['maml func'] / med['minimal (torch.func)']:.3f} (goal <= 1.05)")
    print(f"recording overhead vs cml higher (ratio of means): "
          f"k=1 {mean['cml+rec k=1 higher'] / mean['cml higher']:.3f}x, "
          f"k=10 {mean['cml+rec k=10 higher'] / mean['cml higher']:.3f}x")


if __name__ == "__main__":
    main()
