# vipe-dagster developer entry points. Every target bootstraps .venv idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip warns once per absent local index folder; keep real errors visible
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
APT_PKGS := libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglib2.0-0 chromium postgresql
export PYOPENGL_PLATFORM := egl
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export GX_ANALYTICS_ENABLED := false
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup apt demo test test-fast test-reliability ui lint bench clean

setup: $(STAMP)

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; fi

$(STAMP): requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory apt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(QUIET_PIP)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1 $(QUIET_PIP)
	$(BIN)/pip install -q -r requirements.txt $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . $(QUIET_PIP)
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/vipe-dagster demo

test: setup
	$(BIN)/python -m pytest -q --timeout=900

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" --timeout=600

test-reliability: setup  # every bad input of issue 21 against the real CLI (also part of `make test`)
	$(BIN)/python -m pytest -q tests/reliability --timeout=600

ui: setup
	$(BIN)/vipe-dagster ui

lint: setup
	$(BIN)/ruff check vipe_dagster assets_defs resources gpu_kernels tests

bench: setup
	$(BIN)/vipe-dagster bench --json bench.json --markdown docs/benchmarks.md

clean:
	rm -rf $(VENV) .dagster_home build *.egg-info
