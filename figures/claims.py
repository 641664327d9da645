"""The paper's four claims about why CML works, checked against the records with their uncertainty.

1. *CML beats random noise*: CML's test accuracy (sinusoid: MSE) is better than noisy-MAML's.
2. *The meta- and co-learner gradients on psi are dissimilar*: their mean cosine similarity over the
   recorded steps is below :data:`COSINE_THRESHOLD`.
3. *CML's psi gradients are larger than MAML's*: the mean norm of psi's meta-gradient over the recorded steps
   (``dynamics.jsonl``, as Figure 3c), as a ratio CML / MAML, is above 1.
4. *CML changes its representations more during adaptation*: its CKA between query representations before
   and after adaptation is lower than MAML's at every recorded layer.

The runs compared are chosen by what their method does (its row in :mod:`cml.methods`), on MAML
(:data:`figures.runs.PAPER_BASE`): CML is the method whose co-learner only the outer loop trains
(:func:`figures.runs.cooperates`), noisy-MAML the one with gradient noise, MAML the base learner alone.

Rules, the same for all four: seeds are the unit of replication, and the same seed draws the same test tasks
for every method, so differences are paired by seed. With at least :data:`analysis.stats.MIN_SEEDS_FOR_CI`
(3) seeds that both methods share, a claim is supported when the 95% Student-t confidence interval across
seeds (:func:`analysis.stats.seed_ci95`) lies entirely on the claimed side, and not supported otherwise (also
when the interval straddles the line: the evidence then says so). With fewer, each seed's numbers are
reported, no interval across seeds is computed, and ``supported`` is None: two seeds are not a claim (their t
interval is 12.7 standard errors wide), nor is one (reported with the run's own across-task or across-step
spread). Missing records also give None, naming the flag that writes them and the recorded commands that wrote
the runs.

Each quantity has one source, the one its figure draws: test results from ``test.json``, cosines and
gradient norms from ``dynamics.jsonl`` (Figure 3b-c), CKA from ``representations.json`` (Figure 3d).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from analysis.stats import MIN_SEEDS_FOR_CI, normal_ci95, seed_ci95

from .fig3_dynamics import layer_label
from cml.methods import Method

from .runs import (Cell, MissingRecordError, Run, adds_nothing, as_runs, cells_where, command_lines, cooperates,
                   group_by_method, group_by_setting)

__all__ = [
    "Claim",
    "COSINE_THRESHOLD",
    "claims",
    "claims_for_setting",
    "judge_beats_noise",
    "judge_dissimilar_gradients",
    "judge_larger_gradients",
    "judge_lower_cka",
]

#: Claim 2's line: gradients count as dissimilar when the mean cosine's 95% CI lies below this value.
#: 0.5 is the cosine of 60 degrees: two directions that agree less than they disagree with orthogonality.
COSINE_THRESHOLD = 0.5

CLAIM_TEXT = {
    "beats-noise": "CML beats random noise: better test performance than noisy-MAML",
    "dissimilar-gradients":
        f"The meta- and co-learner gradients on ψ are dissimilar (mean cosine < {COSINE_THRESHOLD})",
    "larger-gradients": "CML's gradients on ψ are larger than MAML's",
    "lower-cka": "CML's representations change more in adaptation: lower CKA than MAML at every layer",
}


@dataclass(frozen=True)
class Claim:
    """One checked claim.

    Attributes:
        key: ``beats-noise``, ``dissimilar-gradients``, ``larger-gradients`` or ``lower-cka``.
        claim: the claim in words.
        supported: True (the 95% CI lies on the claimed side), False (it does not), None (insufficient:
            a single seed, or missing records).
        evidence: the numbers behind the verdict, with their intervals and what the intervals are over.
        seeds: the seeds the verdict rests on.
        setting: the task setting (e.g. ``"fonts, 5-way 1-shot"``); empty for judges called directly.
    """

    key: str
    claim: str
    supported: bool | None
    evidence: str
    seeds: list[int] = field(default_factory=list)
    setting: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        """``"supported"``, ``"not supported"`` or ``"insufficient evidence"``."""
        return {True: "supported", False: "not supported", None: "insufficient evidence"}[self.supported]


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


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> list[int]:
    return sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _seeds_text(seeds: Sequence[int]) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}"


# -- judges: plain numbers in, a Claim out ---------------------------------------------------------------


def judge_beats_noise(cml: Mapping[int, float], noisy: Mapping[int, float], metric: str = "acc",
                      cml_ci: float = math.nan, noisy_ci: float = math.nan) -> Claim:
    """Claim 1 from per-seed test results.

    Args:
        cml, noisy: ``{seed: test metric}`` of CML and noisy-MAML (accuracy as a fraction, or MSE).
        metric: ``acc`` (higher is better) or ``mse`` (lower is better).
        cml_ci, noisy_ci: with a single shared seed, the two runs' 95% CI half-widths over their test tasks,
            quoted in the evidence.
    """
    key = "beats-noise"
    if metric not in ("acc", "mse"):
        raise ValueError(f"metric must be 'acc' or 'mse', got {metric!r}")
    seeds = _paired(cml, noisy)
    scale, unit, fmt = (100.0, " points", ".2f") if metric == "acc" else (1.0, "", ".4f")
    name = "test accuracy (%)" if metric == "acc" else "test MSE"
    if not seeds:
        return Claim(key, CLAIM_TEXT[key], None, "CML and noisy-MAML share no finished seed; train both with the "
                     "same --seeds", [])
    if len(seeds) == 1:
        s = seeds[0]
        text = (f"single seed: not a claim. Seed {s}: CML {name} "
                f"{_pm(scale * cml[s], scale * cml_ci, fmt)}, noisy-MAML "
                f"{_pm(scale * noisy[s], scale * noisy_ci, fmt)} (95% CI over test tasks). "
                f"Train more seeds (--seeds 0,1,2) to test the claim.")
        return Claim(key, CLAIM_TEXT[key], None, text, seeds)
    sign = 1.0 if metric == "acc" else -1.0  # positive difference = CML better
    better = "accuracy gain" if metric == "acc" else "MSE reduction"
    diffs = [sign * scale * (cml[s] - noisy[s]) for s in seeds]
    if len(seeds) < MIN_SEEDS_FOR_CI:
        per = "; ".join(f"seed {s}: CML {scale * cml[s]:{fmt}}, noisy-MAML {scale * noisy[s]:{fmt}}, {better} of CML "
                        f"{d:+{fmt}}{unit}" for s, d in zip(seeds, diffs))
        return Claim(key, CLAIM_TEXT[key], None, f"{_few_seeds(seeds)} {name}: {per}.", seeds)
    d, dci = seed_ci95(diffs)
    mc, cc = seed_ci95([scale * cml[s] for s in seeds])
    mn, cn = seed_ci95([scale * noisy[s] for s in seeds])
    lo, hi = d - dci, d + dci
    if lo > 0:
        supported, verdict = True, "the interval of the improvement lies above 0"
    elif hi < 0:
        supported, verdict = False, "noisy-MAML is better: the interval lies below 0"
    else:
        supported, verdict = False, "the interval of the improvement includes 0: no evidence either way"
    text = (f"{name}: CML {_pm(mc, cc, fmt)}, noisy-MAML {_pm(mn, cn, fmt)} (mean ± 95% CI across "
            f"{len(seeds)} seeds); paired {better} of CML {d:+{fmt}} ± {dci:{fmt}}{unit} "
            f"[{lo:+{fmt}}, {hi:+{fmt}}]: {verdict}.")
    return Claim(key, CLAIM_TEXT[key], supported, text, seeds)


def judge_dissimilar_gradients(cos_by_seed: Mapping[int, Sequence[float]],
                               threshold: float = COSINE_THRESHOLD) -> Claim:
    """Claim 2 from the cosine similarities ``cos_psi`` of each CML seed's recorded steps.

    Args:
        cos_by_seed: ``{seed: [cos_psi per recorded step]}``; non-finite values (undefined cosines) are
            dropped.
        threshold: dissimilar means a mean cosine below this.
    """
    key = "dissimilar-gradients"
    means: dict[int, float] = {}
    negative: dict[int, float] = {}
    steps: dict[int, int] = {}
    for s, values in cos_by_seed.items():
        v = np.array([x for x in values if _finite(x)], dtype=float)
        if v.size:
            means[s], negative[s], steps[s] = float(v.mean()), float((v < 0).mean()), int(v.size)
    seeds = sorted(means)
    if not seeds:
        return Claim(key, CLAIM_TEXT[key], None, "no finite cosine similarity recorded", [])
    rule = f"dissimilar if the mean cosine's 95% CI lies below {threshold}"
    if len(seeds) == 1:
        s = seeds[0]
        values = [x for x in cos_by_seed[s] if _finite(x)]
        m, ci = normal_ci95(values) if len(values) > 1 else (values[0], math.nan)
        text = (f"single seed: not a claim. Seed {s}: mean cosine {_pm(m, ci)} over {steps[s]} recorded steps "
                f"(CI across steps, which are correlated), {100 * negative[s]:.0f}% of steps below 0; {rule}.")
        return Claim(key, CLAIM_TEXT[key], None, text, seeds)
    if len(seeds) < MIN_SEEDS_FOR_CI:
        per = "; ".join(f"seed {s}: mean cosine {means[s]:.3f} over {steps[s]} recorded steps, "
                        f"{100 * negative[s]:.0f}% of steps below 0" for s in seeds)
        return Claim(key, CLAIM_TEXT[key], None, f"{_few_seeds(seeds)} {per}; {rule}.", seeds)
    m, ci = seed_ci95([means[s] for s in seeds])
    supported = m + ci < threshold
    where = (f"its upper bound {m + ci:.3f} is below {threshold}" if supported else
             f"its upper bound {m + ci:.3f} is not below {threshold}")
    text = (f"mean cosine over recorded steps {_pm(m, ci)} (95% CI across {len(seeds)} seeds; "
            f"{min(steps.values())}-{max(steps.values())} steps per seed); on average "
            f"{100 * float(np.mean(list(negative.values()))):.0f}% of steps below 0; {rule}: {where}.")
    return Claim(key, CLAIM_TEXT[key], bool(supported), text, seeds)


def judge_larger_gradients(cml: Mapping[int, float], maml: Mapping[int, float],
                           cml_spread: Mapping[int, float] | None = None,
                           maml_spread: Mapping[int, float] | None = None) -> Claim:
    """Claim 3 from each seed's mean norm of psi's meta-gradient over its recorded steps.

    Args:
        cml, maml: ``{seed: mean grad_norm_psi over the steps recorded in dynamics.jsonl}`` (Figure 3c's values).
        cml_spread, maml_spread: with a single shared seed, ``{seed: ci}``: each run's 95% CI over its recorded
            steps, quoted in the evidence.
    """
    key = "larger-gradients"
    seeds = _paired(cml, maml)
    what = "mean ‖∇ψ L‖₂ over the recorded steps (dynamics.jsonl, as Figure 3c)"
    if not seeds:
        return Claim(key, CLAIM_TEXT[key], None, "CML and MAML share no seed with recorded gradient norms; train "
                     "both with the same --seeds and --record-interval K", [])
    if len(seeds) == 1:
        s = seeds[0]
        text = (f"single seed: not a claim. Seed {s}: {what}: CML "
                f"{_pm(cml[s], (cml_spread or {}).get(s, math.nan))}, MAML "
                f"{_pm(maml[s], (maml_spread or {}).get(s, math.nan))} (CI across recorded steps), ratio "
                f"{cml[s] / maml[s]:.2f}.")
        return Claim(key, CLAIM_TEXT[key], None, text, seeds)
    ratios = [cml[s] / maml[s] for s in seeds]
    if len(seeds) < MIN_SEEDS_FOR_CI:
        per = "; ".join(f"seed {s}: CML {cml[s]:.3f}, MAML {maml[s]:.3f}, ratio {r:.2f}" for s, r in zip(seeds, ratios))
        return Claim(key, CLAIM_TEXT[key], None, f"{_few_seeds(seeds)} {what}: {per}.", seeds)
    r, rci = seed_ci95(ratios)
    mc, cc = seed_ci95([cml[s] for s in seeds])
    mm, cm = seed_ci95([maml[s] for s in seeds])
    supported = r - rci > 1
    verdict = ("the ratio's interval lies above 1" if supported else
               "MAML's are larger: the ratio's interval lies below 1" if r + rci < 1 else
               "the ratio's interval includes 1")
    text = (f"{what}: CML {_pm(mc, cc)}, MAML {_pm(mm, cm)}; per-seed ratio CML/MAML "
            f"{_pm(r, rci, '.2f')} (95% CI across {len(seeds)} seeds): {verdict}.")
    return Claim(key, CLAIM_TEXT[key], bool(supported), text, seeds)


def judge_lower_cka(cml: Mapping[int, Mapping[str, float]], maml: Mapping[int, Mapping[str, float]],
                    cml_ci: Mapping[int, Mapping[str, float]] | None = None,
                    maml_ci: Mapping[int, Mapping[str, float]] | None = None) -> Claim:
    """Claim 4 from each seed's mean CKA (over its recorded tasks) per layer.

    Args:
        cml, maml: ``{seed: {layer: mean CKA}}``; missing or non-finite layers are skipped.
        cml_ci, maml_ci: with a single shared seed, ``{seed: {layer: 95% CI over tasks}}`` of each run.
    """
    key = "lower-cka"
    seeds = sorted(set(cml) & set(maml))
    layers = list(dict.fromkeys(layer for s in seeds for layer in list(maml[s]) + list(cml[s])
                                if _finite(maml[s].get(layer)) and _finite(cml[s].get(layer))))
    if not seeds or not layers:
        return Claim(key, CLAIM_TEXT[key], None, "CML and MAML share no seed with a defined CKA; train both with "
                     "--record-interval K and the same --seeds", seeds)
    if len(seeds) == 1:
        s = seeds[0]
        parts = []
        for layer in layers:
            ci_m = (maml_ci or {}).get(s, {}).get(layer, math.nan)
            ci_c = (cml_ci or {}).get(s, {}).get(layer, math.nan)
            fmt = f".{_decimals(ci_m, ci_c, maml[s][layer] - cml[s][layer])}f"
            parts.append(f"{layer_label(layer)}: MAML {_pm(maml[s][layer], ci_m, fmt)}, "
                         f"CML {_pm(cml[s][layer], ci_c, fmt)}")
        return Claim(key, CLAIM_TEXT[key], None, f"single seed: not a claim. Seed {s} (95% CI over tasks): "
                     + "; ".join(parts) + ".", seeds)
    if len(seeds) < MIN_SEEDS_FOR_CI:
        parts = []
        for layer in layers:
            ls = [s for s in seeds if _finite(maml[s].get(layer)) and _finite(cml[s].get(layer))]
            diffs = [maml[s][layer] - cml[s][layer] for s in ls]
            dec = _decimals(*diffs)
            parts.append(f"{layer_label(layer)}: " + ", ".join(
                f"seed {s} MAML {maml[s][layer]:.{dec}f}, CML {cml[s][layer]:.{dec}f} (MAML − CML {d:+.{dec}f})"
                for s, d in zip(ls, diffs)))
        return Claim(key, CLAIM_TEXT[key], None, f"{_few_seeds(seeds)} linear CKA before vs after adaptation, "
                     "per layer: " + "; ".join(parts) + ".", seeds)
    parts, verdicts, used = [], [], set()
    for layer in layers:
        ls = [s for s in seeds if _finite(maml[s].get(layer)) and _finite(cml[s].get(layer))]
        if len(ls) < MIN_SEEDS_FOR_CI:
            parts.append(f"{layer_label(layer)}: fewer than {MIN_SEEDS_FOR_CI} seeds with a defined CKA")
            verdicts.append(False)
            continue
        used |= set(ls)
        d, dci = seed_ci95([maml[s][layer] - cml[s][layer] for s in ls])
        mm, cm = seed_ci95([maml[s][layer] for s in ls])
        mc, cc = seed_ci95([cml[s][layer] for s in ls])
        # Strictly above 0, printed with enough decimals to show it: a CI of +0.000 ± 0.000 is not "lower".
        ok = d - dci > 0
        verdicts.append(ok)
        dec = _decimals(d, dci, mm - mc)
        parts.append(f"{layer_label(layer)}: MAML {mm:.{dec}f} ± {cm:.{dec}f}, CML {mc:.{dec}f} ± {cc:.{dec}f}, "
                     f"MAML − CML {d:+.{dec}f} ± {dci:.{dec}f} ({'lower' if ok else 'not lower'})")
    supported = all(verdicts)
    text = (f"linear CKA before vs after adaptation, mean ± 95% CI across {len(used or seeds)} seeds, per layer: "
            + "; ".join(parts)
            + f". CML is lower at {sum(verdicts)} of {len(layers)} layers.")
    return Claim(key, CLAIM_TEXT[key], supported, text, sorted(used) or seeds)


# -- from run folders -------------------------------------------------------------------------------------


def _missing(key: str, err: MissingRecordError, runs: Sequence[Run]) -> Claim:
    return Claim(key, CLAIM_TEXT[key], None, f"missing records: {err}. The runs were written by: "
                 f"{'; '.join(command_lines(runs))}", [])


@dataclass(frozen=True)
class _Role:
    """A method a claim compares, chosen by what it does, on :data:`figures.runs.PAPER_BASE`.

    Attributes:
        name: the paper's name for it, as the claim's text quotes it.
        wanted: the test of a method's row (:mod:`cml.methods`).
    """

    name: str
    wanted: Callable[[Method], bool]

    def cell(self, by_method: Mapping[Cell, Sequence[Run]]) -> Cell | None:
        """The first cell (in legend order) among the runs that plays the role, or None."""
        found = cells_where(by_method, self.wanted)
        return found[0] if found else None


_CML = _Role("cml", cooperates)
_NOISY = _Role("noisy-maml", lambda m: m.gradient_noise)
_MAML = _Role("maml", adds_nothing)


def _cells(by_method: Mapping[Cell, Sequence[Run]], *roles: _Role) -> tuple[list[Cell], list[str]]:
    """The cell of each role, and the names of the roles no run plays."""
    found = [r.cell(by_method) for r in roles]
    return [c for c in found if c is not None], [r.name for r, c in zip(roles, found) if c is None]


def _beats_noise(by_method: dict[Cell, list[Run]], metric: str) -> Claim:
    key = "beats-noise"
    cells, absent = _cells(by_method, _CML, _NOISY)
    if absent:
        return Claim(key, CLAIM_TEXT[key], None, f"no {' or '.join(absent)} run among the records; train "
                     f"--methods noisy-maml,cml", [])
    tests = [{r.seed: r.test() for r in by_method[c]} for c in cells]
    (cml, noisy) = values = [{s: t.get(metric) for s, t in ts.items()} for ts in tests]
    seeds = _paired(cml, noisy)
    ci = [ts[seeds[0]].get(f"{metric}_ci95") or math.nan for ts in tests] if len(seeds) == 1 else [math.nan] * 2
    return judge_beats_noise(*values, metric, *ci)


def _dissimilar(by_method: dict[Cell, list[Run]]) -> Claim:
    key = "dissimilar-gradients"
    cml = _CML.cell(by_method)
    if cml is None:
        return Claim(key, CLAIM_TEXT[key], None, "no CML run among the records", [])
    return judge_dissimilar_gradients({r.seed: [d.get("cos_psi") for d in r.dynamics()] for r in by_method[cml]})


def _larger(by_method: dict[Cell, list[Run]]) -> Claim:
    key = "larger-gradients"
    cells, absent = _cells(by_method, _CML, _MAML)
    if absent:
        return Claim(key, CLAIM_TEXT[key], None, f"no {' or '.join(absent)} run among the records", [])
    means: list[dict[int, float]] = []
    spread: list[dict[int, float]] = []
    for c in cells:
        means.append({})
        spread.append({})
        for r in by_method[c]:
            # dynamics.jsonl, the records Figure 3c draws: one source for the figure and the claim.
            v = [x["grad_norm_psi"] for x in r.dynamics() if _finite(x.get("grad_norm_psi"))]
            if v:
                means[-1][r.seed], spread[-1][r.seed] = normal_ci95(v) if len(v) > 1 else (v[0], math.nan)
    return judge_larger_gradients(*means, *spread)


def _lower_cka(by_method: dict[Cell, list[Run]]) -> Claim:
    key = "lower-cka"
    cells, absent = _cells(by_method, _CML, _MAML)
    if absent:
        return Claim(key, CLAIM_TEXT[key], None, f"no {' or '.join(absent)} run among the records", [])
    means: list[dict[int, dict[str, float]]] = []
    cis: list[dict[int, dict[str, float]]] = []
    for c in cells:
        means.append({})
        cis.append({})
        for r in by_method[c]:
            reps = r.representations()
            cka = reps.get("cka", {})
            listed = reps.get("layers", [])
            order = [k for k in listed if k in cka] + [k for k in cka if k not in listed]
            means[-1][r.seed] = {k: cka[k].get("mean") for k in order if _finite(cka[k].get("mean"))}
            cis[-1][r.seed] = {k: (cka[k].get("ci95") if _finite(cka[k].get("ci95")) else math.nan) for k in order}
    return judge_lower_cka(*means, *cis)


def claims_for_setting(runs: Sequence[Run]) -> list[Claim]:
    """The four claims for runs of one setting; a claim whose records are missing gets ``supported=None``."""
    by_method = group_by_method(runs)
    setting = runs[0].setting
    metric = setting.family.metric
    out = []
    for key, fn in (("beats-noise", lambda: _beats_noise(by_method, metric)),
                    ("dissimilar-gradients", lambda: _dissimilar(by_method)),
                    ("larger-gradients", lambda: _larger(by_method)),
                    ("lower-cka", lambda: _lower_cka(by_method))):
        try:
            claim = fn()
        except MissingRecordError as e:
            claim = _missing(key, e, runs)
        out.append(Claim(claim.key, claim.claim, claim.supported, claim.evidence, claim.seeds, setting.label))
    return out


def claims(source: Run | str | Iterable[Run | str]) -> list[Claim]:
    """The four claims for every setting among the runs (settings in the order of :func:`group_by_setting`).

    Args:
        source: run or sweep folders, or :class:`Run` objects.
    """
    return [c for runs in group_by_setting(as_runs(source)).values() for c in claims_for_setting(runs)]
