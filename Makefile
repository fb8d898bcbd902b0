# The README's commands: `make run` (JupyterLab on the example notebooks), `make test` and
# `make demo`. All of them set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# nbval compares every cell's fresh output with the one saved in the notebook; the sanitize file
# rewrites wall-clock values (ids, times) on both sides first.
NBVAL := --nbval --nbval-sanitize-with notebooks/nbval-sanitize.cfg

.PHONY: run venv test lint typecheck pytest notebooks demo clean bench

# The real algocline ecosystem (third-party, unmodified) for the conformance tests and the
# evaluation notebook, when the workplace's shared fixtures sit beside the project (as .ci/run
# does; a value already in the environment wins). Without the collection, 05-evaluate.ipynb
# (which installs it) is left out of nbval and the conformance tests skip, saying why.
FIXTURES := $(abspath ../shared/fixtures)
fixture = $(if $(wildcard $(FIXTURES)/$(1)),$(FIXTURES)/$(1))
export ALC_BUNDLED_PACKAGES ?= $(call fixture,algocline-bundled-packages)
export ALC_EVALFRAME ?= $(call fixture,evalframe)
export ALC_ENGINE_TESTS ?= $(call fixture,algocline-engine-tests)

# The example notebooks we ship, by name: nbval compares these and `make notebooks` re-executes
# these, never the whole folder, which `make run` serves as the user's workspace (a notebook
# saved there is the user's own). tests/test_notebooks.py::NAMES is the same list.
NOTEBOOKS := 01-quickstart 02-strategies 03-analysis 04-magics 05-evaluate 06-durable
NB_NEEDS_FIXTURES := 05-evaluate
nb_files = $(patsubst %,notebooks/%.ipynb,$(1))
NB_COMPARED := $(call nb_files,$(if $(ALC_BUNDLED_PACKAGES),$(NOTEBOOKS),$(filter-out $(NB_NEEDS_FIXTURES),$(NOTEBOOKS))))

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The package (editable) with its notebook and openai extras and the dev group; then the
# kernelspec `python3` in the venv, pointing at the venv's Python: JupyterLab, nbval and
# nbclient start the notebooks' kernels by that name. The install runs hatch_build.py, which
# compiles algocline_nb/_native/handoff.c in place (a change to either reinstalls).
$(STAMP): pyproject.toml Makefile hatch_build.py algocline_nb/_native/handoff.c | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[notebook,openai]' --group dev
	$(BIN)/python -m ipykernel install --sys-prefix --name python3
	touch $(STAMP)

venv: $(STAMP)

# JupyterLab on 127.0.0.1 with notebooks/ as its root; it prints the URL to open (Ctrl-C stops).
# As root (containers, CI machines) JupyterLab refuses to start without --allow-root.
run: venv
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --notebook-dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root)

lint: venv
	$(BIN)/ruff format --check algocline_nb tests hatch_build.py $(wildcard bench examples scripts)
	$(BIN)/ruff check algocline_nb tests hatch_build.py $(wildcard bench examples scripts)

typecheck: venv
	$(BIN)/mypy

# The unit tests (the browser test among them: it needs Debian's chromium, which .ci/run
# installs, and skips without it) and, in fresh kernels of the venv, nbval over the shipped
# notebooks (COLUMNS fixes the width of argparse's help, `%session CMD -h`, as
# scripts/run_notebooks.py does); then the engine's own tests again on the pure-Python path (no
# native library), as on a machine without a C compiler.
PURE_TESTS := tests/test_native.py tests/test_preempt.py tests/test_registry.py \
	tests/test_packages.py $(wildcard tests/test_adversarial_*.py)
pytest: venv
	COLUMNS=80 $(BIN)/pytest -q tests $(NB_COMPARED) $(NBVAL)
	ALGOCLINE_NB_NATIVE=0 $(BIN)/pytest -q $(PURE_TESTS)

test: lint typecheck pytest

# Re-execute the shipped notebooks and save them with their outputs and widget state (after a
# change of behaviour; nbval compares against what this saves).
notebooks: venv
	$(BIN)/python scripts/run_notebooks.py $(call nb_files,$(NOTEBOOKS))

# The quickstart notebook, headless, then a table of its sessions.
demo: venv
	$(BIN)/python scripts/demo.py

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q --group bench
	touch $(BENCH_STAMP)

# Side-by-side benchmarks with the peers (LangGraph, raw asyncio, anyio): rewrites bench/RESULTS.md.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
