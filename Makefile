# Two entry points on a fresh clone, each creating the venv it needs:
#   make demo   - install edgehar with training support and run the live demo
#   make test   - install edgehar with test tools and run the test suite
PYTHON ?= python3
VENV ?= .venv
DEMO_ARGS ?= --seconds 60 --json demo.jsonl

.PHONY: demo test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(VENV)/.train: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[train]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.train
	$(VENV)/bin/edgehar demo $(DEMO_ARGS)

test: $(VENV)/.dev
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
