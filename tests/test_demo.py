"""The README's main job end to end, at a few steps: both sweeps, the table, and the report PDF."""

from __future__ import annotations

import warnings

import pytest
from pypdf import PdfReader

from cml import records
from cml.cli import main
from cml.demo import SWEEPS
from cml.methods import variant_key


@pytest.mark.slow
def test_demo_trains_every_method_prints_the_table_and_writes_the_report(tmp_path, capsys, fonts_cache):
    report = tmp_path / "reports" / "demo.pdf"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["demo", "--out", str(tmp_path / "runs"), "--report", str(report), "--steps", "3",
                     "--test-tasks", "10"]) == 0
    # The demo trains Table 4's baselines on one seed by design: no warning that their second seed is missing.
    assert not [w for w in caught if "not started" in str(w.message)]
    out = capsys.readouterr().out
    # Every cell of every sweep is in the table with its seed count (the demo's cells are on MAML: maml,
    # noisy-maml, ..., cml).
    for task, _, parts in SWEEPS:
        for methods, seeds in parts:
            for method in methods:
                assert f"| {task} | {variant_key('maml', method)} | {len(seeds)} |" in out
    assert "CML†" in out
    pages = PdfReader(report).pages
    assert len(pages) >= 6
    text = "\n".join(page.extract_text() for page in pages)
    for title in ("Figure 2", "Figure 3", "Figure 4", "Table 4"):
        assert title in text
    # Each sweep folder records the demo's command once (the fonts folder's two sweeps are that one command).
    argv = ["demo", "--out", str(tmp_path / "runs"), "--report", str(report), "--steps", "3", "--test-tasks", "10"]
    for task, _, _ in SWEEPS:
        assert [c["argv"] for c in records.read_commands(tmp_path / "runs" / task)] == [argv]
    # every run finished and recorded its dynamics
    for task, _, parts in SWEEPS:
        for methods, seeds in parts:
            for method, seed in ((m, s) for m in methods for s in seeds):
                assert (tmp_path / "runs" / task / f"{variant_key('maml', method)}-s{seed}" / "dynamics.jsonl").exists()
