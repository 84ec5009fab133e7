# The set-up contract: `make setup`, `make test`, `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-stamp
# The MONAI Label server's own environment (pydicom 2.4; see requirements-monailabel.txt and docs/monailabel.md).
ML_VENV := .venv-monailabel
ML_PIP := $(ML_VENV)/bin/python -m pip
ML_STAMP := $(ML_VENV)/.setup-stamp

.PHONY: setup test demo lint bench clean

setup: $(STAMP) $(ML_STAMP)
	bash scripts/install-system-deps.sh

# Re-runs only when the dependency declarations change: the second `make setup` is a no-op.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

$(ML_STAMP): setup.cfg pyproject.toml constraints.txt requirements-monailabel.txt requirements-monailabel-nodeps.txt
	test -x $(ML_VENV)/bin/python || $(PYTHON) -m venv $(ML_VENV)
	$(ML_PIP) install -q --upgrade pip setuptools wheel
	$(ML_PIP) install -q -c constraints.txt torch==2.13.0
	$(ML_PIP) install -q -c constraints.txt -r requirements-monailabel.txt
	$(ML_PIP) install -q -c constraints.txt --no-deps -r requirements-monailabel-nodeps.txt -e .
	touch $(ML_STAMP)

# The import contracts (.importlinter: layers, the product apart from the studies) run first: a few seconds.
test: setup
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check monai_pneumonia tests benchmarks

demo: setup
	$(PY) -m monai_pneumonia demo

bench: setup
	$(PY) benchmarks/bench_loading.py
	$(PY) benchmarks/bench_inference.py --acceptance
	$(PY) benchmarks/bench_training.py

clean:
	rm -rf $(VENV) $(ML_VENV) build *.egg-info .pytest_cache .import_linter_cache
