# The two commands: `make run` (the main job, embedded SQLite, no servers) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run dev test lint bench services browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/agentflow run agents/count_to_n.json --engine dagster --input limit=5

dev: install
	DAGSTER_HOME=$$($(PY) -m agent_defs.instance) $(VENV)/bin/dagster dev -w workspace.yaml

services:
	./scripts/start_services.sh

# The UI test (tests/test_ui_browser.py) drives Debian's Chromium with Playwright; Playwright's own
# browser download does not work here. Installed only when missing, so a second run does nothing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium

browser: $(CHROMIUM)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install services browser lint
	$(PY) -m pytest

bench: install
	$(PY) -m bench.engine_bench
	$(PY) -m bench.dagster_bench
	$(PY) -m bench.template_bench
