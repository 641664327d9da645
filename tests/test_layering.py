"""The layering the style guide promises: analysis/ is pure (it imports nothing from cml), and the trainer's
side never compares a method's or a base learner's name (the tables in cml/methods.py and cml/bases/ do)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_analysis_imports_nothing_from_cml():
    modules = sorted(p.stem for p in (ROOT / "analysis").glob("*.py") if p.stem != "__init__")
    code = (f"import sys, analysis; [__import__('analysis.' + m) for m in {modules!r}]; "
            "print(' '.join(m for m in sys.modules if m == 'cml' or m.startswith('cml.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "", f"analysis imported {out.strip()}"


def test_no_module_compares_a_method_or_base_name():
    names = ("maml", "maml++", "boil", "sharp-maml", "anil", "none", "cml", "noisy", "more", "cl", "noisy-maml",
             "more-maml")
    pattern = re.compile(r"\b(method|base|cfg\.method|cfg\.base)\s*(==|!=|in)\s*[\"'(]")
    offenders = []
    for path in [*(ROOT / "cml").glob("*.py"), *(ROOT / "figures").glob("*.py")]:
        if path.name in ("methods.py",):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and any(f'"{n}"' in line for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# A task branch: a comparison with a task's name, membership in a literal tuple of names, or the old
# is_regression / is_graph properties. Only the task table (cml/tasks/) may hold task names.
_TASK_BRANCH = re.compile(r"""task\s*(==|!=)\s*["']|task\s+(not\s+)?in\s+[(\[{]|\bis_regression\b|\bis_graph\b""")


def _task_branches(paths):
    out = []
    for path in paths:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _TASK_BRANCH.search(line):
                out.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    return out


def test_no_module_outside_the_task_table_branches_on_a_task():
    paths = [p for p in (ROOT / "cml").rglob("*.py") if "tasks" not in p.relative_to(ROOT / "cml").parts]
    offenders = _task_branches(paths)
    assert not offenders, "\n".join(offenders)


def test_the_task_branch_pattern_catches_what_it_should():
    caught = ['if cfg.task == "graph":', "if task in ('sinusoid', 'graph'):", "x = cfg.is_regression",
              "if self.task != 'sinusoid'", "task not in ['a']"]
    assert all(_TASK_BRANCH.search(c) for c in caught)
    assert not _TASK_BRANCH.search("cfg.family.classification and cfg.task_entry.needs_data")
