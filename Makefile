# Two commands do all set-up on a fresh machine:
#   make app    create .venv if missing, install, and launch the explorer on the built-in default model
#   make test   create .venv if missing, install, and run the whole test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup system-deps app test lint format zoo clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 first: it is the CPU build on these machines; a bare `torch` would pull CUDA wheels
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Debian packages the tests use: natural text for training the tiny model, Chromium for browser tests.
system-deps:
	bash scripts/system-deps.sh

app: setup
	$(VENV)/bin/streamlit run app/Home.py --server.headless true --browser.gatherUsageStats false

test: setup system-deps
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

# Re-create the built-in models from their seeds (tiny: ~3 min; default: ~45 min on 2 CPU cores).
zoo: setup
	$(VENV)/bin/circuitkit zoo train tiny
	$(VENV)/bin/circuitkit zoo train default

clean-venv:
	rm -rf $(VENV)
