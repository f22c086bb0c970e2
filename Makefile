# codesign: every target creates the environment first if it is missing.
# The interpreter comes from .python-version (3.10, the only one lava-nc 0.10.0 imports on).
PYTHON ?= python3
UV := $(PYTHON) -m uv
BIN := .venv/bin
STUDY ?= studies/oja.yaml
N ?= 2
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: help setup demo study workers dashboard bench bench-gpu test test-all test-neurobench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(BIN)/.ready  ## create .venv with the codesign command (installs uv with pip if needed)

# The gpu group (cuRAND headers and library for the CUDA build, a Linux wheel of about 80 MB) is
# always installed: CI compiles the CUDA code of a task, and GPU nodes need nothing more.
$(BIN)/.ready: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode --group gpu
	@touch $@

demo: setup  ## rediscover Oja's rule with CMA-ES and print the rule found
	$(BIN)/codesign run studies/oja.yaml
	$(BIN)/codesign eval studies/oja.yaml

study: setup  ## run one study: make study STUDY=studies/oja.yaml
	$(BIN)/codesign run $(STUDY)

workers: setup  ## run a study with N local worker processes on its storage: make workers N=4 STUDY=studies/oja.yaml
	$(BIN)/codesign run $(STUDY) --workers $(N)

dashboard: setup  ## serve optuna-dashboard on a study's storage until Ctrl-C: make dashboard STUDY=studies/oja.yaml PORT=8080
	$(BIN)/codesign dashboard $(STUDY) --port $(PORT)

test: setup  ## run the tests: science claims on small budgets included, not those marked slow; cuda ones compile with nvcc where it is
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup  ## evaluations/s (naive, batched, standalone, reference, GPU where one is); the demo study against its raw rate (1, 2 workers); trials/s with 1 and 2 workers per storage; bookkeeping ms/trial on a null task; busy share of 32 workers, started staggered and together
	$(BIN)/python -m benchmarks

bench-gpu: setup  ## on a GPU node: cuda_standalone against cpp_standalone on batches that fill the GPU
	$(BIN)/python -m benchmarks --gpu

test-all: setup  ## run every test, slow ones too
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Its own environment: the neurobench package pulls torch and CUDA libraries from PyPI (about 4.2 GB
# of wheels, 7 GB installed; 46 s with an empty uv cache on the machine its figures were measured on).
test-neurobench: setup  ## cross-check the NeuroBench-style figures with the neurobench package (.venv-neurobench, ~7 GB)
	UV_PROJECT_ENVIRONMENT=.venv-neurobench $(UV) sync --frozen --group gpu --group neurobench
	.venv-neurobench/bin/python -m pytest -m neurobench $(PYTEST_ARGS)

clean:  ## remove results/ (the environment stays)
	rm -rf results
