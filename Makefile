# Every target does its own set-up: a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install run test test-fast test-unit browser lint format bench bench-http screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cronlock worker

test: $(STAMP) browser
	$(BIN)/pytest

# The edit-test loop: everything but the soak and the other long waits (CI runs `make test`).
test-fast: $(STAMP) browser
	$(BIN)/pytest -m "not slow"

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The console's browser tests drive Debian's chromium through Playwright (never a
# browser Playwright downloads). Best effort: when $(CHROMIUM) is missing and we are
# root with apt-get, install it; a failure (no network, no package) only warns, and
# those tests then skip saying how to install it. A no-op once chromium is there.
CHROMIUM := /usr/bin/chromium
CHROMIUM_LOG := $(VENV)/apt-chromium.log

browser: $(STAMP)
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser tests (apt-get, log in $(CHROMIUM_LOG))"; \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
			>$(CHROMIUM_LOG) 2>&1 \
			|| echo "could not install chromium (see $(CHROMIUM_LOG)); the browser tests will skip"; \
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

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The console's screenshots in docs/, from a made-up history seeded into DATABASE_URL,
# which must name a throwaway database (scripts/console_screenshots.py says how).
screenshots: $(STAMP) browser
	$(BIN)/python scripts/console_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
