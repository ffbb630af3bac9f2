# SpanLedger — the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml src/spanledger/server/_wire.c src/spanledger/store/_columns.c
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The dashboard tests drive Debian's Chromium with Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: install Debian's chromium for the dashboard tests (they are skipped without it)"; fi; }

test: install browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

demo: install
	$(BIN)/python -m spanledger.demo

bench: install
	$(BIN)/python benchmarks/pricing.py
	$(BIN)/python benchmarks/sdk_overhead.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/query.py

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
