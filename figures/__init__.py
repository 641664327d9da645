"""Figures, tables, claims and the report of ``cml``, drawn from run records only.

Every module reads run and sweep folders through :mod:`figures.runs` (``config.json``, ``metrics.jsonl``,
``val.jsonl``, ``test.json``, ``dynamics.jsonl``, ``representations.json``, ``features.npz``, ``fits.npz``) and
never imports the trainer: a figure can be redrawn from a copied folder on a machine without a GPU.

- :mod:`figures.fig2_sinusoid`: Figure 2, sinusoid fits after adaptation;
- :mod:`figures.fig3_dynamics`: Figure 3, convergence, gradient cosine and norms on psi, CKA;
- :mod:`figures.fig4_tsne`: Figure 4, t-SNE of query features before and after adaptation;
- :mod:`figures.table4`: Table 4, parameter counts and accuracy of MAML, More-MAML, CL, CML, CML†;
- :mod:`figures.ablation`: test accuracy and CML† against γ, one line per co-learner type (a ``--grid gamma=...``
  sweep), MAML as the reference line;
- :mod:`figures.table1`: Table 1, each base learner alone and with CML, the paired gain per seed, and the
  claim "CML improves <base>" per base;
- :mod:`figures.claims`: the paper's four claims checked with confidence intervals across seeds;
- :mod:`figures.report`: all of the above in one PDF (``python -m cml report``), every page the size
  :data:`figures.style.PAGE`;
- :mod:`figures.summary`: the interval policy (3+ seeds for an interval across seeds, else each seed) that
  every table, figure and claim follows; :mod:`figures.tables`: the tables drawn on a page;
- :func:`figures.style.save`: write a figure as PNG and PDF.
"""

from .style import save

__all__ = ["save"]
