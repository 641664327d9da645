"""Why the batched engine normalises with the explicit formula: its meta-gradient against the per-task engine's,
float64, with the explicit BatchNorm (what it runs) and with PyTorch's batch-norm kernel under ``vmap``.

Conv-4/4 with BatchNorm, 16 px, 3-way 2-shot, 2 queries, two inner steps, 2 tasks, CML with the conv co-learner;
MAML (BatchNorm weights adapted) and MAML++ (per-step BatchNorm, not adapted), first and second order. The error
is the largest per-tensor error against the whole meta-gradient's norm.

Run: ``.venv/bin/python bench/vmap_batchnorm.py``
"""

from __future__ import annotations

import math

import torch

from cml.engines import BatchedBackend, HigherBackend
from cml.layers import batch_norm_kernel
from cml.config import Config
from cml.data.base import Task
from cml.meta import outer_gradient
from cml.models import build_model, init_parameters


def error(got: dict, want: dict) -> float:
    whole = math.sqrt(sum(float(v.pow(2).sum()) for v in want.values()))
    return max(float((got[n] - want[n]).norm()) for n in want) / whole


def main() -> None:
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(2)
    print(f"torch {torch.__version__}, float64; error of the batched meta-gradient vs the per-task engine's")
    print("| base | order | explicit BatchNorm (the engine) | PyTorch's kernel under vmap |")
    print("| --- | --- | ---: | ---: |")
    for base, extra in (("maml", {}), ("maml++", dict(per_step_bn=True, msl=True, msl_anneal_steps=10))):
        for first_order in (False, True):
            cfg = Config(base=base, method="cml", task="omniglot", data="unused", filters=4, image_size=16, ways=3,
                         shots=2, queries=2, co_learner="conv", inner_steps=2, test_inner_steps=2, inner_lr=0.1,
                         first_order=first_order, **extra)
            model = build_model(cfg, 1)
            init_parameters(model, torch.Generator().manual_seed(0))
            model.double()
            labels = torch.arange(3)
            tasks = [Task((torch.rand(6, 1, 16, 16, generator=g), labels.repeat_interleave(2)),
                          (torch.rand(6, 1, 16, 16, generator=g), labels.repeat_interleave(2))) for _ in range(2)]
            params = dict(model.named_parameters())
            want = outer_gradient(HigherBackend(model), cfg, params, tasks, outer_step=3).total
            ours = outer_gradient(BatchedBackend(model), cfg, params, tasks, outer_step=3).total
            with_kernel = BatchedBackend(model, vmap_norm=batch_norm_kernel)  # what the engine must not do
            kernel = outer_gradient(with_kernel, cfg, params, tasks, outer_step=3).total
            order = "first" if first_order else "second"
            print(f"| {base} | {order} | {error(ours, want):.1e} | {error(kernel, want):.1e} |")


if __name__ == "__main__":
    main()
