# Every target does its own set-up: a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install run test test-fast test-unit system-packages lint format bench bench-http bench-scale screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cronlock worker

test: $(STAMP) system-packages
	$(BIN)/pytest

# The edit-test loop: everything but the soak and the other long waits (CI runs `make test`).
test-fast: $(STAMP) system-packages
	$(BIN)/pytest -m "not slow"

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Debian packages some tests drive, installed best effort: chromium for the console's
# browser tests (through Playwright, never a browser Playwright downloads) and
# pgbouncer for the tests through a connection pooler, iproute2 (`ip`) for the partition
# test's network namespaces. When one is missing and we
# are root with apt-get, it is installed; a failure (no network, no package) only
# warns, and those tests then skip saying why. A no-op once all are there.
CHROMIUM := /usr/bin/chromium
PGBOUNCER := /usr/sbin/pgbouncer
APT_LOG := $(VENV)/apt-system-packages.log

system-packages: $(STAMP)
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	[ -x $(PGBOUNCER) ] || command -v pgbouncer >/dev/null 2>&1 || missing="$$missing pgbouncer"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing for the tests (apt-get, log in $(APT_LOG))"; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; } \
			>$(APT_LOG) 2>&1 \
			|| echo "could not install$$missing (see $(APT_LOG)); the tests needing it will skip"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

# One figure alone: an HTTP job's per-run overhead (needs no peer tools).
bench-http: $(STAMP)
	$(BIN)/python -m benchmarks.http_job

# 10,000 per-minute jobs across 8 worker processes for three whole minutes (about 4 min);
# the figures behind docs/sizing.md. BENCH_SCALE_JOBS/_WORKERS/_MINUTES change its size.
bench-scale: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.scale

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The console's screenshots in docs/, from a made-up history seeded into DATABASE_URL,
# which must name a throwaway database (scripts/console_screenshots.py says how).
screenshots: $(STAMP) system-packages
	$(BIN)/python scripts/console_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
