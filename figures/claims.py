"""The paper's claims about why CML works (Section 4.4, Figure 3), stated as the paper states them, with the figure
and the sentence each comes from, checked against the records with their uncertainty; and the suite's own extra
readings, labelled as the suite's.

The paper's claims (:data:`STATEMENTS`; MiniImagenet 5-way 5-shot in the paper, any setting here):

- ``3a-random``: CML reaches better parameters than MAML with a random co-learner (a co-learner never updated in
  either loop, its loss in the outer objective, the same initialisation and data: the ``random`` method), read on
  the test metric; ``3a-noise``: the same against Gaussian-noise MAML (``noisy``, the user's baseline: the paper's
  "random noise" is the random co-learner).
- ``3b-below-cl``: at the last conv block, the cosine of the meta- and co-learner gradients on psi is lower for CML
  than for CL; ``3b-positive``: it is above zero for CML (Theorem 3.2's precondition at that block), with the
  fraction of recorded steps at which the precondition held at every block.
- ``3c-outer`` and ``3c-inner``: at every conv block, psi's gradient norm is larger for CML than for MAML and for
  CL, read on the outer meta-gradient (``grad_norm_blocks``) and on the inner loop's support-set gradient
  (``inner_grad_norm_blocks``): the paper's text does not settle which it drew.
- ``3d-maml-head``: in MAML the representation changes only at the head (CKA before vs after adaptation higher at
  every conv block than at the head's output); ``3d-cml-last``: CML's CKA at the last conv block is below MAML's.

The suite's readings (``suite-*``, not the paper's): whole-psi cosine below :data:`COSINE_THRESHOLD`, whole-psi
outer gradient norm larger than MAML's, CKA lower than MAML's at every layer.

The runs compared are chosen by what their method does (its row in :mod:`cml.methods`), on MAML
(:data:`figures.runs.PAPER_BASE`); a claim whose method the runs lack says which and gives the command that trains
it (:func:`figures.runs.command_adding`).

Rules, the same for all: seeds are the unit of replication. The same seed gives every method the same initial psi
and theta, the same training tasks and the same test tasks, so each comparison is paired by seed; the test tasks are
checked (the digests of ``test_tasks.json``) and, where both runs of a seed recorded them, the test metric is also
paired task by task within the seed (each claim's ``pairing`` says which pairing it used). With at least
:data:`analysis.stats.MIN_SEEDS_FOR_CI` (3) shared seeds a comparison is supported when the 95% Student-t interval
across seeds of the paired differences (or ratios) lies entirely on the claimed side; a claim made of several
comparisons (every block, two baselines) is supported when all are, and contradicted when one interval lies on the
other side. An interval that includes the line refutes nothing: the claim is undecided (``supported`` None), as it
is with fewer seeds or records missing. An undecided claim gives the seeds a paired t-test
would need for 80% power at the observed effect and spread (:func:`analysis.stats.seeds_needed`).

Each quantity has one source, the one its figure draws: test results from ``test.json`` (and ``test_tasks.json``),
cosines and gradient norms from ``dynamics.jsonl`` (Figure 3b-c), CKA from ``representations.json`` (Figure 3d).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.stats import MIN_SEEDS_FOR_CI, normal_ci95, seed_ci95, seeds_needed
from cml import records
from cml.methods import Method

from .runs import (Cell, MissingRecordError, Run, adds_nothing, as_runs, branches, cells_where, command_adding,
                   command_lines, config_difference, config_groups, cooperates, group_by_method, group_by_setting,
                   layer_label, method_named, never_trained)

__all__ = [
    "Claim",
    "COSINE_THRESHOLD",
    "POWER",
    "Reading",
    "STATEMENTS",
    "Statement",
    "claims",
    "claims_for_setting",
    "compare",
    "judge_dissimilar_gradients",
    "judge_larger_gradients",
    "judge_lower_cka",
    "verdict",
]

#: The suite's whole-psi reading: gradients count as dissimilar when the mean cosine's 95% CI lies below this value.
#: 0.5 is the cosine of 60 degrees. The paper states no such threshold (its claim is 3b-below-cl).
COSINE_THRESHOLD = 0.5
#: The power the seeds-needed figure is computed for.
POWER = 0.8
#: The source of every reading that is the suite's own, not the paper's.
SUITE = "the suite's reading, not the paper's"


@dataclass(frozen=True)
class Statement:
    """One claim as the paper (or the suite) states it.

    Attributes:
        claim: the claim in words.
        figure: the paper's figure (``"Figure 3a"``); empty for the suite's readings.
        quote: the paper's sentence(s) it checks, quoted.
        decided: how the records decide it.
        reading: how the suite reads a sentence the paper leaves open (which gradient), if it does.
    """

    claim: str
    figure: str
    quote: str
    decided: str
    reading: str = ""

    @property
    def source(self) -> str:
        """Where the claim comes from: the figure, section and sentence, or :data:`SUITE`."""
        if not self.figure:
            return SUITE
        return f"{self.figure}, {_S34}: {self.quote}" + (f"; {self.reading}" if self.reading else "")


_S34 = "Section 4.4 (MiniImagenet 5-way 5-shot)"
_RANDOM_QUOTE = ("CML \"converges to well-generalized parameters much faster\" than \"MAML with random noise\", a "
                 "co-learner \"that does not perform any updating into the MAML (e.g. inner and outer loops)\"; "
                 "\"both models have the same initialization parameters and take the same sampled data\"")
_NORM_QUOTE = ("\"CL and MAML have very small gradient norms, close to zero on all convolution layers … our framework "
               "has relatively larger\"")
STATEMENTS: dict[str, Statement] = {
    "3a-random": Statement(
        "CML converges to better parameters than MAML with a random co-learner (a co-learner that is never updated, "
        "its loss in the outer objective, the same initialisation and data)", "Figure 3a", _RANDOM_QUOTE,
        "the test metric of CML against the random co-learner (method random), paired by seed"),
    "3a-noise": Statement(
        "CML converges to better parameters than MAML with Gaussian noise on its meta-gradient", "Figure 3a",
        _RANDOM_QUOTE, "the test metric of CML against noisy-MAML, paired by seed",
        "compared here with the user's Gaussian-noise baseline (method noisy); the paper's \"random noise\" is the "
        "random co-learner (3a-random)"),
    "3b-below-cl": Statement(
        "At the 4th (last) conv layer, CML has a lower gradient similarity between the meta-learner and the "
        "co-learner than CL", "Figure 3b",
        "\"CML has a lower gradient similarity between the meta-learner and co-learner in the feature extractor than "
        "CL\" (at the 4th convolution layer)",
        "each seed's mean over its recorded steps of cos(∇ψ L_meta, ∇ψ γL_co) at the last conv block "
        "(dynamics.jsonl cos_blocks), CML minus CL, paired by seed"),
    "3b-positive": Statement(
        "CML's gradient similarity at the 4th (last) conv layer is larger than zero, which satisfies the "
        "precondition of Theorem 3.2", "Figure 3b",
        "\"the gradient similarity of CML is larger than zero, which satisfies the precondition in Theorem 3.2\" "
        "(for every layer j of ψ, ⟨g_j, ḡ_j⟩ > 0)",
        "each CML seed's mean cosine at the last conv block over its recorded steps, across seeds; and the fraction "
        "of recorded steps at which the inner product was positive at every block of ψ"),
    "3c-outer": Statement(
        "At every conv layer, the gradient norm of ψ is larger for CML than for MAML and for CL (outer "
        "meta-gradient)", "Figure 3c", _NORM_QUOTE,
        "each seed's mean over its recorded steps of the norm of ψ's meta-gradient per block (dynamics.jsonl "
        "grad_norm_blocks, before noisy-MAML's noise), as a ratio CML / MAML and CML / CL per seed",
        "read here on the outer meta-gradient on ψ (the text does not settle which gradient)"),
    "3c-inner": Statement(
        "At every conv layer, the gradient norm of ψ after task adaptation is larger for CML than for MAML and for "
        "CL (inner-loop support gradient)", "Figure 3c",
        _NORM_QUOTE + ", the gradient norm of ψ \"after task-adaptation in the inner loop\"",
        "each seed's mean over its recorded steps of the norm of the inner loop's support-set gradient on ψ per "
        "block (dynamics.jsonl inner_grad_norm_blocks, the mean over the step's tasks), as ratios per seed",
        "read here on the inner loop's support-set gradient, as in BOIL's analysis"),
    "3d-maml-head": Statement(
        "In MAML, the change in representation occurs only at the head", "Figure 3d",
        "\"In MAML, the change in representation occurs only at the head\"",
        "MAML's linear CKA between query representations before and after adaptation, at every conv block minus "
        "at the head's output (the logits), paired by seed: higher at every block (the values near 1 are quoted)"),
    "3d-cml-last": Statement(
        "In CML the representation change occurs in the 4th (last) conv layer: its CKA there is below MAML's",
        "Figure 3d", "\"CML indicates that the representation change occurs in the 4th convolution layer\"",
        "linear CKA before vs after adaptation at the last conv block, MAML minus CML, paired by seed"),
    "suite-dissimilar": Statement(
        f"The meta- and co-learner gradients on the whole of ψ are dissimilar (mean cosine below {COSINE_THRESHOLD})",
        "", "", f"CML's mean whole-ψ cosine over its recorded steps, across seeds, below {COSINE_THRESHOLD}"),
    "suite-larger-whole": Statement(
        "CML's outer meta-gradient on the whole of ψ is larger than MAML's", "", "",
        "each seed's mean whole-ψ meta-gradient norm over its recorded steps, ratio CML / MAML"),
    "suite-lower-cka": Statement(
        "CML's representations change more in adaptation than MAML's: lower CKA at every layer of ψ and the head's "
        "input", "", "", "linear CKA before vs after adaptation at every layer of ψ and the head's input, MAML minus "
        "CML, paired by seed"),
}


@dataclass(frozen=True)
class Claim:
    """One checked claim.

    Attributes:
        key: the claim's key in :data:`STATEMENTS` (or another table's: Table 1's ``improves-<base>``).
        claim: the claim in words.
        supported: True (every interval lies on the claimed side), False (contradicted: one lies on the other
            side), None (undecided: an interval includes the line, fewer than 3 seeds, a method or a record missing).
        evidence: the numbers behind the verdict, with their intervals and what the intervals are over.
        seeds: the seeds the verdict rests on.
        setting: the task setting (e.g. ``"fonts, 5-way 1-shot"``); empty for judges called directly.
        source: the figure and the paper's sentence it checks, or :data:`SUITE`.
        pairing: how the methods were paired (by seed; and by test task within a seed where recorded).
        seeds_needed: for an undecided claim, the seeds a paired t-test would need for 80% power at the observed
            effect and spread (None where it cannot be computed or the claim is decided).
    """

    key: str
    claim: str
    supported: bool | None
    evidence: str
    seeds: list[int] = field(default_factory=list)
    setting: str = ""
    source: str = ""
    pairing: str = ""
    seeds_needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        """``"supported"``, ``"contradicted"`` (an interval on the other side) or ``"undecided"`` (an interval
        that includes the line, fewer than 3 seeds, or a record missing: it refutes nothing)."""
        return {True: "supported", False: "contradicted", None: "undecided"}[self.supported]

    @property
    def paper(self) -> bool:
        """Whether the claim is the paper's (its source a figure and sentence), not the suite's reading."""
        return bool(self.source) and self.source != SUITE


def _claim(key: str, supported: bool | None, evidence: str, seeds: Sequence[int] = (), pairing: str = "",
           needed: int | None = None) -> Claim:
    s = STATEMENTS[key]
    return Claim(key, s.claim, supported, evidence, sorted(seeds), "", s.source, pairing, needed)


def _pm(mean: float, ci: float, fmt: str = ".3f") -> str:
    return f"{mean:{fmt}} ± {ci:{fmt}}" if math.isfinite(ci) else f"{mean:{fmt}}"


def _decimals(*values: float, least: int = 3, most: int = 8) -> int:
    """Enough decimals that no non-zero value prints as zero: +0.000 ± 0.000 must never be read as a result."""
    d = least
    # Rounding noise (a CI of 1e-17 from identical differences) is zero, not a value to show.
    while d < most and any(abs(v) > 1e-12 and math.isfinite(v) and round(abs(v), d) == 0 for v in values):
        d += 1
    return d


def _few_seeds(seeds: Sequence[int]) -> str:
    return (f"{len(seeds)} seeds, fewer than {MIN_SEEDS_FOR_CI}: not a claim; no interval across seeds "
            f"is computed, each seed is shown. Train --seeds 0,1,2 (or more) to test the claim.")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> list[int]:
    return sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))


def block_order(name: str) -> tuple:
    """Sort key of block names in model order: the digits in a name compared as numbers (``block2`` < ``block10``)."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


# -- one paired comparison across seeds ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One comparison across seeds, a part of a claim.

    Attributes:
        label: what is compared (``"block4, CML / CL"``).
        status: ``supported`` (the interval lies on the claimed side), ``opposite`` (it lies on the other side),
            ``inconclusive`` (it straddles the line), ``few`` (2 seeds: no interval), ``single`` or ``none``.
        text: the numbers.
        seeds: the seeds compared.
        needed: the seeds for 80% power at the observed effect and spread, where the comparison is undecided and
            its effect lies on the claimed side (None otherwise).
        short: the effect alone (``"3.07 ± 0.17"``, ``"mean 2.30 (2 seeds)"``), for a claim listing many.
    """

    label: str
    status: str
    text: str
    seeds: list[int]
    needed: int | None = None
    short: str = ""


def compare(label: str, a: Mapping[int, float], b: Mapping[int, float] | None, *, higher: bool = True,
            kind: str = "difference", line: float = 0.0, names: tuple[str, str] = ("a", "b"), scale: float = 1.0,
            fmt: str = ".3f", unit: str = "") -> Reading:
    """A paired comparison of per-seed values, decided by the 95% Student-t interval across seeds.

    Args:
        label: what is compared, quoted first in the text.
        a: ``{seed: value}`` of the method the claim is about.
        b: ``{seed: value}`` of the method it is compared with; None compares ``a`` with ``line`` itself.
        higher: the claimed side: ``a`` above ``b`` (True) or below.
        kind: ``difference`` (a − b against 0) or ``ratio`` (a / b against 1).
        line: with ``b`` None, the value ``a`` is claimed above (or below).
        names: the two sides' names in the text.
        scale, fmt, unit: how values print (100, ".2f", " points" for accuracies).
    """
    if kind not in ("difference", "ratio"):
        raise ValueError(f"kind must be 'difference' or 'ratio', got {kind!r}")
    seeds = sorted(s for s in a if _finite(a[s])) if b is None else _paired(a, b)
    if not seeds:
        return Reading(label, "none", f"{label}: no seed with a value for both", [])
    if b is None:
        effect = {s: scale * a[s] for s in seeds}
        null, what = scale * line, f"{names[0]}"
    elif kind == "ratio":
        effect = {s: a[s] / b[s] if b[s] else math.inf for s in seeds}
        null, what = 1.0, f"{names[0]} / {names[1]}"
    else:
        effect = {s: scale * (a[s] - b[s]) for s in seeds}
        null, what = 0.0, f"{names[0]} − {names[1]}"
    sign = 1.0 if higher else -1.0
    efmt = ".2f" if kind == "ratio" else fmt
    values = [effect[s] for s in seeds]
    if not all(math.isfinite(v) for v in values):
        return Reading(label, "none", f"{label}: a zero denominator ({names[1]} is 0 on some seed)", seeds)

    def side_values(s: int) -> str:
        if b is None:
            return f"{names[0]} {scale * a[s]:{fmt}}"
        return f"{names[0]} {scale * a[s]:{fmt}}, {names[1]} {scale * b[s]:{fmt}}"

    sfmt = efmt if kind == "ratio" else "+" + efmt  # a ratio is never negative: no sign
    if len(seeds) == 1:
        s = seeds[0]
        diff = "" if b is None else f" ({what} {effect[s]:{sfmt}}{unit})"
        return Reading(label, "single", f"{label}: seed {s}: {side_values(s)}{diff}", seeds,
                       short=f"{effect[s]:{sfmt}} (seed {s} alone)")
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1))
    right_side = sign * (mean - null) > 0
    needed = seeds_needed(mean - null, sd, POWER) if right_side else None
    if needed is not None:
        needed = max(needed, MIN_SEEDS_FOR_CI)
    if len(seeds) < MIN_SEEDS_FOR_CI:
        per = "; ".join(f"seed {s}: {side_values(s)}" for s in seeds)
        return Reading(label, "few", f"{label}: {per}; {what} mean {mean:{sfmt}}{unit} (no interval with "
                       f"{len(seeds)} seeds)", seeds, needed,
                       short=f"mean {mean:{sfmt}} (seeds " + ", ".join(f"{v:{sfmt}}" for v in values) + ")")
    m, ci = seed_ci95(values)
    lo, hi = m - ci, m + ci
    dec = _decimals(m - null, ci, least=int(efmt[1:-1]))
    if sign * (lo - null) > 0 and sign * (hi - null) > 0:
        status, needed = "supported", None
    elif sign * (lo - null) < 0 and sign * (hi - null) < 0:
        status, needed = "opposite", None
    else:
        status = "inconclusive"
    means = ""
    if b is not None:
        ma, ca = seed_ci95([scale * a[s] for s in seeds])
        mb, cb = seed_ci95([scale * b[s] for s in seeds])
        means = f"{names[0]} {_pm(ma, ca, fmt)}, {names[1]} {_pm(mb, cb, fmt)}; "
    verdict = {"supported": "on the claimed side", "opposite": "on the other side",
               "inconclusive": f"includes {null:g}"}[status]
    sign_ = "" if kind == "ratio" else "+"
    interval = f"{m:{sign_}.{dec}f} ± {ci:.{dec}f}"
    bounds = f"[{lo:{sign_}.{dec}f}, {hi:{sign_}.{dec}f}]"
    mark = {"supported": "", "opposite": " (other side)", "inconclusive": f" (includes {null:g})"}[status]
    return Reading(label, status, f"{label}: {means}{what} {interval}{unit} {bounds}, {verdict}", seeds, needed,
                   short=interval + mark)


def verdict(readings: Sequence[Reading]) -> tuple[bool | None, int | None, str]:
    """A claim's verdict from its comparisons: ``(supported, seeds needed, what the seeds-needed figure says)``.

    Supported (True) when every comparison is; contradicted (False) when one's 95% CI lies on the other side of
    the line; undecided (None) otherwise: a comparison with fewer than 3 seeds or no value, or an interval that
    includes the line (it refutes nothing). The seeds needed are the most any undecided comparison needs; none
    when one lies on the other side (more seeds at that effect would not support the claim) or an effect is on
    the wrong side.
    """
    if not readings or any(r.status in ("none", "single") for r in readings):
        return None, None, ""
    statuses = {r.status for r in readings}
    supported: bool | None = True if statuses == {"supported"} else (
        False if "opposite" in statuses and "few" not in statuses else None)
    if supported is True:
        return True, None, ""
    if "opposite" in statuses:
        worst = next(r.label for r in readings if r.status == "opposite")
        return supported, None, (f"Seeds needed: none helps ({worst}: the interval lies on the other side; more seeds "
                                 f"at this effect would not support the claim).")
    open_ = [r for r in readings if r.status in ("inconclusive", "few")]
    if any(r.needed is None for r in open_):
        worst = next(r.label for r in open_ if r.needed is None)
        return supported, None, (f"Seeds needed: not computable ({worst}: the observed effect is on the other side "
                                 f"of the line, or zero).")
    needed = max(r.needed for r in open_ if r.needed is not None)
    return supported, needed, (f"Seeds needed for {100 * POWER:.0f}% power (paired t-test at the observed effect "
                               f"and spread, noncentral t): {needed}.")


def _mean_of(values: Mapping[int, float]) -> float:
    return float(np.mean(list(values.values()))) if values else math.nan


def _evidence(head: str, readings: Sequence[Reading], note: str, tail: str = "", shown: bool = True) -> str:
    """A claim's evidence: ``head``, each reading's text (unless ``head`` already gives them: ``shown`` False), the
    few-seeds sentence, the seeds-needed ``note`` and ``tail``."""
    parts = [head] if head else []
    if readings and shown:
        parts.append("; ".join(r.text for r in readings) + ".")
    seeds = sorted({s for r in readings for s in r.seeds})
    if readings and 1 <= len(seeds) < MIN_SEEDS_FOR_CI and len({len(r.seeds) for r in readings}) == 1:
        parts.append(_few_seeds(seeds) if len(seeds) > 1 else "single seed: not a claim. Train more seeds "
                                                               "(--seeds 0,1,2) to test the claim.")
    if note:
        parts.append(note)
    if tail:
        parts.append(tail)
    return " ".join(parts)


def _judged(key: str, head: str, readings: Sequence[Reading], pairing: str, tail: str = "") -> Claim:
    supported, needed, note = verdict(readings)
    seeds = sorted({s for r in readings for s in r.seeds})
    return _claim(key, supported, _evidence(head, readings, note, tail), seeds, pairing, needed)


# -- the suite's readings: plain numbers in, a Claim out -------------------------------------------------------


def judge_dissimilar_gradients(cos_by_seed: Mapping[int, Sequence[float | None]],
                               threshold: float = COSINE_THRESHOLD) -> Claim:
    """The suite's whole-psi reading from the cosine similarities ``cos_psi`` of each CML seed's recorded steps.

    Args:
        cos_by_seed: ``{seed: [cos_psi per recorded step]}``; non-finite values (undefined cosines) are
            dropped.
        threshold: dissimilar means a mean cosine below this.
    """
    key = "suite-dissimilar"
    means: dict[int, float] = {}
    negative: dict[int, float] = {}
    steps: dict[int, int] = {}
    for s, values in cos_by_seed.items():
        v = np.array([x for x in values if _finite(x)], dtype=float)
        if v.size:
            means[s], negative[s], steps[s] = float(v.mean()), float((v < 0).mean()), int(v.size)
    seeds = sorted(means)
    if not seeds:
        return _claim(key, None, "no finite cosine similarity recorded")
    rule = f"dissimilar if the mean cosine's 95% CI lies below {threshold}"
    if len(seeds) == 1:
        s = seeds[0]
        kept = [float(x) for x in cos_by_seed[s] if x is not None and _finite(x)]
        m, ci = normal_ci95(kept) if len(kept) > 1 else (kept[0], math.nan)
        text = (f"single seed: not a claim. Seed {s}: mean cosine {_pm(m, ci)} over {steps[s]} recorded steps "
                f"(CI across steps, which are correlated), {100 * negative[s]:.0f}% of steps below 0; {rule}.")
        return _claim(key, None, text, seeds, "one CML seed")
    reading = compare("whole ψ, CML", means, None, higher=False, line=threshold, names=("mean cosine", ""))
    supported, needed, note = verdict([reading])
    if len(seeds) < MIN_SEEDS_FOR_CI:
        per = "; ".join(f"seed {s}: mean cosine {means[s]:.3f} over {steps[s]} recorded steps, "
                        f"{100 * negative[s]:.0f}% of steps below 0" for s in seeds)
        return _claim(key, None, f"{_few_seeds(seeds)} {per}; {rule}. {note}".strip(), seeds, "CML seeds", needed)
    m, ci = seed_ci95([means[s] for s in seeds])
    where = (f"its upper bound {m + ci:.3f} is below {threshold}" if supported else
             f"its upper bound {m + ci:.3f} is not below {threshold}")
    text = (f"mean cosine over recorded steps {_pm(m, ci)} (95% CI across {len(seeds)} seeds; "
            f"{min(steps.values())}-{max(steps.values())} steps per seed); on average "
            f"{100 * float(np.mean(list(negative.values()))):.0f}% of steps below 0; {rule}: {where}. {note}")
    return _claim(key, bool(supported), text.strip(), seeds, "CML seeds", needed)


def judge_larger_gradients(cml: Mapping[int, float], maml: Mapping[int, float],
                           cml_spread: Mapping[int, float] | None = None,
                           maml_spread: Mapping[int, float] | None = None) -> Claim:
    """The suite's whole-psi reading from each seed's mean norm of psi's meta-gradient over its recorded steps.

    Args:
        cml, maml: ``{seed: mean grad_norm_psi over the steps recorded in dynamics.jsonl}`` (Figure 3c's values).
        cml_spread, maml_spread: with a single shared seed, ``{seed: ci}``: each run's 95% CI over its recorded
            steps, quoted in the evidence.
    """
    key = "suite-larger-whole"
    what = "mean ‖∇ψ L‖₂ over the recorded steps (dynamics.jsonl, as Figure 3c)"
    seeds = _paired(cml, maml)
    if not seeds:
        return _claim(key, None, "CML and MAML share no seed with recorded gradient norms; train both with the same "
                                 "--seeds and --record-interval K")
    if len(seeds) == 1:
        s = seeds[0]
        text = (f"single seed: not a claim. Seed {s}: {what}: CML "
                f"{_pm(cml[s], (cml_spread or {}).get(s, math.nan))}, MAML "
                f"{_pm(maml[s], (maml_spread or {}).get(s, math.nan))} (CI across recorded steps), ratio "
                f"{cml[s] / maml[s]:.2f}.")
        return _claim(key, None, text, seeds, "by seed")
    ratios = [cml[s] / maml[s] for s in seeds]
    reading = compare("whole ψ", cml, maml, kind="ratio", names=("CML", "MAML"))
    supported, needed, note = verdict([reading])
    if len(seeds) < MIN_SEEDS_FOR_CI:
        per = "; ".join(f"seed {s}: CML {cml[s]:.3f}, MAML {maml[s]:.3f}, ratio {r:.2f}" for s, r in zip(seeds, ratios))
        return _claim(key, None, f"{_few_seeds(seeds)} {what}: {per}. {note}".strip(), seeds, "by seed", needed)
    r, rci = seed_ci95(ratios)
    mc, cc = seed_ci95([cml[s] for s in seeds])
    mm, cm = seed_ci95([maml[s] for s in seeds])
    text = (f"{what}: CML {_pm(mc, cc)}, MAML {_pm(mm, cm)}; per-seed ratio CML/MAML "
            f"{_pm(r, rci, '.2f')} (95% CI across {len(seeds)} seeds): "
            + ("the ratio's interval lies above 1" if supported else
               "MAML's are larger: the ratio's interval lies below 1" if r + rci < 1 else
               "the ratio's interval includes 1") + f". {note}")
    return _claim(key, bool(supported), text.strip(), seeds, "by seed", needed)


def judge_lower_cka(cml: Mapping[int, Mapping[str, float]], maml: Mapping[int, Mapping[str, float]],
                    cml_ci: Mapping[int, Mapping[str, float]] | None = None,
                    maml_ci: Mapping[int, Mapping[str, float]] | None = None) -> Claim:
    """The suite's every-layer reading from each seed's mean CKA (over its recorded tasks) per layer.

    Args:
        cml, maml: ``{seed: {layer: mean CKA}}``; missing or non-finite layers are skipped.
        cml_ci, maml_ci: with a single shared seed, ``{seed: {layer: 95% CI over tasks}}`` of each run.
    """
    key = "suite-lower-cka"
    seeds = sorted(set(cml) & set(maml))
    layers = list(dict.fromkeys(layer for s in seeds for layer in list(maml[s]) + list(cml[s])
                                if _finite(maml[s].get(layer)) and _finite(cml[s].get(layer))))
    if not seeds or not layers:
        return _claim(key, None, "CML and MAML share no seed with a defined CKA; train both with --record-interval K "
                                 "and the same --seeds", seeds)
    if len(seeds) == 1:
        s = seeds[0]
        parts = []
        for layer in layers:
            ci_m = (maml_ci or {}).get(s, {}).get(layer, math.nan)
            ci_c = (cml_ci or {}).get(s, {}).get(layer, math.nan)
            fmt = f".{_decimals(ci_m, ci_c, maml[s][layer] - cml[s][layer])}f"
            parts.append(f"{layer_label(layer, layers)}: MAML {_pm(maml[s][layer], ci_m, fmt)}, "
                         f"CML {_pm(cml[s][layer], ci_c, fmt)}")
        return _claim(key, None, f"single seed: not a claim. Seed {s} (95% CI over tasks): " + "; ".join(parts) + ".",
                      seeds, "by seed")
    readings = [compare(layer_label(layer, layers),
                        {s: maml[s][layer] for s in seeds if _finite(maml[s].get(layer))},
                        {s: cml[s][layer] for s in seeds if _finite(cml[s].get(layer))}, names=("MAML", "CML"))
                for layer in layers]
    supported, needed, note = verdict(readings)
    if len(seeds) < MIN_SEEDS_FOR_CI:
        parts = []
        for layer in layers:
            ls = [s for s in seeds if _finite(maml[s].get(layer)) and _finite(cml[s].get(layer))]
            diffs = [maml[s][layer] - cml[s][layer] for s in ls]
            dec = _decimals(*diffs)
            parts.append(f"{layer_label(layer, layers)}: " + ", ".join(
                f"seed {s} MAML {maml[s][layer]:.{dec}f}, CML {cml[s][layer]:.{dec}f} (MAML − CML {d:+.{dec}f})"
                for s, d in zip(ls, diffs)))
        return _claim(key, None, f"{_few_seeds(seeds)} linear CKA before vs after adaptation, per layer: "
                      + "; ".join(parts) + f". {note}".rstrip(), seeds, "by seed", needed)
    lower = sum(r.status == "supported" for r in readings)
    text = ("linear CKA before vs after adaptation, mean ± 95% CI across seeds, per layer: "
            + "; ".join(r.text for r in readings)
            + f". CML is lower at {lower} of {len(layers)} layers. {note}")
    used = sorted({s for r in readings for s in r.seeds})
    return _claim(key, supported is True if supported is not None else None, text.strip(), used, "by seed", needed)


# -- from run folders ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    """A method a claim compares, chosen by what it does, on :data:`figures.runs.PAPER_BASE`.

    Attributes:
        name: the paper's name for it, as the claims quote it.
        wanted: the test of a method's row (:mod:`cml.methods`).
        optional: a baseline of the suite's, not a method the paper's claim needs: when the runs lack it, the claim
            says so without suggesting a command (a run the user never asked for is no missing piece).
    """

    name: str
    wanted: Callable[[Method], bool]
    optional: bool = False

    def cell(self, by_method: Mapping[Cell, Sequence[Run]]) -> Cell | None:
        """The first cell (in legend order) among the runs that plays the role, or None."""
        found = cells_where(by_method, self.wanted)
        return found[0] if found else None

    def missing(self, runs: Sequence[Run]) -> str:
        """The sentence a claim gives when the runs lack this method: which, and the command that trains it."""
        method = method_named(self.wanted)
        if self.optional:
            return (f"the records hold no {self.name} run (method {method}), the suite's optional baseline: not "
                    f"compared")
        command = command_adding(runs, method) if method else "no method of cml.methods plays it"
        return f"the records hold no {self.name} run (method {method}); train it: {command}"


_CML = _Role("CML", cooperates)
_MAML = _Role("MAML", adds_nothing)
_CL = _Role("CL", branches)
_RANDOM = _Role("MAML + random co-learner", never_trained)
_NOISY = _Role("noisy-MAML", lambda m: m.gradient_noise, optional=True)


class _Context:
    """One setting's runs, by cell, with the readers every claim uses."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        self.by_method = group_by_method(runs)
        self.setting = self.runs[0].setting
        self.metric = self.setting.family.metric

    def cell(self, role: _Role) -> Cell | None:
        return role.cell(self.by_method)

    def test_values(self, cell: Cell, key: str | None = None) -> dict[int, float]:
        key = key or self.metric
        out = {}
        for r in self.by_method[cell]:
            if r.has(records.TEST) and _finite(r.test().get(key)):
                out[r.seed] = float(r.test()[key])
        return out

    def dynamics(self, cell: Cell, key: str, block: str | None = None) -> dict[int, float]:
        """Per seed, the mean over recorded steps of ``key`` (a number, or ``block``'s entry of a per-block
        record)."""
        out = {}
        for r in self.by_method[cell]:
            values = []
            for d in r.dynamics():
                v = d.get(key)
                if isinstance(v, dict):
                    v = v.get(block)
                if isinstance(v, (int, float)) and _finite(v):
                    values.append(float(v))
            if values:
                out[r.seed] = float(np.mean(values))
        return out

    def require_dynamics(self, cell: Cell, key: str, hint: str) -> None:
        for r in self.by_method[cell]:
            if not any(d.get(key) is not None for d in r.dynamics()):
                raise MissingRecordError(r.path, f"{key} in {records.DYNAMICS}", hint)

    def blocks(self, cell: Cell, key: str) -> list[str]:
        """The blocks of a per-block record, in model order (records store keys sorted: block10 after block9)."""
        names = {b for r in self.by_method[cell] for d in r.dynamics() for b in (d.get(key) or {})}
        return sorted(names, key=block_order)

    def cka(self, cell: Cell) -> dict[int, dict[str, float]]:
        out = {}
        for r in self.by_method[cell]:
            reps = r.representations()
            cka = reps.get("cka", {})
            listed = reps.get("layers", [])
            order = [k for k in listed if k in cka] + [k for k in cka if k not in listed]
            out[r.seed] = {k: float(cka[k]["mean"]) for k in order if _finite((cka[k] or {}).get("mean"))}
        return out


def _dyn_pairing(ctx: _Context, *cells: Cell, same: str = "the same training tasks") -> str:
    common = sorted(set.intersection(*({r.seed for r in ctx.by_method[c]} for c in cells)))
    return (f"by seed (seeds {', '.join(map(str, common)) or 'none'}: the same seed gives each method the same "
            f"initial ψ and θ and {same})")


_CKA_TASKS = "the same training tasks and recorded test tasks"


def _task_pairing(ctx: _Context, a: Cell, b: Cell, names: tuple[str, str]) -> str:
    """Which pairing a test-metric comparison used: by seed, and by test task within each seed whose two runs
    recorded their tasks (``test_tasks.json``) with equal digests and means equal to their ``test.json``'s."""
    scale, fmt, unit = (100.0, ".2f", " points") if ctx.setting.family.classification else (1.0, ".4f", "")
    sign = 1.0 if ctx.setting.family.classification else -1.0  # positive: the first method better
    runs_a = {r.seed: r for r in ctx.by_method[a]}
    runs_b = {r.seed: r for r in ctx.by_method[b]}
    parts, unpaired = [], []
    for s in sorted(set(runs_a) & set(runs_b)):
        ra, rb = runs_a[s], runs_b[s]
        if not (ra.has(records.TEST_TASKS) and rb.has(records.TEST_TASKS)):
            unpaired.append(f"seed {s}: no {records.TEST_TASKS}")
            continue
        ta, tb = ra.test_tasks(), rb.test_tasks()
        if ta["digest"] != tb["digest"]:
            unpaired.append(f"seed {s}: different test tasks (digests differ)")
            continue
        va, vb = ta["values"].get(ctx.metric), tb["values"].get(ctx.metric)
        if not va or not vb or len(va) != len(vb):
            unpaired.append(f"seed {s}: no per-task {ctx.metric}")
            continue
        stale = [r for r, v in ((ra, va), (rb, vb)) if _finite(r.test().get(ctx.metric))
                 and abs(float(np.mean(v)) - float(r.test()[ctx.metric])) > 1e-9 * max(1.0, abs(float(np.mean(v))))]
        if stale:
            unpaired.append(f"seed {s}: {records.TEST_TASKS} is not of the parameters test.json was computed from")
            continue
        d = sign * scale * (np.asarray(va, dtype=float) - np.asarray(vb, dtype=float))
        m, ci = normal_ci95(d.tolist())
        parts.append(f"seed {s} {names[0]} − {names[1]} {m:+{fmt}} ± {ci:{fmt}}{unit} over its {len(d)} test tasks")
    text = "by seed (the same seed draws the same test tasks for every method)"
    if parts:
        text += ("; within each seed, by test task (the two runs' test_tasks.json digests are equal; 95% normal CI "
                 "over the tasks): " + "; ".join(parts))
    if unpaired:
        text += "; not paired by task: " + "; ".join(unpaired)
    return text


def _test_claim(ctx: _Context, key: str, other: _Role) -> Claim:
    cml, base = ctx.cell(_CML), ctx.cell(other)
    absent = [r.missing(ctx.runs) for r, c in ((_CML, cml), (other, base)) if c is None]
    if absent:
        return _claim(key, None, "; ".join(absent) + ".")
    assert cml is not None and base is not None
    regression = not ctx.setting.family.classification
    scale, fmt, unit = (1.0, ".4f", "") if regression else (100.0, ".2f", " points")
    name = "test MSE" if regression else "test accuracy (%)"
    reading = compare(name, ctx.test_values(cml), ctx.test_values(base), higher=not regression,
                      names=("CML", other.name), scale=scale, fmt=fmt, unit=unit)
    head = (f"{'lower' if regression else 'higher'} is better; the convergence curves are Figure 3a.")
    return _judged(key, head, [reading], _task_pairing(ctx, cml, base, ("CML", other.name)))


def _cos_claims(ctx: _Context) -> list[Claim]:
    cml, cl = ctx.cell(_CML), ctx.cell(_CL)
    hint = "only methods with a co-learner (cml, cl) record gradient cosines; train with --record-interval K"
    if cml is None:
        text = _CML.missing(ctx.runs) + "."
        return [_claim("3b-below-cl", None, text), _claim("3b-positive", None, text)]
    ctx.require_dynamics(cml, "cos_blocks", hint)
    blocks = ctx.blocks(cml, "cos_blocks")
    last = blocks[-1] if blocks else "last block"
    cml_last = ctx.dynamics(cml, "cos_blocks", last)
    out = []
    if cl is None:
        out.append(_claim("3b-below-cl", None, f"CML's mean cosine at {last}: "
                          + ", ".join(f"seed {s} {v:.3f}" for s, v in sorted(cml_last.items()))
                          + f"; {_CL.missing(ctx.runs)}."))
    else:
        ctx.require_dynamics(cl, "cos_blocks", hint)
        reading = compare(f"{last} (last conv block)", cml_last, ctx.dynamics(cl, "cos_blocks", last),
                          higher=False, names=("CML", "CL"))
        out.append(_judged("3b-below-cl", "", [reading], _dyn_pairing(ctx, cml, cl)))
    # Theorem 3.2's precondition, per recorded step: the inner product (the cosine's sign) positive at every block.
    held = {}
    for r in ctx.by_method[cml]:
        steps = [d["cos_blocks"] for d in r.dynamics() if d.get("cos_blocks")]
        if steps:
            held[r.seed] = float(np.mean([all(_finite(v) and v > 0 for v in c.values()) for c in steps]))
    tail = ("Theorem 3.2's precondition (⟨g_j, ḡ_j⟩ > 0 at every block j of ψ) held at "
            + ", ".join(f"{100 * v:.0f}% (seed {s})" for s, v in sorted(held.items()))
            + " of the recorded steps" + (f", {100 * float(np.mean(list(held.values()))):.0f}% on average"
                                          if len(held) > 1 else "") + "." if held else "")
    reading = compare(f"{last} (last conv block)", cml_last, None, line=0.0, names=("CML's mean cosine", ""))
    out.append(_judged("3b-positive", "", [reading], f"the CML seeds {', '.join(map(str, sorted(cml_last)))}",
                       tail))
    return out


def _norm_claim(ctx: _Context, key: str, field_: str, hint: str) -> Claim:
    cml, maml, cl = ctx.cell(_CML), ctx.cell(_MAML), ctx.cell(_CL)
    if cml is None:
        return _claim(key, None, _CML.missing(ctx.runs) + ".")
    present = [(role, c) for role, c in ((_MAML, maml), (_CL, cl)) if c is not None]
    for c in [cml] + [c for _, c in present]:
        ctx.require_dynamics(c, field_, hint)
    blocks = ctx.blocks(cml, field_)
    readings, parts = [], []
    for role, other in present:
        group = [compare(f"{block}, CML / {role.name}", ctx.dynamics(cml, field_, block),
                         ctx.dynamics(other, field_, block), kind="ratio", names=("CML", role.name))
                 for block in blocks]
        above = sum(r.status == "supported" for r in group)
        parts.append(f"CML / {role.name}: " + ", ".join(f"{block} {r.short}" for block, r in zip(blocks, group))
                     + (f" (interval above 1 at {above} of {len(blocks)} blocks)" if group and group[0].status
                        in ("supported", "opposite", "inconclusive") else ""))
        readings += group
    means = [f"{role.name} " + " / ".join(f"{_mean_of(ctx.dynamics(c, field_, block)):.3g}" for block in blocks)
             for role, c in ((_CML, cml), *present)]
    across = ("mean ± 95% CI across seeds" if any(r.status in ("supported", "opposite", "inconclusive")
                                                  for r in readings) else "each seed")
    head = (f"per-seed ratio of the mean norms over the recorded steps, {across}, per block: "
            + "; ".join(parts) + ". Mean norms per block (" + ", ".join(blocks) + "): " + "; ".join(means) + ".")
    absent = [role.missing(ctx.runs) for role, c in ((_MAML, maml), (_CL, cl)) if c is None]
    supported, needed, note = verdict(readings)
    seeds = sorted({s for r in readings for s in r.seeds})
    claim = _claim(key, supported, _evidence(head, readings, note, shown=False), seeds,
                   _dyn_pairing(ctx, cml, *[c for _, c in present]), needed)
    if absent:
        return Claim(claim.key, claim.claim, None, claim.evidence + " Not decided: " + "; ".join(absent) + ".",
                     claim.seeds, claim.setting, claim.source, claim.pairing, None)
    return claim


def _cka_claims(ctx: _Context) -> list[Claim]:
    cml, maml = ctx.cell(_CML), ctx.cell(_MAML)
    out: list[Claim] = []
    if maml is None:
        out.append(_claim("3d-maml-head", None, _MAML.missing(ctx.runs) + "."))
    else:
        cka = ctx.cka(maml)
        layers = list(dict.fromkeys(k for v in cka.values() for k in v))
        if records.OUTPUT_LAYER not in layers:
            r = ctx.by_method[maml][0]
            out.append(_claim("3d-maml-head", None, f"{r.path / records.REPRESENTATIONS} has no CKA at the head's "
                              f"output (layer {records.OUTPUT_LAYER!r}: recorded since the head-output CKA was added; "
                              f"train the runs again with --record-interval K)"))
        else:
            conv = [k for k in layers if k != records.OUTPUT_LAYER]
            head = {s: v[records.OUTPUT_LAYER] for s, v in cka.items() if records.OUTPUT_LAYER in v}
            readings = [compare(layer_label(k, layers), {s: v[k] for s, v in cka.items() if k in v}, head,
                                names=("block", "head output")) for k in conv]
            lowest = min((v[k] for v in cka.values() for k in conv if k in v), default=math.nan)
            higher = sum(r.status == "supported" for r in readings)
            across = ("mean ± 95% CI across seeds" if any(r.status in ("supported", "opposite", "inconclusive")
                                                          for r in readings) else "each seed")
            head_text = (f"MAML's CKA at its conv blocks is at least {lowest:.3f} on every seed (1: unchanged), "
                         f"{_mean_of(head):.3f} at the head's output on average. Its CKA at each conv block minus at "
                         f"the head's output, {across}: "
                         + ", ".join(f"{r.label} {r.short}" for r in readings)
                         + (f" (higher at {higher} of {len(readings)} blocks)." if readings and readings[0].status
                            in ("supported", "opposite", "inconclusive") else "."))
            supported, needed, note = verdict(readings)
            out.append(_claim("3d-maml-head", supported, _evidence(head_text, readings, note, shown=False),
                              sorted({s for r in readings for s in r.seeds}),
                              f"MAML's seeds {', '.join(map(str, sorted(cka)))}, each block against the same seed's "
                              f"head output", needed))
    if maml is None or cml is None:
        out.append(_claim("3d-cml-last", None, "; ".join(r.missing(ctx.runs) for r, c in ((_CML, cml), (_MAML, maml))
                                                         if c is None) + "."))
        return out
    a, b = ctx.cka(maml), ctx.cka(cml)
    layers = list(dict.fromkeys(k for v in a.values() for k in v))
    conv = [k for k in layers if k != records.OUTPUT_LAYER]
    last = conv[-1] if conv else None
    if last is None:
        out.append(_claim("3d-cml-last", None, "no CKA recorded"))
    else:
        reading = compare(f"{layer_label(last, layers)} (the last conv block)",
                          {s: v[last] for s, v in a.items() if last in v},
                          {s: v[last] for s, v in b.items() if last in v}, names=("MAML", "CML"))
        out.append(_judged("3d-cml-last", "", [reading], _dyn_pairing(ctx, maml, cml, same=_CKA_TASKS)))
    return out


def _suite_claims(ctx: _Context) -> list[Claim]:
    cml, maml = ctx.cell(_CML), ctx.cell(_MAML)
    out = []
    if cml is None:
        out.append(_claim("suite-dissimilar", None, _CML.missing(ctx.runs) + "."))
    else:
        out.append(judge_dissimilar_gradients({r.seed: [d.get("cos_psi") for d in r.dynamics()]
                                               for r in ctx.by_method[cml]}))
    if cml is None or maml is None:
        text = "; ".join(r.missing(ctx.runs) for r, c in ((_CML, cml), (_MAML, maml)) if c is None) + "."
        return out + [_claim("suite-larger-whole", None, text), _claim("suite-lower-cka", None, text)]
    means: list[dict[int, float]] = []
    spread: list[dict[int, float]] = []
    for c in (cml, maml):
        means.append({})
        spread.append({})
        for r in ctx.by_method[c]:
            # dynamics.jsonl, the records Figure 3c draws: one source for the figure and the claim.
            v = [x["grad_norm_psi"] for x in r.dynamics() if _finite(x.get("grad_norm_psi"))]
            if v:
                means[-1][r.seed], spread[-1][r.seed] = normal_ci95(v) if len(v) > 1 else (v[0], math.nan)
    out.append(judge_larger_gradients(*means, *spread))
    cis: list[dict[int, dict[str, float]]] = []
    for c in (cml, maml):
        cis.append({})
        for r in ctx.by_method[c]:
            cka = r.representations().get("cka", {})
            cis[-1][r.seed] = {k: (v.get("ci95") if _finite(v.get("ci95")) else math.nan) for k, v in cka.items()}
    def psi_layers(cka: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
        # The suite's reading is over psi's layers and the head's input, as before the head's output was recorded.
        return {s: {k: v for k, v in layers.items() if k != records.OUTPUT_LAYER} for s, layers in cka.items()}

    out.append(judge_lower_cka(psi_layers(ctx.cka(cml)), psi_layers(ctx.cka(maml)), *cis))
    return out


def _missing(key: str, err: MissingRecordError, runs: Sequence[Run]) -> Claim:
    return _claim(key, None, f"missing records: {err}. The runs were written by: {'; '.join(command_lines(runs))}")


_INNER_HINT = ("the inner-loop support-gradient norms are recorded since they were added to the recorder; train the "
               "runs again with --record-interval K")


def claims_for_setting(runs: Sequence[Run]) -> list[Claim]:
    """Every claim of :data:`STATEMENTS` for runs of one setting, the paper's first; a claim whose records or
    methods are missing gets ``supported=None`` and says what to train.

    A method whose runs differ in anything but the seed (their whole config, :func:`figures.runs.config_groups`)
    is not pooled: every claim is then undecided and says which fields differ.
    """
    by_method = group_by_method(runs)
    setting = runs[0].setting
    mixed = {c: config_groups(rs) for c, rs in by_method.items()}
    mixed = {c: g for c, g in mixed.items() if len(g) > 1}
    if mixed:
        text = "; ".join(f"{c.label} runs of {len(g)} configs ({' / '.join(config_difference(g))})"
                         for c, g in mixed.items())
        refused = [_claim(k, None, f"not compared: {text}. A claim pools seeds of one config per method; give the "
                                   f"folders of one config") for k in STATEMENTS]
        return [_with_setting(c, setting.label) for c in refused]
    ctx = _Context(runs)
    builders: list[tuple[tuple[str, ...], Callable[[], list[Claim]]]] = [
        (("3a-random",), lambda: [_test_claim(ctx, "3a-random", _RANDOM)]),
        (("3a-noise",), lambda: [_test_claim(ctx, "3a-noise", _NOISY)]),
        (("3b-below-cl", "3b-positive"), lambda: _cos_claims(ctx)),
        (("3c-outer",), lambda: [_norm_claim(ctx, "3c-outer", "grad_norm_blocks",
                                             "train with --record-interval K to record gradients")]),
        (("3c-inner",), lambda: [_norm_claim(ctx, "3c-inner", "inner_grad_norm_blocks", _INNER_HINT)]),
        (("3d-maml-head", "3d-cml-last"), lambda: _cka_claims(ctx)),
        (("suite-dissimilar", "suite-larger-whole", "suite-lower-cka"), lambda: _suite_claims(ctx)),
    ]
    out: list[Claim] = []
    for keys, build in builders:
        try:
            out += build()
        except MissingRecordError as e:
            out += [_missing(k, e, runs) for k in keys]
    return [_with_setting(c, setting.label) for c in out]


def _with_setting(c: Claim, setting: str) -> Claim:
    return Claim(c.key, c.claim, c.supported, c.evidence, c.seeds, setting, c.source, c.pairing, c.seeds_needed)


def claims(source: Run | str | Iterable[Run | str]) -> list[Claim]:
    """The claims for every setting among the runs (settings in the order of :func:`group_by_setting`).

    Args:
        source: run or sweep folders, or :class:`Run` objects.
    """
    return [c for runs in group_by_setting(as_runs(source)).values() for c in claims_for_setting(runs)]
