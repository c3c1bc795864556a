# qmimic developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,export,openvino,report,cluster,docs]'
	@touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create .venv and install qmimic with pinned torch/torchvision (no-op when up to date)

DEMO_STAGES := teacher qteacher scratch mimic qmimic

.PHONY: demo
demo: setup ## the whole method on the built-in shapes data: teacher, quantized teacher, 1/16 students; prints the table
	$(BIN)/python -m qmimic.pipeline --out outputs/demo --stages $(DEMO_STAGES) --evidence study/results.json $(ARGS)

# The default tier runs in TEST_WORKERS pytest-xdist processes with one math thread each, each
# test file in one process (so a module fixture runs once): most of its time is spent starting
# commands in subprocesses, which one process cannot overlap. `make test TEST_WORKERS=0` runs it
# in one process.
TEST_WORKERS ?= 2

.PHONY: test
test: setup ## run the default test suite (unit, config and smoke tests; < 10 min on 2 cores)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

.PHONY: test-slow
test-slow: setup ## run the slow tests too
	$(BIN)/python -m pytest -m "not gpu" $(ARGS)

.PHONY: bench
bench: setup ## quality, speed and int8 benchmark into bench/ (< 60 min on 2 cores; BENCH_QUICK=1: < 10 min)
	$(BIN)/python benchmarks/bench.py $(ARGS)

.PHONY: docs
docs: setup ## build the documentation site into site/ (warnings are errors); open site/index.html
	$(BIN)/mkdocs build --strict

.PHONY: gpu-check
gpu-check: setup ## on a CUDA machine: gpu tests, training slices (fp32/bf16/fp16, qmimic, DDP), latency; prints its table
	$(BIN)/python benchmarks/gpu_check.py --out bench/gpu_check.md $(ARGS)

.PHONY: lint
lint: setup ## ruff checks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

.PHONY: format
format: setup ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

.PHONY: clean
clean: ## remove run outputs and caches (keeps .venv and generated datasets)
	rm -rf outputs multirun .pytest_cache .ruff_cache
