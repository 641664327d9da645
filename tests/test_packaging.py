"""The package: pyproject.toml builds a wheel and an editable install whose `cml` command works outside the
checkout, and its dependencies agree with requirements.txt.

Each install goes into a fresh virtual environment made by this interpreter. The dependencies are not
downloaded again: a ``.pth`` file puts this environment's site-packages on the new one's path, and pip installs
the package itself with ``--no-deps --no-build-isolation`` (setuptools from this environment builds it). What is
tested is the project's own packaging: the package list, the console script, the version, the metadata.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

import cml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cml", "cml.data", "analysis", "figures")


def _requirements(lines: list[str]) -> dict[str, str]:
    """``{name (lower case): specifier}`` from requirement strings."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", line).groups()
            out[name.lower()] = spec.replace(" ", "")
    return out


def test_pyproject_dependencies_agree_with_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    declared = _requirements(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.update(_requirements(extra))
    # The same specifier wherever a package is named, and nothing declared that requirements.txt lacks.
    assert declared == {k: pinned[k] for k in declared}
    # requirements.txt is the whole environment: the runtime dependencies and every extra, nothing else.
    assert set(pinned) == set(declared)
    assert project["scripts"]["cml"] == "cml.cli:main"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def _source_copy(dest: Path) -> Path:
    # Built from a copy: a build in the checkout would leave build/ and *.egg-info behind.
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for package in ("cml", "analysis", "figures"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # This environment's packages (torch, numpy, ...) but not the checkout, and not cml itself.
    ours = Path(sysconfig.get_paths()["purelib"])
    (Path(site) / "_cml_test_dependencies.pth").write_text(f"{ours}\n")
    return python


def _pip(python: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", "install",
                    "--quiet", "--no-deps", "--no-build-isolation", *args], check=True, capture_output=True)


def _outside_checkout(python: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([str(python.parent / "cml"), *args] if args[0] != "-c" else [str(python), *args],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=120)


def _check_installed(python: Path, tmp: Path, expect_under: Path) -> None:
    version = _outside_checkout(python, tmp, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"cml {cml.__version__}", version
    help_ = _outside_checkout(python, tmp, "--help")
    assert help_.returncode == 0 and help_.stdout.startswith("usage: cml ")
    assert "train" in help_.stdout and "tensorboard" in help_.stdout
    train_help = _outside_checkout(python, tmp, "train", "--help")
    assert train_help.returncode == 0 and "--inner-lr" in train_help.stdout
    where = _outside_checkout(python, tmp, "-c", "import cml, cml.data, analysis.cka, figures.report; "
                                                 "print(cml.__file__); print(figures.report.__file__)")
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(expect_under.resolve()), (line, expect_under)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_with_the_cml_command(tmp_path):
    src = _source_copy(tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)], check=True,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("cml-*.whl")
    assert wheel.name.startswith(f"cml-{cml.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    for package in PACKAGES:
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert not any("tests/" in n or "__pycache__" in n for n in names)
    python = _fresh_venv(tmp_path / "venv")
    _pip(python, str(wheel))
    _check_installed(python, tmp_path, tmp_path / "venv")


@pytest.mark.slow
def test_editable_install_runs_the_checkout(tmp_path):
    src = _source_copy(tmp_path)
    python = _fresh_venv(tmp_path / "venv")
    _pip(python, "-e", str(src))
    _check_installed(python, tmp_path, src)


@pytest.mark.parametrize("argv", [["-m", "cml", "--version"]])
def test_python_dash_m_cml_equals_the_script(argv):
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"cml {cml.__version__}"
