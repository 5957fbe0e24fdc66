# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A plain `pip install torch` on Linux pulls a multi-GB CUDA build. CPU machines: keep this
# default (or use the CPU wheel index); GPU machines: make TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: install run test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/imagesearch run

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks

lint: install
	$(VENV)/bin/ruff check bot search_core scripts tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
