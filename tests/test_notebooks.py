"""The notebooks: stored valid and without outputs, in sync with their generator, and each runs top to bottom.

Each notebook is executed with nbclient after a papermill-style "injected-parameters" cell that shrinks the
run to a few outer steps. The kernel is this interpreter (the venv's), through a ``python3`` kernelspec
written into a temporary JUPYTER_PATH, so no system-wide kernel is picked up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient


ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["table1_plugins.ipynb", "fig2_sinusoid.ipynb", "fig3_learning_dynamics.ipynb", "fig4_tsne.ipynb",
         "table4_baselines.ipynb", "ablation_gamma.ipynb"]

# Tiny settings per notebook: a few outer steps, a few tasks; the image notebooks use 16 filters (the smallest
# width at which More-MAML can match CML's parameter count) and a meta-batch of 2.
_IMAGE = {"filters": 16, "meta_batch": 2, "val_tasks": 4, "record_tasks": 4, "log_interval": 2}
INJECT = {
    "fig2_sinusoid.ipynb": dict(SHOTS=[5, 10], STEPS=10, TEST_TASKS=5, RECORD_INTERVAL=5,
                                OVERRIDES={"val_tasks": 4, "record_tasks": 3, "log_interval": 5}),
    "fig3_learning_dynamics.ipynb": dict(SEEDS=[0, 1], STEPS=4, TEST_TASKS=5, RECORD_INTERVAL=2, VAL_INTERVAL=2,
                                         METHODS=["none", "random", "cl", "cml"], OVERRIDES=_IMAGE),
    "fig4_tsne.ipynb": dict(STEPS=2, TEST_TASKS=5, RECORD_INTERVAL=2, OVERRIDES=_IMAGE),
    "table4_baselines.ipynb": dict(STEPS=2, TEST_TASKS=5, OVERRIDES={**_IMAGE, "val_interval": 0}),
    "table1_plugins.ipynb": dict(BASES=["maml", "boil"], SEEDS=[0, 1], STEPS=2, TEST_TASKS=5,
                                 OVERRIDES={**_IMAGE, "val_interval": 0}),
    # Sinusoid: the grid's four cells train in seconds; its co-learner is the linear head.
    "ablation_gamma.ipynb": dict(TASK="sinusoid", GAMMAS=[0, 1], CO_LEARNERS=["linear"], SEEDS=[0, 1], STEPS=2,
                                 TEST_TASKS=5, OVERRIDES={"val_tasks": 3}),
}


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(NOTEBOOKS / name), as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_v4_without_outputs(name):
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} is stored with outputs"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and nb.cells[tagged[0]].cell_type == "code"
    params = nb.cells[tagged[0]].source
    assert "paper" in params and "RUNS = None" in params  # the paper's settings beside the quick defaults


def test_notebooks_match_their_generator(tmp_path):
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import build_notebooks
    finally:
        sys.path.remove(str(NOTEBOOKS))
    for path in build_notebooks.build(tmp_path):
        assert path.read_text() == (NOTEBOOKS / path.name).read_text(), (
            f"{path.name} differs from notebooks/build_notebooks.py; run python notebooks/build_notebooks.py")


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, fonts_cache):
    """A ``python3`` kernelspec running this interpreter, first on JUPYTER_PATH while the tests run."""
    folder = tmp_path_factory.mktemp("jupyter")
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "CML_CACHE": str(fonts_cache),  # the fonts rendered once per test session
        "OMP_NUM_THREADS": "1",  # tiny convolutions: threads only contend on 2 busy cores
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (cml tests)", "language": "python", "env": env,
    }))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(folder), old] if old else [str(folder)])
    yield folder
    if old is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = old


def _inject(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    cell = nbformat.v4.new_code_cell("# Injected by the test\n" + "\n".join(f"{k} = {v!r}" for k, v in values.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    cell.id = "injected-parameters"
    nb.cells.insert(index + 1, cell)
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, kernel_env, tmp_path):
    nb = _inject(_load(name), INJECT[name])
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} showed no figure"
    text = " ".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "runs:" in text
    stem = {"fig2_sinusoid.ipynb": "fig2", "fig3_learning_dynamics.ipynb": "fig3", "fig4_tsne.ipynb": "fig4",
            "table4_baselines.ipynb": "table4", "table1_plugins.ipynb": "table1",
            "ablation_gamma.ipynb": "ablation"}[name]
    out = tmp_path / "runs" / "notebooks" / stem
    saved = sorted(p.name for p in out.glob("*.png"))
    # Figure 3 is two pages, as in the report; every other notebook one figure.
    assert len(saved) == (2 if name == "fig3_learning_dynamics.ipynb" else 1), saved
    assert all((out / png).with_suffix(".pdf").is_file() for png in saved)
    if name == "table4_baselines.ipynb":
        markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
        assert markdown and "| CML† (official code) |" in markdown[0] and "| More-MAML |" in markdown[0]
        assert "| CML† (Eq. 9) |" in markdown[0]  # every protocol the runs' test.json hold
    if name == "table1_plugins.ipynb":
        markdown = " ".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
        assert "| MAML |" in markdown and "| BOIL |" in markdown and "CML improves BOIL" in text
    if name == "fig3_learning_dynamics.ipynb":
        markdown = " ".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
        # The paper's Figure 3 claims as it states them, with their source, CL and the random co-learner trained.
        assert "[3a-random]: CML converges to better parameters than MAML with a random co-learner" in markdown
        assert "Figure 3b, Section 4.4" in markdown and "pairing: by seed" in markdown
        assert "[3b-below-cl]" in markdown and "no CL run" not in markdown and "no MAML + random" not in markdown
    if name == "fig4_tsne.ipynb":
        assert "runs: maml s0, cl s0, cml s0" in text


# -- the README's papermill commands, as written -------------------------------------------------------------------


def readme_notebook_lines() -> list[str]:
    """The lines of the README's bash block of papermill commands (section "Notebooks"), as written."""
    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "/papermill " in b]
    assert len(blocks) == 1, "the README should hold one bash block of papermill commands"
    return [line for line in blocks[0].splitlines() if line.strip()]


def _fresh_clone(dest: Path) -> Path:
    # What a clone holds: the tracked files (and the new ones of this change), without runs/, out/ or caches.
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    # `make` would create the clone's .venv; this environment's stands in for it.
    (dest / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    return dest


@pytest.mark.notebook
def test_readme_papermill_commands_run_as_written(kernel_env, tmp_path):
    from cml.cli import main

    lines = readme_notebook_lines()
    assert lines[0] == "mkdir -p out" and all(line.startswith(".venv/bin/papermill notebooks/") for line in lines[1:])
    clone = _fresh_clone(tmp_path / "clone")
    assert not (clone / "out").exists() and not (clone / "runs").exists()
    # The sweep the README's commands draw, tiny: the section it names trains it at the quick preset.
    assert main(["sweep", "--task", "fonts", "--methods", "none,cml", "--seeds", "0", "--steps", "4", "--filters", "16",
                 "--meta-batch", "2", "--record-interval", "2", "--val-interval", "2", "--val-tasks", "4",
                 "--test-tasks", "5", "--record-tasks", "4", "--checkpoint-interval", "0", "--no-progress",
                 "--out", str(clone / "runs" / "fig34-fonts")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for line in lines:
        done = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    # The same command with the kernel started in notebooks/ (as Jupyter does) reads the same folders: relative
    # parameters are the repository root's.
    fig4 = next(line for line in lines if "fig4_tsne" in line)
    moved = fig4.replace("out/fig4.ipynb", "out/fig4-cwd.ipynb") + " --cwd notebooks"
    done = subprocess.run(["bash", "-c", moved], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("fig3.ipynb", "fig4.ipynb", "fig4-cwd.ipynb"):
        nb = nbformat.read(str(clone / "out" / name), as_version=4)
        outputs = _outputs(nb)
        assert not [o for o in outputs if o.output_type == "error"], name
        text = " ".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert f"repository root: {clone.resolve()}" in text and "runs: maml s0, cml s0" in text, name
    assert sorted(p.name for p in (clone / "out" / "fig3").glob("*.png")) == ["fig3_ab.png", "fig3_cd.png"]
    assert (clone / "out" / "fig4" / "fig4_tsne.png").is_file()
    assert not (clone / "notebooks" / "out").exists() and not (clone / "notebooks" / "runs").exists()


def test_notebook_paths_are_the_repository_roots(tmp_path):
    from figures.notebook import checkout_root, in_checkout

    assert checkout_root(NOTEBOOKS) == ROOT and checkout_root(ROOT / "cml" / "tasks") == ROOT
    assert in_checkout("runs/demo/fonts", NOTEBOOKS) == ROOT / "runs" / "demo" / "fonts"
    assert in_checkout(tmp_path / "x", NOTEBOOKS) == tmp_path / "x"  # absolute paths stay as given
    assert checkout_root(tmp_path) == tmp_path.resolve()  # outside a checkout: the working folder
    assert ".venv/bin/papermill" in " ".join(readme_notebook_lines())
    # out/, where the README's commands write, is ignored by git.
    assert "/out/" in (ROOT / ".gitignore").read_text().splitlines()
