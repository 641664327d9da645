"""Writes the six notebooks of ``notebooks/`` (valid nbformat v4, stored without outputs).

Run ``python notebooks/build_notebooks.py`` after editing a notebook's cells here; the ``.ipynb`` files are
generated, so that every notebook keeps the same structure:

1. a markdown cell saying what the notebook reproduces and how long it takes;
2. a code cell tagged ``parameters`` (papermill's convention) with quick defaults and the paper's settings in
   comments; papermill, or a test, overrides them by inserting a cell after it;
3. a setup cell (imports from the installed packages: ``pip install -e .``, as ``make`` does);
4. a cell that trains the sweeps with :func:`cml.sweep.run_sweep` unless ``RUNS`` names existing folders;
5. cells that draw the figure or table with :mod:`figures` and show it.

Cell ids are fixed (``<notebook>-<index>``) so regenerating gives identical files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
%matplotlib inline
# cml, analysis and figures are installed packages (`pip install -e .` in the checkout; README, "Notebooks").
from pathlib import Path

from IPython.display import Markdown, display

import figures
from cml.config import preset
from cml.sweep import run_sweep
from figures.notebook import in_checkout
from figures.runs import Cell, find_runs

# Relative paths in the parameters are relative to the repository's root, not to this notebook's folder (where
# Jupyter starts the kernel) nor to papermill's working folder: figures.notebook.
OUT = in_checkout(OUT)
RUNS = None if RUNS is None else [in_checkout(r) for r in RUNS]
print(f"repository root: {in_checkout('.')}; OUT: {OUT}")'''


_DATA_PATH = '''
DATA = None if DATA is None else str(in_checkout(DATA))'''


def _notebook(stem: str, cells: list[tuple[str, str, list[str]]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source, tags) in enumerate(cells):
        if source == SETUP and any("\nDATA = " in c[1] for c in cells[:i]):
            source += _DATA_PATH  # a data folder, as the other paths, is the repository root's
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell.id = f"{stem}-{i}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def fig2() -> nbformat.NotebookNode:
    return _notebook("fig2", [
        ("md", "# Figure 2: sinusoid regression, MAML vs CML\n\n"
               "Meta-trains MAML and CML on sinusoid regression at 5, 10 and 20 shots and draws three test curves: "
               "the\n"
               "ground truth, the support points and each method's prediction after adaptation (dotted: before).\n"
               "The quick defaults take a few minutes on a CPU; the paper's settings are in the comments of the\n"
               "parameters cell. Set `RUNS` to existing sweep folders to draw them without training.", []),
        ("code", '''\
# Parameters (tagged "parameters": papermill and the tests override them in a cell below).
PRESET = "quick"          # paper: "paper" (1-40-40-1 MLP, alpha 0.01, meta-batch 25, 70,000 steps)
SHOTS = [5, 10, 20]       # paper: 5, 10, 20
METHODS = ["none", "cml"]  # on MAML: the paper's MAML and CML (cml.methods)
SEEDS = [0]               # paper: several seeds, e.g. [0, 1, 2]
STEPS = 3000              # paper: 70000 (the paper preset's value)
TEST_TASKS = 200          # paper: 600
RECORD_INTERVAL = 50      # records gradients and, at the end, the fitted curves
OVERRIDES = {}            # any other cml.config.Config field, e.g. {"meta_batch": 25}
OUT = "runs/notebooks/fig2"
RUNS = None               # existing sweep or run folders to draw instead of training, e.g. ["runs/sin5"]''',
         ["parameters"]),
        ("code", SETUP, []),
        ("code", '''\
if RUNS is None:
    RUNS = []
    for shots in SHOTS:
        base = preset(PRESET, "sinusoid", METHODS[0], shots=shots, steps=STEPS, test_tasks=TEST_TASKS,
                      record_interval=RECORD_INTERVAL, progress=False, **OVERRIDES)
        out = Path(OUT) / f"shots{shots}"
        run_sweep(out, base, METHODS, SEEDS)
        RUNS.append(out)
runs = find_runs(RUNS)
print(f"{len(runs)} runs:", ", ".join(f"{r.cell} s{r.seed} {r.shots}-shot" for r in runs))
CELLS = [Cell("maml", m) for m in METHODS]  # figures key on (base learner, method)''', []),
        ("code", '''\
from figures import fig2_sinusoid

fig = fig2_sinusoid.figure(runs, methods=CELLS, show_before=True)
figures.save(fig, Path(OUT) / "fig2_sinusoid")
fig''', []),
        ("code", '''\
from figures import table4
from figures.runs import group_by_setting

for setting, group in group_by_setting(runs).items():
    display(Markdown(f"**{setting.label}**\\n\\n" + table4.markdown(table4.rows(group, methods=CELLS))))''', []),
    ])


def fig3() -> nbformat.NotebookNode:
    return _notebook("fig3", [
        ("md", "# Figure 3: learning dynamics, as the paper draws it\n\n"
               "(a) validation accuracy and loss against the outer step, MAML with a random co-learner (a\n"
               "co-learner never updated, its loss in the outer objective) and CML, with MAML and Gaussian-noise\n"
               "MAML; (b) the cosine of the meta- and co-learner gradients on ψ per block, CL and CML, the last\n"
               "block emphasised; (c) ψ's gradient norm per block, MAML, CL and CML, for the outer meta-gradient\n"
               "and for the inner loop's support-set gradient; (d) CKA before vs after adaptation from block 1 to\n"
               "the head's output. Then the paper's Figure 3 claims as it states them, decided by 95% CIs across 3\n"
               "or more seeds (with fewer, each seed is shown and no claim is made). The CPU default is the\n"
               "font-glyph data set (no download); the paper's setting is in the comments of the parameters cell.",
         []),
        ("code", '''\
# Parameters (tagged "parameters": papermill and the tests override them in a cell below).
# The paper's setting (Section 4.4): TASK = "miniimagenet", DATA = its folder, WAYS, SHOTS = 5, 5, PRESET = "paper"
# (4-conv with 64 filters, the conv co-learner, gamma 1, 30,000 steps), SEEDS = [0, 1, 2].
PRESET = "quick"          # paper: "paper"
TASK = "fonts"            # paper: "miniimagenet" (set DATA to the data set's folder)
DATA = None               # e.g. "data/miniimagenet"; None for fonts and sinusoid
WAYS, SHOTS = 5, 1        # paper: 5-way 5-shot
METHODS = ["none", "random", "noisy", "cl", "cml"]  # on MAML: MAML, its random co-learner, noisy-MAML, CL, CML
SEEDS = [0, 1, 2]         # 3+ seeds for intervals across seeds and claims; fewer: each seed is shown
STEPS = 300               # paper: 30000
TEST_TASKS = 200          # paper: 600 (the official code: 10,000)
RECORD_INTERVAL = 10      # paper-scale runs: 100
VAL_INTERVAL = 50         # paper: 500
OVERRIDES = {}            # any other cml.config.Config field, e.g. {"filters": 64, "gamma": 1.0}
OUT = "runs/notebooks/fig3"
RUNS = None               # existing sweep or run folders to draw instead of training''', ["parameters"]),
        ("code", SETUP, []),
        ("code", '''\
if RUNS is None:
    extra = {} if TASK == "sinusoid" else {"ways": WAYS}
    base = preset(PRESET, TASK, METHODS[0], data=DATA, shots=SHOTS, steps=STEPS, test_tasks=TEST_TASKS,
                  record_interval=RECORD_INTERVAL, val_interval=VAL_INTERVAL, progress=False, **extra, **OVERRIDES)
    run_sweep(Path(OUT), base, METHODS, SEEDS)
    RUNS = [OUT]
runs = find_runs(RUNS)
print(f"{len(runs)} runs:", ", ".join(f"{r.cell} s{r.seed}" for r in runs))''', []),
        ("code", '''\
from figures import fig3_dynamics
from figures.report import auto_smooth

# Two pages, as in the report: (a)-(b), then (c)-(d).
pages = fig3_dynamics.pages(runs, smooth=auto_smooth(runs))
for name, page in zip(("fig3_ab", "fig3_cd"), pages):
    figures.save(page, Path(OUT) / name)
    display(page)''', []),
        ("code", '''\
from figures.claims import claims

for c in claims(runs):
    display(Markdown(f"**{c.verdict.upper()}** [{c.key}]: {c.claim} ({c.setting})\\n\\n*{c.source}*\\n\\n"
                     f"{c.evidence}\\n\\npairing: {c.pairing}"))''', []),
    ])


def fig4() -> nbformat.NotebookNode:
    return _notebook("fig4", [
        ("md", "# Figure 4: t-SNE of the query set after adaptation on the support set\n\n"
               "One test task adapted on its support set; its query features (the head's input) embedded with t-SNE\n"
               "before and after adaptation, MAML in the top row and CML in the bottom row (CL between them when\n"
               "trained), coloured by class. Each panel gives the silhouette score in feature space, for this task\n"
               "and averaged over the recorded tasks. The CPU default is the font-glyph data set; the paper's setting\n"
               "is in the comments of the parameters cell.", []),
        ("code", '''\
# Parameters (tagged "parameters": papermill and the tests override them in a cell below).
# The paper's setting (Figure 4): TASK = "miniimagenet", DATA = its folder, WAYS = 5, PRESET = "paper" (4-conv/64,
# the conv co-learner, gamma 1, 30,000 steps); the map's task has 15 queries per class (the recorder's, always).
PRESET = "quick"          # paper: "paper"
TASK = "fonts"            # paper: "miniimagenet" (set DATA)
DATA = None
WAYS, SHOTS = 5, 1        # paper: 5-way (its Section 4.4 reads 5-shot)
QUERIES = 5               # training and test queries per class; paper: 15
METHODS = ["none", "cl", "cml"]  # on MAML: the paper's MAML (top row) and CML (bottom); CL between when listed
SEEDS = [0]               # the figure draws one seed; the silhouette note averages the recorded tasks
SEED = None               # the seed to draw (None: the lowest shared one)
STEPS = 300               # paper: 30000
TEST_TASKS = 200          # paper: 600
RECORD_INTERVAL = 50
OVERRIDES = {}            # any other cml.config.Config field, e.g. {"record_tasks": 100}
OUT = "runs/notebooks/fig4"
RUNS = None               # existing sweep or run folders to draw instead of training''', ["parameters"]),
        ("code", SETUP, []),
        ("code", '''\
if RUNS is None:
    base = preset(PRESET, TASK, METHODS[0], data=DATA, ways=WAYS, shots=SHOTS, queries=QUERIES, steps=STEPS,
                  test_tasks=TEST_TASKS, record_interval=RECORD_INTERVAL, progress=False, **OVERRIDES)
    run_sweep(Path(OUT), base, METHODS, SEEDS)
    RUNS = [OUT]
runs = find_runs(RUNS)
print(f"{len(runs)} runs:", ", ".join(f"{r.cell} s{r.seed}" for r in runs))''', []),
        ("code", '''\
from figures import fig4_tsne

fig = fig4_tsne.figure(runs, seed=SEED)
figures.save(fig, Path(OUT) / "fig4_tsne")
fig''', []),
    ])


def table4() -> nbformat.NotebookNode:
    return _notebook("table4", [
        ("md", "# Table 4: is CML's gain just more parameters?\n\n"
               "MAML, More-MAML (MAML widened to CML's train-time parameter count), CL (collaborative learning:\n"
               "both heads adapt and teach each other), CML and CML† (CML predicting with its co-learner), with their\n"
               "parameters at train and at test time and their test accuracy ± 95% CI.", []),
        ("code", '''\
# Parameters (tagged "parameters": papermill and the tests override them in a cell below).
PRESET = "quick"          # paper: "paper" (Conv-4/64, conv co-learner, 30,000 steps, 600 test tasks)
TASK = "fonts"            # paper: "miniimagenet" (set DATA)
DATA = None
WAYS, SHOTS = 5, 1        # paper: 5-way 1-shot and 5-shot
METHODS = ["none", "more", "cl", "cml"]  # on MAML: the paper's MAML, More-MAML, CL and CML
SEEDS = [0]               # paper: [0, 1, 2]; with several seeds the CI is across seeds
STEPS = 600               # paper: 30000
TEST_TASKS = 200          # paper: 600
OVERRIDES = {}            # any other cml.config.Config field, e.g. {"more_capacity": "blocks"}
OUT = "runs/notebooks/table4"
RUNS = None               # existing sweep or run folders to tabulate instead of training''', ["parameters"]),
        ("code", SETUP, []),
        ("code", '''\
if RUNS is None:
    # No learning-dynamics records: the table needs only the final tests.
    base = preset(PRESET, TASK, METHODS[0], data=DATA, ways=WAYS, shots=SHOTS, steps=STEPS, test_tasks=TEST_TASKS,
                  progress=False, **OVERRIDES)
    run_sweep(Path(OUT), base, METHODS, SEEDS, record=False)
    RUNS = [OUT]
runs = find_runs(RUNS)
print(f"{len(runs)} runs:", ", ".join(f"{r.cell} s{r.seed}" for r in runs))''', []),
        ("code", '''\
from figures import table4

rows = table4.rows(runs, methods=[Cell("maml", m) for m in METHODS])
display(Markdown(table4.markdown(rows)))''', []),
        ("code", '''\
fig = table4.figure(rows)
figures.save(fig, Path(OUT) / "table4")
fig''', []),
    ])


def table1() -> nbformat.NotebookNode:
    return _notebook("table1", [
        ("md", "# Table 1: CML as a plug-in to each base learner\n\n"
               "Meta-trains each base learner (MAML, MAML++, BOIL, Sharp-MAML; ANIL too if listed) alone and with\n"
               "CML on the same seeds, and tabulates test accuracy (mean across seeds, with its 95% CI from 3 seeds "
               "on;\n"
               "each seed's value with fewer), CML†, the paired gain per seed, and the claim \"CML improves <base>\"\n"
               "decided by the paired gain's 95% CI across 3 or more seeds. The quick defaults take tens of minutes\n"
               "on a CPU; the paper's settings are in the comments.", []),
        ("code", '''\
# Parameters (tagged "parameters": papermill and the tests override them in a cell below).
PRESET = "quick"          # paper: "paper" (each base's own paper settings, 600 test tasks)
TASK = "fonts"            # paper: "miniimagenet" (set DATA)
DATA = None
WAYS, SHOTS = 5, 1        # paper: 5-way 1-shot and 5-shot
BASES = ["maml", "maml++", "boil", "sharp-maml"]
METHODS = ["none", "cml"]
SEEDS = [0, 1, 2]         # paper: [0, 1, 2]; intervals and the claim need at least three paired seeds
STEPS = 600               # paper: each base's preset (30,000 for MAML, BOIL and Sharp-MAML; 50,000 for MAML++)
TEST_TASKS = 600          # paper: 600
OVERRIDES = {}            # any other cml.config.Config field
OUT = "runs/notebooks/table1"
RUNS = None               # existing sweep or run folders to tabulate instead of training''', ["parameters"]),
        ("code", SETUP, []),
        ("code", '''\
if RUNS is None:
    base = preset(PRESET, TASK, METHODS[0], data=DATA, ways=WAYS, shots=SHOTS, steps=STEPS, test_tasks=TEST_TASKS,
                  progress=False, **OVERRIDES)
    run_sweep(Path(OUT), base, METHODS, SEEDS, record=False, bases=BASES, preset_name=PRESET)
    RUNS = [OUT]
runs = find_runs(RUNS)
print(f"{len(runs)} runs:", ", ".join(f"{r.cell} s{r.seed}" for r in runs))''', []),
        ("code", '''\
from figures import table1

display(Markdown(table1.markdown(runs)))
for claim in table1.claims(runs):
    print(f"{claim.claim}: {claim.verdict} ({claim.evidence})")''', []),
        ("code", '''\
fig = table1.figure(runs)
figures.save(fig, Path(OUT) / "table1")
fig''', []),
    ])


def ablation() -> nbformat.NotebookNode:
    return _notebook("ablation", [
        ("md", "# Ablation: the co-learner's weight γ and its type\n\n"
               "Meta-trains CML over a grid of γ (the weight of the co-learner's loss in the outer objective) and\n"
               "co-learner types (a linear head or two conv blocks), and draws test accuracy and CML† against γ, one\n"
               "line per type, with MAML (γ = 0 is MAML exactly) as the reference line. Bands are 95% t-intervals\n"
               "across seeds from 3 seeds on; with fewer, each seed is drawn. The quick defaults take tens of minutes\n"
               "on a CPU (`python -m cml sweep --engine ray` spreads the cells over cores or machines).", []),
        ("code", '''\
# Parameters (tagged "parameters": papermill and the tests override them in a cell below).
PRESET = "quick"          # paper: "paper" (Conv-4/64, 30,000 steps, 600 test tasks)
TASK = "fonts"            # paper: "miniimagenet" (set DATA)
DATA = None
GAMMAS = [0, 0.5, 1]      # paper: a wider range, e.g. [0, 0.1, 0.5, 1, 2]
CO_LEARNERS = ["linear", "conv"]
SEEDS = [0, 1, 2]         # paper: [0, 1, 2]; fewer than 3 seeds draws each seed and no interval
STEPS = 100               # paper: the preset's (30,000)
TEST_TASKS = 300          # paper: 600
OVERRIDES = {}            # any other cml.config.Config field
OUT = "runs/notebooks/ablation"
RUNS = None               # existing sweep folders with a --grid gamma=... to draw instead of training''',
         ["parameters"]),
        ("code", SETUP, []),
        ("code", '''\
if RUNS is None:
    base = preset(PRESET, TASK, "none", data=DATA, steps=STEPS, test_tasks=TEST_TASKS, progress=False, **OVERRIDES)
    run_sweep(Path(OUT), base, ["cml"], SEEDS, record=False, preset_name=PRESET,
              grid={"gamma": [float(g) for g in GAMMAS], "co_learner": CO_LEARNERS})
    RUNS = [OUT]
runs = find_runs(RUNS)
print(f"{len(runs)} runs:", ", ".join(f"{r.cell_name} s{r.seed}" for r in runs))''', []),
        ("code", '''\
from figures import ablation

fig = ablation.figure(runs)
figures.save(fig, Path(OUT) / "ablation")
fig''', []),
    ])


NOTEBOOKS = {
    "table1_plugins.ipynb": table1,
    "ablation_gamma.ipynb": ablation,
    "fig2_sinusoid.ipynb": fig2,
    "fig3_learning_dynamics.ipynb": fig3,
    "fig4_tsne.ipynb": fig4,
    "table4_baselines.ipynb": table4,
}


def build(folder: Path = HERE) -> list[Path]:
    """Writes every notebook into ``folder`` (validated against the nbformat v4 schema) and returns the paths."""
    paths = []
    for name, make in NOTEBOOKS.items():
        nb = make()
        nbformat.validate(nb)
        path = Path(folder) / name
        nbformat.write(nb, str(path))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
