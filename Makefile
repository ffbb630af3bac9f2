# SpanLedger — the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

demo: install
	@echo "== pricing the bundled multi-agent sample trace (examples/agent-traces.jsonl) =="
	$(BIN)/spanledger cost examples/agent-traces.jsonl --rates examples/rates.yaml
	@echo
	@echo "== the same, as JSON for scripts: $(BIN)/spanledger cost examples/agent-traces.jsonl --json =="

bench: install
	$(BIN)/python benchmarks/pricing.py

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
