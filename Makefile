# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv, installs requirements.txt and then this checkout as a package (`pip install -e .`: the
# `cml` command, and cml, analysis and figures importable from anywhere, notebooks and bench/ included).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# The suite on two pytest-xdist workers, one torch thread each (tests/conftest.py). --dist loadfile hands out a
# test file at a time, slowest first; tests/conftest.py groups the files that must share a worker (the Ray and
# Jupyter tests, one at a time; the figure sweeps, built once). `make test WORKERS=0` runs it in one process.
WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(WORKERS) --dist loadfile

.PHONY: demo lint test test-fast bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(PY) -m cml demo

# ruff's rules and mypy's module list are in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	$(PYTEST)

# The edit loop: the lint, then the suite without the slow tests, Ray and the notebooks.
test-fast: lint
	$(PYTEST) -m "not slow and not ray and not notebook"

bench: $(VENV)/.installed
	$(PY) bench/step_time.py

clean:
	rm -rf runs reports
