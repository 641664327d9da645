"""Similarities and norms of named gradients, whole-model and per block.

A gradient is a mapping from parameter name (as in ``module.named_parameters()``) to a tensor. Two
gradients are compared as single vectors: each is flattened and concatenated in sorted-name order, so the
result does not depend on the order the mappings were built in. Arithmetic is in float64 on the CPU.

Zero-norm gradients: the cosine similarity of a zero vector with anything is 0/0. The functions here return
``float('nan')`` for it instead of raising, because they run as diagnostics inside training, where a block
whose gradient vanishes for a step (all its ReLUs inactive, a head that does not reach it) must not stop
the run; NaN records "undefined" honestly and is skipped by ``numpy.nanmean``. Callers that average these
values must drop NaN deliberately (:func:`analysis.stats.mean_ci95` raises on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "block_of",
    "blockwise_cosine_similarity",
    "blockwise_grad_norm",
    "cosine_similarity",
    "grad_norm",
]

Blocks = Mapping[str, Sequence[str]] | Callable[[str], str]


def _check_tensor(value: object, name: str, arg: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{arg}[{name!r}] must be a Tensor, got {type(value).__name__}")
    if value.is_complex():
        raise ValueError(f"{arg}[{name!r}] must be real, got dtype {value.dtype}")
    return value


def _flat(g: Mapping[str, Tensor], names: Sequence[str], arg: str) -> Tensor:
    """The tensors of ``g`` named ``names`` (in that order), flattened and concatenated: ``(sum numel,)``."""
    parts = [_check_tensor(g[n], n, arg).detach().to(device="cpu", dtype=torch.float64) for n in names]
    return torch.cat([p.reshape(-1) for p in parts])


def _check_same_names(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> list[str]:
    """The sorted common names of ``a`` and ``b``; raises unless both hold the same names and shapes."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"gradients must be non-empty, got {len(a)} names in a and {len(b)} in b")
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise ValueError(f"a and b must name the same parameters; only in a: {only_a}, only in b: {only_b}")
    names = sorted(a)
    for n in names:
        sa, sb = tuple(_check_tensor(a[n], n, "a").shape), tuple(_check_tensor(b[n], n, "b").shape)
        if sa != sb:
            raise ValueError(f"parameter {n!r} has shape {sa} in a but {sb} in b")
    return names


def _cosine(va: Tensor, vb: Tensor) -> float:
    na, nb = torch.linalg.vector_norm(va), torch.linalg.vector_norm(vb)
    if na == 0 or nb == 0:
        return math.nan  # direction undefined for a zero vector; see the module docstring
    # Normalising before the dot product keeps tiny or huge gradients from under- or overflowing the
    # product of norms; the clamp removes rounding just outside [-1, 1].
    return float(torch.clamp((va / na) @ (vb / nb), -1.0, 1.0))


def _groups(names: Sequence[str], blocks: Blocks, arg: str) -> dict[str, list[str]]:
    """Block name -> sorted parameter names, for parameter names ``names`` of the mapping ``arg``."""
    if callable(blocks) and not isinstance(blocks, Mapping):
        out: dict[str, list[str]] = {}
        for n in names:  # first-appearance order of the caller's mapping, i.e. module order
            out.setdefault(str(blocks(n)), []).append(n)
        return {k: sorted(v) for k, v in out.items()}
    if not isinstance(blocks, Mapping):
        raise ValueError(f"blocks must be a mapping or a callable, got {type(blocks).__name__}")
    present = set(names)
    out = {}
    for block, members in blocks.items():
        if isinstance(members, str):
            raise ValueError(
                f"blocks[{block!r}] must be a sequence of parameter names, got the string {members!r}"
            )
        members = list(members)
        if not members:
            raise ValueError(f"blocks[{block!r}] names no parameters")
        missing = sorted(set(members) - present)
        if missing:
            raise ValueError(f"blocks[{block!r}] names parameters absent from {arg}: {missing}")
        out[str(block)] = sorted(set(members))
    return out


def block_of(name: str) -> str:
    """The block a parameter belongs to: its first two dotted components, plus any numeric index after them.

    ``features.block1.conv.weight`` -> ``features.block1``; ``features.blocks.0.conv.weight`` ->
    ``features.blocks.0`` (a ``ModuleList``/``Sequential`` index names the block, not the container);
    ``head.fc.weight`` -> ``head.fc``; ``co_head.block_a.norm.bias`` -> ``co_head.block_a``. The top-level
    module is kept so that blocks of different heads (``head.fc``, ``co_head.fc``) never merge. A name with
    fewer than two components is its own block.

    Args:
        name: a dotted parameter name, as from ``module.named_parameters()``.

    Returns:
        The block name.

    Raises:
        ValueError: if ``name`` is empty or has an empty component.
    """
    parts = name.split(".")
    if not name or any(p == "" for p in parts):
        raise ValueError(f"name must be a dotted parameter name with no empty components, got {name!r}")
    end = min(2, len(parts))
    while end < len(parts) - 1 and parts[end].isdigit():
        end += 1
    return ".".join(parts[:end])


def cosine_similarity(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Cosine similarity of two named gradients, each flattened and concatenated in sorted-name order.

    Args:
        a: parameter name -> gradient tensor of any shape.
        b: the same names, each with the same shape as in ``a``.

    Returns:
        cos(a, b) in [-1, 1], or NaN when either concatenated gradient is exactly zero (undefined; see
        the module docstring).

    Raises:
        ValueError: if either mapping is empty, the names differ (the message lists the names present in
            only one of them), a value is not a real Tensor, or a parameter's shape differs between them.
    """
    names = _check_same_names(a, b)
    return _cosine(_flat(a, names, "a"), _flat(b, names, "b"))


def blockwise_cosine_similarity(
    a: Mapping[str, Tensor], b: Mapping[str, Tensor], blocks: Blocks
) -> dict[str, float]:
    """Cosine similarity of two named gradients per block of parameters.

    Args:
        a: parameter name -> gradient tensor.
        b: the same names with the same shapes.
        blocks: either a mapping block name -> parameter names (blocks may overlap; parameters in no block
            are ignored, so a whole-model gradient can be scored on the feature extractor's blocks only),
            or a callable parameter name -> block name such as :func:`block_of` (every parameter counts).

    Returns:
        Block name -> cos of the block's concatenated gradients (NaN where either is zero). Keys follow the
        mapping's order, or, for a callable, the order in which blocks first appear in ``a``.

    Raises:
        ValueError: as :func:`cosine_similarity`, and if a block names no parameters or a parameter absent
            from ``a``.
    """
    _check_same_names(a, b)
    groups = _groups(list(a), blocks, "a")
    return {blk: _cosine(_flat(a, ns, "a"), _flat(b, ns, "b")) for blk, ns in groups.items()}


def grad_norm(g: Mapping[str, Tensor]) -> float:
    """L2 norm of a named gradient: the Euclidean norm of all its tensors flattened and concatenated.

    Args:
        g: parameter name -> gradient tensor of any shape.

    Returns:
        The norm as a Python float (>= 0).

    Raises:
        ValueError: if ``g`` is empty or a value is not a real Tensor.
    """
    if len(g) == 0:
        raise ValueError("g must be non-empty")
    return float(torch.linalg.vector_norm(_flat(g, sorted(g), "g")))


def blockwise_grad_norm(g: Mapping[str, Tensor], blocks: Blocks) -> dict[str, float]:
    """L2 norm of a named gradient per block of parameters.

    Args:
        g: parameter name -> gradient tensor.
        blocks: a mapping block name -> parameter names, or a callable parameter name -> block name, as in
            :func:`blockwise_cosine_similarity`.

    Returns:
        Block name -> the L2 norm of the block's concatenated tensors, keys ordered as in
        :func:`blockwise_cosine_similarity`.

    Raises:
        ValueError: if ``g`` is empty, a value is not a real Tensor, or a block names no parameters or a
            parameter absent from ``g``.
    """
    if len(g) == 0:
        raise ValueError("g must be non-empty")
    groups = _groups(list(g), blocks, "g")
    return {blk: float(torch.linalg.vector_norm(_flat(g, ns, "g"))) for blk, ns in groups.items()}
