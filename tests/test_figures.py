"""Figures, Table 4 and the claims, drawn from run folders of short real sweeps (and synthetic records).

The session fixture ``figure_runs`` (tests/conftest.py) trains tiny sweeps once (sinusoid at 10 and 5 shots; the
font-glyph data set, which needs no download) and is shared with ``test_report.py`` and ``test_tensorboard.py``.
"""

from __future__ import annotations

import json
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
    fig = fig3_dynamics.figure([figure_runs["fonts"]])
    axes = fig.axes
    assert len(axes) == 2 + 2 + 5 + 5  # (a) acc, loss; (d) CKA, debiased; (b), (c): whole psi + 4 blocks
    # Panels in reading order, top to bottom: a, b, c, d (positions once the layout has run).
    fig.draw_without_rendering()
    letters = [ax.get_title()[1] for ax in sorted(axes, key=lambda ax: (-round(ax.get_window_extent().y0),
                                                                        ax.get_window_extent().x0))]
    assert letters == sorted(letters) and letters[0] == "a" and letters[-1] == "d"
    by_title = {ax.get_title(): ax for ax in axes}
    acc = by_title["(a) validation accuracy"]
    assert _line_labels(acc) == ["MAML", "noisy-MAML", "CML"]
    assert acc.get_ylabel() == "validation accuracy (%)" and acc.get_xlabel() == "outer step"
    # 2 seeds: no interval band; each seed drawn as its own thin line (3 methods x 2 seeds).
    assert not any(isinstance(c, PolyCollection) for c in acc.collections)
    assert sum(line.get_label() == "_seed" for line in acc.get_lines()) == 6
    cos = by_title["(b) whole ψ"]
    assert _line_labels(cos) == ["CML"] and cos.get_ylabel() == "cosine similarity"
    assert any(np.allclose(line.get_ydata(), 0) for line in cos.get_lines())  # the zero line
    for block in ("block1", "block2", "block3", "block4"):
        assert _line_labels(by_title[f"(b) {block}"]) == ["CML"]
        assert _line_labels(by_title[f"(c) {block}"]) == ["MAML", "noisy-MAML", "CML"]
    norm = by_title["(c) whole ψ"]
    assert norm.get_ylabel() == "‖∇ψ L‖₂"
    # Each recorded step of 6 (record interval 2) is a point of the norm curves; ticks are whole steps.
    assert list(norm.get_lines()[-1].get_xdata()) == [2, 4, 6]
    for ax in axes:
        if ax.get_xlabel() == "outer step":
            assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_title()
    cka = by_title["(d) CKA per layer"]
    assert [t.get_text() for t in cka.get_xticklabels()] == ["block1", "block2", "block3", "head input"]
    assert not [c for c in cka.containers if isinstance(c, BarContainer)]  # a dot plot: its axis need not hold 0
    points = np.concatenate([c.get_offsets()[:, 1] for c in cka.collections])
    lo, hi = cka.get_ylim()
    assert lo > 0 and lo >= points.min() - 0.1 * (points.max() - points.min())  # the axis starts at the data
    assert "(d) debiased CKA per layer" in by_title
    # Every mark is in the legend: the methods, and what a thin line / open marker is.
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["MAML", "noisy-MAML", "CML"] and any("one seed" in t for t in legend)
    assert "Figure 3: learning dynamics, fonts, 5-way 1-shot" in fig.get_suptitle()
    assert "fewer than 3 seeds" in fig.get_suptitle()


def test_fig3_cka_points_are_the_seeds_and_their_mean(figure_runs):
    runs = find_runs([figure_runs["fonts"]])
    summary = fig3_dynamics.cka_summary(group_by_method(runs)[CML])
    values = [Run.load(figure_runs["fonts"] / f"cml-s{s}").representations()["cka"]["block1"]["mean"] for s in (0, 1)]
    mean, ci, n, per_seed = summary["block1"]
    assert mean == pytest.approx(np.mean(values)) and n == 2 and per_seed == values and np.isnan(ci)
    fig = fig3_dynamics.figure(runs, debiased_cka=False, methods=[MAML, CML])
    cka = next(ax for ax in fig.axes if ax.get_title() == "(d) CKA per layer")
    # At block1 (x = 0), CML's marks (right of MAML's) are its two seeds and their mean; no error bar.
    marks = np.concatenate([c.get_offsets() for c in cka.collections])
    cml_marks = sorted(y for x, y in marks if 0 < x < 0.5)
    assert cml_marks == pytest.approx(sorted([*values, np.mean(values)]))
    assert not cka.containers  # no error bars with 2 seeds
    assert f"{np.mean(values):.3f}" in [t.get_text() for t in cka.texts]  # the value printed beside the mean
    assert len(fig.axes) == 2 + 1 + 5 + 5


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
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert len(fig.axes) == 2 + 2 + 3 + 3  # MLP: layer1 and layer2
    assert by_title["(a) validation MSE"].get_ylabel() == "validation MSE after adaptation"
    assert by_title["(a) training loss"].get_ylabel() == "training query loss (MSE) (rolling mean, 3 records)"
    assert by_title["(b) whole ψ"].get_ylabel() == "cosine similarity (rolling mean, 3 records)"
    assert by_title["(c) layer2"].get_yscale() == "log"
    assert by_title["(b) whole ψ"].get_ylim() == pytest.approx((-1.05, 1.05))


def test_fig3_missing_dynamics_names_folder_and_flag(tmp_path, figure_runs):
    bare = _copy_without(figure_runs["sin"], tmp_path / "sin-bare", ("dynamics.jsonl",))
    with pytest.raises(MissingRecordError, match=r"cml-s0 has no dynamics.jsonl: train with --record-interval"):
        fig3_dynamics.figure([bare])
    with pytest.raises(FigureInputError, match="one setting at a time"):
        fig3_dynamics.figure([figure_runs["sin"], figure_runs["sin5"]])


# -- Figure 4 ----------------------------------------------------------------------------------------------


def test_fig4_rows_columns_classes_and_silhouettes(figure_runs):
    fig = fig4_tsne.figure([figure_runs["fonts"]])
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == ["MAML, before adaptation", "MAML, after adaptation",
                                              "CML, before adaptation", "CML, after adaptation"]
    for ax in axes:
        assert len([c for c in ax.collections if isinstance(c, PathCollection)]) == 5  # one per class
        texts = [t.get_text() for t in ax.texts]
        assert any(t.startswith("silhouette ") and "(this task)" in t and "mean of 4 tasks" in t for t in texts)
    reps = Run.load(figure_runs["fonts"] / "cml-s0").representations()
    assert f"silhouette {reps['tsne_task']['silhouette_after']:.3f}" in axes[3].texts[0].get_text()
    # Before and after of one run share one t-SNE map, hence one set of axes.
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert axes[2].get_shared_y_axes().joined(axes[2], axes[3])
    assert not axes[0].get_shared_x_axes().joined(axes[0], axes[2])
    feats = Run.load(figure_runs["fonts"] / "maml-s0").features()
    assert sum(len(c.get_offsets()) for c in axes[0].collections) == len(feats["labels"])
    # The caption counts the map's own queries and says the runs used another number.
    points = len(feats["labels"])
    assert f"{points} query points, {points // 5} per class, drawn for this map" in fig.get_suptitle()
    assert "trained and tested with 5 per class" in fig.get_suptitle()


def test_fig4_refuses_sinusoid_and_missing_seed(figure_runs):
    with pytest.raises(FigureInputError, match="needs an image task"):
        fig4_tsne.figure([figure_runs["sin"]])
    with pytest.raises(FigureInputError, match="seed 5 is not trained"):
        fig4_tsne.figure([figure_runs["fonts"]], seed=5)
    fig = fig4_tsne.figure([figure_runs["fonts"]], methods=(MAML, MORE, CML), seed=1)
    assert len(fig.axes) == 6 and "seed 1" in fig.get_suptitle()


# -- Table 4 -----------------------------------------------------------------------------------------------


def test_table4_rows_params_and_intervals(figure_runs):
    rows = table4.rows([figure_runs["fonts"]])
    assert [(r.cell, r.dagger) for r in rows] == [(MAML, False), (MORE, False), (CL, False), (CML, False),
                                                  (CML, True)]
    assert [r.label for r in rows] == ["MAML", "More-MAML", "CL", "CML", "CML†"]
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
    cml, dagger = rows[3], rows[4]
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
    assert len(lines) == 2 + 5 and lines[-1].startswith("| CML† |")
    assert "**" not in text  # 2 seeds: no interval, so no win to mark
    fig = table4.figure(rows)
    table = fig.axes[0].tables[0]
    cells = table.get_celld()
    assert max(i for i, _ in cells) == 5 and cells[(5, 0)].get_text().get_text() == "CML†"
    assert tuple(fig.get_size_inches()) == pytest.approx(style.PAGE)
    sin = table4.markdown(table4.rows([figure_runs["sin"]]))
    assert "test MSE: mean across seeds (no CI: < 3 seeds)" in sin


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


def test_claim_beats_noise_supported_refuted_and_single_seed():
    c = claims_mod.judge_beats_noise({0: 0.70, 1: 0.72, 2: 0.71}, {0: 0.60, 1: 0.61, 2: 0.62})
    assert c.supported is True and c.seeds == [0, 1, 2] and "paired accuracy gain of CML +10.00" in c.evidence
    c = claims_mod.judge_beats_noise({0: 0.60, 1: 0.61, 2: 0.60}, {0: 0.70, 1: 0.72, 2: 0.71})
    assert c.supported is False and "noisy-MAML is better" in c.evidence
    c = claims_mod.judge_beats_noise({0: 0.70, 1: 0.60, 2: 0.65}, {0: 0.65, 1: 0.66, 2: 0.64})
    assert c.supported is False and "includes 0" in c.evidence
    c = claims_mod.judge_beats_noise({0: 0.70}, {0: 0.60}, cml_ci=0.01, noisy_ci=0.02)
    assert c.supported is None and c.evidence.startswith("single seed: not a claim") and "70.00 ± 1.00" in c.evidence
    c = claims_mod.judge_beats_noise({0: 0.2, 1: 0.21, 2: 0.2}, {0: 0.3, 1: 0.31, 2: 0.3}, metric="mse")
    assert c.supported is True  # lower MSE is better
    # Two seeds: each seed's numbers, no interval, no verdict.
    c = claims_mod.judge_beats_noise({0: 0.90, 1: 0.91}, {0: 0.60, 1: 0.61})
    assert c.supported is None and "fewer than 3" in c.evidence and "±" not in c.evidence
    assert "seed 0: CML 90.00, noisy-MAML 60.00" in c.evidence
    assert claims_mod.judge_beats_noise({0: 0.7}, {1: 0.6}).supported is None


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
    assert same.supported is False and "(lower)" not in same.evidence
    tiny = claims_mod.judge_lower_cka({s: {"flat": v["flat"] - 0.00004} for s, v in maml.items()}, maml)
    # A real difference of 4e-5 is printed with the decimals that show it, never as +0.000 ± 0.000.
    assert "+0.000 ± 0.000" not in tiny.evidence and "+0.00004" in tiny.evidence


def _synthetic_run(folder: Path, method: str, seed: int, acc: float, cos: list[float] | None,
                   norm: float, cka: float) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": method, "task": "fonts", "seed": seed, "shots": 1,
                                                     "ways": 5, "steps": 10}))
    (folder / "test.json").write_text(json.dumps({"acc": acc, "acc_ci95": 0.01, "tasks": 100,
                                                   "params": {"train": 10, "test": 8}}))
    # metrics.jsonl's norms are deliberately other numbers: the claim must read dynamics.jsonl, as Figure 3c does.
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "grad_norm_psi": 100.0 / norm}) + "\n"
                                                  for s in range(1, 4)))
    (folder / "dynamics.jsonl").write_text("".join(
        json.dumps({"step": i + 1, "grad_norm_psi": norm, **({"cos_psi": c} if cos is not None else {})}) + "\n"
        for i, c in enumerate(cos if cos is not None else [None] * 3)))
    (folder / "representations.json").write_text(json.dumps({"layers": ["block1", "flat"], "tasks": 5, "cka": {
        "block1": {"mean": cka + 0.04, "ci95": 0.01}, "flat": {"mean": cka, "ci95": 0.01}}}))


def test_claims_from_synthetic_run_folders(tmp_path):
    for s in range(3):
        _synthetic_run(tmp_path / f"cml-s{s}", "cml", s, 0.70 + 0.005 * s, [0.1, -0.1, 0.05 * s], 3.0 + 0.1 * s, 0.5)
        _synthetic_run(tmp_path / f"noisy-maml-s{s}", "noisy-maml", s, 0.60, None, 1.0, 0.9)
        _synthetic_run(tmp_path / f"maml-s{s}", "maml", s, 0.62, None, 1.2 + 0.05 * s, 0.9 + 0.01 * s)
    result = claims_mod.claims([tmp_path])
    assert [c.key for c in result] == ["beats-noise", "dissimilar-gradients", "larger-gradients", "lower-cka"]
    assert all(c.supported is True for c in result), [c.evidence for c in result]
    assert all(c.setting == "fonts, 5-way 1-shot" and c.seeds == [0, 1, 2] for c in result)
    assert set(result[0].to_dict()) == {"key", "claim", "supported", "evidence", "seeds", "setting"}
    # One source per quantity: the gradient-norm claim quotes dynamics.jsonl's means (Figure 3c's values).
    cml_norm, _ = mean_ci95([3.0 + 0.1 * s for s in range(3)])
    assert f"CML {cml_norm:.3f}" in result[2].evidence and "dynamics.jsonl" in result[2].evidence
    # Without the cosine records, claim 2 is insufficient and says how to record them.
    for s in range(3):
        (tmp_path / f"cml-s{s}" / "dynamics.jsonl").unlink()
    gone = claims_mod.claims([tmp_path])[1]
    assert gone.supported is None and "has no dynamics.jsonl" in gone.evidence and "--record-interval" in gone.evidence


def test_claims_on_real_runs_have_a_verdict_per_setting(figure_runs):
    result = claims_mod.claims([figure_runs["sin"], figure_runs["sin5"], figure_runs["fonts"]])
    assert len(result) == 12
    by_setting = {c.setting for c in result}
    assert by_setting == {"fonts, 5-way 1-shot", "sinusoid, 5-shot", "sinusoid, 10-shot"}
    five = [c for c in result if c.setting == "sinusoid, 5-shot"]
    assert five[0].supported is None and "no noisy-maml run" in five[0].evidence
    assert all(c.supported is None and "single seed" in c.evidence for c in five[1:])
    ten = [c for c in result if c.setting == "sinusoid, 10-shot"]
    # Two seeds: per-seed numbers, no interval across seeds, no verdict.
    assert all(c.supported is None and c.seeds == [0, 1] for c in ten)
    assert all("fewer than 3" in c.evidence and "across 2 seeds" not in c.evidence for c in ten)


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
    # behaviour imports the torch side only when called), parameter roles, the error classes and the paper's
    # published values (cml.paper: data and the tables' names), never the trainer.
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
        # MAML gains 2 points on every seed; BOIL 1, 3, 1: its interval (+1.67 ± 2.87) includes 0.
        assert verdicts == {"improves-maml": True, "improves-boil": False}
        assert "3+ seeds: 95% Student-t CIs across seeds" in page
