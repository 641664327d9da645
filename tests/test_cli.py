"""The command line: train, evaluate (on a folder of unseen classes), params, and errors that name the value."""

from __future__ import annotations

import json
import zipfile

import pytest

from cml.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_then_evaluate_sinusoid(tmp_path, capsys):
    code, out, err = run(capsys, "train", "--method", "cml", "--task", "sinusoid", "--out", str(tmp_path),
                         "--steps", "20", "--test-tasks", "20", "--val-tasks", "5", "--no-progress")
    assert code == 0
    assert "test MSE" in out and "CML† (phi)" in out
    assert "parameters: 1802 at train time, 1761 at test time" in err
    run_dir = tmp_path / "sinusoid-cml-s0"
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 20
    code, out, _ = run(capsys, "evaluate", str(run_dir), "--tasks", "10", "--shots", "5", "--no-progress")
    assert code == 0 and "5-shot" in out and "over 10 tasks" in out


def test_params_table_matches_the_paper_preset(capsys):
    code, out, _ = run(capsys, "params", "--task", "omniglot", "--preset", "paper")
    assert code == 0
    rows = {line.split()[0]: [int(v) for v in line.split()[1:3]] for line in out.splitlines()[1:]}
    assert set(rows) == {"maml", "cml", "cml†", "noisy-maml", "more-maml", "cl", "random"}
    assert rows["random"] == rows["cml"]  # the same model: a co-learner head, dropped at test time
    assert rows["cml"][1] == rows["maml"][0] == rows["maml"][1]  # phi dropped at test time
    assert rows["cml"][0] > rows["maml"][0]
    assert abs(rows["more-maml"][1] - rows["cml"][0]) <= 0.05 * rows["cml"][0]
    assert rows["cl"] == rows["cml"]


def _extract_alphabet(zip_path, alphabet, dest):
    with zipfile.ZipFile(zip_path) as z:
        for name in z.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[1] == alphabet and name.endswith(".png"):
                target = dest / f"{parts[1]}_{parts[2]}" / parts[3]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))


def test_evaluate_a_saved_run_on_a_folder_of_unseen_classes(omniglot_root, tmp_path, capsys):
    code, _, _ = run(capsys, "train", "--method", "cml", "--task", "omniglot", "--data", str(omniglot_root),
                     "--out", str(tmp_path), "--name", "run", "--steps", "4", "--filters", "8", "--test-tasks", "5",
                     "--val-tasks", "5", "--no-progress")
    assert code == 0
    folder = tmp_path / "greek"
    _extract_alphabet(omniglot_root / "images_background_small1.zip", "Greek", folder)
    assert len(list(folder.iterdir())) == 24
    code, out, err = run(capsys, "evaluate", str(tmp_path / "run"), "--data", str(folder), "--invert", "--ways", "5",
                         "--shots", "1", "--queries", "3", "--tasks", "7", "--no-progress")
    assert code == 0, err
    assert str(folder) in out and "over 7 tasks" in out
    code, _, err = run(capsys, "evaluate", str(tmp_path / "run"), "--data", str(folder), "--ways", "10")
    assert code == 2 and "--ways 10" in err and "5-way" in err


@pytest.mark.parametrize("argv, message", [
    (["--method", "reptile", "--task", "sinusoid"], "unknown method 'reptile'"),
    (["--method", "cml", "--task", "sinusoid", "--inner-lr", "0"], "inner_lr"),
    (["--method", "cml", "--task", "sinusoid", "--meta-lr=-1e-3"], "meta_lr"),
    (["--method", "cml", "--task", "omniglot", "--data", "/nonexistent/omniglot"], "/nonexistent/omniglot"),
])
def test_bad_input_fails_before_training_with_the_value_named(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "train", *argv, "--out", str(tmp_path), "--no-progress")
    assert code == 2
    assert message in err
    assert not any(tmp_path.iterdir())


def test_ways_larger_than_a_split_is_named(omniglot_root, tmp_path, capsys):
    # The val split of the small Omniglot zips has 40 characters (Korean).
    code, _, err = run(capsys, "train", "--method", "maml", "--task", "omniglot", "--data", str(omniglot_root),
                       "--ways", "50", "--out", str(tmp_path), "--no-progress")
    assert code == 2
    assert "ways=50" in err and "val" in err
    assert not any(tmp_path.iterdir())


def test_resume_flag_continues_a_run(tmp_path, capsys):
    common = ["train", "--method", "maml", "--task", "sinusoid", "--out", str(tmp_path), "--test-tasks", "5",
              "--val-tasks", "5", "--no-progress"]
    assert run(capsys, *common, "--steps", "10")[0] == 0
    code, _, err = run(capsys, *common, "--steps", "10")
    assert code == 2 and "--resume" in err
    assert run(capsys, *common, "--steps", "20", "--resume")[0] == 0
    lines = (tmp_path / "sinusoid-maml-s0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [10, 20]


BASES = ("maml", "maml++", "boil", "sharp-maml", "anil")
METHODS = ("none", "cml", "noisy", "more", "cl")


@pytest.mark.parametrize("base", BASES)
def test_every_base_and_method_trains_from_the_cli_on_sinusoid(tmp_path, capsys, base):
    for method in METHODS:
        code, out, err = run(capsys, "train", "--base", base, "--method", method, "--task", "sinusoid",
                             "--out", str(tmp_path), "--steps", "3", "--test-tasks", "3", "--val-tasks", "2",
                             "--log-interval", "1", "--no-progress")
        assert code == 0, err
        variant = method if base == "maml" else (base if method == "none" else f"{base}_{method}")
        if base == "maml":
            variant = {"none": "maml", "noisy": "noisy-maml", "more": "more-maml"}.get(method, method)
        test = json.loads((tmp_path / f"sinusoid-{variant}-s0" / "test.json").read_text())
        assert (test["base"], test["method"], test["step"]) == (base, method, 3)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["omniglot", "fonts"])
def test_every_base_with_cml_trains_and_resumes_on_images(omniglot_root, fonts_cache, tmp_path, capsys, task):
    data = ["--data", str(omniglot_root)] if task == "omniglot" else ["--data", str(fonts_cache)]
    for base in BASES:
        common = ["train", "--base", base, "--method", "cml", "--task", task, *data, "--out", str(tmp_path),
                  "--filters", "8", "--test-tasks", "3", "--val-tasks", "2", "--log-interval", "1",
                  "--checkpoint-interval", "1", "--no-progress"]
        assert run(capsys, *common, "--steps", "1")[0] == 0
        code, out, err = run(capsys, *common, "--steps", "2", "--resume")
        assert code == 0, err
        name = "cml" if base == "maml" else f"{base}_cml"
        lines = (tmp_path / f"{task}-{name}-s0" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [1, 2]
        assert "CML† (phi)" in out


def test_legacy_method_name_on_another_base_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--base", "boil", "--method", "maml", "--task", "sinusoid",
                       "--out", str(tmp_path), "--no-progress")
    assert code == 2 and "write --method none" in err and "Traceback" not in err
    code, _, err = run(capsys, "train", "--method", "cml", "--task", "sinusoid", "--msl", "--out", str(tmp_path),
                       "--no-progress")
    assert code == 2 and "msl is an option of base 'maml++'" in err


def test_download_of_fonts_says_they_are_rendered_locally(capsys):
    code, _, err = run(capsys, "data", "download", "fonts", "--root", "unused")
    assert code == 2
    assert "rendered locally" in err and "python -m cml data info --task fonts" in err


def test_missing_omniglot_path_names_the_download_command(tmp_path, capsys):
    code, _, err = run(capsys, "data", "info", "--task", "omniglot", "--data", str(tmp_path / "absent"))
    assert code == 2
    assert f"python -m cml data download omniglot --root {tmp_path / 'absent'}" in err
