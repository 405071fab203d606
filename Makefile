# Two commands: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv in the repository root when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST := $(PY) -m pytest
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-slow test-jax venv zoo wheels gpu-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: train a ResNet-20 on scikit-learn's handwritten digits and export it.
demo: $(STAMP)
	$(PY) recipes/cifar10.py --dataset digits

# The test suite: TensorFlow backend (everything not marked slow), then the
# backend-agnostic model tests again under JAX.
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) -m "not slow" -n 2 --dist loadgroup --timeout 900 keras_resnet tests
	KERAS_BACKEND=jax $(PYTEST) -m "multibackend and not slow" -n 2 --timeout 900 tests

test-slow: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) -m slow --timeout 3600 tests

# Wheels for a machine without internet that has JAX but no TensorFlow (docs/gpu.md):
# this package, Keras and the two small Keras dependencies such images lack.
WHEEL_PY ?= 3.12
wheels: $(STAMP)
	rm -rf wheels && mkdir -p wheels
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir wheels .
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(WHEEL_PY) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --dest wheels keras==3.15.1 namex optree
	ls wheels

# On a bare GPU machine with this working tree and wheels/ (no venv, no internet):
# installs the wheels, measures within 8 minutes, writes gpu_check.json (docs/gpu.md).
gpu-check:
	$(PYTHON) -m keras_resnet.bench.gpu_check --wheels wheels --out gpu_check.json

zoo: $(STAMP)
	$(PY) -m keras_resnet zoo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache wheels
