# Two entry points for a fresh machine: `make run` (set up, then the main job) and `make test`.
# TORCH picks the torch build installed before everything else, e.g. TORCH="torch==2.13.0 --index-url ..."
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CONFIG ?= configs/game.yaml
BIN := $(VENV)/bin

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $@

run: setup
	$(BIN)/python -m selfplay.run $(CONFIG)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers, a file each at a time: the slow tic-tac-toe file (one core) runs beside everything else.
test: lint
	$(BIN)/pytest -n 2 --dist loadfile

bench: setup
	$(BIN)/python bench/games.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
