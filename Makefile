# paitune: `make sweep` runs the default sweep on the embedded digits data, then the analysis;
# `make test` runs the test suite. Both set up .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Where no GPU is present, install torch's CPU build first: a plain `torch` requirement would pull
# the multi-GB CUDA build. TORCH_SPEC/TORCH_INDEX override it, e.g. on a CPU machine that has no
# local wheel: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
SWEEP_OUT ?= results
SWEEP_NAME ?= default-$(shell date +%Y%m%d-%H%M%S)
SWEEP_ARGS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist): whole test files go to each, so a file's module fixtures are built
# once; each process that needs Ray starts its own. Two keep a 2-core machine busy while the other
# waits on a subprocess sweep; more would start more Ray instances than such a machine holds.
TEST_WORKERS ?= 2
XDIST = $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

.PHONY: install install-dev test test-fast lint sweep bench clean

# install: what a sweep needs; install-dev adds the test and lint stack (pytest, a local S3 server, ruff).
install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifneq ($(HAS_GPU),yes)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
endif
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

test: install-dev
	$(BIN)/python -m pytest -q --timeout=1200 $(XDIST) $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check paitune tests bench
	$(BIN)/ruff format --check paitune tests bench

# The inner loop: no Ray, no slow multi-process tests (README.md says how long it takes).
test-fast: install-dev
	$(BIN)/python -m pytest -q --timeout=600 -m "not slow and not ray" $(XDIST) $(PYTEST_ARGS)

sweep: install
	$(BIN)/paitune sweep default --out $(SWEEP_OUT) --name $(SWEEP_NAME) $(SWEEP_ARGS)
	$(BIN)/paitune analyze $(SWEEP_OUT)/$(SWEEP_NAME) --out $(SWEEP_OUT)/$(SWEEP_NAME)/report

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
