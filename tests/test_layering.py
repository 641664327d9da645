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
