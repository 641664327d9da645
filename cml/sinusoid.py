"""Sinusoid regression tasks (Finn et al., 2017): y = A sin(x - phase).

Amplitude A ~ U[0.1, 5], phase ~ U[0, pi], inputs x ~ U[-5, 5]; K support points and Q query points per task.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .data.base import Task

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


class Sinusoid(NamedTuple):
    amplitude: float
    phase: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.sin(x - self.phase)


def _uniform(lo: float, hi: float, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


class SinusoidSampler:
    """Draws sinusoid tasks with its own generator; ``last_function`` is the curve of the last task drawn.

    Args:
        shots: support points K (5, 10 or 20 in the paper).
        queries: query points.
        generator: the sampler's RNG.
    """

    def __init__(self, shots: int, queries: int, generator: torch.Generator) -> None:
        if shots < 1 or queries < 1:
            raise ValueError(f"shots and queries must be positive, got shots={shots}, queries={queries}")
        self.shots, self.queries, self.generator = shots, queries, generator
        self.last_function: Sinusoid | None = None

    def sample(self) -> Task:
        g = self.generator
        fn = Sinusoid(float(_uniform(*AMPLITUDE, (1,), g)), float(_uniform(*PHASE, (1,), g)))
        self.last_function = fn
        xs = _uniform(*X_RANGE, (self.shots, 1), g)  # (K, 1)
        xq = _uniform(*X_RANGE, (self.queries, 1), g)  # (Q, 1)
        return Task((xs, fn(xs)), (xq, fn(xq)))
