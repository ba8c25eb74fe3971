# Two entry points: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEVSTAMP := $(VENV)/.installed-dev-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS :=
export LANGGRAPH_NO_VERSION_CHECK := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test services lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEVSTAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/agentguard demo

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

# The PostgreSQL and Redis binaries the tests need (the tests start their own servers).
services:
	bash scripts/ensure-services.sh

test: $(DEVSTAMP) services
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Benchmarks start real PostgreSQL/Redis servers and MCP servers, as the tests do.
bench: $(DEVSTAMP) services
	$(BIN)/python benchmarks/guard_overhead.py
	$(BIN)/python benchmarks/approval_overhead.py
	$(BIN)/python benchmarks/content_overhead.py
	$(BIN)/python benchmarks/injection_detection.py
	$(BIN)/python benchmarks/memory_overhead.py
	$(BIN)/python benchmarks/mcp_signing.py
	$(BIN)/python benchmarks/dlp_detection.py
	$(BIN)/python benchmarks/dlp_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
