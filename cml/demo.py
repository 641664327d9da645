"""The README's main job: MAML vs CML (and the baselines) at quick settings, a table, and a PDF report.

Needs no download: sinusoid regression, and few-shot classification on the font-glyph data set rendered
from matplotlib's own fonts. Runs go into sweep folders, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import records
from .config import Config, preset
from .methods import get_method
from .sweep import run_sweep

#: The demo's sweeps, one folder per task, in training order: (task, steps between learning-dynamics records,
#: [(methods, seeds), ...]). On fonts, Figure 3's comparison runs on two seeds, so that the claims page has CIs
#: across seeds, and Table 4's extra baselines on one, to keep the demo within about 15 minutes on 2 cores.
SWEEPS: tuple[tuple[str, int, tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]], ...] = (
    ("sinusoid", 50, ((("none", "cml"), (0,)),)),
    ("fonts", 10, ((("none", "noisy", "cml"), (0, 1)), (("more", "cl"), (0,)))),
)


def demo_configs(steps: int | None = None, test_tasks: int | None = None, threads: int | None = None,
                 progress: bool = True) -> dict[str, Config]:
    """The demo's base config per task (quick preset, with learning-dynamics recording on)."""
    overrides: dict[str, Any] = {"progress": progress, "steps": steps, "test_tasks": test_tasks, "threads": threads}
    # Record at least once even in a shortened demo.
    return {task: preset("quick", task, "none", record_interval=min(every, steps or every), **overrides)
            for task, every, _ in SWEEPS}


def table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown comparison table of the demo's test results (means over the sweep's seeds)."""
    lines = ["| task | method | seeds | params train/test | test result |", "| --- | --- | ---: | --- | --- |"]
    for task, agg in results.items():
        for method, entry in agg.items():
            params = f"{entry['params']['train']}/{entry['params']['test']}"
            if "acc" in entry:
                value = f"acc {100 * entry['acc']['mean']:.1f}%"
                if "acc_dagger" in entry and get_method(entry["method"]).dagger:
                    value += f" (CML† {100 * entry['acc_dagger']['mean']:.1f}%)"
            else:
                value = f"MSE {entry['mse']['mean']:.3f} (before adaptation {entry['mse_before']['mean']:.2f})"
            lines.append(f"| {task} | {method} | {entry['seeds']} | {params} | {value} |")
    return "\n".join(lines)


def run_demo(out: Path, report: Path, quick_steps: int | None = None, test_tasks: int | None = None,
             argv: Sequence[str] | None = None, prog: str = "python -m cml", threads: int | None = None,
             progress: bool = True) -> int:
    """Trains the demo's sweeps (resuming unfinished runs), prints the table and writes the report.

    Args:
        out: the folder of the demo's two sweep folders.
        report: the PDF to write.
        quick_steps, test_tasks: overrides of the quick preset, for a faster look (and the test suite).
        argv, prog: the ``demo`` command line as given, recorded in each sweep folder's ``command.json`` (rerunning
            it trains the same sweeps); None records none.
        threads: torch's CPU threads for every run (None: the process's count, recorded in each config.json).
        progress: one bar over every cell of the demo (cells done of all, with an ETA), and each run's own bar.
    """
    from figures.report import write_report

    start = time.perf_counter()
    configs = demo_configs(quick_steps, test_tasks, threads, progress)
    bar = _overall_bar(out, configs) if progress else None

    def command(task: str) -> dict[str, Any] | None:
        return None if argv is None else records.command_entry(argv, configs[task].to_dict(), prog)

    results = {}
    for task, _, parts in SWEEPS:
        for i, (methods, seeds) in enumerate(parts):
            # The last sweep of a folder aggregates every cell in it; the command is recorded once per folder.
            results[task] = run_sweep(out / task, configs[task], methods, seeds, command=command(task) if i == 0
                                      else None, bar=bar)
    if bar is not None:
        bar.close()
    print(table(results))
    records.make_folder(report.parent, "--report")
    write_report([out / task for task, _, _ in SWEEPS], report)
    print(f"report: {report}  ({time.perf_counter() - start:.0f} s in all)")
    return 0


def _overall_bar(out: Path, configs: dict[str, Config]):
    """One bar over every cell of the demo's sweeps, the finished ones counted done at the start."""
    from .cells import cell_finished
    from .sweep import cells_bar, sweep_cells

    cells = [(out / task / name, cfg) for task, _, parts in SWEEPS for methods, seeds in parts
             for name, cfg in sweep_cells(configs[task], [configs[task].base], methods, seeds)]
    done = sum(cell_finished(run_dir, cfg, cfg.record_interval > 0) for run_dir, cfg in cells)
    return cells_bar("demo", len(cells), done, True)
