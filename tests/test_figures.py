"""Figures, Table 4 and the claims, drawn from run folders of short real sweeps (and synthetic records).

The session fixture ``figure_runs`` (tests/conftest.py) trains tiny sweeps once (sinusoid at 10 and 5 shots; the
font-glyph data set, which needs no download) and is shared with ``test_report.py`` and ``test_tensorboard.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer

from analysis.stats import mean_ci95
from cml.errors import FigureInputError
from figures import claims as claims_mod
from figures import fig2_sinusoid, fig3_dynamics, fig4_tsne, style, table4
from cml import records
from figures.runs import Cell, MissingRecordError, NoRunsError, Run, command_lines, find_runs, group_by_method, \
    group_by_setting

# The cells of the fixture's sweeps (tests/conftest.py), all on MAML: figures key on (base, method), not on
# folder names.
MAML, NOISY, MORE, CL, CML = (Cell("maml", m) for m in ("none", "noisy", "more", "cl", "cml"))

def _copy_without(src: Path, dst: Path, drop: tuple[str, ...]) -> Path:
    """A copy of a sweep or run folder without the files named in ``drop`` (in every run folder)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop, "checkpoint.pt"))
    return dst


def _line_labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


# -- runs: discovery, grouping, errors ---------------------------------------------------------------------


def test_find_runs_from_sweeps_parents_and_run_folders(figure_runs):
    runs = find_runs([figure_runs["sin"]])
    assert sorted((r.cell.variant, r.seed) for r in runs) == sorted(
        (m, s) for m in ("maml", "noisy-maml", "cml") for s in (0, 1))
    # The sweep named the methods as older records do (maml, noisy-maml): read as methods on the MAML base.
    assert {r.cell for r in runs} == {MAML, NOISY, CML} and {r.cell.method for r in runs} == {"none", "noisy", "cml"}
    # A parent of sweeps finds all of them; a sweep given twice (and one of its runs) counts once.
    everything = find_runs([figure_runs["sin"].parent, figure_runs["sin"], figure_runs["sin"] / "cml-s0"])
    assert len(everything) == 6 + 2 + 10
    settings = group_by_setting(everything)
    assert [s.label for s in settings] == ["fonts, 5-way 1-shot", "sinusoid, 5-shot", "sinusoid, 10-shot"]
    by_method = group_by_method(settings[next(iter(settings))])
    assert list(by_method) == [MAML, NOISY, MORE, CL, CML]
    assert [r.seed for r in by_method[CML]] == [0, 1]
    with pytest.raises(FigureInputError, match="different settings"):
        group_by_method(everything)


def test_find_runs_errors_name_the_folder(tmp_path, figure_runs):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_runs([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoRunsError, match="no run folder"):
        find_runs([tmp_path / "empty"])
    run = Run.load(figure_runs["sin"] / "maml-s0")
    with pytest.raises(MissingRecordError, match=r"maml-s0 has no features.npz: sinusoid runs write fits.npz"):
        run.features()
    bare = _copy_without(figure_runs["sin"] / "cml-s0", tmp_path / "bare", ("dynamics.jsonl",))
    with pytest.raises(MissingRecordError, match=r"bare has no dynamics.jsonl: train with --record-interval"):
        Run.load(bare).dynamics()


def test_duplicate_seed_warns_and_keeps_first(tmp_path, figure_runs):
    copy = _copy_without(figure_runs["sin"] / "cml-s0", tmp_path / "again", ())
    runs = [Run.load(figure_runs["sin"] / "cml-s0"), Run.load(copy)]
    with pytest.warns(UserWarning, match="repeats cml seed 0"):
        assert group_by_method(runs)[CML][0].path == runs[0].path


def test_older_records_are_read_in_one_place(tmp_path):
    # A config.json from before base learners existed: no base, the method named as on MAML.
    for method, cell in (("maml", MAML), ("noisy-maml", NOISY), ("more-maml", MORE), ("cml", CML)):
        folder = tmp_path / method
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"method": method, "task": "fonts", "seed": 0, "shots": 1}))
        run = Run.load(folder)
        assert run.cell == cell and run.base == "maml" and run.cell.variant == method
    folder = tmp_path / "boil-maml"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"base": "boil", "method": "noisy-maml", "task": "fonts",
                                                     "seed": 0, "shots": 1}))
    with pytest.raises(records.RunFolderError, match=r"config.json: method 'noisy-maml' names a method on MAML"):
        Run.load(folder)
    (folder / "config.json").write_text(json.dumps({"method": "reptile", "task": "fonts", "seed": 0, "shots": 1}))
    with pytest.raises(records.RunFolderError, match=r"unknown method 'reptile'.*another version of cml"):
        Run.load(folder)


def test_cells_sort_label_and_name_from_the_tables():
    boil = Cell("boil", "cml")
    assert (boil.label, boil.variant, str(boil)) == ("BOIL + CML", "boil_cml", "boil_cml")
    assert (NOISY.label, NOISY.variant, MAML.label, CML.label) == ("noisy-MAML", "noisy-maml", "MAML", "CML")
    assert sorted([boil, CML, Cell("boil", "none"), CL, MAML, NOISY], key=lambda c: c.sort_key) == [
        MAML, NOISY, CL, CML, Cell("boil", "none"), boil]
    with pytest.raises(ValueError, match="unknown method 'noisy-maml'"):
        Cell("maml", "noisy-maml")  # older names are read by figures.runs.cell_of, not by Cell


def test_the_command_lines_are_the_recorded_ones(figure_runs, tmp_path):
    runs = find_runs([figure_runs["fonts"]])
    (entry,) = records.read_commands(figure_runs["fonts"])
    assert entry["argv"][:2] == ["sweep", "--task"] and entry["argv"][-2:] == ["--out", str(figure_runs["fonts"])]
    assert entry["config"] == records.read_json(figure_runs["fonts"] / records.SWEEP)["base"]
    assert {"cml_version", "torch_version", "threads", "time", "cwd"} <= set(entry)
    assert command_lines(runs) == ["python -m cml " + " ".join(entry["argv"])]
    # A folder written before commands were recorded: said so, with its config, and no command is made up.
    old = tmp_path / "old"
    shutil.copytree(figure_runs["sin5"], old, ignore=shutil.ignore_patterns("checkpoint.pt", records.COMMAND))
    (line,) = command_lines(find_runs([old]))
    assert line.startswith(f"not recorded for {old} (it has no command.json") and line.endswith(f"{old / 'sweep.json'}")


# -- style -------------------------------------------------------------------------------------------------


def test_methods_differ_in_colour_and_in_grayscale_cues():
    styles = [*style.METHOD_LOOKS.values(), style.DAGGER_LOOK]
    assert len({s.colour for s in styles}) == len(styles)
    assert len({s.marker for s in styles}) == len(styles)
    assert len({str(s.linestyle) for s in styles}) == len(styles)
    assert len({s.hatch for s in styles}) == len(styles)
    # MAML and CML, drawn together in every figure, also differ in lightness.
    lum = {c: float(np.dot(to_rgb(style.method_style(c).colour), (0.299, 0.587, 0.114))) for c in (MAML, CML)}
    assert abs(lum[MAML] - lum[CML]) > 0.05
    # A cell on another base takes its method's look, and its own name.
    boil = style.method_style(Cell("boil", "cml"))
    assert (boil.colour, boil.marker, boil.label) == (style.method_style(CML).colour, "s", "BOIL + CML")
    assert style.label(CML, dagger=True) == "CML†" and style.method_style(CML, dagger=True).colour == "#CC79A7"


def test_a_method_without_a_look_gets_a_fixed_distinct_one(monkeypatch):
    from cml.methods import METHOD_TABLE, Method

    # Two methods added to the table after the looks were picked: no KeyError, a look each from the fallback
    # cycle, in table order (so the same in every figure and run), unlike every hand-picked look.
    monkeypatch.setitem(METHOD_TABLE, "proto", Method("proto", "Proto"))
    monkeypatch.setitem(METHOD_TABLE, "rand", Method("rand", "Rand", co_learner=True))
    proto, rand = style.method_style(Cell("maml", "proto")), style.method_style(Cell("boil", "rand"))
    assert (proto.colour, proto.marker) == (style.FALLBACK_LOOKS[0].colour, style.FALLBACK_LOOKS[0].marker)
    assert (rand.colour, rand.marker) == (style.FALLBACK_LOOKS[1].colour, style.FALLBACK_LOOKS[1].marker)
    assert proto.label == "MAML + Proto" and rand.label == "BOIL + Rand"
    picked = [*style.METHOD_LOOKS.values(), style.DAGGER_LOOK]
    fallback = list(style.FALLBACK_LOOKS)
    for attr in ("marker", "linestyle", "hatch"):
        values = [str(getattr(look, attr)) for look in picked + fallback]
        assert len(set(values)) == len(values), attr
    assert style.line_kwargs(Cell("maml", "proto"), 16)["markevery"] == 2


def test_save_writes_png_and_pdf(tmp_path, figure_runs):
    fig = table4.figure([figure_runs["sin"]])
    paths = style.save(fig, tmp_path / "out" / "table")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"
    import pypdf

    assert (pypdf.PdfReader(str(paths[1])).metadata.title
            == "Table 4: parameters and test performance, sinusoid, 10-shot")


# -- Figure 2 ----------------------------------------------------------------------------------------------


def test_fig2_columns_per_shots_rows_per_curve(figure_runs):
    fig = fig2_sinusoid.figure([figure_runs["sin"], figure_runs["sin5"], figure_runs["fonts"]], show_before=True)
    axes = fig.axes
    assert len(axes) == 6  # 3 curves x 2 shots values; fonts runs are ignored
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("5 shots, test curve 1") and titles[1].startswith("10 shots, test curve 1")
    assert all("MSE: MAML" in t and "CML" in t for t in titles)
    for ax in axes:
        assert _line_labels(ax) == ["ground truth", "MAML before adaptation", "MAML after adaptation",
                                    "CML before adaptation", "CML after adaptation"]
        support = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(support) == 1
    assert len(axes[0].collections[0].get_offsets()) == 5 and len(axes[1].collections[0].get_offsets()) == 10
    assert axes[-1].get_xlabel() == "x" and axes[0].get_ylabel() == "y"
    assert "Figure 2" in fig.get_suptitle()
    assert fig.legends and "support points" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_fig2_one_shots_value_is_one_row_and_dagger_optional(figure_runs):
    fig = fig2_sinusoid.figure([figure_runs["sin"]], curves=[0, 2], show_dagger=True, seed=1)
    assert len(fig.axes) == 2
    assert "CML† (φ) after adaptation" in _line_labels(fig.axes[0])
    assert "seed 1" in fig.get_suptitle()
    with pytest.raises(FigureInputError, match="no noisy-maml run at 5 shots"):
        fig2_sinusoid.figure([figure_runs["sin5"]], methods=(MAML, NOISY))
    with pytest.raises(FigureInputError, match="needs sinusoid runs"):
        fig2_sinusoid.figure([figure_runs["fonts"]])
    with pytest.raises(FigureInputError, match="curves \\[3\\] are not recorded"):
        fig2_sinusoid.figure([figure_runs["sin"]], curves=[3])


# -- Figure 3 ----------------------------------------------------------------------------------------------


def test_band_mean_ci_and_smoothing():
    a = {1: 1.0, 2: 2.0, 3: 3.0, 4: float("nan")}
    b = {1: 3.0, 2: 4.0, 3: 5.0, 4: 6.0}
    bd = fig3_dynamics.band([a, b])
    assert list(bd.steps) == [1, 2, 3] and bd.seeds == 2  # step 4 lacks a finite value in seed a
    # Two seeds: the mean and each seed's curve, and no interval (the policy of figures.summary).
    assert bd.mean[0] == pytest.approx(2.0) and np.isnan(bd.lo).all() and np.isnan(bd.hi).all()
    assert bd.per_seed.tolist() == [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]
    three = fig3_dynamics.band([a, b, {1: 2.0, 2: 2.5, 3: 3.5}])
    m, ci = mean_ci95([1.0, 3.0, 2.0])
    assert three.mean[0] == pytest.approx(m) and three.hi[0] - three.mean[0] == pytest.approx(ci)
    smooth = fig3_dynamics.band([b], smooth=2)
    assert list(smooth.steps) == [2, 3, 4] and list(smooth.mean) == [3.5, 4.5, 5.5]
    assert np.isnan(smooth.lo).all()
    own = fig3_dynamics.band([b], own_ci=[{1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5}])
    assert list(own.hi - own.mean) == [0.5] * 4
    with pytest.raises(FigureInputError, match="share no recorded step"):
        fig3_dynamics.band([{1: 1.0}, {2: 1.0}])


def test_fig3_image_panels_and_content(figure_runs):
    first, second = fig3_dynamics.pages([figure_runs["fonts"]])
    # Panels in reading order, two per page: a, b, then c, d.
    assert [sub.get_suptitle()[:3] for sub in first.subfigs] == ["(a)", "(b)"]
    assert [sub.get_suptitle()[:3] for sub in second.subfigs] == ["(c)", "(d)"]
    acc = _plot_axes(_panel(first, "a"))[0]
    assert acc.get_title() == "(a) validation accuracy"
    assert _line_labels(acc) == ["MAML", "noisy-MAML", "CML"]
    assert acc.get_ylabel() == "validation accuracy (%)" and acc.get_xlabel() == "outer step"
    # 2 seeds: no interval band; each seed drawn as its own thin line (3 methods x 2 seeds).
    assert not any(isinstance(c, PolyCollection) for c in acc.collections)
    assert sum(line.get_label() == "_seed" for line in acc.get_lines()) == 6
    b_axes = _plot_axes(_panel(first, "b"))
    assert [ax.get_title() for ax in b_axes][-1] == "block4: the paper's panel"
    for ax in b_axes:
        assert _line_labels(ax) == ["CL", "CML"]  # the sweep's CL runs are drawn beside CML
        assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())
    assert b_axes[0].get_ylabel() == "cos(∇ψ L_meta, ∇ψ γL_co)"
    c_axes = _plot_axes(_panel(second, "c"))
    assert len(c_axes) == 8
    for ax in c_axes:
        assert _line_labels(ax) == ["MAML", "CL", "CML"]
        # Each recorded step of 6 (record interval 2) is a point of the norm curves; ticks are whole steps.
        assert list(ax.get_lines()[-1].get_xdata()) == [2, 4, 6]
        assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_title()
    cka = _plot_axes(_panel(second, "d"))[0]
    assert [t.get_text() for t in cka.get_xticklabels()] == ["block1", "block2", "block3", "block4\n= head input",
                                                             "head output"]
    assert not [c for c in cka.containers if isinstance(c, BarContainer)]  # a dot plot: its axis need not hold 0
    points = np.concatenate([c.get_offsets()[:, 1] for c in cka.collections])
    lo, hi = cka.get_ylim()
    assert lo >= points.min() - 0.1 * (points.max() - points.min())  # the axis starts at the data
    assert _plot_axes(_panel(second, "d"))[1].get_title() == "debiased CKA per layer"
    # Every mark is in the legend: the methods, and what a thin line / open marker is.
    legend = [t.get_text() for t in first.legends[0].get_texts()]
    assert legend[:4] == ["MAML", "noisy-MAML", "CL", "CML"] and any("one seed" in t for t in legend)
    assert "Figure 3 (a), (b): learning dynamics, fonts, 5-way 1-shot" in first.get_suptitle()
    assert "fewer than 3 seeds" in first.get_suptitle()
    # The sweep has no random co-learner: panel (a) names it with the command that adds it to this sweep.
    text = " ".join(_all_text(first).split())
    assert "Missing: MAML + random co-learner (method random): train it with python -m cml sweep" in text
    assert "--methods random" in text and f"--out {figure_runs['fonts']}" in text


def test_fig3_cka_points_are_the_seeds_and_their_mean(figure_runs):
    runs = find_runs([figure_runs["fonts"]])
    summary = fig3_dynamics.cka_summary(group_by_method(runs)[CML])
    values = [Run.load(figure_runs["fonts"] / f"cml-s{s}").representations()["cka"]["block1"]["mean"] for s in (0, 1)]
    mean, ci, n, per_seed = summary["block1"]
    assert mean == pytest.approx(np.mean(values)) and n == 2 and per_seed == values and np.isnan(ci)
    fig = fig3_dynamics.figure(runs, debiased_cka=False, methods=[MAML, CML], panels="d")
    cka = next(ax for ax in fig.axes if ax.get_title() == "CKA per layer")
    # At block1 (x = 0), CML's marks (right of MAML's) are its two seeds and their mean; no error bar.
    marks = np.concatenate([c.get_offsets() for c in cka.collections])
    cml_marks = sorted(y for x, y in marks if 0 < x < 0.5)
    assert cml_marks == pytest.approx(sorted([*values, np.mean(values)]))
    assert not cka.containers  # no error bars with 2 seeds
    assert f"{np.mean(values):.3f}" in [t.get_text() for t in cka.texts]  # the value printed beside the mean
    assert len(_plot_axes(fig)) == 1  # panel (d) alone, without the debiased CKA


def _cka_run(folder: Path, method: str, seed: int, cka: dict[str, float]) -> Run:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": method, "task": "fonts", "seed": seed, "shots": 1,
                                                     "ways": 5}))
    (folder / "representations.json").write_text(json.dumps(
        {"layers": list(cka), "cka": {k: {"mean": v, "ci95": 0.01} for k, v in cka.items()}}))
    return Run.load(folder)


def test_fig3_cka_interval_with_three_seeds_is_cut_at_one(tmp_path):
    from matplotlib.figure import Figure

    runs = {c: [_cka_run(tmp_path / f"{c}-s{s}", c.method, s, {"block1": v, "flat": 0.9 + 0.01 * s})
                for s, v in enumerate(values)]
            for c, values in ((MAML, (0.999, 0.99, 0.9999)), (CML, (0.95, 0.97, 0.96)))}
    ax = Figure().subplots()
    fig3_dynamics._panel_d(ax, runs, [MAML, CML], debiased=False)
    mean, ci = mean_ci95([0.999, 0.99, 0.9999])
    assert mean + ci > 1  # the raw interval passes CKA's maximum ...
    tops = [seg[:, 1].max() for c in ax.collections if hasattr(c, "get_segments") for seg in c.get_segments()]
    assert max(tops) == pytest.approx(1.0)  # ... the drawn one stops at it
    assert max(ax.get_yticks()) <= 1.0


def test_fig3_sinusoid_smoothing_label_and_blocks(figure_runs):
    fig = fig3_dynamics.figure([figure_runs["sin"]], smooth=3, log_norm=True)
    by_title = {ax.get_title(): ax for ax in _plot_axes(fig)}
    assert [sub.get_suptitle()[:3] for sub in fig.subfigs] == ["(a)", "(b)", "(c)", "(d)"]
    assert by_title["(a) validation MSE"].get_ylabel() == "validation MSE after adaptation"
    assert by_title["(a) training loss"].get_ylabel() == "training query loss (MSE)\n(rolling mean, 3 records)"
    b_axes = _plot_axes(_panel(fig, "b"))
    assert [ax.get_title() for ax in b_axes] == ["layer1", "layer2: the paper's panel"]  # MLP: two layers
    assert b_axes[0].get_ylabel() == "cos(∇ψ L_meta, ∇ψ γL_co)\n(rolling mean, 3 records)"
    assert b_axes[0].get_ylim() == pytest.approx((-1.05, 1.05))
    assert all(ax.get_yscale() == "log" for ax in _plot_axes(_panel(fig, "c")))


def test_fig3_missing_dynamics_names_folder_and_flag(tmp_path, figure_runs):
    bare = _copy_without(figure_runs["sin"], tmp_path / "sin-bare", ("dynamics.jsonl",))
    with pytest.raises(MissingRecordError, match=r"cml-s0 has no dynamics.jsonl: train with --record-interval"):
        fig3_dynamics.figure([bare])
    with pytest.raises(FigureInputError, match="one setting at a time"):
        fig3_dynamics.figure([figure_runs["sin"], figure_runs["sin5"]])


# -- Figure 4 ----------------------------------------------------------------------------------------------


def test_fig4_rows_columns_classes_and_silhouettes(figure_runs):
    fig = fig4_tsne.figure([figure_runs["fonts"]])
    axes = _plot_axes(fig)
    assert len(axes) == 6  # MAML, CL (the sweep has it), CML: before and after adaptation
    assert [ax.get_title() for ax in axes] == ["MAML, before adaptation", "MAML, after adaptation",
                                              "CL, before adaptation", "CL, after adaptation",
                                              "CML, before adaptation", "CML, after adaptation"]
    for ax in axes:
        assert len([c for c in ax.collections if isinstance(c, PathCollection)]) == 5  # one per class
        texts = [t.get_text() for t in ax.texts]
        assert any(t.startswith("silhouette ") and "(this task)" in t and "mean of 4 tasks" in t for t in texts)
    reps = Run.load(figure_runs["fonts"] / "cml-s0").representations()
    assert f"silhouette {reps['tsne_task']['silhouette_after']:.3f}" in axes[5].texts[0].get_text()
    # Before and after of one run share one t-SNE map, hence one set of axes.
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert axes[4].get_shared_y_axes().joined(axes[4], axes[5])
    assert not axes[0].get_shared_x_axes().joined(axes[0], axes[2])
    feats = Run.load(figure_runs["fonts"] / "maml-s0").features()
    assert sum(len(c.get_offsets()) for c in axes[0].collections) == len(feats["labels"])
    # The caption counts the map's own queries and says the runs used another number.
    points = len(feats["labels"])
    assert f"{points} query points, {points // 5} per class, drawn for this map" in fig.get_suptitle()
    assert "trained and tested with 5 per class" in fig.get_suptitle()
    caption = " ".join(_all_text(fig).split())
    assert "Records: features.npz" in caption and "Checks the paper's Figure 4" in caption
    assert f"Runs: {figure_runs['fonts']}" in caption and "MAML seed 0" in caption


def test_fig4_refuses_sinusoid_and_missing_seed(figure_runs):
    with pytest.raises(FigureInputError, match="needs an image task"):
        fig4_tsne.figure([figure_runs["sin"]])
    with pytest.raises(FigureInputError, match="seed 5 is not trained"):
        fig4_tsne.figure([figure_runs["fonts"]], seed=5)
    fig = fig4_tsne.figure([figure_runs["fonts"]], methods=(MAML, MORE, CML), seed=1)
    assert len(_plot_axes(fig)) == 6 and "seed 1" in fig.get_suptitle()


# -- Table 4 -----------------------------------------------------------------------------------------------


def test_table4_rows_params_and_intervals(figure_runs):
    rows = table4.rows([figure_runs["fonts"]])
    # Every row of the paper's Table 4 whose key the runs' test.json hold (each protocol's, cml.meta.PROTOCOLS).
    assert [(r.cell, r.dagger) for r in rows] == [(MAML, False), (MORE, False), (CL, False), (CML, False),
                                                  (CL, True), (CL, True), (CML, True), (CML, True)]
    assert [r.label for r in rows] == ["MAML", "More-MAML", "CL⋆ (meta-learner)", "CML", "CL† (co-learner)",
                                       "CL† without adaptation", "CML† (official code)", "CML† (Eq. 9)"]
    assert [r.key for r in rows] == ["acc", "acc", "acc", "acc", "acc_dagger", "acc_dagger_noadapt", "acc_dagger",
                                     "acc_dagger_eq9"]
    agg = json.loads((figure_runs["fonts"] / "aggregate.json").read_text())
    maml = rows[0]
    assert maml.mean == pytest.approx(agg["maml"]["acc"]["mean"]) and maml.seeds == 2
    # Two seeds: no interval across seeds, in the table as in aggregate.json; each seed is listed.
    assert np.isnan(maml.ci95) and agg["maml"]["acc"]["ci95"] is None
    assert maml.value_text() == f"{100 * maml.mean:.2f}" and maml.seed_text().count("s") == 2
    assert rows[1].params_train == pytest.approx(agg["cml"]["params"]["train"], rel=0.05)  # parameter-matched
    single = table4.rows([figure_runs["sin5"]])
    test = json.loads((figure_runs["sin5"] / "maml-s0" / "test.json").read_text())
    # One seed: its value, with the run's own interval over its test tasks in the per-seed column.
    assert np.isnan(single[0].ci95) and single[0].values.task_ci[0] == pytest.approx(test["mse_ci95"])
    assert single[0].seed_text() == f"s0: {test['mse']:.4f} ± {test['mse_ci95']:.4f}"
    cml, dagger = rows[3], rows[6]
    params = agg["cml"]["params"]
    assert (cml.params_train, cml.params_test) == (params["train"], params["test"])
    assert dagger.params_test == params["test_dagger"]
    assert dagger.mean == pytest.approx(agg["cml"]["acc_dagger"]["mean"])
    assert cml.params_test < cml.params_train  # the co-learner is dropped at test time


def test_table4_from_aggregate_matches_runs(figure_runs):
    from_runs = {(r.cell, r.dagger): r for r in table4.rows([figure_runs["fonts"]], methods=[MAML, NOISY, CML])}
    from_agg = {(r.cell, r.dagger): r for r in table4.rows_from_aggregate(figure_runs["fonts"],
                                                                         methods=[MAML, NOISY, CML])}
    assert set(from_runs) == set(from_agg) == {(MAML, False), (NOISY, False), (CML, False), (CML, True)}
    assert [(r.cell, r.dagger) for r in table4.rows_from_aggregate(figure_runs["fonts"])] == [
        (r.cell, r.dagger) for r in table4.rows([figure_runs["fonts"]])]  # the same default rows
    for m in from_runs:
        a, b = from_runs[m], from_agg[m]
        assert (a.label, a.params_train, a.params_test, a.metric) == (b.label, b.params_train, b.params_test, b.metric)
        assert dict(a.values.values) == dict(b.values.values)


def test_table4_markdown_and_figure(figure_runs):
    rows = table4.rows([figure_runs["fonts"]])
    text = table4.markdown(rows)
    lines = text.strip().splitlines()
    assert lines[0] == ("| method | params (train) | params (test) | "
                        "accuracy (%): mean across seeds (no CI: < 3 seeds) | "
                        "accuracy (%) per seed (± 95% CI over its test tasks) | seeds |")
    assert len(lines) == 2 + 8 and lines[-1].startswith("| CML† (Eq. 9) |")
    assert "**" not in text  # 2 seeds: no interval, so no win to mark
    fig = table4.figure(rows)
    table = fig.axes[0].tables[0]
    cells = table.get_celld()
    assert max(i for i, _ in cells) == 8 and cells[(8, 0)].get_text().get_text() == "CML† (Eq. 9)"
    assert tuple(fig.get_size_inches()) == pytest.approx(style.PAGE)
    sin = table4.markdown(table4.rows([figure_runs["sin"]]))
    assert "test MSE: mean across seeds (no CI: < 3 seeds)" in sin


def test_table4_shows_each_paper_row_only_when_the_records_hold_its_key(tmp_path):
    root = tmp_path / "runs"
    for seed in range(3):
        write_run(root / f"maml-s{seed}", "maml", seed, 0.60 + 0.01 * seed)
        write_run(root / f"cl-s{seed}", "cl", seed, 0.61, cos=0.5,
                  test={"acc_dagger": 0.58, "acc_dagger_noadapt": 0.21})
        write_run(root / f"cml-s{seed}", "cml", seed, 0.66, cos=0.1,
                  test={"acc_dagger": 0.67, "acc_dagger_eq9": 0.64 + 0.001 * seed})
    rows = table4.rows([root])
    assert [r.label for r in rows] == ["MAML", "CL⋆ (meta-learner)", "CML", "CL† (co-learner)",
                                       "CL† without adaptation", "CML† (official code)", "CML† (Eq. 9)"]
    assert [r.key for r in rows] == ["acc", "acc", "acc", "acc_dagger", "acc_dagger_noadapt", "acc_dagger",
                                     "acc_dagger_eq9"]
    eq9 = rows[-1]
    assert eq9.mean == pytest.approx(0.641) and eq9.params_test == 9 and "Eq. (9)" in eq9.source
    assert rows[1].params_test == 8 and rows[3].params_test == 9  # CL⋆ drops φ at test time, CL† keeps it
    assert "official code" in rows[5].source and "acc_dagger_noadapt" in rows[4].source
    # A key older records lack: its row is not shown, and the page says which and why.
    (root / "cml-s1" / "test.json").write_text(json.dumps(
        {"acc": 0.66, "acc_ci95": 0.01, "acc_dagger": 0.67, "tasks": 4, "step": 10,
         "params": {"train": 10, "test": 8, "test_dagger": 9}}))
    assert "CML† (Eq. 9)" not in [r.label for r in table4.rows([root])]
    text = " ".join(_all_text(table4.figure([root])).split())
    assert "Not shown: CML† (Eq. 9): acc_dagger_eq9 (the runs' test.json lack these keys" in text
    assert "No published value matches fonts, 5-way 1-shot (Table 4 reports miniimagenet)" in text


def test_table4_keeps_runs_of_different_configs_apart(tmp_path):
    root = tmp_path / "runs"
    for seed in range(3):
        write_run(root / f"maml-s{seed}", "maml", seed, 0.60)
        write_run(root / f"a/cml-s{seed}", "cml", seed, 0.66, cos=0.1)
        write_run(root / f"b/cml-s{seed}", "cml", seed, 0.70, cos=0.1, meta_lr=0.01)
    rows = table4.rows([root])
    # Each CML config is its own row, named by the field that differs, each over its own three seeds.
    # The field's value as the run used it: a config.json without it ran at the default (read through Config).
    assert [r.label for r in rows] == ["MAML", "CML [meta_lr=0.001]", "CML [meta_lr=0.01]"]
    assert [r.mean for r in rows[1:]] == pytest.approx([0.66, 0.70]) and all(r.seeds == 3 for r in rows)


def _paper_runs(root: Path, shots: int = 1) -> Path:
    """MiniImagenet 5-way runs of MAML, CL and CML (the paper's setting), with every Table 4 key."""
    common = dict(task="miniimagenet", ways=5, shots=shots, gamma=1.0, base="maml")
    for seed in range(3):
        write_run(root / f"maml-s{seed}", "none", seed, 0.47 + 0.001 * seed, **common)
        write_run(root / f"more-s{seed}", "more", seed, 0.48, **common)
        write_run(root / f"cl-s{seed}", "cl", seed, 0.475, cos=0.4,
                  test={"acc_dagger": 0.485, "acc_dagger_noadapt": 0.21}, **common)
        write_run(root / f"cml-s{seed}", "cml", seed, 0.495, cos=0.1,
                  test={"acc_dagger": 0.505, "acc_dagger_eq9": 0.50}, **common)
    return root


def test_the_paper_table_values_round_trip_to_the_report_pages(tmp_path):
    from cml.paper import PAPER
    from figures import paper_values
    from figures.report import results_pages

    root = _paper_runs(tmp_path / "mini")
    rows = table4.rows([root])
    page = " ".join(_all_text(table4.figure([root])).split())
    cells = " ".join(" ".join(c.get_text().get_text().split()) for ax in table4.figure([root]).axes
                     for t in ax.tables for c in t.get_celld().values())
    matched = 0
    for v in (v for v in PAPER if v.table == "4" and v.shots == 1 and v.metric != "unstated"):
        row = next((r for r in rows if r.cell.method == v.method and r.key == v.metric), None)
        if row is None:
            continue
        matched += 1
        # The published value and its ± beside the run's, and run − paper in points.
        assert f"{v.value:.2f} ± {v.ci:.2f} (T4)" in cells, v.row
        assert f"{100 * row.mean - v.value:+.2f}" in cells, v.row
    assert matched == 7  # MAML, More-MAML, CL⋆, CML, CL†, CL† without adaptation, CML†
    assert "paper (Table 4)" in cells and "No published value matches" not in page
    # The results page: the run's setting is Table 1's and Table 4's; both tables are named.
    results = {" ".join(c.get_text().get_text().split()) for fig in results_pages(find_runs([root]))
               for ax in fig.axes for t in ax.tables for c in t.get_celld().values()}
    # CML at γ = 1 is also Table 5's γ = 1.0 cell; its † line is CML†'s.
    assert {"47.44 ± 0.23 (T1,4)", "-0.34", "49.32 ± 0.37 (T1,4,5) † 50.35 ± 0.15 (T1,4)", "+0.18 † +0.15"} <= results
    # 5-shot runs match the 5-shot values, and no 1-shot one.
    five = table4.rows([_paper_runs(tmp_path / "mini5", shots=5)])
    assert five[0].paper[0].startswith("61.75 ± 0.42") and "47.44" not in " ".join(r.paper[0] for r in five)
    # A setting the paper does not report: nothing beside the runs, and the page says so.
    assert paper_values.values_for(find_runs([constructed(tmp_path / "fonts")])[0], "acc") == []


def test_table4_bolds_only_a_win_clear_of_every_other_interval():
    from figures.summary import SeedValues

    def row(cell, values):
        return table4.Row(cell, 10, 10, "acc", SeedValues(dict(enumerate(values))))

    clear = [row(MAML, [0.50, 0.52, 0.51]), row(CML, [0.70, 0.71, 0.72])]
    assert table4.best_row(clear) == 1 and table4.markdown(clear).count("**") == 2
    overlapping = [row(MAML, [0.50, 0.70, 0.60]), row(CML, [0.55, 0.75, 0.65])]
    assert table4.best_row(overlapping) is None
    two_seeds = [row(MAML, [0.50, 0.51]), row(CML, [0.90, 0.91])]
    assert table4.best_row(two_seeds) is None  # no interval: no claim of a win


# -- claims: synthetic records (deterministic, fast) ---------------------------------------------------------


def test_compare_decides_by_the_interval_across_seeds_and_counts_the_seeds_needed():
    from analysis.stats import mean_ci95, seeds_needed

    up = claims_mod.compare("acc", {0: 0.70, 1: 0.72, 2: 0.71}, {0: 0.60, 1: 0.61, 2: 0.62}, names=("CML", "R"),
                            scale=100.0, fmt=".2f", unit=" points")
    assert up.status == "supported" and up.needed is None and "CML − R +10.00 ± 2.48 points" in up.text
    down = claims_mod.compare("acc", {0: 0.60, 1: 0.61, 2: 0.60}, {0: 0.70, 1: 0.72, 2: 0.71})
    assert down.status == "opposite" and down.needed is None
    # An interval that straddles 0: the seeds a paired t-test needs for 80% power at this effect and spread.
    a, b = {0: 0.70, 1: 0.60, 2: 0.68}, {0: 0.65, 1: 0.66, 2: 0.64}
    mixed = claims_mod.compare("acc", a, b)
    diffs = [a[s] - b[s] for s in range(3)]
    assert mixed.status == "inconclusive" and mixed.needed == seeds_needed(float(np.mean(diffs)),
                                                                          float(np.std(diffs, ddof=1)))
    assert mixed.needed is not None and mixed.needed > 3
    assert mean_ci95(diffs)[1] > abs(np.mean(diffs))
    # Lower is claimed: MSE, or a cosine below CL's.
    assert claims_mod.compare("mse", {0: 0.2, 1: 0.21, 2: 0.2}, {0: 0.3, 1: 0.31, 2: 0.3}, higher=False).status \
        == "supported"
    # Against a line (b None) and as a ratio against 1.
    assert claims_mod.compare("cos", {0: 0.1, 1: 0.12, 2: 0.11}, None, line=0.0).status == "supported"
    ratio = claims_mod.compare("norm", {0: 3.0, 1: 3.3, 2: 2.9}, {0: 1.5, 1: 1.6, 2: 1.5}, kind="ratio")
    assert ratio.status == "supported" and "2.0" in ratio.short and "+" not in ratio.short
    # Fewer than 3 seeds: each seed, no interval, no verdict; one seed: that seed.
    few = claims_mod.compare("acc", {0: 0.90, 1: 0.91}, {0: 0.60, 1: 0.61})
    assert few.status == "few" and "±" not in few.text and few.needed == 3
    assert claims_mod.compare("acc", {0: 0.7}, {0: 0.6}).status == "single"
    assert claims_mod.compare("acc", {0: 0.7}, {1: 0.6}).status == "none"
    assert claims_mod.verdict([up, ratio]) == (True, None, "")
    assert claims_mod.verdict([up, down])[0] is False and claims_mod.verdict([up, down])[1] is None
    # One interval includes the line: it refutes nothing, so the claim is undecided (not contradicted).
    assert claims_mod.verdict([up, mixed])[:2] == (None, mixed.needed)
    assert claims_mod.verdict([up, few])[0] is None


def test_claim_dissimilar_gradients_threshold():
    low = {s: [0.1 + 0.01 * s, -0.05, 0.0, float("nan")] for s in range(3)}
    c = claims_mod.judge_dissimilar_gradients(low)
    assert c.supported is True and "below 0.5" in c.evidence and c.seeds == [0, 1, 2]
    high = {s: [0.8, 0.9 + 0.01 * s] for s in range(3)}
    assert claims_mod.judge_dissimilar_gradients(high).supported is False
    assert claims_mod.judge_dissimilar_gradients(high, threshold=0.95).supported is True
    single = claims_mod.judge_dissimilar_gradients({4: [0.1, 0.2, 0.0]})
    assert single.supported is None and single.seeds == [4] and "single seed" in single.evidence
    assert claims_mod.judge_dissimilar_gradients({0: [float("nan")]}).supported is None


def test_claim_larger_gradients_ratio():
    c = claims_mod.judge_larger_gradients({0: 3.0, 1: 3.3, 2: 2.9}, {0: 1.5, 1: 1.6, 2: 1.5})
    assert c.supported is True and "ratio CML/MAML 2." in c.evidence
    c = claims_mod.judge_larger_gradients({0: 1.0, 1: 1.1, 2: 1.0}, {0: 2.0, 1: 2.1, 2: 2.2})
    assert c.supported is False and "below 1" in c.evidence
    c = claims_mod.judge_larger_gradients({0: 3.0, 1: 3.3}, {0: 1.5, 1: 1.6})
    assert c.supported is None and "±" not in c.evidence and "ratio 2.00" in c.evidence
    assert claims_mod.judge_larger_gradients({0: 3.0}, {0: 1.0}).supported is None


def test_claim_lower_cka_every_layer():
    maml = {s: {"block1": 0.99, "flat": 0.95 + 0.001 * s} for s in range(3)}
    cml = {s: {"block1": 0.90 + 0.002 * s, "flat": 0.50} for s in range(3)}
    c = claims_mod.judge_lower_cka(cml, maml)
    assert c.supported is True and "head input" in c.evidence and "lower at 2 of 2 layers" in c.evidence
    cml_mixed = {s: {"block1": 0.995 + 0.001 * s, "flat": 0.5} for s in range(3)}
    c = claims_mod.judge_lower_cka(cml_mixed, maml)
    assert c.supported is False and "lower at 1 of 2 layers" in c.evidence
    assert claims_mod.judge_lower_cka({0: {"flat": 0.5}}, {0: {"flat": 0.9}}).supported is None


def test_claim_lower_cka_never_calls_a_zero_difference_lower():
    maml = {s: {"flat": 0.99990 + 0.00002 * s} for s in range(3)}
    same = claims_mod.judge_lower_cka(maml, maml)
    # A difference whose interval includes 0 refutes nothing: undecided, not contradicted.
    assert same.supported is None and "(lower)" not in same.evidence
    tiny = claims_mod.judge_lower_cka({s: {"flat": v["flat"] - 0.00004} for s, v in maml.items()}, maml)
    # A real difference of 4e-5 is printed with the decimals that show it, never as +0.000 ± 0.000.
    assert "+0.000 ± 0.000" not in tiny.evidence and "+0.00004" in tiny.evidence


BLOCKS = ("block1", "block2", "block3", "block4")


def write_run(folder: Path, method: str, seed: int, acc: float, *, cos: float | None = None, norm: float = 1.0,
              inner: float | None = 1.0, cka: dict[str, float] | None = None, per_task: list[float] | None = None,
              digest: str = "tasks-0", steps: int = 3, test: dict | None = None, **config) -> Path:
    """A constructed run folder of fonts 5-way 1-shot with known records: test accuracy ``acc``; on every recorded
    step the cosine ``cos`` at every block (None: no co-learner), outer and inner gradient norms ``norm`` and
    ``inner`` at every block (``inner`` None: a run from before the inner-loop norms); CKA per layer ``cka``; with
    ``per_task``, test_tasks.json (its mean must be ``acc``); ``test``: more keys of test.json; ``config``: fields
    of config.json (``task="miniimagenet"``)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": method, "task": "fonts", "seed": seed, "shots": 1,
                                                     "ways": 5, "steps": 10, **config}))
    (folder / "test.json").write_text(json.dumps({"acc": acc, "acc_ci95": 0.01, "tasks": 4, "step": 10,
                                                   "params": {"train": 10, "test": 8, "test_dagger": 9},
                                                   **(test or {})}))
    lines = []
    for i in range(steps):
        rec = {"step": i + 1, "grad_norm_psi": 2 * norm, "grad_norm_blocks": dict.fromkeys(BLOCKS, norm)}
        if inner is not None:
            rec.update(inner_grad_norm_psi=2 * inner, inner_grad_norm_blocks=dict.fromkeys(BLOCKS, inner))
        if cos is not None:
            rec.update(cos_psi=cos, cos_blocks=dict.fromkeys(BLOCKS, cos))
        lines.append(json.dumps(rec))
    (folder / "dynamics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "val.jsonl").write_text("".join(json.dumps({"step": i + 1, "acc": acc - 0.01 * (steps - 1 - i),
                                                          "acc_ci95": 0.02, "loss": 1.5 - acc, "loss_ci95": 0.1,
                                                          "tasks": 5}) + "\n" for i in range(steps)))
    cka = cka or {"block1": 0.99, "block2": 0.99, "block3": 0.98, "flat": 0.97, "output": 0.5}
    (folder / "representations.json").write_text(json.dumps(
        {"layers": list(cka), "tasks": 5, "cka": {k: {"mean": v, "ci95": 0.01} for k, v in cka.items()}}))
    if per_task is not None:
        (folder / records.TEST_TASKS).write_text(json.dumps({"tasks": len(per_task), "digest": digest,
                                                             "values": {"acc": per_task}}))
    return folder


#: The paper's picture, on 3 seeds: CML best, its cosine low but positive, its gradients largest, its CKA lower at
#: the last block; MAML unchanged but at the head.
PAPER_LIKE = {
    "maml": dict(acc=0.62, norm=1.0, inner=0.5, cka={"block1": 0.999, "block2": 0.998, "block3": 0.997,
                                                      "flat": 0.99, "output": 0.40}),
    "random": dict(acc=0.60, cos=0.0, norm=1.0, inner=0.5),
    "noisy-maml": dict(acc=0.61, norm=1.1, inner=0.5),
    "cl": dict(acc=0.64, cos=0.5, norm=1.2, inner=0.6, cka={"block1": 0.999, "block2": 0.99, "block3": 0.99,
                                                            "flat": 0.98, "output": 0.45}),
    "cml": dict(acc=0.70, cos=0.1, norm=3.0, inner=2.0, cka={"block1": 0.99, "block2": 0.98, "block3": 0.95,
                                                             "flat": 0.80, "output": 0.50}),
}


def constructed(root: Path, methods=PAPER_LIKE, seeds=(0, 1, 2), **overrides) -> Path:
    """Runs of ``methods`` ({name: write_run's values}), each seed nudged by a small amount so that intervals have
    a width; ``overrides`` replace one method's values ({method: {field: value}})."""
    for name, values in methods.items():
        for s in seeds:
            v = {**values, **overrides.get(name.replace("-", "_"), {})}
            jitter = 0.002 * s
            v = {**v, "acc": v["acc"] + jitter, "norm": v["norm"] * (1 + jitter),
                 "inner": None if v.get("inner") is None else v["inner"] * (1 + jitter),
                 **({"cos": v["cos"] + jitter} if v.get("cos") is not None else {})}
            write_run(root / f"{name}-s{s}", name, s, **v)
    return root


def _by_key(result) -> dict:
    return {c.key: c for c in result}


PAPER_KEYS = ["3a-random", "3a-noise", "3b-below-cl", "3b-positive", "3c-outer", "3c-inner", "3d-maml-head",
              "3d-cml-last"]


def test_every_paper_claim_is_supported_on_records_that_show_it(tmp_path):
    result = claims_mod.claims([constructed(tmp_path)])
    assert [c.key for c in result] == PAPER_KEYS + ["suite-dissimilar", "suite-larger-whole", "suite-lower-cka"]
    assert all(c.supported is True for c in result), {c.key: c.evidence for c in result if c.supported is not True}
    by = _by_key(result)
    for key in PAPER_KEYS:
        c = by[key]
        # Stated as the paper states it, with the figure and its sentence; paired by seed; the 3 seeds.
        assert c.paper and c.source.startswith(f"Figure {key[:2]}") and "\"" in c.source, key
        assert c.seeds == [0, 1, 2] and c.pairing.startswith(("by seed", "the CML seeds", "MAML's seeds")), key
        assert c.seeds_needed is None and c.setting == "fonts, 5-way 1-shot"
    assert all(not by[k].paper and by[k].source == claims_mod.SUITE for k in by if k.startswith("suite"))
    assert "converges to well-generalized parameters much faster" in by["3a-random"].source
    assert "user's Gaussian-noise baseline" in by["3a-noise"].source
    assert "block4 (last conv block)" in by["3b-below-cl"].evidence
    assert "precondition" in by["3b-positive"].evidence and "held at 100% (seed 0)" in by["3b-positive"].evidence
    assert "outer meta-gradient" in by["3c-outer"].source and "inner loop's support-set gradient" in \
        by["3c-inner"].source
    assert "interval above 1 at 4 of 4 blocks" in by["3c-inner"].evidence
    assert "higher at 4 of 4 blocks" in by["3d-maml-head"].evidence and "at least 0.99" in by["3d-maml-head"].evidence
    assert set(by["3a-random"].to_dict()) == {"key", "claim", "supported", "evidence", "seeds", "setting", "source",
                                              "pairing", "seeds_needed"}


@pytest.mark.parametrize("key, overrides", [
    ("3a-random", {"random": {"acc": 0.75}}),
    ("3a-noise", {"noisy_maml": {"acc": 0.75}}),
    ("3b-below-cl", {"cl": {"cos": 0.05}}),
    ("3b-positive", {"cml": {"cos": -0.2}}),
    ("3c-outer", {"cl": {"norm": 5.0}}),
    ("3c-inner", {"maml": {"inner": 3.0}}),
    ("3d-maml-head", {"maml": {"cka": {"block1": 0.999, "block2": 0.998, "block3": 0.997, "flat": 0.5,
                                       "output": 0.9}}}),
    ("3d-cml-last", {"cml": {"cka": {"block1": 0.99, "block2": 0.98, "block3": 0.95, "flat": 0.995,
                                     "output": 0.5}}}),
])
def test_each_paper_claim_is_not_supported_when_the_records_contradict_it(tmp_path, key, overrides):
    by = _by_key(claims_mod.claims([constructed(tmp_path, **overrides)]))
    assert by[key].supported is False, by[key].evidence
    assert "on the other side" in by[key].evidence and by[key].seeds_needed is None
    others = [k for k in PAPER_KEYS if k != key and not (key == "3d-maml-head" and k == "3d-cml-last")]
    assert all(by[k].supported is True for k in others), {k: by[k].evidence for k in others if by[k].supported}


def test_an_undecided_claim_gives_the_seeds_a_paired_t_test_needs(tmp_path):
    from analysis.stats import seeds_needed

    root = tmp_path / "runs"
    constructed(root)
    # The random co-learner's accuracy: one seed above CML, two below; CML's 0.70, 0.702, 0.704.
    for s, acc in enumerate((0.72, 0.66, 0.67)):
        (root / f"random-s{s}" / "test.json").write_text(json.dumps(
            {"acc": acc, "acc_ci95": 0.01, "tasks": 4, "step": 10, "params": {"train": 10, "test": 8}}))
    c = _by_key(claims_mod.claims([root]))["3a-random"]
    diffs = [100 * (0.70 + 0.002 * s - acc) for s, acc in enumerate((0.72, 0.66, 0.67))]
    assert c.supported is None and "includes 0" in c.evidence and c.verdict == "undecided"
    assert c.seeds_needed == seeds_needed(float(np.mean(diffs)), float(np.std(diffs, ddof=1))) > 3
    assert f"noncentral t): {c.seeds_needed}." in c.evidence


def test_claims_are_insufficient_with_two_seeds_and_name_a_missing_method_with_its_command(tmp_path):
    two = _by_key(claims_mod.claims([constructed(tmp_path / "two", seeds=(0, 1))]))
    assert all(two[k].supported is None and "fewer than 3: not a claim" in two[k].evidence for k in PAPER_KEYS)
    assert two["3a-random"].seeds_needed is not None  # two seeds give a spread to size the experiment by
    one = _by_key(claims_mod.claims([constructed(tmp_path / "one", seeds=(0,))]))
    assert all(one[k].supported is None and "single seed" in one[k].evidence for k in PAPER_KEYS)
    lacking = {k: v for k, v in PAPER_LIKE.items() if k not in ("cl", "random")}
    by = _by_key(claims_mod.claims([constructed(tmp_path / "lacking", methods=lacking)]))
    for key in ("3a-random", "3b-below-cl", "3c-outer", "3c-inner"):
        assert by[key].supported is None, key
    assert "no MAML + random co-learner run (method random); train it: python -m cml sweep" in by["3a-random"].evidence
    assert "--methods random" in by["3a-random"].evidence
    assert "no CL run (method cl)" in by["3b-below-cl"].evidence and "--methods cl" in by["3c-outer"].evidence
    # What the runs do have is still shown, and decided where it needs nothing else.
    assert "CML / MAML: block1" in by["3c-outer"].evidence and by["3b-positive"].supported is True


def test_old_records_without_the_new_readings_say_what_is_missing(tmp_path):
    # Records of before the inner-loop norms and the head-output CKA: every other reading as in PAPER_LIKE.
    old = {k: {**v, "inner": None, **({"cka": {layer: c for layer, c in v["cka"].items() if layer != "output"}}
                                       if "cka" in v else {})}
           for k, v in PAPER_LIKE.items()}
    by = _by_key(claims_mod.claims([constructed(tmp_path, methods=old)]))
    assert by["3c-inner"].supported is None and "inner_grad_norm_blocks in dynamics.jsonl" in by["3c-inner"].evidence
    assert by["3d-maml-head"].supported is None and "no CKA at the head's output" in by["3d-maml-head"].evidence
    assert by["3c-outer"].supported is True and by["3d-cml-last"].supported is True


def test_test_metric_claims_pair_by_task_where_the_runs_recorded_the_same_tasks(tmp_path):
    root = tmp_path / "runs"
    for s in range(3):
        write_run(root / f"cml-s{s}", "cml", s, 0.70, cos=0.1, per_task=[0.6, 0.8, 0.7, 0.7], digest=f"seed{s}")
        write_run(root / f"random-s{s}", "random", s, 0.60, cos=0.0, per_task=[0.5, 0.7, 0.6, 0.6],
                  digest=f"seed{s}" if s < 2 else "other")
    c = _by_key(claims_mod.claims([root]))["3a-random"]
    # Seeds 0 and 1: the same tasks, CML 10 points above on each: paired task by task (sd 0, so ± 0.00).
    assert "within each seed, by test task" in c.pairing and "seed 0 CML − MAML + random co-learner +10.00 ± 0.00" \
        in c.pairing
    assert "seed 2: different test tasks (digests differ)" in c.pairing
    # A test_tasks.json whose mean is not its test.json's is of other parameters: not paired.
    (root / "cml-s1" / records.TEST_TASKS).write_text(json.dumps({"tasks": 4, "digest": "seed1",
                                                                  "values": {"acc": [0.1, 0.1, 0.1, 0.1]}}))
    c = _by_key(claims_mod.claims([root]))["3a-random"]
    assert "seed 1: test_tasks.json is not of the parameters test.json was computed from" in c.pairing
    assert "without" not in c.pairing and "seed 0 CML" in c.pairing


def test_claims_never_pool_runs_of_different_configs(tmp_path):
    root = constructed(tmp_path / "runs")
    shutil.rmtree(root / "cml-s2")
    write_run(root / "cml-s2", "cml", 2, 0.70, cos=0.1, norm=3.0, inner=2.0, meta_lr=0.01)
    with pytest.warns(UserWarning, match=r"cml-s2 \(CML, seed 2\) not pooled with the other runs of its cell: "
                                         r"meta_lr 0.01 \(the cell's other runs: 0.001\)"):
        result = claims_mod.claims([root])
    # The other-config seed is left out (figures.runs.pooled): CML has two seeds, and no claim that compares CML
    # is decided on them.
    cml_claims = [c for c in result if c.key not in ("3b-positive",) and "CML" in c.evidence]
    assert cml_claims and all(c.supported is None and "2 seeds, fewer than 3" in c.evidence for c in cml_claims)


def test_claims_from_synthetic_run_folders_missing_dynamics(tmp_path):
    root = constructed(tmp_path)
    for s in range(3):
        (root / f"cml-s{s}" / "dynamics.jsonl").unlink()
    gone = _by_key(claims_mod.claims([root]))["3b-below-cl"]
    assert gone.supported is None and "has no dynamics.jsonl" in gone.evidence and "--record-interval" in gone.evidence


def _all_text(fig) -> str:
    """Every string drawn on a figure: titles of the figure, its subfigures and axes, texts, tick labels, legends."""
    out = [fig.get_suptitle()] + [t.get_text() for t in fig.texts]
    for sub in getattr(fig, "subfigs", []):
        out += [sub.get_suptitle()] + [t.get_text() for t in sub.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_ylabel(), ax.get_xlabel()] + [t.get_text() for t in ax.texts]
        out += [t.get_text() for t in ax.get_xticklabels()]
    for legend in fig.legends:
        out += [t.get_text() for t in legend.get_texts()]
    return "\n".join(out)


def _panel(fig, letter: str):
    return next(sub for sub in fig.subfigs if sub.get_suptitle().startswith(f"({letter})"))


def _plot_axes(sub) -> list:
    return [ax for ax in sub.axes if ax.axison]


def test_fig3_draws_each_panel_as_the_paper_with_cl_beside_cml(tmp_path):
    first, second = fig3_dynamics.pages([constructed(tmp_path / "runs")])
    a, b = _panel(first, "a"), _panel(first, "b")
    c, d = _panel(second, "c"), _panel(second, "d")
    acc = _plot_axes(a)[0]
    assert acc.get_title() == "(a) validation accuracy"
    assert _line_labels(acc) == ["MAML", "MAML + random co-learner", "noisy-MAML", "CML"]
    b_axes = _plot_axes(b)
    assert [ax.get_title() for ax in b_axes] == ["block1", "block2", "block3", "block4: the paper's panel"]
    for ax in b_axes:
        assert _line_labels(ax) == ["CL", "CML"]  # CL and CML as separate lines at every block
        assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())  # Theorem 3.2's zero line
    assert b_axes[-1].get_title(loc="center") and b_axes[-1].title.get_fontweight() == "bold"
    c_axes = _plot_axes(c)
    assert len(c_axes) == 8  # two rows of four blocks
    assert [ax.get_ylabel().split("\n")[0] for ax in (c_axes[0], c_axes[4])] == ["outer meta-gradient",
                                                                                   "inner-loop support"]
    for ax in c_axes:
        assert _line_labels(ax) == ["MAML", "CL", "CML"]
    # The inner row draws inner_grad_norm_blocks: CML's constructed inner norm is 2.0 (seed 0), its outer 3.0.
    assert c_axes[4].get_lines()[-1].get_ydata()[0] == pytest.approx(np.mean([2.0, 2.0 * 1.002, 2.0 * 1.004]))
    assert c_axes[0].get_lines()[-1].get_ydata()[0] == pytest.approx(np.mean([3.0, 3.0 * 1.002, 3.0 * 1.004]))
    cka = _plot_axes(d)[0]
    assert [t.get_text() for t in cka.get_xticklabels()] == ["block1", "block2", "block3", "block4\n= head input",
                                                             "head output"]
    text = " ".join((_all_text(first) + _all_text(second)).split())  # captions are wrapped
    for needle in ("val.jsonl", "dynamics.jsonl cos_blocks", "grad_norm_blocks", "inner_grad_norm_blocks",
                   "representations.json", "Checks the paper's Figure 3a", "Checks the paper's Figure 3b",
                   "Checks the paper's Figure 3c", "Checks the paper's Figure 3d", "MAML + random co-learner (seeds "
                   "0,1,2)", "CL (seeds 0,1,2)", "runs: " + str(tmp_path / "runs")):
        assert needle in text, needle
    assert "Missing" not in text and "not recorded" not in text
    assert "CL" in [t.get_text() for t in first.legends[0].get_texts()]
    assert "converges to well-generalized parameters much faster" in text
    assert "In MAML, the change in representation occurs only at the head" in text


def test_fig3_names_a_missing_method_and_a_missing_record(tmp_path):
    lacking = {k: v for k, v in PAPER_LIKE.items() if k not in ("cl", "random")}
    first, second = fig3_dynamics.pages([constructed(tmp_path / "runs", methods=lacking)])
    text = " ".join((_all_text(first) + _all_text(second)).split())
    assert "Missing: MAML + random co-learner (method random): train it with python -m cml sweep" in text
    assert "Missing: CL (method cl): train it with python -m cml sweep" in text and "--methods cl" in text
    assert _line_labels(_plot_axes(_panel(first, "b"))[0]) == ["CML"]
    # Runs written before the inner-loop norms and the head-output CKA: drawn, saying what is missing.
    # Records of before the inner-loop norms and the head-output CKA: every other reading as in PAPER_LIKE.
    old = {k: {**v, "inner": None, **({"cka": {layer: c for layer, c in v["cka"].items() if layer != "output"}}
                                       if "cka" in v else {})}
           for k, v in PAPER_LIKE.items()}
    _, second = fig3_dynamics.pages([constructed(tmp_path / "old", methods=old)])
    text = " ".join(_all_text(second).split())
    assert "inner-loop support gradient: not recorded" in text and "has no inner_grad_norm_blocks" in text
    assert "head output: not recorded" in text
    c_axes = _plot_axes(_panel(second, "c"))
    assert _line_labels(c_axes[0]) == ["MAML", "CL", "CML"] and not _line_labels(c_axes[4])
    ticks = [t.get_text() for t in _plot_axes(_panel(second, "d"))[0].get_xticklabels()]
    assert ticks[-1] == "block4\n= head input"


def test_claims_on_real_runs_have_a_verdict_per_setting(figure_runs):
    result = claims_mod.claims([figure_runs["sin"], figure_runs["sin5"], figure_runs["fonts"]])
    assert len(result) == 3 * len(claims_mod.STATEMENTS)
    by_setting = {c.setting for c in result}
    assert by_setting == {"fonts, 5-way 1-shot", "sinusoid, 5-shot", "sinusoid, 10-shot"}
    # No run in these sweeps has all it needs for a verdict: each claim is insufficient and says why.
    assert all(c.supported is None for c in result)
    five = _by_key(c for c in result if c.setting == "sinusoid, 5-shot")
    assert "no noisy-MAML run (method noisy)" in five["3a-noise"].evidence
    # noisy-MAML is the suite's optional baseline: its absence is said, and no run the user never asked for is
    # suggested (the runs hold none at any setting).
    assert "python -m cml" not in five["3a-noise"].evidence and "optional baseline" in five["3a-noise"].evidence
    assert "single seed" in five["suite-larger-whole"].evidence
    ten = _by_key(c for c in result if c.setting == "sinusoid, 10-shot")
    # Two seeds: per-seed numbers, no interval across seeds, no verdict.
    assert "fewer than 3" in ten["3b-positive"].evidence and "across 2 seeds" not in ten["3b-positive"].evidence
    fonts = _by_key(c for c in result if c.setting == "fonts, 5-way 1-shot")
    assert "seed 0:" in fonts["3b-below-cl"].evidence and "CL" in fonts["3b-below-cl"].evidence


def test_sweep_with_unstarted_cells_warns_once(tmp_path, figure_runs):
    sweep = _copy_without(figure_runs["sin"], tmp_path / "partial", ())
    shutil.rmtree(sweep / "cml-s1")
    shutil.rmtree(sweep / "noisy-maml-s1")
    with pytest.warns(UserWarning, match=r"2 of 6 cells not started \(noisy-maml-s1, cml-s1\)") as record:
        runs = find_runs([sweep])
    assert len(record) == 1 and len(runs) == 4


@pytest.mark.slow
def test_figures_never_import_the_trainer():
    import subprocess
    import sys

    code = ("import sys, figures.report, figures.claims, figures.fig2_sinusoid, figures.fig3_dynamics, "
            "figures.fig4_tsne, figures.table4, figures.table1; "
            "figures.style.method_style(figures.runs.Cell('boil', 'cml')); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('cml'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    # Records, the tables (names, labels and what each base, method and task does, read before torch: their
    # behaviour imports the torch side only when called), the paper's published values, parameter roles and the
    # error classes, never the trainer.
    allowed = {"cml", "cml.records", "cml.methods", "cml.bases", "cml.tasks", "cml.roles", "cml.registry", "cml.errors",
               "cml.paper"}
    assert {m for m in out.split() if not m.startswith(("cml.bases.", "cml.tasks."))} <= allowed, out


def _table1_runs(root: Path, seeds: int) -> Path:
    """Synthetic test records of MAML and BOIL, alone and with CML (CML better by 1-3 points on every seed)."""
    accs = {("maml", "none"): (0.90, 0.91, 0.89), ("maml", "cml"): (0.92, 0.93, 0.91),
            ("boil", "none"): (0.93, 0.94, 0.92), ("boil", "cml"): (0.94, 0.97, 0.93)}
    for (base, method), values in accs.items():
        for s in range(seeds):
            folder = root / f"{base}-{method}-s{s}"  # figures identify a run by its config, not its folder
            folder.mkdir(parents=True)
            (folder / "config.json").write_text(json.dumps(
                {"base": base, "method": method, "task": "fonts", "seed": s, "shots": 1, "ways": 5}))
            test = {"step": 10, "acc": values[s], "acc_ci95": 0.02, "params": {"train": 2, "test": 1}}
            if method == "cml":
                test.update(acc_dagger=values[s] + 0.005, acc_dagger_ci95=0.02)
            (folder / "test.json").write_text(json.dumps(test))
    return root


@pytest.mark.parametrize("seeds", [2, 3])
def test_table1_follows_the_interval_policy_on_an_a4_page(tmp_path, seeds):
    from figures import table1

    runs = find_runs([_table1_runs(tmp_path, seeds)])
    (table,) = table1.rows(runs).values()
    assert [r.base for r in table] == ["maml", "boil"] and [len(r.paired_seeds) for r in table] == [seeds] * 2
    text = table1.markdown(runs)
    verdicts = {c.key: c.supported for c in table1.claims(runs)}
    fig = table1.figure(runs)
    assert tuple(fig.get_size_inches()) == pytest.approx(style.PAGE)  # the report's one page size
    page = " ".join(t.get_text() for t in fig.texts) + " ".join(
        t.get_text() for ax in fig.axes for t in ax.texts) + " ".join(
        c.get_text().get_text() for ax in fig.axes for tab in ax.tables for c in tab.get_celld().values())
    if seeds < 3:
        # No interval across seeds anywhere; each seed's value is shown; the claim is not made.
        assert "±" not in text and "±" not in page
        assert "s0: 90.00" in text and "s1: 91.00" in text and "s1: +2.00" in text
        assert verdicts == {"improves-maml": None, "improves-boil": None}
        assert "fewer than 3 seeds" in page
    else:
        assert "90.00 ± 2.48" in text  # 90, 91, 89 %: sd 1, t(2) = 4.303, 4.303 / sqrt(3) = 2.48
        assert "+2.00 ± 0.00" in text and "s2" not in text.split("|")[2]  # 3 seeds: means, not each seed
        # MAML gains 2 points on every seed; BOIL 1, 3, 1: its interval (+1.67 ± 2.87) includes 0, which refutes
        # nothing: undecided.
        assert verdicts == {"improves-maml": True, "improves-boil": None}
        assert "3+ seeds: 95% Student-t CIs across seeds" in page


# -- the report's figures read well (issue 20) --------------------------------------------------------------------


def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def _open_and_filled(ax) -> tuple[list, list]:
    """A dot plot's scatters: those with white faces (one seed each point) and the filled ones (means)."""
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    open_ = [c for c in scatters if np.allclose(c.get_facecolor()[0][:3], 1.0)]
    return open_, [c for c in scatters if c not in open_]


def test_table4_dots_show_each_seed_open_with_its_own_interval(tmp_path):
    one = table4.figure([constructed(tmp_path / "one", {"maml": PAPER_LIKE["maml"]}, seeds=(0,))])
    chart = one.axes[-1]
    open_, filled = _open_and_filled(chart)
    # One seed: its open marker alone (a filled mean over it would hide that it is one seed), with its run's own
    # 95% CI over test tasks (test.json's acc_ci95, 0.01) as a bar.
    assert len(open_) == 1 and len(open_[0].get_offsets()) == 1 and not filled
    (bar,) = [c for c in chart.collections if c.__class__.__name__ == "LineCollection"]
    (segment,) = bar.get_segments()
    assert segment[1, 1] - segment[0, 1] == pytest.approx(2 * 100 * 0.01)
    assert "open marker: one seed" in chart.get_title() and "over that run's test tasks" in chart.get_title()
    three = table4.figure([constructed(tmp_path / "three", {"maml": PAPER_LIKE["maml"]})])
    open_, filled = _open_and_filled(three.axes[-1])
    assert [len(c.get_offsets()) for c in open_] == [3] and [len(c.get_offsets()) for c in filled] == [1]
    # The seeds sit left of the mean, so that neither hides the other.
    assert open_[0].get_offsets()[:, 0].max() < filled[0].get_offsets()[0, 0]
    bars = [c for c in three.axes[-1].collections if c.__class__.__name__ == "LineCollection"]
    assert len(bars) == 4  # each seed's own interval, and the interval across seeds


def test_fig3_never_calls_one_seed_a_mean_and_names_a_legend_method_absent_from_a_panel(tmp_path):
    runs = constructed(tmp_path / "runs", {k: PAPER_LIKE[k] for k in ("maml", "noisy-maml", "cml")}, seeds=(0,))
    first, second = fig3_dynamics.pages([runs])
    assert "lines: the one seed's values" in first.get_suptitle() and "mean across" not in first.get_suptitle()
    # noisy-MAML is drawn in (a) and so in the page's legend; (b) draws CL and CML only, and says so.
    legend = [t.get_text() for t in first.legends[0].get_texts()]
    assert "noisy-MAML" in legend
    caption_b = " ".join(" ".join(_all_text(_panel(first, "b")).split()).split())
    assert "Not in this panel: MAML (in the legend from another panel" in caption_b
    assert "noisy-MAML (in the legend from another panel; this panel draws CL, CML)" in caption_b
    assert "Not in this panel" not in " ".join(_all_text(_panel(first, "a")).split())
    # (d) with one seed: each value an open marker, no filled mean drawn over it; the legend says what it is.
    d = _plot_axes(_panel(second, "d"))[0]
    open_, filled = _open_and_filled(d)
    assert open_ and not filled
    assert "(d) open marker: the one seed's value" in [t.get_text() for t in second.legends[0].get_texts()]
    two = fig3_dynamics.pages([constructed(tmp_path / "two", {"cml": PAPER_LIKE["cml"]}, seeds=(0, 1))])[0]
    assert "thick lines: mean across seeds" in two.get_suptitle()


def _inside(box, outer) -> bool:
    return box.x0 >= outer.x0 - 0.5 and box.x1 <= outer.x1 + 0.5 and box.y0 >= outer.y0 - 0.5 and \
        box.y1 <= outer.y1 + 0.5


def test_fig3_axis_labels_clear_of_the_panel_titles(figure_runs):
    # The sinusoid page once put (a)'s "training loss" y-label over the panel's title.
    for page in fig3_dynamics.pages([figure_runs["sin"]], smooth=3):
        renderer = _renderer(page)
        for sub in page.subfigs:
            title = sub._suptitle.get_window_extent(renderer)
            for ax in _plot_axes(sub):
                for label in (ax.yaxis.label, ax.title):
                    if label.get_text():
                        assert not label.get_window_extent(renderer).overlaps(title), (sub.get_suptitle(),
                                                                                        label.get_text())


def test_figures_2_and_4_keep_within_the_page_margins(figure_runs):
    for fig in (fig2_sinusoid.figure([figure_runs["sin"], figure_runs["sin5"]], show_before=True),
                fig4_tsne.figure([figure_runs["fonts"]])):
        renderer = _renderer(fig)
        margin = style.MARGIN * fig.dpi * 0.9
        inner = fig.bbox.padded(-margin)
        for artist in [*fig.axes, *fig.legends]:
            assert _inside(artist.get_tightbbox(renderer), inner), artist


def test_table1_words_a_gain_by_its_sign(figure_runs):
    from figures import table1

    assert table1.direction(0.04) == "CML better" and table1.direction(-0.04) == "CML worse"
    assert table1.direction(0.0) == "no difference"
    assert "reduction" not in " ".join(table1._header("mse")) and "alone − with CML" in table1._header("mse")[4]
    result = table1.claims([figure_runs["sin"], figure_runs["sin5"], figure_runs["fonts"]])
    assert result
    for claim in result:
        assert "reduction" not in claim.evidence
        for sign, word in re.findall(r"seed \d+: ([+-])[0-9.]+ [^(]*\((CML better|CML worse)\)", claim.evidence):
            assert (sign == "+") == (word == "CML better"), claim.evidence
        assert re.search(r"\((CML better|CML worse|no difference)\)", claim.evidence), claim.evidence


def test_table4_from_aggregate_keeps_each_value_with_its_seed_when_a_reading_diverged(tmp_path):
    # Seed 1's Eq. (9) reading diverged (null in its test.json): aggregate.json holds two values and says whose.
    folder = tmp_path / "sweep"
    folder.mkdir()
    from cml.config import preset

    records.write_json(folder / records.SWEEP, {"base": preset("quick", "fonts", "cml").to_dict(), "seeds": [0, 1, 2],
                                                "methods": ["cml"], "bases": ["maml"], "preset": "quick"})
    for s in range(3):
        (folder / f"cml-s{s}").mkdir()
        records.write_json(folder / f"cml-s{s}" / records.TEST, {"step": 10, "acc": 0.7, "tasks": 4,
                                                                 "params": {"train": 10, "test": 8}})
    entry = {"seeds": 3, "params": {"train": 10, "test": 8, "test_dagger": 9}, "base": "maml", "method": "cml",
             "acc": {"mean": 0.7, "ci95": 0.0, "values": [0.7, 0.7, 0.7]},
             "acc_dagger_eq9": {"mean": 0.6, "ci95": None, "values": [0.5, 0.7], "value_seeds": [0, 2]}}
    records.write_json(folder / records.AGGREGATE, {"cml": entry})
    (eq9,) = [r for r in table4.rows_from_aggregate(folder) if r.key == "acc_dagger_eq9"]
    assert dict(eq9.values.values) == {0: 0.5, 2: 0.7}
