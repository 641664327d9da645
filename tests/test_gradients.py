"""Cosine similarities and norms of named gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from analysis import (
    block_of,
    blockwise_cosine_similarity,
    blockwise_grad_norm,
    cosine_similarity,
    grad_norm,
)

SHAPES = {
    "features.block1.conv.weight": (4, 3, 3, 3),
    "features.block1.conv.bias": (4,),
    "features.block2.conv.weight": (4, 4, 3, 3),
    "features.block2.norm.weight": (4,),
    "head.fc.weight": (5, 16),
    "head.fc.bias": (5,),
    "head.scale": (),
}


def _grads(seed: int, shapes: dict[str, tuple[int, ...]] = SHAPES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) for name, shape in shapes.items()}


def _cat(g: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([g[n].double().reshape(-1) for n in names])


def test_identical_is_one_and_negated_is_minus_one() -> None:
    a = _grads(0)
    assert cosine_similarity(a, a) == pytest.approx(1.0, abs=1e-12)
    assert cosine_similarity(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0, abs=1e-12)
    assert cosine_similarity(a, {k: 3.0 * v for k, v in a.items()}) == pytest.approx(1.0, abs=1e-12)


def test_matches_torch_on_concatenated_vectors() -> None:
    for seed in range(5):
        a, b = _grads(2 * seed), _grads(2 * seed + 1)
        names = sorted(SHAPES)
        expected = F.cosine_similarity(_cat(a, names), _cat(b, names), dim=0).item()
        assert cosine_similarity(a, b) == pytest.approx(expected, abs=1e-12)


def test_independent_of_insertion_order() -> None:
    a, b = _grads(10), _grads(11)
    ref = cosine_similarity(a, b)
    # b built in the reverse order: concatenating each dict in its own order would pair the wrong entries.
    b_rev = dict(reversed(list(b.items())))
    assert list(b_rev) != list(a)
    assert cosine_similarity(a, b_rev) == ref
    assert cosine_similarity(dict(reversed(list(a.items()))), b) == ref
    names = sorted(SHAPES)
    assert ref == pytest.approx(F.cosine_similarity(_cat(a, names), _cat(b, names), dim=0).item(), abs=1e-12)
    assert ref != pytest.approx(F.cosine_similarity(_cat(a, list(a)), _cat(b_rev, list(b_rev)), dim=0).item())


def test_mismatched_names_raise_naming_them() -> None:
    a, b = _grads(0), _grads(1)
    b["co_head.fc.weight"] = torch.zeros(2)
    del b["head.scale"]
    with pytest.raises(ValueError, match=r"only in a: \['head.scale'\], only in b: \['co_head.fc.weight'\]"):
        cosine_similarity(a, b)
    with pytest.raises(ValueError, match="only in a"):
        blockwise_cosine_similarity(a, b, block_of)


def test_shape_mismatch_names_the_parameter() -> None:
    a, b = _grads(0), _grads(1)
    b["head.fc.weight"] = b["head.fc.weight"].T
    with pytest.raises(ValueError, match=r"'head.fc.weight' has shape \(5, 16\) in a but \(16, 5\) in b"):
        cosine_similarity(a, b)


def test_bad_values_raise() -> None:
    a = _grads(0)
    with pytest.raises(ValueError, match="non-empty"):
        cosine_similarity({}, {})
    b = dict(a, **{"head.scale": None})
    with pytest.raises(ValueError, match=r"b\['head.scale'\] must be a Tensor"):
        cosine_similarity(a, b)
    with pytest.raises(ValueError, match="non-empty"):
        grad_norm({})


def test_zero_norm_gives_nan() -> None:
    a = _grads(0)
    zero = {k: torch.zeros_like(v) for k, v in a.items()}
    assert math.isnan(cosine_similarity(a, zero))
    assert math.isnan(cosine_similarity(zero, zero))
    # Tiny but non-zero gradients still have a direction.
    tiny = {k: 1e-30 * v for k, v in a.items()}
    assert cosine_similarity(a, tiny) == pytest.approx(1.0, abs=1e-12)


def test_block_of() -> None:
    assert block_of("features.block1.conv.weight") == "features.block1"
    assert block_of("features.blocks.0.conv.weight") == "features.blocks.0"
    assert block_of("features.blocks.12.norm.bias") == "features.blocks.12"
    assert block_of("head.fc.weight") == "head.fc"
    assert block_of("co_head.fc.weight") == "co_head.fc"  # distinct from head.fc: heads never merge
    assert block_of("head.scale") == "head.scale"
    assert block_of("head.0.weight") == "head.0"
    assert block_of("scale") == "scale"
    for bad in ("", "features..weight", ".weight"):
        with pytest.raises(ValueError, match="dotted parameter name"):
            block_of(bad)


def test_blockwise_cosine_with_callable_matches_per_block_by_hand() -> None:
    a, b = _grads(20), _grads(21)
    got = blockwise_cosine_similarity(a, b, block_of)
    groups = {
        "features.block1": ["features.block1.conv.weight", "features.block1.conv.bias"],
        "features.block2": ["features.block2.conv.weight", "features.block2.norm.weight"],
        "head.fc": ["head.fc.weight", "head.fc.bias"],
        "head.scale": ["head.scale"],
    }
    assert list(got) == list(groups)
    for blk, names in groups.items():
        names = sorted(names)
        expected = F.cosine_similarity(_cat(a, names), _cat(b, names), dim=0).item()
        assert got[blk] == pytest.approx(expected, abs=1e-12)
    # Per-block values are not the whole-model value.
    assert all(v != pytest.approx(cosine_similarity(a, b)) for v in got.values())


def test_blockwise_cosine_with_mapping() -> None:
    a, b = _grads(30), _grads(31)
    b["features.block2.conv.weight"] = -a["features.block2.conv.weight"]
    b["features.block2.norm.weight"] = -2.0 * a["features.block2.norm.weight"]
    blocks = {
        "psi2": ["features.block2.norm.weight", "features.block2.conv.weight"],
        "fc_w": ["head.fc.weight"],
    }
    got = blockwise_cosine_similarity(a, b, blocks)
    assert list(got) == ["psi2", "fc_w"]  # parameters in no block are ignored
    # block2 of b is -a scaled by 1 and 2 on its two tensors: not exactly -1, computed by hand.
    ca = _cat(a, ["features.block2.conv.weight", "features.block2.norm.weight"])
    cb = _cat(b, ["features.block2.conv.weight", "features.block2.norm.weight"])
    assert got["psi2"] == pytest.approx(float(ca @ cb / (ca.norm() * cb.norm())), abs=1e-12)
    assert -1.0 < got["psi2"] < -0.9
    expected = F.cosine_similarity(_cat(a, ["head.fc.weight"]), _cat(b, ["head.fc.weight"]), dim=0).item()
    assert got["fc_w"] == pytest.approx(expected, abs=1e-12)


def test_blockwise_bad_blocks_raise() -> None:
    a = _grads(0)
    with pytest.raises(ValueError, match=r"blocks\['x'\] names parameters absent from a: \['nope'\]"):
        blockwise_cosine_similarity(a, a, {"x": ["nope", "head.scale"]})
    with pytest.raises(ValueError, match=r"blocks\['x'\] names no parameters"):
        blockwise_cosine_similarity(a, a, {"x": []})
    with pytest.raises(ValueError, match="sequence of parameter names"):
        blockwise_grad_norm(a, {"x": "head.scale"})
    with pytest.raises(ValueError, match=r"absent from g: \['nope'\]"):
        blockwise_grad_norm(a, {"x": ["nope"]})


def test_blockwise_zero_block_is_nan_only_there() -> None:
    a, b = _grads(40), _grads(41)
    b["head.scale"] = torch.zeros(())
    got = blockwise_cosine_similarity(a, b, block_of)
    assert math.isnan(got["head.scale"])
    assert all(not math.isnan(v) for k, v in got.items() if k != "head.scale")
    assert not math.isnan(cosine_similarity(a, b))


def test_norms_match_torch() -> None:
    g = _grads(50)
    names = sorted(SHAPES)
    assert grad_norm(g) == pytest.approx(torch.linalg.vector_norm(_cat(g, names)).item(), rel=1e-12)
    got = blockwise_grad_norm(g, block_of)
    assert list(got) == ["features.block1", "features.block2", "head.fc", "head.scale"]
    assert got["head.scale"] == pytest.approx(abs(g["head.scale"].item()), rel=1e-12)
    block2 = ["features.block2.conv.weight", "features.block2.norm.weight"]
    assert got["features.block2"] == pytest.approx(torch.linalg.vector_norm(_cat(g, block2)).item(), rel=1e-12)
    # Blocks partition the parameters, so squared block norms add up to the squared total.
    assert sum(v**2 for v in got.values()) == pytest.approx(grad_norm(g) ** 2, rel=1e-12)
    assert blockwise_grad_norm(g, {"fc": ["head.fc.bias"]}) == {
        "fc": pytest.approx(torch.linalg.vector_norm(g["head.fc.bias"].double()).item(), rel=1e-12)
    }
