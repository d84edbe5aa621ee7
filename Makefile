# The two commands a new user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean docs api-docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,rtl,models,explore,report,peers,decide,studio]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chipforge demo

test: $(STAMP)
	$(BIN)/python -m pytest

# the generated reference pages (tests fail when they are stale)
docs: $(STAMP)
	$(BIN)/python -m chipforge.cli.reference
	$(BIN)/python -m chipforge.spec.reference

# the Python API reference (import chipforge as cf), generated from the docstrings by pdoc
api-docs: $(STAMP)
	$(BIN)/python -m pdoc chipforge.api -o out/api

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_perf.py
	$(BIN)/python benchmarks/bench_cycle.py
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_rtl.py
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python benchmarks/bench_cluster.py
	$(BIN)/python benchmarks/bench_serving.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_silicon.py
	$(BIN)/python benchmarks/bench_decide.py
	$(BIN)/python benchmarks/bench_studio.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
