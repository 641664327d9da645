"""The base-learner axis: how a task is adapted and how the outer step is taken.

Each base learner is one module in this package that defines ``BASE = BaseLearner(...)``; the registry below
finds every such module, so adding a base is one new file (plus its tests): no edit to the trainer's loop, the
CLI's parser, the figures or the run-folder format. A :class:`BaseLearner` is data: what the inner loop adapts
and with which step sizes, which config options the base reads (each a switch of the shared machinery in
:mod:`cml.meta` and :mod:`cml.trainer`), and the values its presets set.

The machinery the options switch on, each implemented once:

- per-role inner step sizes (``role_rates``): BOIL freezes the head (rate 0), ANIL the body;
- MAML++ (``msl``, ``learn_inner_lr``, ``per_step_bn``, ``first_order_steps``, ``cosine_lr``): the multi-step
  loss, learnable per-tensor per-step inner rates, per-step BatchNorm weights, derivative-order annealing and
  cosine annealing of the outer learning rate;
- Sharp-MAML (``sharp_variant``, ``sharp_rho_lower``, ``sharp_rho_upper``): sharpness-aware perturbations of
  the inner step (lower level) and of the outer step (upper level).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..config import Config


def maml_rates(cfg: "Config") -> dict[str, float]:
    """MAML's inner step sizes: the body (psi) at ``inner_lr``, the head (theta) at ``head_inner_lr`` (default
    ``inner_lr``)."""
    return {"psi": cfg.inner_lr, "theta": cfg.inner_lr if cfg.head_inner_lr is None else cfg.head_inner_lr}


@dataclass(frozen=True)
class BaseLearner:
    """One base learner: a row of the table.

    Attributes:
        name: the config value (``--base``); also the run-folder prefix.
        label: the printed name ("BOIL").
        reference: the paper it comes from.
        summary: one line for help texts and the README.
        role_rates: the inner step size of psi's and theta's tensors, given the config; a rate of 0 means the
            role is not adapted in the inner loop (BOIL's head, ANIL's body). phi, where a method adapts it
            (CL), takes theta's rate.
        options: the config fields that only this base reads (MAML++'s switches, Sharp-MAML's radii). The
            config refuses a value other than the field's default under any other base.
        presets: per preset name (``quick``/``paper``, and ``*`` for both), config values the base sets when
            chosen; each may be a dict, or a function of the task kind (``sinusoid``/``image``) returning one.
    """

    name: str
    label: str
    reference: str
    summary: str
    role_rates: Callable[["Config"], dict[str, float]] = maml_rates
    options: tuple[str, ...] = ()
    presets: dict[str, Any] = field(default_factory=dict)

    def preset_values(self, preset: str, kind: str, task: str) -> dict[str, Any]:
        """The values this base sets in ``preset`` for a task of ``kind`` (``sinusoid`` or ``image``)."""
        out: dict[str, Any] = {}
        for key in ("*", preset):
            entry = self.presets.get(key, {})
            out.update(entry(kind, task) if callable(entry) else entry)
        return out


def _discover() -> dict[str, BaseLearner]:
    found: dict[str, BaseLearner] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        base = getattr(module, "BASE", None)
        if not isinstance(base, BaseLearner):
            raise TypeError(f"cml/bases/{info.name}.py defines no BASE = BaseLearner(...)")
        if base.name in found:
            raise ValueError(f"two base learners are named {base.name!r}")
        found[base.name] = base
    # MAML first (the default), the rest in the paper's Table 1 order, then any others by name.
    order = ["maml", "maml++", "boil", "sharp-maml"]
    return {n: found[n] for n in sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))}


BASE_TABLE: dict[str, BaseLearner] = _discover()
BASES: tuple[str, ...] = tuple(BASE_TABLE)


def get_base(name: str) -> BaseLearner:
    """The table entry of base learner ``name``.

    Raises:
        KeyError: naming the known bases.
    """
    try:
        return BASE_TABLE[name]
    except KeyError:
        raise KeyError(f"unknown base learner {name!r}; choose one of: {', '.join(BASES)}") from None


def base_options() -> dict[str, str]:
    """Every base-specific config field and the base that reads it."""
    return {opt: b.name for b in BASE_TABLE.values() for opt in b.options}
