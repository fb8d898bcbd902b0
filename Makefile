# The two commands the README promises: `make run` (main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run venv test lint typecheck pytest clean bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e . --group dev
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/python examples/quickstart.py

lint: venv
	$(BIN)/ruff format --check algocline_nb tests $(wildcard bench examples)
	$(BIN)/ruff check algocline_nb tests $(wildcard bench examples)

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q

test: lint typecheck pytest

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q --group bench
	touch $(BENCH_STAMP)

# Side-by-side benchmarks with the peers (LangGraph, raw asyncio, anyio): rewrites bench/RESULTS.md.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
