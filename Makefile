# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# torch is installed before the project, so that pip does not pick its build for us: on Linux a
# plain `pip install torch` from PyPI is the CUDA build (several GB of CUDA libraries).
# - TORCH_SPEC, when given, is installed exactly as written and nothing below applies
#   (make install TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu121").
# - TORCH_BUILD=cpu (the default on Linux and Windows when `nvidia-smi -L` lists no GPU): torch
#   alone (--no-deps: one index request) from PyTorch's CPU wheel index, giving up after
#   TORCH_INDEX_OPTIONS (about 10 s, instead of pip's 15 s x 5 retries) when that index cannot be
#   reached; then the plain pin from pip's configured indexes, which adds torch's dependencies or,
#   when the CPU index failed, the whole default build (a local wheel on an offline machine).
# - TORCH_BUILD=default (an NVIDIA GPU was found, or macOS): the plain pin from pip's configured
#   indexes: PyPI's CUDA build on Linux, its CPU/MPS build on macOS.
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_OPTIONS ?= --timeout 5 --retries 1
TORCH_BUILD ?= $(shell if [ "$$(uname -s)" = Darwin ] || nvidia-smi -L 2>/dev/null | grep -q '^GPU'; \
                       then echo default; else echo cpu; fi)

.PHONY: install run test browser bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then \
	    echo "torch: installing TORCH_SPEC=$(TORCH_SPEC)"; \
	    $(PY) -m pip install --quiet $(TORCH_SPEC); \
	else \
	    if [ "$(TORCH_BUILD)" = cpu ]; then \
	        echo "torch: no NVIDIA GPU found: the CPU build of torch==$(TORCH_VERSION) from $(TORCH_CPU_INDEX)"; \
	        $(PY) -m pip install --quiet --no-deps $(TORCH_INDEX_OPTIONS) --index-url $(TORCH_CPU_INDEX) \
	            torch==$(TORCH_VERSION) \
	        || echo "torch: $(TORCH_CPU_INDEX) failed; installing torch==$(TORCH_VERSION) from pip's" \
	                "configured indexes instead (from PyPI on Linux that is the CUDA build, several GB)"; \
	    else \
	        echo "torch: torch==$(TORCH_VERSION) from pip's configured indexes (TORCH_BUILD=$(TORCH_BUILD))"; \
	    fi; \
	    $(PY) -m pip install --quiet torch==$(TORCH_VERSION); \
	fi
	@# The ray extra too: `imagesearch build --engine ray` is tested on a local Ray (tests/ray_engine).
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/imagesearch run

test: install browser
	$(PY) -m pytest -q

# The review report's browser tests drive Debian's chromium through chromium-driver (nothing
# downloads a browser). Installed with apt-get only where missing; where that is impossible (no
# root, no apt, no network) the browser tests skip and say why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver for the browser tests (apt-get)"; \
		apt-get update -qq || true; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
			|| echo "make: could not install chromium; the browser tests will be skipped"; \
	else echo "make: chromium is missing and apt-get cannot run as root here; the browser tests will be skipped"; fi

bench: install
	$(PY) -m benchmarks

lint: install
	$(VENV)/bin/ruff check bot search_core scripts review tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
