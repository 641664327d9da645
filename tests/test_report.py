"""The PDF report: its pages, their titles and figures, missing-record pages, and the CLI entry point."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pypdf
import pytest
from pypdf.generic import ContentStream

from cml import records
from cml.cli import main
from figures.report import REPORT_TITLE, write_report
from figures.runs import NoRunsError


def _texts(path: Path) -> list[str]:
    """Each page's text with runs of whitespace (line breaks of wrapped text) as one space."""
    return [" ".join((page.extract_text() or "").split()) for page in pypdf.PdfReader(str(path)).pages]


_RESULTS_CONTINUED = "Results: test performance per setting (continued)"


def _sections(path: Path) -> tuple[list[int], list[str]]:
    """The pages but the results table's continuation pages (one per setting that does not fit): their PDF page
    indices and texts, so that the n-th entry is the n-th section of the report."""
    texts = _texts(path)
    index = [i for i, t in enumerate(texts) if _RESULTS_CONTINUED not in t]
    return index, [texts[i] for i in index]


@pytest.fixture(scope="module")
def full_report(figure_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sub" / "report.pdf"
    return write_report([figure_runs["sin"], figure_runs["sin5"], figure_runs["fonts"]], out)


def test_report_pages_in_order_with_titles(full_report):
    reader = pypdf.PdfReader(str(full_report))
    assert reader.metadata.title == REPORT_TITLE
    assert "fonts, 5-way 1-shot" in reader.metadata.subject
    texts = _sections(full_report)[1]
    assert _RESULTS_CONTINUED in " ".join(_texts(full_report))  # three settings' tables: two pages
    expected = [
        REPORT_TITLE,
        "Results: test performance per setting",
        "Figure 2: sinusoid regression",
        "Figure 3 (a), (b): learning dynamics, fonts, 5-way 1-shot",
        "Figure 3 (c), (d): learning dynamics, fonts, 5-way 1-shot",
        "Figure 3 (a), (b): learning dynamics, sinusoid, 5-shot",
        "Figure 3 (c), (d): learning dynamics, sinusoid, 5-shot",
        "Figure 3 (a), (b): learning dynamics, sinusoid, 10-shot",
        "Figure 3 (c), (d): learning dynamics, sinusoid, 10-shot",
        "Figure 4: t-SNE of head-input features, fonts, 5-way 1-shot",
        "Table 4: parameters and test performance, fonts, 5-way 1-shot",
        "Table 4: parameters and test performance, sinusoid, 5-shot",
        "Table 4: parameters and test performance, sinusoid, 10-shot",
        "Claims: why CML works, checked against the records",
    ]
    assert len(texts) >= len(expected)
    for i, title in enumerate(expected):
        assert title in texts[i], (i, title, texts[i][:300])
    # The claims may need a second page; nothing else follows them.
    assert all("Claims: why CML works" in t for t in texts[len(expected) - 1:])
    assert not any("not available" in t for t in texts)


def test_report_title_page_and_results(full_report):
    texts = _texts(full_report)
    title = texts[0]
    for needle in ("Setting: fonts, 5-way 1-shot", "Setting: sinusoid, 10-shot", "MAML (0,1)", "steps=6",
                   "Environment", "python 3.", "torch", "Contents"):
        assert needle in title, needle
    results = texts[1]
    assert "accuracy (%)" in results and "test MSE" in results and "More-MAML" in results and "CML†" not in title
    assert "noisy-MAML noise_std=0.5 (relative)" in title  # the noise of the noisy runs, and of no other


def test_report_title_page_prints_the_recorded_commands(full_report, figure_runs):  # noqa: F811
    title = _texts(full_report)[0]
    for name in ("sin", "sin5", "fonts"):
        (entry,) = records.read_commands(figure_runs[name])
        assert f"command: {records.command_text(entry)}" in title, name


def _operators(reader: pypdf.PdfReader, page: int) -> Counter:
    return Counter(op for _, op in ContentStream(reader.pages[page].get_contents(), reader).operations)


def test_report_pages_hold_the_figures(full_report, figure_runs):
    index, texts = _sections(full_report)
    reader = pypdf.PdfReader(str(full_report))
    # Figures are vector drawings: curves are line segments ("l"), scatter points are marker XObjects ("Do").
    assert _operators(reader, 0)[b"l"] < 10  # the title page is text
    # (a text page draws a handful: the title page's rules; a one-seed sinusoid Figure 3 page draws ~140)
    assert all(_operators(reader, index[i])[b"l"] > 100 for i in range(2, 9))
    points = len(np.load(figure_runs["fonts"] / "cml-s0" / "features.npz")["labels"])
    assert _operators(reader, index[9])[b"Do"] == 6 * points  # Figure 4: every query in each of the six panels
    assert "support points" in texts[2] and "ground truth" in texts[2]
    for ab, cd in ((texts[3], texts[4]), (texts[5], texts[6]), (texts[7], texts[8])):
        assert "outer step" in ab and "cos(∇ψ L_meta, ∇ψ γL_co)" in ab and "Theorem 3.2" in ab
        assert "‖∇ψ L‖₂" in cd and "‖∇ψ L_S‖₂" in cd and "head input" in cd and "head output" in cd
    # The fonts sweep has CL runs: Figure 3 draws them in (b), (c) and (d), and its legend lists them.
    assert "Methods: CL (seeds 0,1); CML (seeds 0,1)" in texts[3]
    assert "Methods: MAML (seeds 0,1); CL (seeds 0,1); CML (seeds 0,1)" in texts[4]
    assert "MAML noisy-MAML CL CML" in texts[3] or "MAML CL noisy-MAML CML" in texts[3], texts[3][-400:]
    assert "Missing: MAML + random co-learner (method random)" in texts[3]
    assert "t-SNE 1" in texts[9] and "silhouette" in texts[9] and "query class" in texts[9]
    assert "CML† (official code)" in texts[10] and "params (train)" in texts[10] and "per seed" in texts[10]
    assert "No published value matches fonts, 5-way 1-shot (Table 4 reports miniimagenet)" in texts[10]
    claims = " ".join(texts[13:])
    assert "The paper's claims (Section 4.4, Figure 3)" in claims and "The suite's readings" in claims
    assert "CML converges to better parameters than MAML with a random co-learner" in claims
    assert "Source: Figure 3b, Section 4.4" in claims and "single seed: not a claim" in claims
    assert "seeds: 0, 1" in claims and "pairing: by seed" in claims


def test_missing_dynamics_page_names_records_and_command(figure_runs, tmp_path):
    bare = tmp_path / "sin-bare"
    shutil.copytree(figure_runs["sin"], bare,
                    ignore=shutil.ignore_patterns("dynamics.jsonl", "representations.json", "checkpoint.pt"))
    out = write_report([bare], tmp_path / "bare.pdf")
    texts = _texts(out)
    missing = [t for t in texts if "Figure 3 (a)-(d): learning dynamics, sinusoid, 10-shot: not available" in t]
    assert len(missing) == 1
    page = missing[0]
    assert "records missing" in page and "has no dynamics.jsonl" in page and "--record-interval" in page
    # The command that wrote the runs, as recorded (the copy keeps the original's command.json): no other.
    (entry,) = records.read_commands(bare)
    assert f"The runs were written by {records.command_text(entry)}" in page
    assert page.count("python -m cml") == 1
    # The sinusoid fits remain (fits.npz is present); no image task: Figure 4 says what it needs.
    assert any("Figure 2: sinusoid regression" in t for t in texts)
    assert any("Figure 4: t-SNE (needs an image task): not available" in t and "--task fonts" in t for t in texts)
    claims = " ".join(t for t in texts if "Claims" in t)
    assert "missing records" in claims and "UNDECIDED" in claims


def test_report_without_runs_fails_clearly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoRunsError, match="no run folder"):
        write_report([tmp_path / "empty"], tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.pdf")]) == 2
    assert "error: no run folder" in capsys.readouterr().err


def test_report_cli_writes_the_pdf(figure_runs, tmp_path, capsys):
    out = tmp_path / "cli.pdf"
    assert main(["report", str(figure_runs["sin5"]), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    texts = _texts(out)
    assert REPORT_TITLE in texts[0] and any("Figure 2: sinusoid regression" in t for t in texts)


def test_unfinished_run_gives_a_missing_table_page(figure_runs, tmp_path):
    partial = tmp_path / "sin5"
    shutil.copytree(figure_runs["sin5"], partial, ignore=shutil.ignore_patterns("checkpoint.pt"))
    (partial / "cml-s0" / "test.json").unlink()
    texts = _texts(write_report([partial], tmp_path / "partial.pdf"))
    table = next(t for t in texts if "Table 4: parameters and performance, sinusoid, 5-shot: not available" in t)
    assert "cml-s0 has no test.json: the run has not finished" in table
    assert any("Figure 2: sinusoid regression" in t for t in texts)  # drawn from fits.npz, still there


def test_every_page_has_the_same_size(full_report):
    sizes = {(round(float(p.mediabox.width)), round(float(p.mediabox.height)))
             for p in pypdf.PdfReader(str(full_report)).pages}
    assert sizes == {(595, 842)}  # A4 portrait, text pages and figures alike


def test_a_two_seed_report_prints_no_interval_across_seeds(figure_runs, tmp_path):
    import re

    # Every method of the fonts sweep has seeds 0 and 1: the policy allows no interval across seeds.
    texts = _texts(write_report([figure_runs["fonts"]], tmp_path / "two.pdf"))
    # The intervals that may remain are each run's own, over its tasks: per-seed cells "s0: 56.80 ± 10.04"
    # (results, Table 4) and t-SNE silhouettes "(95% CI over tasks)". Nothing else carries a ±.
    own = re.compile(r"s\d+: [-\d.]+ ± [\d.]+|: [-\d.]+ ± [\d.]+ \(95% CI over tasks\)"
                     r"|\(± 95% CI over its test tasks\)|[-+\d.]+ ± [\d.]+ points over its \d+ test tasks")
    for i, text in enumerate(texts):
        assert "±" not in own.sub("", text), (i, own.sub("", text)[:400])
        assert "across 2 seeds" not in text
    claims = " ".join(t for t in texts if "Claims: why CML works" in t)
    # The paper's eight claims, the suite's three readings and Table 1's "CML improves MAML" (the sweep has MAML
    # alone and with CML); every one but 3a-random (the sweep has no random co-learner) has its two seeds shown.
    assert claims.count("UNDECIDED") == 12 and claims.count("fewer than 3: not a claim") == 11
    assert "CML improves MAML" in claims
    fig3 = next(t for t in texts if "Figure 3 (a), (b): learning dynamics" in t and "outer step" in t)
    assert "fewer than 3 seeds: each seed shown, no interval across seeds" in fig3


def test_runs_without_a_recorded_command_say_so_and_name_their_config(figure_runs, tmp_path):  # noqa: F811
    # As a folder written before cml recorded its commands: nothing is made up in place of the command.
    old = tmp_path / "sin"
    shutil.copytree(figure_runs["sin"], old, ignore=shutil.ignore_patterns(
        "checkpoint.pt", "dynamics.jsonl", records.COMMAND))
    texts = _texts(write_report([old], tmp_path / "old.pdf"))
    said = f"not recorded for {old} (it has no command.json: written before cml recorded its commands, or from " \
           f"Python); its config: {old / 'sweep.json'}"
    assert f"command: {said}" in texts[0]
    missing = next(t for t in texts if "Figure 3 (a)-(d): learning dynamics, sinusoid, 10-shot: not available" in t)
    assert f"The runs were written by {said}" in missing and "python -m cml sweep" not in missing
    # A single run folder names its config.json.
    run = tmp_path / "run"
    shutil.copytree(figure_runs["sin5"] / "cml-s0", run, ignore=shutil.ignore_patterns("checkpoint.pt"))
    assert f"its config: {run / 'config.json'}" in _texts(write_report([run], tmp_path / "run.pdf"))[0]


def test_a_damaged_command_record_stops_the_report_naming_it(figure_runs, tmp_path, capsys):  # noqa: F811
    sweep = tmp_path / "sin5"
    shutil.copytree(figure_runs["sin5"], sweep, ignore=shutil.ignore_patterns("checkpoint.pt"))
    (sweep / records.COMMAND).write_text('{"commands": [{"argv": "sweep --task sinusoid"}]}')
    assert main(["report", str(sweep), "-o", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err
    assert f"error: {sweep / records.COMMAND}: is not a list of commands" in err and "Traceback" not in err
    assert not (tmp_path / "r.pdf").exists()


def test_a_one_run_report_draws_what_it_can_numbers_its_pages_and_suggests_agreeing_commands(figure_runs, tmp_path):
    out = write_report([figure_runs["fonts"] / "maml-s0"], tmp_path / "one.pdf")
    texts = _texts(out)
    # Every page numbered, in order.
    assert all(t.endswith(f"page {i} of {len(texts)}") or f"page {i} of {len(texts)}" in t
               for i, t in enumerate(texts, 1))
    # One MAML run: every figure draws it (the methods it lacks named in the panels), none is "not available".
    assert not [t[:80] for t in texts if "not available" in t]
    assert any("Figure 4: t-SNE of head-input features" in t and "Missing: cml (method cml)" in t for t in texts)
    # Every suggested command is the runs' own sweep command with another --methods: the same --steps (6) and
    # settings, never a preset default the runs did not use.
    (entry,) = records.read_commands(figure_runs["fonts"])
    suggested = [line for t in texts for line in t.split("python -m cml ")[1:]]
    assert suggested
    for command in suggested:
        if command.startswith("sweep "):
            assert "--steps 6" in command and "--filters 16" in command, command
    # The training time says what it is: wall clock, the recorded thread count, not a benchmark.
    results = next(t for t in texts if "Results: test performance per setting" in t)
    assert f"with {entry['threads']} torch thread" in results and "shared machine" in results
    assert "wall clock" in results and "not a benchmark" in results
    # One seed's value is not called a mean across seeds.
    assert "one seed's value" in results and "mean across seeds" not in results


def test_figure_2s_suggested_command_is_the_runs_own(figure_runs, tmp_path):
    from figures.report import _command_for_input_error
    from figures.runs import find_runs

    alone = tmp_path / "sin-maml"
    shutil.copytree(figure_runs["sin"], alone, ignore=shutil.ignore_patterns("cml-s*", "noisy-maml-s*",
                                                                            "checkpoint.pt"))
    command = _command_for_input_error("Figure 2: sinusoid fits", find_runs([alone]))
    (entry,) = records.read_commands(alone)
    assert command == records.command_text({**entry, "argv": [
        a if entry["argv"][i - 1] != "--methods" else "cml" for i, a in enumerate(entry["argv"])]})
    assert "--steps 30" in command
    fonts = _command_for_input_error("Figure 4: t-SNE (needs an image task)", find_runs([alone]))
    assert "--task fonts" in fonts and "--seeds 0,1" in fonts and "--record-interval 3" in fonts
    assert _command_for_input_error("Figure 4: t-SNE, fonts", find_runs([figure_runs["fonts"]])) is None
