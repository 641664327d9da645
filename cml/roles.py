"""Parameter roles, read from the names (torch-free: the tables that the CLI reads before torch use them).

Parameter names fix the roles: ``features.*`` is psi, ``head.*`` is theta, ``co_head.*`` is phi, and
``inner_lr.*`` holds meta-parameters that are not weights (MAML++'s learnable inner step sizes). The trainer, the
diagnostics and the parameter counts all read the roles from the names (:func:`role_of`).
"""

from __future__ import annotations

PSI, THETA, PHI, RATES = "features", "head", "co_head", "inner_lr"
ROLES = {PSI: "psi", THETA: "theta", PHI: "phi", RATES: "rate"}


def role_of(name: str) -> str:
    """``psi``, ``theta``, ``phi`` or ``rate`` for a parameter name such as ``features.block1.conv.weight``."""
    top = name.split(".", 1)[0]
    if top not in ROLES:
        raise ValueError(f"parameter {name!r} belongs to no role; expected a name under {', '.join(ROLES)}")
    return ROLES[top]


def is_norm(name: str) -> bool:
    """Whether a parameter is a BatchNorm weight or bias (every norm layer here is a module named ``norm``)."""
    return "norm" in name.split(".")[:-1]


def rate_key(name: str) -> str:
    """The key of a tensor's learnable inner step sizes: ``features.block1.conv.weight`` ->
    ``features-block1-conv-weight`` (parameter names never contain ``-``; module keys cannot contain ``.``)."""
    return name.replace(".", "-")
