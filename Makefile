# Two commands do all the set-up: `make run` (the main job) and `make test` (the suite).
# Each creates .venv and installs the project on first use; only Python 3.11+ is needed.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean browser drills

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "closeguard needs Python 3.11 or newer on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make run`: the workflow runtime for 30 s (on the embedded simulator without CLOSE_API_KEY);
# `make run DURATION=` runs until Ctrl-C.
DURATION ?= 30
run: $(STAMP)
	$(BIN)/closeguard run $(if $(DURATION),--duration $(DURATION))

# Debian's Chromium for the console's browser tests (Playwright drives it; no browser
# download). Installed only when missing; needs root (as in CI), else says what to run.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the console's browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  >/dev/null || echo "could not install chromium: run 'apt-get install chromium' as root; \
	the console's browser tests need /usr/bin/chromium"; }

# The suite on three pytest-xdist workers: much of it waits on child processes and PostgreSQL,
# so on two cores three workers overlap best (measured: 2 workers 295 s, 3 workers 216 s,
# 4 workers 231 s and a browser test starved). Tests are isolation-safe (port 0, tmp dirs, a
# fresh PostgreSQL database or schema each); `.venv/bin/pytest -q` alone
# runs it in one process. Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: else
# each worker re-rewrites every test module's asserts and each `closeguard` child recompiles.
test: $(STAMP) browser
	$(BIN)/ruff check closeguard tests bench
	$(BIN)/ruff format --check closeguard tests bench
	$(BIN)/mypy
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n 3

# `make drills`: every reliability and security drill of docs/reliability.md, full size:
# `closeguard drill all` (faults, crash on SQLite and on PostgreSQL in a scratch database,
# receiver kill, downtime, attack), the pytest drills with FUZZ_EXAMPLES examples per fuzz
# test (bad input: files, webhooks, MCP arguments, console forms; secrets; backup; random
# policies), then a SOAK_MINUTES soak at 50 deliveries/s. The 10-minute soak is
# `make drills SOAK_MINUTES=10` (over the 10 minutes in all) or bench/soak.py alone.
DRILL_PG ?= postgresql://127.0.0.1:5432/test
SOAK_MINUTES ?= 2
FUZZ_EXAMPLES ?= 300
drills: $(STAMP)
	$(BIN)/closeguard drill all --pg $(DRILL_PG)
	CLOSEGUARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/test_drill_fuzz.py \
	  tests/test_drill_fuzz_mcp.py tests/test_drill_fuzz_console.py tests/test_drill_secrets.py \
	  tests/test_drill_backup.py tests/test_guard_properties.py tests/test_secrets_plugin.py \
	  tests/test_wf_receiver.py
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES) --window 30

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
