"""The README's Python API section runs as written (issue 20): its code block, parsed out of README.md, is executed
in a fresh folder with only its ``SHORT`` settings shrunk, so the README cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"
SHORT = 'SHORT = {"steps": 300}'
TINY = 'SHORT = {"steps": 3, "val_tasks": 2, "test_tasks": 5}'


def api_block() -> str:
    """The first ``python`` code block of the README's "Python API" section."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    (block, *_) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_python_api_section_runs_as_written(tmp_path, monkeypatch, capsys):
    code = api_block()
    assert code.count(SHORT) == 1, f"the README's Python API block no longer sets {SHORT!r}: update this test"
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        exec(compile(code.replace(SHORT, TINY), "README.md (Python API)", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"CML: test MSE \d+\.\d{3} ± \d+\.\d{3} over 5 tasks", out[0])
    assert out[1].startswith("cml 3 ")  # the method, the last logged step, test.json's MSE
    assert re.fullmatch(r"\{'maml': \d+\.\d+, 'cml': \d+\.\d+\}", out[2])
    # It wrote where it says, relative to the working folder.
    assert (tmp_path / "runs/api/cml-s0/test.json").is_file() and (tmp_path / "runs/api/sweep/aggregate.json").is_file()
