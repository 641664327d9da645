"""The memory a config needs, checked before anything is allocated: a one-line refusal naming the estimate, not
an allocator's traceback or the kernel's OOM killer minutes later.

The estimate is a lower bound, so that it never refuses a run that fits: psi (the feature extractor) built on
PyTorch's ``meta`` device (shapes only, no memory) gives its exact parameter count, four float32 copies of which
training holds at least (the weights, their gradient and Adam's two moments); a forward pass of one example on
the ``meta`` device gives the floats every layer of psi outputs for it, which one task's support and query
examples hold at least once (the autograd graph keeps them for the backward pass). Heads, the inner loop's
adapted copies, second-order graphs and the batched engine's meta-batch all need more; the data set's own images
are not counted.

A task family says how large one example is (:meth:`cml.tasks.TaskFamily.example_shape`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

    from .config import Config

__all__ = ["Estimate", "estimate", "available", "check"]

_FLOAT = 4  # bytes of a float32
_COPIES = 4  # weights, gradient, Adam's exp_avg and exp_avg_sq


@dataclass(frozen=True)
class Estimate:
    """A lower bound of the memory a run needs.

    Attributes:
        parameters: psi's parameter count.
        activations: the floats psi's layers output for one example.
        examples: support and query examples of one task.
    """

    parameters: int
    activations: int
    examples: int

    @property
    def parameter_bytes(self) -> int:
        return _COPIES * _FLOAT * self.parameters

    @property
    def activation_bytes(self) -> int:
        return _FLOAT * self.activations * self.examples

    @property
    def bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def _size(n: float) -> str:
    for unit, scale in (("TB", 1024 ** 4), ("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def _too_large(cfg: "Config", what: str) -> ConfigError:
    width = cfg.family.width_field
    return ConfigError(f"--{width.replace('_', '-')} {getattr(cfg, width)}: {what}; no machine has memory for it: "
                       f"lower it")


def estimate(cfg: "Config", in_channels: int) -> Estimate:
    """The lower bound of the memory ``cfg`` needs (see the module docstring), computed without allocating.

    Raises:
        ConfigError: naming the width field, if psi's tensors would hold more elements than an index can count.
    """
    import torch

    from .layers import BatchNorm

    examples = (cfg.ways if cfg.family.classification else 1) * (cfg.shots + cfg.queries)
    width = getattr(cfg, cfg.family.width_field)
    try:
        with torch.device("meta"):
            psi = cfg.family.features(cfg, in_channels, width, BatchNorm)
    except (RuntimeError, ValueError, OverflowError):
        raise _too_large(cfg, "psi's tensors would hold more elements than an index can count") from None
    parameters = sum(p.numel() for p in psi.parameters())
    shape = cfg.family.example_shape(cfg, in_channels)
    outputs: list[int] = []

    def count(module: "torch.nn.Module", inputs: object, output: object) -> None:
        outputs.append(output.numel() if isinstance(output, torch.Tensor) else 0)

    leaves = [m for m in psi.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            psi(torch.empty((1, *shape), device="meta"))
        activations = max(sum(outputs), math.prod(shape))
    except Exception:  # noqa: BLE001 - a family whose psi takes more than one tensor (graphs): its input alone
        activations = math.prod(shape)
    finally:
        for h in hooks:
            h.remove()
    return Estimate(parameters, activations, examples)


def available(device: "torch.device") -> int | None:
    """The memory a run on ``device`` can use now: free GPU memory, or the host's available memory and free swap
    (``/proc/meminfo``); None where it cannot be read (then nothing is refused)."""
    import torch

    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None


def check(cfg: "Config", in_channels: int, device: "torch.device") -> Estimate:
    """Refuses, before anything is allocated, a config whose lower-bound estimate exceeds the memory available.

    Returns:
        The estimate, when it fits.

    Raises:
        ConfigError: one line naming the estimate, the memory available and the flags that size it.
    """
    from . import fields
    from .config import Config

    need = estimate(cfg, in_channels)
    free = available(device)
    if free is None or need.bytes <= free:
        return need
    flags = [cfg.family.width_field]
    if cfg.family.name in fields.info(Config, "image_size").tasks:
        flags.append("image_size")
    flags += ["queries", "shots"] + (["ways"] if cfg.family.classification else [])
    named = ", ".join(f"--{f.replace('_', '-')} {getattr(cfg, f)}" for f in flags)
    raise ConfigError(
        f"this config needs at least {_size(need.bytes)} of memory on {device.type} and {_size(free)} is available: "
        f"psi's {need.parameters:,} parameters with their gradient and Adam's moments take "
        f"{_size(need.parameter_bytes)}, one task's {need.examples:,} examples through psi "
        f"{_size(need.activation_bytes)} (a lower bound: the heads and the inner loop need more); lower one of "
        f"{named}")
