"""One error root (cml.errors): the CLI and the Ray engine catch UserError only, so a bug keeps its traceback;
the report turns only FigureInputError and MissingRecordError into a page, so a bug in a figure fails it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pypdf
import pytest

import cml.cli
from cml import errors, records
from cml.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_every_user_error_hangs_off_the_root_and_is_importable_from_where_it_was():
    from cml.config import ConfigError
    from cml.data.base import DataError
    from cml.meta import NonFiniteLossError
    from cml.records import DiskFullError, FolderLockedError, RunFolderError
    from figures.runs import MissingRecordError, NoRunsError

    old = {ConfigError: ValueError, DataError: ValueError, RunFolderError: ValueError, DiskFullError: ValueError,
           FolderLockedError: ValueError, NonFiniteLossError: FloatingPointError,
           MissingRecordError: FileNotFoundError, NoRunsError: FileNotFoundError}
    for cls, builtin in old.items():
        assert cls is getattr(errors, cls.__name__)  # one class, two import paths
        assert issubclass(cls, errors.UserError) and issubclass(cls, builtin), cls  # old `except`s still work
    for cls in (errors.MissingFileError, errors.OutputExistsError, errors.FigureInputError):
        assert issubclass(cls, errors.UserError)
    assert not issubclass(errors.InternalError, errors.UserError) and issubclass(errors.InternalError, errors.CmlError)
    assert not issubclass(errors.FigureInputError, ValueError)  # a figure's own ValueError is never "cannot draw"


def _handlers(path: Path, function: str) -> list[ast.ExceptHandler]:
    tree = ast.parse(path.read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    return [n for n in ast.walk(fn) if isinstance(n, ast.ExceptHandler)]


def _names(handler: ast.ExceptHandler) -> list[str]:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return [ast.unparse(k) for k in kinds]


def test_cli_main_catches_user_errors_and_only_the_permission_and_disk_full_builtins():
    handlers = _handlers(ROOT / "cml" / "cli.py", "main")
    # Besides UserError: an interruption (SIGINT/SIGTERM, cml.interrupt), a closed stdout pipe (`| head`), and the
    # environment's own path errors; nothing else.
    # (ast.walk lists the try nested in the BrokenPipeError handler, which points stdout at /dev/null, last.)
    assert [_names(h) for h in handlers] == [["UserError"], ["Interrupted"], ["BrokenPipeError"], ["PermissionError"],
                                             ["OSError"], ["OSError", "ValueError", "AttributeError"]]
    # The OSError handler is the disk-full (and unwritable-path) one: any other OSError is raised again, with its
    # traceback.
    oserror = ast.unparse(handlers[4])
    assert "ENOSPC" in oserror and "EDQUOT" in oserror and "_PATH_ERRORS" in oserror
    assert "raise" in oserror.split("print")[0]
    # The Ray engine re-raises a trial's UserError naming the cell; nothing else passes as the user's.
    checks = [ast.unparse(n) for n in ast.walk(ast.parse((ROOT / "cml" / "ray_engine.py").read_text()))
              if isinstance(n, ast.Call) and ast.unparse(n.func) == "isinstance"]
    assert "isinstance(cause, UserError)" in checks


def test_a_bugs_file_not_found_error_keeps_its_traceback(monkeypatch, tmp_path, capsys):
    def buggy(args):
        raise FileNotFoundError(2, "No such file or directory", "/a/path/the/code/got/wrong")

    monkeypatch.setattr(cml.cli, "cmd_report", buggy)
    with pytest.raises(FileNotFoundError):
        main(["report", str(tmp_path), "-o", str(tmp_path / "r.pdf")])
    assert "error:" not in capsys.readouterr().err

    def missing(args):
        raise errors.MissingFileError(f"{tmp_path / 'x'} does not exist; give a run folder")

    monkeypatch.setattr(cml.cli, "cmd_report", missing)
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.pdf")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'x'} does not exist; give a run folder\n"


@pytest.mark.parametrize("argv, message", [
    (["tensorboard", "{tmp}/nothing"], "does not exist"),  # a path the user named: MissingFileError
    (["report", "{tmp}", "-o", "{tmp}"], "is a folder; name the PDF"),  # -o a folder: OutputExistsError
    # A file where --out, --root or -o needs a folder: OutputExistsError naming the flag and the file.
    (["train", "--task", "sinusoid", "--method", "none", "--out", "{tmp}/file/runs", "--steps", "1"],
     "--out: {tmp}/file is a file where a folder must be"),
    (["train", "--task", "sinusoid", "--method", "none", "--out", "{tmp}", "--name", "file", "--steps", "1"],
     "{tmp}/file is a file, not a run or sweep folder"),
    (["data", "download", "omniglot", "--root", "{tmp}/file"], "--root: {tmp}/file is a file where a folder must be"),
    (["report", "{tmp}/run", "-o", "{tmp}/file/report.pdf"], "-o: {tmp}/file is a file where a folder must be"),
])
def test_a_users_missing_or_taken_path_is_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("in the way")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(
        {"method": "maml", "task": "fonts", "seed": 0, "shots": 1, "ways": 5}))
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message.replace("{tmp}", str(tmp_path)) in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err


def test_trainer_raises_user_errors_for_a_missing_checkpoint_and_a_taken_folder(tmp_path):
    from cml.config import preset
    from cml.trainer import Trainer, load_checkpoint

    cfg = preset("quick", "sinusoid", "none", steps=1, progress=False)
    with pytest.raises(errors.MissingFileError, match="cannot resume"):
        Trainer(cfg, tmp_path / "run", resume=True)
    with pytest.raises(errors.MissingFileError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / records.CHECKPOINT).write_bytes(b"")
    with pytest.raises(errors.OutputExistsError, match="already holds a run"):
        Trainer(cfg, tmp_path / "run")


def _runs(root: Path) -> Path:
    """Two finished synthetic runs (config.json and test.json) of one fonts setting: pages that read only
    test.json draw, the others are missing-record pages."""
    for method, acc in (("none", 0.90), ("cml", 0.92)):
        folder = root / f"{method}-s0"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(
            {"base": "maml", "method": method, "task": "fonts", "seed": 0, "shots": 1, "ways": 5}))
        (folder / "test.json").write_text(json.dumps(
            {"step": 10, "acc": acc, "acc_ci95": 0.02, "params": {"train": 2, "test": 1}}))
    return root


def _report(tmp_path: Path, raise_in_table4: str) -> subprocess.CompletedProcess:
    """``python -m cml report`` with Table 4's figure replaced by one that raises ``raise_in_table4``."""
    runs, pdf = _runs(tmp_path / "runs"), tmp_path / "report.pdf"
    code = ("import runpy, sys\n"
            "import figures.table4\n"
            "from cml import errors\n"
            "def broken(*args, **kwargs):\n"
            f"    raise {raise_in_table4}\n"
            "figures.table4.figure = broken\n"
            f"sys.argv = ['cml', 'report', {str(runs)!r}, '-o', {str(pdf)!r}]\n"
            "runpy.run_module('cml', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_figure_that_raises_value_error_fails_the_report_with_its_traceback(tmp_path):
    result = _report(tmp_path, "ValueError('operands could not be broadcast together with shapes (3,) (4,)')")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "in broken" in result.stderr
    assert "ValueError: operands could not be broadcast together" in result.stderr
    assert not (tmp_path / "report.pdf").exists()  # no believable half-report under the name asked for


def test_a_figure_that_cannot_draw_its_runs_makes_the_polite_page(tmp_path, monkeypatch, capsys):
    import figures.table4

    def cannot(*args, **kwargs):
        raise errors.FigureInputError("Table 4: none of maml, cml among the runs")

    monkeypatch.setattr(figures.table4, "figure", cannot)
    assert main(["report", str(_runs(tmp_path / "runs")), "-o", str(tmp_path / "report.pdf")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    texts = [" ".join((p.extract_text() or "").split()) for p in pypdf.PdfReader(tmp_path / "report.pdf").pages]
    page = next(t for t in texts if "Table 4: parameters and performance, fonts, 5-way 1-shot: not available" in t)
    assert "Not drawn" in page and "none of maml, cml among the runs" in page
    # The missing records (Figure 3's dynamics) still get their own page with the command that writes them.
    assert any("Not drawn: records missing" in t and "dynamics.jsonl" in t for t in texts)
