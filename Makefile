# One-command set-up: every target installs what it needs and is safe to re-run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
WORKDIR ?= workdirs/default
CONFIG ?= configs/default.py

TORCH_VENV := .venv-torch

.PHONY: setup lint train test test-slow test-torchvision bench bench-input clean

# The stamp is rebuilt only when the pins change, so a second `make setup` is instant.
$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/.installed
	@if [ ! -e $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ] && [ ! -e $(FASHION_MNIST_DIR)/train-images-idx3-ubyte ]; then \
	  if command -v apt-get >/dev/null; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "warning: $(FASHION_MNIST_DIR) is empty and apt-get is missing: get the Fashion-MNIST IDX files and pass --config.data.manual_dir=DIR"; \
	  fi; \
	fi

train: setup
	$(BIN)/python -m imagenet_train train --config=$(CONFIG) --workdir=$(WORKDIR)

# Style first, in seconds: the formatter and linter configured in pyproject.toml. Then two pytest
# workers: most of the suite's time is XLA compiling on one core at a time.
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q -rs -n 2 tests

# Compiles and runs a train step of every model the default suite only traces (about an hour here).
test-slow: setup
	$(BIN)/python -m pytest -q -rs -n 2 -m slow tests

# The comparison with torchvision's forward passes needs PyTorch, which the project itself does
# not: it gets its own virtualenv (several GB; the versions pip finds on this image's disk).
$(TORCH_VENV)/bin/.installed: requirements.txt pyproject.toml
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet -r requirements.txt torch==2.14.1 torchvision==0.29.1
	$(TORCH_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-torchvision: setup $(TORCH_VENV)/bin/.installed
	$(TORCH_VENV)/bin/python -m pytest -q -rs -n 2 tests/test_torchvision.py tests/test_weights.py

bench: setup
	$(BIN)/python benchmarks/step_throughput.py --model=lenet5 --batch=256 --dtype=float32 --image_size=28 \
	  --model_option=activation=relu --model_option=pooling=max
	$(BIN)/python benchmarks/step_throughput.py --model=resnet18 --batch=128 --dtype=float32 --image_size=28 \
	  --channels=1 --model_option=stem=small --steps=5

# Generates fake ILSVRC2012 tarballs of photo-sized JPEGs on first use (in /tmp), then times the
# input pipelines beside a minimal tf.data baseline.
bench-input: setup
	$(BIN)/python benchmarks/input_pipeline.py

clean:
	rm -rf $(VENV) $(TORCH_VENV) workdirs
