# Quick start (see README.md):
#   make mini   install what the offline mini default needs and run egs2/blsp/run.sh
#   make test   install what the tests need and run them
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
NJ ?= 2

.PHONY: install install-test install-mini test mini bench

install:
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e ".[test]"

install-mini: install
	$(PIP) install -q -e ".[mini]"

test: install-test
	$(PYTHON) -m pytest -q tests

mini: install-mini
	cd egs2/blsp && ./run.sh --nj $(NJ)

bench: install-test
	$(PYTHON) benchmarks/run_cpu.py
