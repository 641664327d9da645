"""The report: one multi-page PDF from run and sweep folders (``python -m cml report RUNS... -o report.pdf``).

Pages, in order:

1. title, what was run (per setting: folders, methods, seeds, the settings that matter) and the environment;
2. results: every method's test performance per setting, with 95% CIs and what they are over;
3. Figure 2 (sinusoid fits), if sinusoid runs are given;
4. Figure 3 (learning dynamics), two pages per setting: panels (a)-(b), then (c)-(d);
5. Figure 4 (t-SNE), one page per image setting;
6. Table 4 (parameters and performance), one page per setting;
7. Table 1 (CML on each base learner), if runs of another base learner are given;
8. the γ × co-learner ablation, one page per setting whose records hold a ``--grid gamma=...`` sweep;
9. the claims: the paper's Figure 3 claims as it states them, then the suite's own readings, each with its source,
   verdict, evidence, pairing and, if undecided, the seeds a paired t-test would need.

Every table page (results, Table 4, Table 1, the ablation) puts the paper's published value beside the run's where
the setting matches (:mod:`figures.paper_values`), with the difference, and says so where none does. Tables never
pool runs whose configs differ in anything but the seed (:func:`figures.runs.group_by_config`).

The cells of a ``--grid`` sweep differ in more than method and seed, so they are kept out of the per-method
pages and claims (which would otherwise count one method's seed several times) and drawn by the ablation
page; the title page lists them.

A figure whose records are absent (:class:`cml.errors.MissingRecordError`), or that cannot be drawn from the runs
given (:class:`cml.errors.FigureInputError`: a method, seed or task it needs is absent), is replaced by a page
naming what is missing, the flag that writes it and the commands that wrote the runs, as recorded in their
``command.json`` (the title page lists those too; a folder written before commands were recorded is named with
its config file instead). The report fails (one line naming the file, exit code 2 from the CLI) when no run
folder is found at all, or when a record is damaged: a page drawn around a damaged file would hide it. Any other
exception in a figure is a bug and fails the report with its traceback.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import platform
import shutil
import sys
import tempfile
import textwrap
import zlib
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from cml import records
from cml.errors import DiskFullError, FigureInputError, OutputExistsError

from . import claims as claims_mod
from . import ablation, fig2_sinusoid, fig3_dynamics, fig4_tsne, paper_values, style, table1, table3, table4
from .runs import (PAPER_BASE, MissingRecordError, Run, command_adding, command_lines, config_difference, find_runs,
                   group_by_config, group_by_method, group_by_setting, pooled, sweep_folders)
from .summary import POLICY, SeedValues
from .tables import draw_table, table_height

__all__ = ["write_report", "title_pages", "results_pages", "missing_page", "claims_pages", "auto_smooth"]

REPORT_TITLE = "Cooperative Meta-Learning: results and learning dynamics"
# Config fields shown per setting on the title page (the ones that change what a number means).
_SUMMARY_FIELDS = ("data", "steps", "meta_batch", "meta_lr", "inner_lr", "inner_steps", "test_inner_steps", "queries",
                   "filters", "hidden", "co_learner", "gamma", "first_order", "backend", "record_interval",
                   "val_interval", "val_tasks", "test_tasks", "record_tasks")
#: Shown for graph runs only: the subgraphs and the GCN.


def _text_pages(title: str, blocks: Sequence[tuple[str, str]], width: int = 100) -> list[Figure]:
    """Pages (:data:`style.PAGE`): a title, then (heading, body) blocks in a monospaced font wrapped to ``width``
    characters, continued on a new page (same title, "continued") when a block does not fit."""
    head_h, body_h = _line_height(10.5, 1.6), _line_height(7.6, 1.35)
    pages: list[Figure] = []
    fig, y = None, 0.0

    def new_page() -> tuple[Figure, float]:
        with style.figure_style():
            page = Figure(figsize=style.PAGE)
            page.suptitle(title + (" (continued)" if pages else ""), fontsize=14, y=0.975, fontweight="bold")
        pages.append(page)
        return page, 0.935

    for heading, body in blocks:
        # Paths and commands are never broken inside a word: they must stay copyable.
        lines = [w for line in body.splitlines()
                 for w in (textwrap.wrap(line, width, subsequent_indent="    ", break_long_words=False,
                                         break_on_hyphens=False) or [""])]
        while lines or heading:
            if fig is None or y - (head_h if heading else 0) - body_h < 0.03:
                fig, y = new_page()
            with style.figure_style():
                if heading:
                    fig.text(0.06, y, heading, fontsize=10.5, fontweight="bold", va="top")
                    y -= head_h
                    heading = ""
                fit = max(1, int((y - 0.03) / body_h))
                chunk, lines = lines[:fit], lines[fit:]
                fig.text(0.06, y, "\n".join(chunk), fontsize=7.6, family="monospace", va="top", linespacing=1.35)
            y -= body_h * len(chunk) + 0.02
    return pages or [new_page()[0]]


def _versions() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    packages = ", ".join(f"{p} {version(p)}" for p in ("torch", "numpy", "scipy", "matplotlib", "seaborn",
                                                        "scikit-learn", "openTSNE"))
    return (f"python {platform.python_version()} ({sys.executable})\n{packages}\n"
            f"platform {platform.platform()}, {platform.machine()}\n"
            f"report written {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}")


def _command_line(runs: Sequence[Run]) -> str:
    # What wrote the runs, as recorded in command.json; several are aligned under one another.
    return "command: " + "\n         ".join(command_lines(runs))


def _grid_blocks(gridded: Sequence[Run]) -> list[tuple[str, str]]:
    """Per --grid sweep: its folder, gridded fields and values, cells and seeds."""
    blocks = []
    for folder in sweep_folders(gridded):
        runs = [r for r in gridded if r.path.parent == folder]
        fields: dict[str, list[str]] = {}
        for run in runs:
            for field, value in run.grid.items():
                if repr(value) not in fields.setdefault(field, []):
                    fields[field].append(repr(value))
        shared = []
        for f in _SUMMARY_FIELDS:
            values = {repr(r.config.get(f)) for r in runs if f in r.config}
            if f not in fields and len(values) == 1:
                shared.append(f"{f}={next(iter(values))}")
        lines = [f"folder: {folder}",
                 "grid: " + "; ".join(f"{f} in {{{', '.join(v)}}}" for f, v in fields.items()),
                 "config: " + ", ".join(shared),
                 f"cells: {len({r.cell_name for r in runs})} ({', '.join(sorted({r.cell.variant for r in runs}))}), "
                 f"seeds: {','.join(str(s) for s in sorted({r.seed for r in runs}))}, setting: {runs[0].setting.label}",
                 _command_line(runs)]
        blocks.append((f"Grid sweep: {folder.name}", "\n".join(lines)))
    return blocks


def title_pages(runs: Sequence[Run], contents: Sequence[str], gridded: Sequence[Run] = (),
                dropped: Sequence[tuple[Run, str]] = ()) -> list[Figure]:
    """Page 1 (and more if needed): what was run (per setting; the cells of --grid sweeps apart), the runs left
    out because their configs differ from their cell's others (:func:`figures.runs.pooled`), the environment, and
    the contents."""
    blocks = [("", "Cooperative Meta-Learning (Shin, Han & Kim, UAI 2024) against MAML baselines: test performance,\n"
                   "sinusoid fits, gradient cosine and norms on psi, CKA and t-SNE of the representations.")]
    for setting, group in group_by_setting(runs).items():
        by_method = group_by_method(group)
        folders = sweep_folders(group) or sorted({str(r.path) for r in group})
        lines = [f"folders: {', '.join(map(str, folders))}",
                 "methods (seeds): " + ", ".join(f"{style.label(m)} ({','.join(str(r.seed) for r in rs)})"
                                                 for m, rs in by_method.items())]
        configs = [r.config for r in group]
        shared, differs = [], []
        for f in _SUMMARY_FIELDS + setting.family.summary_fields:
            if f in ("filters", "hidden") and f != setting.family.width_field:
                continue  # the other architecture's width
            values = {repr(c.get(f)) for c in configs if f in c}
            if len(values) == 1:
                shared.append(f"{f}={next(iter(values))}")
            elif values:
                differs.append(f"{f} in {{{', '.join(sorted(values))}}}")
        for cell, rs in by_method.items():
            if cell.spec.gradient_noise:  # noise_std is off (0) for every other method: shown only where it is on
                noise = sorted({float(r.config.get("noise_std") or 0.0) for r in rs})
                modes = sorted({str(r.config.get("noise_mode", "?")) for r in rs})
                shared.append(f"{style.label(cell)} noise_std={','.join(map(str, noise))} ({','.join(modes)})")
        lines.append("config: " + ", ".join(shared))
        if differs:
            lines.append("differs across runs: " + "; ".join(differs))
        lines.append(_command_line(group))
        blocks.append((f"Setting: {setting.label}", "\n".join(lines)))
    blocks += _grid_blocks(gridded)
    if dropped:
        blocks.append(("Not pooled: runs left out of every page (their config differs from their cell's other runs)",
                       "\n".join(why for _, why in dropped)))
    blocks.append(("Environment", _versions()))
    blocks.append(("Contents", "\n".join(f"- {c}" for c in contents)))
    return _text_pages(REPORT_TITLE, blocks)


def _result_cells(method, rs: Sequence[Run], regression: bool, name: str = "") -> list[str] | None:
    tests = {r.seed: r.test() for r in rs if r.has(records.TEST)}
    if not tests:
        return None
    metric = "mse" if regression else "acc"
    scale, fmt = (1.0, ".4f") if regression else (100.0, ".2f")

    def values(key: str) -> SeedValues:
        return SeedValues({s: float(t[key]) for s, t in tests.items() if t.get(key) is not None},
                          {s: float(t[f"{key}_ci95"]) for s, t in tests.items() if t.get(f"{key}_ci95") is not None})

    main, dagger = values(metric), values(f"{metric}_dagger")
    # The second metric is a loss (or MSE): never in percent.
    second = values("mse_before").mean_text(1.0, ".3f") if regression else values("loss").mean_text(1.0, ".3f")
    seconds = sum(t.get("train_time", 0.0) for t in tests.values()) / len(tests)
    first = next(iter(tests.values()))
    # The paper's values of the cell's predictions (θ; and φ, marked †) where the setting is the paper's.
    run = next(r for r in rs if r.has(records.TEST))
    cells = [paper_values.cell_text(paper_values.values_for(run, key), v.mean if v.n else None)
             for key, v in ((metric, main), (f"{metric}_dagger", dagger))]
    paper = "\n".join(f"{'† ' if i else ''}{c[0]}" for i, c in enumerate(cells) if c[0] != "–") or "–"
    diff = "\n".join(f"{'† ' if i else ''}{c[1]}" for i, c in enumerate(cells) if c[0] != "–") or "–"
    # "Sharp-MAML + CML" is wider than the method column: the method added goes on a second line.
    label = "\n".join(w for part in style.label(method).replace(" + ", "\n+ ").split("\n")
                      for w in textwrap.wrap(part, 14)) + (f"\n[{name}]" if name else "")
    return [label, str(len(tests)), main.mean_text(scale, fmt), "\n".join(main.seed_lines(scale, fmt)),
            dagger.mean_text(scale, fmt), second, f"{first['params']['train']:,} / {first['params']['test']:,}",
            f"{seconds:.0f}", paper, diff]


def time_note(runs: Sequence[Run]) -> str:
    """The caveat under a table's training times: what they measure, and the torch thread count the runs' commands
    recorded (``command.json``; a config's ``threads`` field where it has one), or that none was recorded."""
    threads: set[int] = set()
    for run in runs:
        if run.config.get("threads") is not None:
            threads.add(int(run.config["threads"]))
            continue
        threads |= {int(c["threads"]) for c in run.commands() or () if c.get("threads") is not None}
    count = (f"{', '.join(map(str, sorted(threads)))} torch thread{'s' if threads != {1} else ''} (as recorded in "
             f"command.json)" if threads else "a torch thread count that was not recorded (no command.json)")
    return (f"Training time: wall-clock seconds of one run's training (mean over its seeds) with {count}, on "
            f"whatever else the machine was running at the time: a shared machine makes it slower and uneven, so "
            f"compare times only between runs trained side by side; it is not a benchmark.")


RESULTS_NOTE = (
    "Means are over the seeds of each row. " + POLICY + " The per-seed column gives each run's value with its own "
    "95% CI over its test tasks (normal approximation), a different quantity: the precision of one run. "
    "\"with φ\": predicting with the co-learner head (CML† for CML, as the official code evaluates it; CL's second "
    "branch). params: counted at train time / at test time. Training time: see under each table. paper: the "
    "published value at the row's setting (table T; † the co-learner's), run − paper "
    "in points. A method's runs whose configs differ in more than the seed are separate rows, named by what differs."
)


def results_pages(runs: Sequence[Run]) -> list[Figure]:
    """The results: per setting, each method's test metric (mean across seeds, and per seed), the metric with
    phi, a second metric, and the paper's value where the setting matches; as many pages as the settings need."""
    pages: list[Figure] = []
    fig, top = None, 0.0
    for setting, group in group_by_setting(runs).items():
        reg = not setting.family.classification
        rows = []
        for m, groups in group_by_config(group).items():
            names = config_difference(groups) if len(groups) > 1 else [""]
            rows += [c for g, name in zip(groups, names) if (c := _result_cells(m, g, reg, name)) is not None]
        with_paper = any(r[8] != "–" for r in rows)
        if not with_paper:
            rows = [r[:8] for r in rows]
        # "± 95% CI" in a header only where some row of the table has 3+ seeds (and so an interval).
        # A one-seed table has no mean across seeds to speak of: its value is the seed's.
        mean = ("mean ± 95% CI\nacross seeds" if any("±" in r[2] for r in rows)
                else "one seed's\nvalue (no CI\nacross seeds)" if all(r[1] == "1" for r in rows)
                else "mean across\nseeds (no CI:\n< 3 seeds)")
        cols = (["method", "seeds", f"test MSE:\n{mean}", "test MSE per seed\n(± 95% CI over\nits test tasks)",
                 f"MSE with φ:\n{mean}", "MSE before\nadaptation\n(mean)", "params\ntrain / test",
                 "training\ntime per\nrun (s,\nwall clock)"] if reg else
                ["method", "seeds", f"accuracy (%):\n{mean}", "accuracy (%) per seed\n(± 95% CI over\nits test tasks)",
                 f"acc. with φ (%):\n{mean}", "test loss\n(mean)", "params\ntrain / test",
                 "training\ntime per\nrun (s,\nwall clock)"])
        widths = [0.10, 0.06, 0.14, 0.19, 0.14, 0.12, 0.15, 0.10]
        if with_paper:
            cols += ["paper (%)", "run −\npaper"]
            widths = [0.09, 0.05, 0.12, 0.16, 0.12, 0.08, 0.12, 0.07, 0.11, 0.08]
        note = "" if with_paper or not rows else paper_values.no_match_note(group)
        timing = textwrap.wrap(time_note(group), 130) if rows else []
        height = ((table_height(style.PAGE[1], rows, cols, 7.5) if rows else 0.02) + 0.05 + (0.025 if note else 0)
                  + len(timing) * _line_height(7.4, 1.3))
        if fig is None or top - height < 0.04:
            with style.figure_style():
                fig = Figure(figsize=style.PAGE)
                fig.suptitle("Results: test performance per setting" + (" (continued)" if pages else ""),
                             fontsize=14, y=0.975, fontweight="bold")
                fig.text(0.06, 0.95, "\n".join(textwrap.wrap(RESULTS_NOTE, 125)), fontsize=7.8, va="top",
                         linespacing=1.4)
            pages.append(fig)
            top = 0.855
        with style.figure_style():
            fig.text(0.06, top, setting.label, fontsize=10, fontweight="bold", va="top")
            top -= 0.02
            if not rows:
                fig.text(0.06, top, "no finished run (no test.json): run the sweep again to finish it", fontsize=8,
                         va="top")
                top -= 0.04
                continue
            if note:
                fig.text(0.06, top, "\n".join(textwrap.wrap(note, 130)), fontsize=7.4, va="top", color="0.3")
                top -= 0.025
            top = draw_table(fig, top, cols, rows, widths, width=0.88) - 0.012
            fig.text(0.06, top, "\n".join(timing), fontsize=7.4, va="top", color="0.3", linespacing=1.3)
            top -= len(timing) * _line_height(7.4, 1.3) + 0.025
    return pages


def missing_page(title: str, error: Exception, command: str | None = None,
                 written_by: Sequence[str] = ()) -> list[Figure]:
    """A page standing in for a figure that could not be drawn: what is missing, a command that trains what the
    figure needs (when the runs lack a method or task), and the recorded commands that wrote the runs (a missing
    record's message says which flag writes it)."""
    blocks = [("Not drawn: records missing" if isinstance(error, MissingRecordError) else "Not drawn",
               str(error))]
    if command:
        blocks.append(("Produce the records with", command))
    if written_by:
        blocks.append(("The runs were written by", "\n".join(written_by)))
    return _text_pages(f"{title}: not available", blocks, width=95)


def _line_height(fontsize: float, spacing: float = 1.3, page_height: float = style.PAGE[1]) -> float:
    # Height of one text line as a fraction of the page (points / (inches * 72)).
    return fontsize * spacing / (page_height * 72.0)


CLAIMS_NOTE = (
    "The paper's claims are stated as the paper states them, each with its figure and sentence; the suite's own "
    "readings follow, labelled as such. Supported: the 95% Student-t CI across 3 or more seeds lies on the claimed "
    "side (for a claim of several comparisons, every one). Contradicted: one lies on the other side. Undecided: an "
    "interval includes the line (it refutes nothing), or fewer than 3 seeds (each seed is shown and no interval "
    "across seeds is computed), or a record is missing. Seeds are paired (the same seed gives every method the same "
    "initialisation, training tasks and test tasks; each claim says which pairing it used). An undecided claim "
    "gives the seeds a paired t-test would need for 80% power at the observed effect and spread.")


def claims_pages(claims: Sequence[claims_mod.Claim], empty: str = "no runs") -> list[Figure]:
    """The claims, each with its verdict, source, evidence, pairing and seeds needed, over as many pages as they
    need (``empty``: the page's text when there is no claim to check); the paper's claims first, then the suite's
    readings and the other tables' claims, each group under its heading."""
    marks = {True: "SUPPORTED", False: "CONTRADICTED", None: "UNDECIDED"}
    colours = {True: "#009E73", False: "#D55E00", None: "0.35"}
    pages: list[Figure] = []
    fig, y = None, 0.0
    head_h, body_h = _line_height(9.0, 1.25), _line_height(7.4, 1.3)
    section_h = _line_height(11.0, 1.6)
    ordered = [c for c in claims if c.paper] + [c for c in claims if not c.paper]
    heading = None
    for c in ordered:
        section = ("The paper's claims (Section 4.4, Figure 3)" if c.paper else
                   "The suite's readings and the other tables' claims (not the paper's Figure 3 claims)")
        claim_lines = textwrap.wrap(c.claim, 90)
        source = textwrap.wrap(f"Source: {c.source}", 112) if c.source else []
        body = textwrap.wrap(c.evidence, 104, break_long_words=False, break_on_hyphens=False)
        if c.pairing:
            body += textwrap.wrap(f"pairing: {c.pairing}", 104, break_long_words=False, break_on_hyphens=False)
        needed = f"; seeds needed for 80% power: {c.seeds_needed}" if c.seeds_needed is not None else ""
        body.append(f"seeds: {', '.join(map(str, c.seeds)) or 'none'}{needed}")
        need = (head_h * (1 + len(claim_lines)) + body_h * (len(body) + len(source)) + 0.016
                + (section_h if section != heading else 0))
        if fig is None or y - need < 0.03:
            with style.figure_style():
                fig = Figure(figsize=style.PAGE)
                fig.suptitle("Claims: why CML works, checked against the records" +
                             (" (continued)" if pages else ""), fontsize=13, y=0.975, fontweight="bold")
                note = textwrap.wrap(CLAIMS_NOTE, 125)
                fig.text(0.06, 0.95, "\n".join(note), fontsize=7.8, va="top", linespacing=1.4)
            pages.append(fig)
            y = 0.95 - len(note) * _line_height(7.8, 1.4) - 0.015
        if section != heading:
            fig.text(0.06, y, section, fontsize=11, fontweight="bold", va="top")
            y -= section_h
            heading = section
        fig.text(0.06, y, marks[c.supported] + f"  [{c.key}]", fontsize=9, fontweight="bold", va="top",
                 color=colours[c.supported])
        fig.text(0.94, y, c.setting, fontsize=8.5, va="top", ha="right", color="0.35")
        y -= head_h
        fig.text(0.06, y, "\n".join(claim_lines), fontsize=9, fontweight="bold", va="top", linespacing=1.25)
        y -= head_h * len(claim_lines)
        if source:
            fig.text(0.08, y - 0.002, "\n".join(source), fontsize=7.4, style="italic", va="top", linespacing=1.3,
                     color="0.25")
            y -= body_h * len(source)
        fig.text(0.08, y - 0.003, "\n".join(body), fontsize=7.4, family="monospace", va="top", linespacing=1.3)
        y -= body_h * len(body) + 0.022
    if not pages:
        pages += _text_pages("Claims: why CML works, checked against the records", [("", empty)])
    return pages


def auto_smooth(runs: Sequence[Run]) -> int:
    """Rolling-mean window for Figure 3 in the report: about 1/25 of the recorded steps (1 for short runs)."""
    counts = [len(r.dynamics()) for r in runs if r.has(records.DYNAMICS)]
    return max(1, round(min(counts) / 25)) if counts else 1


def write_report(paths: Sequence[Path], output: Path) -> Path:
    """Writes the report PDF for the runs in ``paths`` (run folders, sweep folders, or folders above them).

    Args:
        paths: folders to search for runs (see :func:`figures.runs.find_runs`).
        output: the PDF to write (its folder is created).

    Returns:
        ``output``.

    Raises:
        NoRunsError: if no run folder is found.
        MissingFileError: if a path does not exist.
        OutputExistsError: if ``output`` is a folder, or a file stands where a folder above it should be.
        RunFolderError: if a record is damaged (naming it and the command that writes it again).
        Exception: whatever a figure raises other than FigureInputError and MissingRecordError (a bug).
    """
    output = Path(output)
    if output.is_dir():
        raise OutputExistsError(f"-o {output} is a folder; name the PDF to write, e.g. -o {output / 'report.pdf'}")
    runs = find_runs(paths)
    for run in runs:  # a damaged record stops the report with its name, whichever page would have read it
        run.check()
    records.make_folder(output.parent, "-o")
    everything = runs
    gridded = [r for r in runs if r.grid]
    # Seeds of a cell are pooled only when their configs agree in every field but the seed: the rest is named on
    # the title page and drawn nowhere (a --grid sweep's cells are told apart by the ablation page itself).
    runs, dropped = pooled([r for r in runs if not r.grid], warn=False)
    groups = group_by_setting(runs)
    sinusoid = [r for r in runs if r.family.end_record == records.FITS]  # Figure 2's runs

    # Every page is a (contents line, builder) pair; a builder that lacks records becomes a missing page.
    pages: list[tuple[str, Callable[[], Figure | list[Figure]], Sequence[Run]]] = []
    if runs:
        pages.append(("Results per setting", lambda: results_pages(runs), runs))
    if sinusoid:
        pages.append(("Figure 2: sinusoid fits", lambda: fig2_sinusoid.figure(sinusoid, show_before=True), sinusoid))
    for setting, group in groups.items():
        pages.append((f"Figure 3 (a)-(d): learning dynamics, {setting.label}",
                      lambda g=group: fig3_dynamics.pages(g, smooth=auto_smooth(g)), group))
    for setting, group in groups.items():
        if setting.family.end_record == records.FEATURES:
            pages.append((f"Figure 4: t-SNE, {setting.label}", lambda g=group: fig4_tsne.figure(g), group))
    if groups and all(s.family.end_record != records.FEATURES for s in groups):
        title4 = "Figure 4: t-SNE (needs an image task)"
        pages.append((title4, lambda: missing_page(title4, FigureInputError(
            "Figure 4 needs an image task; only sinusoid runs were given"), _command_for_input_error(title4, runs)),
            runs))
    for setting, group in groups.items():
        pages.append((f"Table 4: parameters and performance, {setting.label}", lambda g=group: table4.figure(g), group))
    if any(r.base != PAPER_BASE for r in runs):
        pages.append(("Table 1: CML on each base learner", lambda: table1.figure(runs), runs))
    pages += table3.report_pages(runs)  # node classification: each base alone and with CML, the paper's values
    for setting, group in group_by_setting(gridded).items():
        if ablation.has_gamma_grid(group):
            # The base learner's own runs of the same setting, if given, are the reference line.
            with_reference = group + groups.get(setting, [])
            pages.append((f"Ablation: γ × co-learner, {setting.label}",
                          lambda g=with_reference: ablation.figure(g), group))
    checked = claims_mod.claims(runs) + table1.claims(runs) if runs else []

    metadata_ = {"Title": REPORT_TITLE, "Subject": "; ".join(s.label for s in group_by_setting(everything)),
                 "Creator": "cml figures.report", "Keywords": "meta-learning, CML, MAML"}
    contents = [title for title, _, _ in pages] + ["Claims"]
    # Written beside the target and renamed at the end: a failure never leaves half a report under its name. The
    # temp file is made with O_EXCL (mkstemp), so that a link planted at its name is never written through.
    fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_pages(f, metadata_, runs, contents, pages, checked, gridded, dropped)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(partial, 0o644)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(partial, output)
    except (OSError, zlib.error) as e:
        # matplotlib compresses each page: a write that finds the disk full surfaces as zlib.error from the
        # compressor's next flush, the OSError only as its context.
        if _disk_full(e):
            try:
                free = f"{shutil.disk_usage(output.parent).free / 1024 ** 2:.1f} MB is free"
            except OSError:
                free = "the free space is unknown"
            raise DiskFullError(f"disk full: writing the report {output} ({free} in {output.parent}); nothing was "
                                f"written under its name: free space, then rerun the same command") from None
        raise
    finally:
        partial.unlink(missing_ok=True)
    return output


def number_pages(figures: Sequence[Figure]) -> list[Figure]:
    """Writes "page i of n" at the foot of every page (a printed report's pages must be citable and in order)."""
    with style.figure_style():
        for i, fig in enumerate(figures, 1):
            # The bottom right corner: legends sit at the bottom centre of the figure pages.
            fig.text(0.985, 0.005, f"page {i} of {len(figures)}", ha="right", va="bottom", fontsize=7, color="0.35",
                     gid="page-number")
    return list(figures)


def report_pages(runs: Sequence[Run], contents: Sequence[str],
                 pages: Sequence[tuple[str, Callable[[], Figure | list[Figure]], Sequence[Run]]],
                 checked: Sequence[claims_mod.Claim], gridded: Sequence[Run] = (),
                 dropped: Sequence[tuple[Run, str]] = ()) -> list[Figure]:
    """Every page of the report, in order and numbered: the title, the figures (a page naming what is missing for
    one that cannot be drawn), the claims."""
    built_pages: list[Figure] = list(title_pages(runs, contents, gridded, dropped))
    with style.figure_style():
        for title, build, group in pages:
            # Only the two "cannot draw this" errors become a page; anything else (a damaged record, a bug) stops
            # the report: a believable page must never stand in for a broken figure.
            try:
                built = build()
            except MissingRecordError as e:
                built = missing_page(title, e, None, command_lines(group))
            except FigureInputError as e:
                built = missing_page(title, e, _command_for_input_error(title, group), command_lines(group))
            built_pages += built if isinstance(built, list) else [built]
    empty = ("no runs outside --grid sweeps: the claims compare methods at one config; the grid's cells are "
             "on the ablation page" if gridded and not runs else "no runs")
    built_pages += claims_pages(checked, empty)
    return number_pages(built_pages)


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised while handling, is a full disk or quota."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def _write_pages(path: Path | BinaryIO, metadata_: dict[str, str], runs: Sequence[Run], contents: Sequence[str],
                 pages: Sequence[tuple[str, Callable[[], Figure | list[Figure]], Sequence[Run]]],
                 checked: Sequence[claims_mod.Claim], gridded: Sequence[Run] = (),
                 dropped: Sequence[tuple[Run, str]] = ()) -> None:
    figures = report_pages(runs, contents, pages, checked, gridded, dropped)
    with style.figure_style(), PdfPages(path, metadata=metadata_) as pdf:
        for fig in figures:
            pdf.savefig(fig)


def _command_for_input_error(title: str, group: Sequence[Run]) -> str | None:
    # A figure refused its runs (a method or task absent): suggest the one command that adds what it draws, built
    # from the runs' own recorded command or config (cf. figures.runs.command_adding), so that it trains at the runs'
    # settings and agrees with the command the figure's own message gives. Figure 4's message already names it.
    if title.startswith("Figure 4"):
        if any(r.family.end_record == records.FEATURES for r in group):
            return None
        # Only sinusoid runs: no image run's config to start from; the quick preset, the runs' seeds and interval.
        seeds = ",".join(str(s) for s in sorted({r.seed for r in group})) or "0,1,2"
        interval = min((int(r.config.get("record_interval") or 0) for r in group), default=0) or 10
        out = group[0].source.parent / "fonts" if group else Path("runs/fonts")
        return (f"python -m cml sweep --task fonts --preset quick --methods maml,cml --seeds {seeds} "
                f"--record-interval {interval} --out {out}")
    if title.startswith("Figure 2"):
        sin = [r for r in group if r.family.end_record == records.FITS]
        lacking = [(s, name) for s in sorted({r.shots for r in sin})
                   for name in fig2_sinusoid.default_methods([r for r in sin if r.shots == s])[1]]
        if not lacking:
            return None
        shots, name = lacking[0]
        at = [r for r in sin if r.shots == shots]
        return command_adding(at, name)
    return None
