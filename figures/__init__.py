"""Figures, tables, claims and the report of ``cml``, drawn from run records only.

Every module reads run and sweep folders through :mod:`figures.runs` (``config.json``, ``metrics.jsonl``,
``val.jsonl``, ``test.json``, ``test_tasks.json``, ``dynamics.jsonl``, ``representations.json``, ``features.npz``,
``fits.npz``) and
never imports the trainer: a figure can be redrawn from a copied folder on a machine without a GPU.

- :mod:`figures.fig2_sinusoid`: Figure 2, sinusoid fits after adaptation;
- :mod:`figures.fig3_dynamics`: Figure 3 as the paper draws it: convergence with the random co-learner, the
  gradient cosine per block (CL and CML), psi's outer and inner-loop gradient norms, CKA up to the head's output;
- :mod:`figures.fig4_tsne`: Figure 4, t-SNE of query features before and after adaptation;
- :mod:`figures.table4`: Table 4, parameter counts and accuracy of the paper's rows (MAML, More-MAML, CL⋆, CML,
  CL†, CL† without adaptation, CML† two ways);
- :mod:`figures.paper_values`: the paper's published values beside the runs' on every table page;
- :mod:`figures.ablation`: test accuracy and CML† against γ, one line per co-learner type (a ``--grid gamma=...``
  sweep), MAML as the reference line;
- :mod:`figures.table1`: Table 1, each base learner alone and with CML, the paired gain per seed, and the
  claim "CML improves <base>" per base;
- :mod:`figures.claims`: the paper's Figure 3 claims as it states them, and the suite's own readings, checked with
  confidence intervals across seeds (and the seeds an undecided one would need);
- :mod:`figures.report`: all of the above in one PDF (``python -m cml report``), every page the size
  :data:`figures.style.PAGE`;
- :mod:`figures.summary`: the interval policy (3+ seeds for an interval across seeds, else each seed) that
  every table, figure and claim follows; :mod:`figures.tables`: the tables drawn on a page;
- :func:`figures.style.save`: write a figure as PNG and PDF.
"""

from .style import save

__all__ = ["save"]
