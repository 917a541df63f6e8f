# Two entry points: `make demo` (the whole pipeline on a generated corpus) and `make test`.
# Both create .venv on first use (Python 3.11, torch 2.11 from PyPI) and reuse it afterwards.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
STAMP := $(VENV)/.cavnet-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cavnet demo --out demo-out

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest collected no tests' >&2; fi; exit $$rc

clean:
	rm -rf $(VENV) demo-out .pytest_cache
