"""The method axis: what is added to a base learner. One table, read by the config, the model builder, the
inner and outer loops, the trainer and the figures; nothing else compares a method's name.

A run is a *base learner* (how a task is adapted and how the outer step is taken: :mod:`cml.bases`) plus a
*method* (what is added to it): ``none`` (the base alone), ``cml`` (the co-learner), ``noisy`` (Gaussian
noise on the meta-gradient), ``more`` (parameter-matched extra capacity) or ``cl`` (a second branch trained
like the first). "BOIL + CML" is ``--base boil --method cml``.

Run folders written before the two axes existed name their method ``maml``, ``noisy-maml`` or ``more-maml``;
those names are read as ``none``, ``noisy`` and ``more`` on the ``maml`` base (:data:`LEGACY`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .registry import lookup

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .config import Config

    #: ``loss(meta_out, co_out, y)``: a task's loss from both heads' outputs.
    HeadsLoss = Callable[[Tensor, "Tensor | None", Tensor], Tensor]


def add_noise(cfg: "Config", grads: "dict[str, Tensor]", gen: "torch.Generator") -> None:
    """The ``noisy`` method: Gaussian noise on every parameter's meta-gradient, in place.

    ``absolute``: element std sigma. ``relative``: element std sigma * ||g|| / sqrt(numel), so the noise's
    expected norm is sigma * ||g|| for each tensor. Drawn on the CPU from the run's own generator, so the
    same seed gives the same noise on any device.
    """
    import torch  # the table is read before torch is imported (cml.bases' docstring)

    for name in sorted(grads):
        g = grads[name]
        std = cfg.noise_std
        if cfg.noise_mode == "relative":
            std = cfg.noise_std * g.norm().item() / math.sqrt(g.numel())
        g += std * torch.randn(g.shape, generator=gen, dtype=g.dtype).to(g.device)


@dataclass(frozen=True)
class Method:
    """What one method adds to a base learner.

    Attributes:
        name: the config value (``--method``).
        label: the suffix in printed names ("CML" in "BOIL + CML"); empty for the base alone.
        co_learner: the model carries a co-learner head phi (``co_head.*``).
        phi_in_inner_loop: phi is adapted, and its support loss counted, in the inner loop while meta-training
            (CL's symmetric branches); CML never adapts phi.
        phi_in_outer_loss: the outer loss adds gamma times phi's query loss on the adapted features.
        frozen: the roles (``phi``) the outer update leaves as initialised (their gradient is dropped before the
            optimiser step, so Adam never moves them): the paper's random co-learner.
        perturb_gradient: ``perturb_gradient(cfg, grads, generator)``: changes the meta-gradient in place before
            the outer update, drawing from the run's ``noise`` stream (noisy: Gaussian noise); None for none.
        extra_capacity: the meta-learner's path is widened to CML's train-time parameter count.
        dagger: phi's query predictions are reported beside theta's (CML†).
        summary: one line for help texts and the README.
        paper_name: the cell's printed name on the ``maml`` base, where the paper names it ("CML",
            "noisy-MAML"); on other bases, and without one, "<base> + <label>".
        defaults: config values the method needs when the user sets none (noisy's sigma), applied by presets
            and sweeps.
    """

    name: str
    label: str
    co_learner: bool = False
    phi_in_inner_loop: bool = False
    phi_in_outer_loss: bool = False
    frozen: tuple[str, ...] = ()
    perturb_gradient: Callable[["Config", "dict[str, Tensor]", "torch.Generator"], None] | None = None
    extra_capacity: bool = False
    dagger: bool = False
    summary: str = ""
    paper_name: str | None = None
    defaults: tuple[tuple[str, object], ...] = ()

    @property
    def gradient_noise(self) -> bool:
        """Whether the method perturbs the meta-gradient (its weights can then blow up through the noise)."""
        return self.perturb_gradient is not None

    def support_loss(self, loss: Callable[["Tensor", "Tensor"], "Tensor"], gamma: float,
                     test_time: bool = False) -> "HeadsLoss":
        """The inner loop's loss: the meta-learner's alone, so phi gets no inner gradient (CML's asymmetry); a
        method that adapts phi (CL) adds gamma times phi's loss while meta-training. At test time it is the
        meta-learner's for every method."""
        with_phi = self.phi_in_inner_loop and not test_time

        def heads_loss(meta: "Tensor", co: "Tensor | None", y: "Tensor") -> "Tensor":
            out = loss(meta, y)
            if with_phi:
                assert co is not None, "a method that adapts phi has a co-learner head (Method.co_learner)"
                out = out + gamma * loss(co, y)
            return out

        return heads_loss


METHOD_TABLE: dict[str, Method] = {m.name: m for m in (
    Method("none", "", summary="the base learner alone"),
    Method("cml", "CML", co_learner=True, phi_in_outer_loss=True, dagger=True, paper_name="CML",
           summary="a co-learner head phi on the adapted features, never adapted, weighted by gamma in the outer loss"),
    # sigma = 0.5 relative: the noise's norm is half the meta-gradient's (the paper does not state its sigma).
    Method("noisy", "noisy", perturb_gradient=add_noise, defaults=(("noise_std", 0.5), ("noise_mode", "relative")),
           paper_name="noisy-MAML", summary="Gaussian noise on the meta-gradient (the user's Gaussian baseline)"),
    Method("more", "More", extra_capacity=True, paper_name="More-MAML",
           summary="extra capacity in the meta-learner's path, matched to CML's train-time parameters"),
    Method("cl", "CL", co_learner=True, phi_in_inner_loop=True, phi_in_outer_loss=True, paper_name="CL",
           summary="a second branch trained like the first in both loops (multi-branch baseline)"),
    # The paper's Figure 3a baseline, "MAML with random noise": "a co-learner that does not perform any updating
    # into the MAML (e.g. inner and outer loops)", its loss in the outer objective, the same init and data.
    Method("random", "random co-learner", co_learner=True, phi_in_outer_loss=True, frozen=("phi",),
           paper_name="MAML + random co-learner",
           summary="a co-learner head phi that is never updated (neither loop), its loss in the outer objective "
                   "(the paper's Figure 3a random-noise baseline)"),
)}

METHODS: tuple[str, ...] = tuple(METHOD_TABLE)

#: The base learner of every run written before bases existed, and the default.
LEGACY_BASE = "maml"
#: Method names of run folders written before bases existed -> the method on the ``maml`` base.
LEGACY: dict[str, str] = {"maml": "none", "noisy-maml": "noisy", "more-maml": "more"}


def get_method(name: str) -> Method:
    """The table entry of ``name`` (a method or a legacy name).

    Raises:
        KeyError: naming the known methods.
    """
    if name in LEGACY:
        return METHOD_TABLE[LEGACY[name]]
    return lookup(METHOD_TABLE, name, "method")


def variant_key(base: str, method: str) -> str:
    """The one string that names a (base, method) cell in records, run folders and figures.

    On the ``maml`` base it is the name the paper and earlier records use (``maml``, ``cml``, ``noisy-maml``,
    ``more-maml``, ``cl``); on another base, ``<base>`` alone or ``<base>_<method>`` (``boil_cml``).
    """
    method = LEGACY.get(method, method)
    if base == LEGACY_BASE:
        return {v: k for k, v in LEGACY.items()}.get(method, method)
    return base if method == "none" else f"{base}_{method}"


def split_variant(key: str, bases: tuple[str, ...]) -> tuple[str, str]:
    """Inverse of :func:`variant_key` given the known base names: ``boil_cml`` -> ``("boil", "cml")``."""
    if key in LEGACY or key in METHOD_TABLE:
        return LEGACY_BASE, LEGACY.get(key, key)
    for base in sorted(bases, key=len, reverse=True):
        if key == base:
            return base, "none"
        if key.startswith(base + "_") and key[len(base) + 1:] in METHOD_TABLE:
            return base, key[len(base) + 1:]
    raise KeyError(f"{key!r} names no base learner and method; known bases: {', '.join(bases)}")


def display_name(base_label: str, base: str, method: str) -> str:
    """The printed name of a cell: "MAML", "BOIL + CML", "MAML++ + noisy"; on the ``maml`` base the paper's
    names ("CML", "CL", "noisy-MAML", "More-MAML": :attr:`Method.paper_name`)."""
    spec = get_method(LEGACY.get(method, method))
    if base == LEGACY_BASE and spec.paper_name:
        return spec.paper_name
    return base_label if not spec.label else f"{base_label} + {spec.label}"


def upgrade(base: str, method: str) -> str:
    """``method`` with a legacy name read as its method on the ``maml`` base.

    Raises:
        ValueError: for a legacy name under another base, saying what to write instead.
    """
    if method not in LEGACY:
        return method
    if base != LEGACY_BASE:
        raise ValueError(f"method {method!r} names a method on MAML; with base {base!r} write --method "
                         f"{LEGACY[method]}")
    return LEGACY[method]


#: The order of methods in legends and tables: the base alone, then the baselines, the method the paper is about
#: last (the paper's Table 4). A method not listed here sorts after these, in :data:`METHOD_TABLE` order.
DISPLAY_ORDER: tuple[str, ...] = ("none", "random", "noisy", "more", "cl", "cml")
