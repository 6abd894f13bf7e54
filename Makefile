# Loopline. `make help` lists every target.
#   make demo   the whole loop locally (sets up venv, Docker engine, base image, images)
#   make test   the full test suite (same set-up)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON       ?= python3
VENV         ?= .venv
TFDV_VENV    := .venv-tfdv
TUNER_VENV   := .venv-tuner
MLFLOW_VENV  := .venv-mlflow
SERVING_VENV := .venv-serving
FEATURES_VENV := .venv-features
VERSION      := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' components/_version.py)
REVISION     := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
REGISTRY     ?= loopline
# The base every image builds FROM. `make base-image` pulls it or, where no image
# registry can be reached, builds an equivalent from Debian packages and uses that.
BASE_IMAGE   ?= python:3.11-slim-bookworm
LOCAL_BASE   ?= loopline/base:py3.11-bookworm
# Extra CA certificates for pip inside image builds (a TLS-intercepting proxy, say).
EXTRA_CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
IMAGES       := pipeline tfdv tuner mlflow serving features
PIPELINE_ROOT ?= $(CURDIR)/.build/pipeline_root
PYTEST_ARGS  ?=

BIN      := $(VENV)/bin
# pip, minus the warnings this machine's pip.conf prints for absent local indexes.
QUIET_PIP = 2>&1 | sed -u '/WARNING: Location .* is ignored/d'
STAMP    := .build/stamps

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---------------------------------------------------------------- environments
$(STAMP)/venv: images/pipeline/requirements.txt tests/requirements.txt pyproject.toml
	@mkdir -p $(STAMP)
	@echo "setup: main env $(VENV) (kfp, pandas, pyarrow, pytest, ruff, moto)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r images/pipeline/requirements.txt -r tests/requirements.txt $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps -e . $(QUIET_PIP)
	@touch $@

# A side env for each image that cannot share the main env (tfdv: TFDV needs protobuf < 5;
# tuner: the Katib SDK; mlflow: the tracking server, which needs pyarrow < 26; serving: the
# model server, kserve 0.21 needs pandas < 3; features: Feast 0.67, which needs pandas < 3): the image's
# lock plus pytest. TFDV takes ~3 minutes the first time.
$(STAMP)/venv-%: images/%/requirements.txt
	@mkdir -p $(STAMP)
	@echo "setup: .venv-$* from $<"
	@test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install -q -r $< pytest==$$(sed -n 's/^pytest==//p' tests/requirements.txt) $(QUIET_PIP)
	@touch $@

.PHONY: setup
setup: $(STAMP)/venv $(STAMP)/venv-tfdv $(STAMP)/venv-tuner $(STAMP)/venv-mlflow $(STAMP)/venv-serving $(STAMP)/venv-features ## Create the dev virtualenvs (main env; TFDV env; tuner env; MLflow server env; model server env; Feast env) from the locked requirements

.PHONY: lock
lock: ## Re-resolve the requirement locks from the requirements.in files (slow; needs PyPI; LOCK="pipeline mlflow" for some)
	images/lock.sh $(LOCK)

# ---------------------------------------------------------------- containers
.PHONY: engine
engine: ## Make sure a Docker engine answers (install and start docker.io on Debian as root)
	@images/engine.sh

# Debian's nginx (the local traffic split and mirror), prometheus with promtool (the gates'
# metrics, the alert rules' checks), wrk (the serving benchmark's load) and redis-server (the
# feature store's online store on the cluster target, tested against a real one).
SYSTEM_TOOLS := nginx prometheus promtool wrk redis-server
.PHONY: system
system: ## Make sure nginx, prometheus, promtool, wrk and redis-server are installed (apt-get install nginx-light prometheus wrk redis-server on Debian as root)
	@missing=""; for t in $(SYSTEM_TOOLS); do \
	  command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "system: installing nginx-light prometheus wrk redis-server (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      nginx-light prometheus wrk redis-server >/dev/null; \
	  else \
	    echo "system: missing:$$missing; install Debian's nginx-light, prometheus, wrk and redis-server (or your system's packages of them)"; exit 1; \
	  fi; \
	fi; echo "system: nginx, prometheus, promtool, wrk and redis-server are installed"

.PHONY: base-image
base-image: engine ## Pull python:3.11-slim-bookworm, or build an equivalent with debootstrap where it cannot be pulled
	@mkdir -p .build
	@BASE_IMAGE=$(BASE_IMAGE) LOCAL_BASE=$(LOCAL_BASE) images/base/build.sh .build/base-image

.build/ca/extra.crt: $(EXTRA_CA_BUNDLE)
	@mkdir -p .build/ca
	@if [ -n "$(EXTRA_CA_BUNDLE)" ]; then cp "$(EXTRA_CA_BUNDLE)" $@; else : > $@; fi

.PHONY: images
images: base-image .build/ca/extra.crt ## Build every image under images/ (tags from the package version; cached)
	@for name in $(IMAGES); do \
	  tag=$(REGISTRY)/$$name:$(VERSION); \
	  echo "images: building $$tag FROM $$(cat .build/base-image)"; \
	  start=$$(date +%s); \
	  DOCKER_BUILDKIT=0 docker build --network=host \
	    --build-arg BASE_IMAGE=$$(cat .build/base-image) \
	    --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	    -f images/$$name/Dockerfile -t $$tag . 2>&1 \
	    | grep --line-buffered -E '^(Step [0-9]+/[0-9]+ : (FROM|RUN|COPY)|Successfully tagged|ERROR|error)' \
	    | sed -u 's/^/images:   /' | cut -c1-150; \
	  echo "images: $$tag ready in $$(( $$(date +%s) - start )) s, $$(docker image inspect -f '{{.Size}}' $$tag | awk '{printf "%.0f MB", $$1/1e6}')"; \
	done

# ---------------------------------------------------------------- pipelines
.PHONY: compile
compile: $(STAMP)/venv ## Compile every component.yaml and pipeline.yaml (REGISTRY=... OUT_DIR=... for your registry)
	$(BIN)/python -m pipelines.compile $(if $(filter-out loopline,$(REGISTRY)),--registry $(REGISTRY) --out-dir $(or $(OUT_DIR),.build/yaml))

.PHONY: check-compiled
check-compiled: $(STAMP)/venv ## Fail if a committed YAML differs from what the code compiles to
	$(BIN)/python -m pipelines.compile --check

.PHONY: lint
lint: $(STAMP)/venv ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# ---------------------------------------------------------------- the two commands
TFDV_TESTS := $(wildcard components/*/tests/test_tfdv_*.py)
TUNER_TESTS := $(wildcard components/*/tests/test_tuner_*.py)
FEATURES_TESTS := $(wildcard components/*/tests/test_features_*.py)

# The set-up of `test` and `demo`: first the system packages and the engine (apt-get, one at a
# time), then three steps at a time: the image builds (one after another) beside the venvs
# and lint. pip installs and image builds are CPU-bound: the six venvs from scratch took
# 3.4 min three at a time, 6.6 min one after another.
SETUP_JOBS ?= 3

.PHONY: test
test: ## Run every test: unit, kfp.local SubprocessRunner, DockerRunner end to end, TFDV, tuner and Feast envs
	@$(MAKE) --no-print-directory system engine
	@$(MAKE) --no-print-directory -j$(SETUP_JOBS) images setup lint
	TUNER_TESTS="$(TUNER_TESTS)" FEATURES_TESTS="$(FEATURES_TESTS)" TFDV_TESTS="$(TFDV_TESTS)" \
	  tests/run_suites.sh .build/test-logs $(BIN)/python $(TUNER_VENV)/bin/python \
	  $(FEATURES_VENV)/bin/python $(TFDV_VENV)/bin/python $(PYTEST_ARGS)

.PHONY: demo
demo: ## The whole loop locally on the Bikeshare data, every task in its container
	@$(MAKE) --no-print-directory system engine
	@$(MAKE) --no-print-directory -j$(SETUP_JOBS) images $(STAMP)/venv $(STAMP)/venv-mlflow $(STAMP)/venv-serving
	$(BIN)/python examples/bikeshare/demo.py --pipeline-root $(PIPELINE_ROOT)

.PHONY: clean
clean: ## Remove venvs, build outputs and local pipeline runs (images stay; `docker rmi` them)
	rm -rf $(VENV) $(TFDV_VENV) $(TUNER_VENV) $(MLFLOW_VENV) $(SERVING_VENV) $(FEATURES_VENV) .build .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
