# The set-up contract: `make setup`, `make test`, `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test demo lint bench clean

setup: $(STAMP)
	bash scripts/install-system-deps.sh

# Re-runs only when the dependency declarations change: the second `make setup` is a no-op.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check monai_pneumonia tests benchmarks

demo: setup
	$(PY) -m monai_pneumonia demo

bench: setup
	$(PY) benchmarks/bench_loading.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
