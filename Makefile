# Adminsite. From a fresh clone with Python 3.11+, make and git:
#
#   make run     serve the console at http://$(HOST):$(PORT)/admin/ with a Celery worker and
#                beat; Ctrl-C stops everything, the embedded servers included
#   make test    lint, then the whole test suite
#   make bench   every benchmark in bench/ (bench/bench_*.py)
#
# Each bootstraps .venv first. With DATABASE_URL / REDIS_URL unset, a project-local PostgreSQL
# and Redis under .devdata/ are started for the command and stopped after it, unless they were
# already running (see adminsite/devservices.py).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY := $(BIN)/python
# Written after a successful install; older than pyproject.toml means install again.
STAMP := $(VENV)/.installed
DEVDATA := $(or $(ADMINSITE_DEVDATA),.devdata)
WITH_SERVICES := $(PY) -m adminsite.devservices run --
# mypy's Django plugin imports the settings, which start the embedded servers when no URL is
# set; placeholder URLs (never connected to) keep type checking from leaving servers running.
MYPY := DATABASE_URL=$${DATABASE_URL:-postgresql://unused/typecheck} REDIS_URL=$${REDIS_URL:-redis://unused/0} mypy

HOST ?= 127.0.0.1
PORT ?= 8000
# Two test processes on two cores (pytest-xdist); PYTEST_ARGS= runs them in one.
PYTEST_ARGS ?= -n 2
export HOST PORT
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

STARTED := $(shell date +%s)

# The first Python 3.11+ on PATH (only looked for when .venv has to be made).
PYTHON ?= $(firstword $(foreach candidate,python3 python3.13 python3.12 python3.11,\
	$(shell $(candidate) -c 'import sys; sys.version_info >= (3, 11) and print(sys.executable)' 2>/dev/null)))

.PHONY: help bootstrap run test bench lint fmt clean chromium

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	@if [ -z "$(PYTHON)" ]; then echo "Python 3.11 or newer is needed on PATH (python3)." >&2; exit 1; fi
	@echo "Creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { echo "On Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }

# Dependencies straight from pyproject.toml ([project] and the dev extra). The project itself is
# not installed: it runs from this directory, and setuptools has no packages to build for it.
$(STAMP): pyproject.toml | $(PY)
	@echo "Installing dependencies from pyproject.toml into $(VENV)"
	@$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > $(VENV)/requirements.txt
	@$(PY) -m pip install --progress-bar off -r $(VENV)/requirements.txt \
		| { grep -v '^Requirement already satisfied' || true; }
	@touch $@

bootstrap: $(STAMP) ## create .venv and install the dependencies when pyproject.toml changed

run: bootstrap ## serve the console, a Celery worker and beat (Ctrl-C stops all of it)
	@mkdir -p $(DEVDATA)
	@$(WITH_SERVICES) bash -c 'set -euo pipefail; \
		python manage.py migrate --no-input; \
		python manage.py seed_demo; \
		echo; \
		echo "Adminsite is starting at http://$$HOST:$$PORT/admin/ (set-up took $$(( $$(date +%s) - $(STARTED) )) s)."; \
		echo "Ctrl-C stops the web server, worker, beat, PostgreSQL and Redis."; \
		echo; \
		exec honcho start --procfile Procfile --port "$$PORT"'

test: bootstrap chromium ## lint and type-check, then the whole test suite (PYTEST_ARGS to narrow it)
	ruff check .
	$(MYPY)
	$(WITH_SERVICES) pytest $(PYTEST_ARGS)

bench: bootstrap ## run every bench/bench_*.py against the development database
	@$(WITH_SERVICES) bash -c 'set -uo pipefail; shopt -s nullglob; \
		python manage.py migrate --no-input >/dev/null || exit 1; \
		failed=(); \
		for script in bench/bench_*.py; do \
			echo "== $$script"; \
			python "$$script" || failed+=("$$script"); \
			echo; \
		done; \
		if (( $${#failed[@]} )); then echo "failed: $${failed[*]}" >&2; exit 1; fi'

lint: bootstrap ## ruff: lint and formatting check; mypy: type check
	ruff check .
	ruff format --check .
	$(MYPY)

fmt: bootstrap ## ruff: apply the formatting and the safe fixes
	ruff format .
	ruff check --fix .

clean: ## stop the embedded servers and delete their data (.devdata); YES=1 skips the question
	@if [ "$(YES)" != 1 ]; then \
		read -r -p "Stop the embedded servers and delete $(DEVDATA) with all local data? [y/N] " answer; \
		[[ "$$answer" == [yY]* ]] || { echo "Nothing deleted."; exit 1; }; \
	fi
	@if [ -x $(PY) ]; then $(PY) -m adminsite.devservices stop; fi
	rm -rf $(DEVDATA) staticfiles .pytest_cache .ruff_cache

# The browser tests drive Debian's chromium; in CI (root, fresh machine) install it first.
chromium:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="chromium fonts-liberation"; \
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing for the tests:$$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		else \
			echo "warning: missing$$missing; the browser tests need chromium, the compose check docker-compose" >&2; \
		fi; \
	fi
