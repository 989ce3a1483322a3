# The README's commands. Each sets up what it needs: uv (into .tools/), the locked
# environment (.venv/), and, for the tests, Debian packages installed with apt when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := .tools/bin/uv
STAMP := $(VENV)/.synced

# The demo keeps its model store and event log inside the project (gitignored).
export WORKBENCH_HOME ?= $(CURDIR)/.workbench
export BENTOML_DO_NOT_TRACK := True
DEMO_BENTOML_HOME ?= $(WORKBENCH_HOME)/bentoml

.PHONY: help venv demo test bench lint lab clean system-deps

help:
	@echo "make demo   fit, store, serve and A/B test two Bayesian models; ends on the dashboard"
	@echo "make test   the whole test suite (real servers, real databases, real browser)"
	@echo "make lab    JupyterLab on notebooks/ with the project's kernel, widgets and Panel"
	@echo "make bench  benchmarks against peers in one run; rewrites benchmarks/RESULTS.md (BENCH_ARGS=--quick)"
	@echo "make lint   ruff"
	@echo "make clean  remove .venv, .tools and the demo's state"

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (apt-get install python3.11)"; exit 1; }
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools uv

$(STAMP): pyproject.toml uv.lock | $(UV)
	PYTHONPATH=.tools $(UV) sync --frozen --extra dev --python $(PYTHON) --compile-bytecode
	@touch $@

venv: $(STAMP)

demo: venv
	BENTOML_HOME=$(DEMO_BENTOML_HOME) $(BIN)/workbench demo --dashboard
	@echo
	@echo "model store: export BENTOML_HOME=$(DEMO_BENTOML_HOME) to use it with workbench/bentoml;"
	@echo "event store: $(WORKBENCH_HOME)/events.db (workbench analyze EXPERIMENT)"

# JupyterLab on the notebooks, sharing the demo's model store and event log. The kernel is
# this .venv's Python; ipywidgets' and Panel's extensions come with their packages.
LAB_PORT ?= 8888
lab: venv
	BENTOML_HOME=$(DEMO_BENTOML_HOME) $(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) \
	  --ServerApp.root_dir=notebooks --LabApp.news_url= --LabApp.extension_manager=readonly \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

# Debian packages some tests need, installed when missing and we are root (CI is);
# otherwise those tests skip and say what to install.
system-deps:
	@need=""; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	for tool in buildah podman debootstrap haproxy redis-server; do \
	  command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || need="$$need $$tool"; \
	done; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$need"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  else echo "missing Debian packages:$$need (apt-get install$$need); their tests will skip"; fi; \
	fi

test: venv system-deps
	$(BIN)/python -m pytest --durations=25

# make bench's load at 64 clients comes from hey (Debian's Go load generator), which leaves
# more of the cores to the server than a Python client; without it, aiohttp (and it says so).
bench-deps:
	@command -v hey >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing: hey"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null; \
	  else echo "missing Debian package hey (apt-get install hey): the load comes from aiohttp"; fi; }

bench: venv bench-deps
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check src tests bentos dashboards benchmarks notebooks

clean:
	rm -rf $(VENV) .tools $(WORKBENCH_HOME) .pytest_cache
