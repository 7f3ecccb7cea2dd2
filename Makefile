# Two commands do everything: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch, pinned for development and CI only (the package itself asks for torch>=2.2).
TORCH_PIN := torch==2.13.0

.PHONY: install demo test lint bench-quality bench-overhead gpu-check tlf-suite clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/lr-finder demo --out lr_finder_demo

# The tests, the linters and the package as users install it (a wheel in a fresh venv): what CI runs.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile
	$(VENV)/bin/ruff check src tests benchmarks examples .ci
	$(VENV)/bin/mypy src
	$(PY) .ci/wheel_smoke.py --torch '$(TORCH_PIN)'

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

# torch-lr-finder's own test suite against lr_finder.compat; its tests are not shipped in any package, so give
# the tests folder of a copy of its repository: make tlf-suite TLF_TESTS=../pytorch-lr-finder/tests
tlf-suite: $(VENV)/.installed
	@test -n "$(TLF_TESTS)" || { echo "usage: make tlf-suite TLF_TESTS=path/to/pytorch-lr-finder/tests"; exit 2; }
	$(PY) benchmarks/tlf_suite.py $(TLF_TESTS)

clean:
	rm -rf $(VENV) lr_finder_demo .pytest_cache .hypothesis
