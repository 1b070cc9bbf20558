# sessionshift: make demo (the whole rollout on this machine), make test (everything CI runs).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup system-deps demo test unit integration molecule molecule-adopt lint sanity bench load fuzz soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps:  ## redis-server and redis-cli from the OS packages, when missing
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
	  echo "installing redis-server (apt-get)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: system-deps $(BIN)/.installed  ## venv with sessionshift and the pinned tools

demo: setup  ## the whole rollout (phase 1 to 5, a rollback on alert, a rollback drill) on local Redis and moto
	$(BIN)/python tools/demo.py

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

lint: setup  ## ansible-lint (production profile), ansible-doc on every module, ruff
	@for old in library module_utils doc_fragments playbooks/filter_plugins; do \
	  [ ! -e "$$old" ] || { echo "$$old/ is back: the collection's plugins live in plugins/"; exit 1; }; \
	done
	$(BIN)/ruff check src tests plugins molecule bench tools devstack
	@if ls roles/*/tasks/*.yml playbooks/*.yml >/dev/null 2>&1; then $(BIN)/ansible-lint; fi
	@for module in plugins/modules/*.py; do \
	  [ -e "$$module" ] || continue; \
	  $(BIN)/ansible-doc -t module "sessionshift.migration.$$(basename $$module .py)" >/dev/null || exit 1; \
	done

sanity: setup  ## ansible-test sanity and units on the collection, built and installed in a temporary path
	$(BIN)/python tools/collection.py sanity units

test: setup  ## everything CI runs: unit, integration, load (short), molecule scenarios, lint, sanity
	$(BIN)/pytest --durations=30 tests  # the slowest 30 in the log: the suite's budget is 40 min
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory sanity

molecule: setup  ## the molecule scenarios alone (default, rollback, aws)
	$(BIN)/pytest -q tests/integration/test_molecule.py

# Not in `make test`: 5 min 36 s here (molecule/adopt/molecule.yml), on a suite already near its
# budget; tests/integration/test_app_adopt.py walks the same app 1 -> 5 -> 1 with live users inside it.
# Fixed ports (inventories/local's Redis, the notes app on 18011): not beside `make demo` or molecule.
molecule-adopt: setup  ## molecule scenario adopt: the notes app adopted, phases 1 to 5 and back to file
	$(BIN)/molecule test -s adopt

bench: setup  ## benchmarks (not tests): ratios measured side by side, see docs/benchmarks.md
	$(BIN)/python -m bench

# INVENTORY=inventories/staging: the 3 profiles against that inventory's app hosts instead.
INVENTORY ?=
load: setup  ## load tests: the seed's 3 profiles, live flips, faults (bench/results/load, docs/load.md)
ifeq ($(INVENTORY),)
	$(BIN)/python -m tests.load.profiles
	$(BIN)/python -m tests.load.live_flip
	$(BIN)/python -m tests.load.faults
else
	$(BIN)/python -m tests.load.profiles --inventory $(INVENTORY)
endif

fuzz: setup  ## a million generated session files and values through every decode path (docs/security.md)
	nice -n 19 $(BIN)/python -m tests.fuzz.decode --decodes 1000000 --seed 1

soak: setup  ## the model-based test, long: 500 random walks of the fleet against a real Redis (docs/load.md)
	nice -n 19 $(BIN)/python -m tests.model.soak --walks 500 --steps 36

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis run
