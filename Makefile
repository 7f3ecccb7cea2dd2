# Two commands do everything: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch, pinned for development and CI only (the package itself asks for torch>=2.2).
TORCH_PIN := torch==2.13.0

.PHONY: install demo test lint bench-quality bench-overhead gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lr-finder demo --out lr_finder_demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy src

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench-quality: $(VENV)/.bench
	$(PY) benchmarks/suggestion_quality.py

bench-overhead: $(VENV)/.bench
	$(PY) benchmarks/overhead.py

gpu-check: $(VENV)/.bench
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) lr_finder_demo .pytest_cache .hypothesis
