# Two commands: `make run` (set up + run the bot on the embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench setup clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/spx-bot run --config config/sim.toml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's chromium + chromium-driver for the dashboard's browser test (only when missing; root)
browser:
	scripts/install-browser.sh

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/hedge.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) state/*.sqlite* state/*.json state/*.sock
