"""The README's main job end to end, at a few steps: both sweeps, the table, and the report PDF."""

from __future__ import annotations

import pytest
from pypdf import PdfReader

from cml.cli import main
from cml.demo import BASELINES, IMAGE_METHODS, SINUSOID_METHODS
from cml.methods import variant_key


@pytest.mark.slow
def test_demo_trains_every_method_prints_the_table_and_writes_the_report(tmp_path, capsys, fonts_cache):
    report = tmp_path / "reports" / "demo.pdf"
    assert main(["demo", "--out", str(tmp_path / "runs"), "--report", str(report), "--steps", "3",
                 "--test-tasks", "10"]) == 0
    out = capsys.readouterr().out
    for method in IMAGE_METHODS + BASELINES:  # the demo's cells are on MAML: maml, noisy-maml, ..., cml
        assert f"| fonts | {variant_key('maml', method)} | {1 + (method in IMAGE_METHODS)} |" in out
    for method in SINUSOID_METHODS:
        assert f"| sinusoid | {variant_key('maml', method)} | 1 |" in out
    assert "CML†" in out
    pages = PdfReader(report).pages
    assert len(pages) >= 6
    text = "\n".join(page.extract_text() for page in pages)
    for title in ("Figure 2", "Figure 3", "Figure 4", "Table 4"):
        assert title in text
    # every run finished and recorded its dynamics
    for method in IMAGE_METHODS:
        for seed in (0, 1):
            assert (tmp_path / "runs" / "fonts" / f"{variant_key('maml', method)}-s{seed}" / "dynamics.jsonl").exists()
