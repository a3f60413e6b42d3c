# Two commands do all set-up on a fresh machine:
#   make app    create .venv if missing, install, and launch the explorer on the built-in default model
#   make test   create .venv if missing, install, and run the whole test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
# The explorer listens on this machine only. To open it to a network on purpose:
#   make app APP_ADDRESS=0.0.0.0
APP_ADDRESS ?= 127.0.0.1
APP_PORT    ?= 8501

.PHONY: setup system-deps app test check lint typecheck format zoo clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 first (the CPU build on these machines): pyproject only sets a lower bound, which a
	# bare install would satisfy with a multi-GB CUDA build. A torch already in the venv (e.g. a CUDA
	# build installed on purpose on a GPU machine) is kept.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# Debian packages the tests use: natural text for training the tiny model, Chromium for browser tests.
system-deps:
	bash scripts/system-deps.sh

app: setup
	$(VENV)/bin/streamlit run app/Home.py --server.address $(APP_ADDRESS) --server.port $(APP_PORT) \
		--server.headless true --browser.gatherUsageStats false

# Static checks first (seconds), then the suite.
test: setup system-deps check
	$(PY) -m pytest

check: lint typecheck

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# mypy over the packages, lenient (see [tool.mypy] in pyproject.toml).
typecheck:
	$(PY) -m mypy

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

# Re-create the built-in models from their seeds (tiny: ~3 min; default: ~45 min on 2 CPU cores).
zoo: setup
	$(VENV)/bin/circuitkit zoo train tiny
	$(VENV)/bin/circuitkit zoo train default

clean-venv:
	rm -rf $(VENV)
