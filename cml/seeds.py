"""The run's random streams: every generator of a run derives from its seed and a stream name, so streams are
independent and nothing reads the global RNG."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, stream: str) -> int:
    """An independent seed for one named random stream of a run (train tasks, val tasks, noise, ...)."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``stream`` of run seed ``seed``."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))
