# Two entry points: `make demo` (the whole pipeline on a generated corpus) and `make test`.
# Both create .venv on first use from requirements.lock (the whole dependency set, pinned) and reuse it.
# Refresh the lock after changing dependencies in pyproject.toml with `make lock` (needs `pip install uv`).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
STAMP := $(VENV)/.cavnet-installed
PIP := $(VENV)/bin/python -m pip --quiet --disable-pip-version-check --no-input
# The suite runs in two pytest-xdist processes, each test file whole in one of them (its module fixtures are
# built once): most tests wait on subprocesses, Dask workers or files, so two keep both cores busy. The 15
# slowest tests are listed at the end, so a suite that grows past its 10 minutes shows where.
PYTEST := $(VENV)/bin/python -m pytest -q -n $(or $(TEST_WORKERS),2) --dist loadfile --durations=15

.PHONY: demo test test-fast smoke install lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Imports every module that loads a native library and checks the versions against the lock: a broken
# wheel fails here in seconds, naming the package, instead of inside a test minutes later.
smoke: $(STAMP)
	$(VENV)/bin/python tools/check_install.py --lock requirements.lock

demo: smoke
	$(VENV)/bin/cavnet demo --task hard --out demo-out

test: smoke
	$(PYTEST); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest collected no tests' >&2; fi; exit $$rc

test-fast: smoke
	$(PYTEST) -m "not slow"

lock:
	uv pip compile pyproject.toml --extra test --extra torchcodec --universal --python-version 3.10 --no-header \
		-o requirements.lock

clean:
	rm -rf $(VENV) demo-out .pytest_cache
