# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv, installs requirements.txt and then this checkout as a package (`pip install -e .`: the
# `cml` command, and cml, analysis and figures importable from anywhere, notebooks and bench/ included).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(PY) -m cml demo

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) bench/step_time.py

clean:
	rm -rf runs reports
