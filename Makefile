# Two commands do all the set-up: `make run` (the main job) and `make test` (the suite).
# Each creates .venv and installs the project on first use; only Python 3.11+ is needed.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean browser

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

test: $(STAMP) browser
	$(BIN)/ruff check closeguard tests bench
	$(BIN)/ruff format --check closeguard tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
