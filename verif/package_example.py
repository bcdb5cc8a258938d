"""The runnable example every generated package carries: a plain-Verilog testbench that prints PASS.

``example/`` holds a few tokens (or neurons) of seeded example vectors as hex
files in the buffer layouts of the datasheet, their expected counts, the
self-checking testbench :mod:`spikeacc.verif.outside_tb` writes from the
manifest alone, the vector file they came from, and a README with the one
command that runs it under Icarus. An integrator's first hour is then "it
runs", not "write a packer".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikeacc.config import SpikeConfig
from spikeacc.hw import registry
from spikeacc.hw.package import add_example_to_core
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors
from spikeacc.verif.outside_tb import write_bench
from spikeacc.verif.pe_cases import make_cases

__all__ = ["write_example", "EXAMPLE_TOKENS", "example_command"]

EXAMPLE_TOKENS = 3      # tokens of a tile example (at most the design's max_tokens)
EXAMPLE_NEURONS = 24    # neuron cases of a PE example


def example_command(top: str) -> str:
    """The one line that builds and runs the example from inside ``example/``."""
    return f"iverilog -g2005 -o tb.vvp -s outside_tb outside_tb.v ../{top}.v && vvp -n tb.vvp"


def _vectors(design: str, cfg: SpikeConfig, directory: Path) -> tuple[Path, dict]:
    if registry.design(design).is_tile:
        v = random_vectors(cfg, min(EXAMPLE_TOKENS, cfg.max_tokens), seed=0,
                           salient_fraction=0.15 if cfg.kirin else 0.025)
        path = save_vectors(directory / "vectors.npz", v)
    else:
        path = directory / "cases.npz"
        make_cases(cfg, EXAMPLE_NEURONS, seed=0).save(path)
    with np.load(path) as f:
        return path, {k: f[k] for k in f.files}


def write_example(manifest_path: Path, design: str, cfg: SpikeConfig) -> list[Path]:
    """Write ``example/`` beside the package's manifest; returns the files written."""
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    directory = manifest_path.parent / "example"
    directory.mkdir(parents=True, exist_ok=True)
    before = set(directory.iterdir())
    source, vectors = _vectors(design, cfg, directory)
    shape = write_bench(manifest, vectors, directory)
    top = manifest["top"]
    bench_files = sorted(p.name for p in directory.iterdir() if p.suffix in (".v", ".hex"))
    add_example_to_core(manifest_path.with_suffix(".core"), design, cfg, [f"example/{f}" for f in bench_files])
    what = (f"{shape['tokens']} tokens of seeded random layer vectors ({source.name})"
            if "tokens" in shape else f"{shape['cases']} neuron cases, corners first ({source.name})")
    regenerate = (f"python -m spikeacc.verif.outside_tb ../{top}.json YOUR_VECTORS.npz --work ."
                  if registry.design(design).is_tile else
                  f"python -m spikeacc.verif.outside_tb ../{top}.json YOUR_CASES.npz --work .")
    (directory / "README.md").write_text(f"""# Example testbench of {top}

A plain-Verilog testbench (`outside_tb.v`), written from `../{top}.json` alone,
drives the design with {what}, packed as hex files in the buffer layouts of
the datasheet, and compares every output count with `expected.hex`. Run it
from this folder (Icarus Verilog; `-g2005`, see the datasheet's simulator
settings):

    {example_command(top)}

The last line it prints is `PASS: ...` or `FAIL: ...` (with the first
mismatches above it). Replace `../{top}.v` by `../{top}_noinit.v` to start
from X-initial registers, as an ASIC does.

Your own vectors (a spikeacc vector file, or any `.npz` with the arrays of
the vector format): regenerate the hex files and the testbench here with
spikeacc's generator (it needs spikeacc installed: this repository, `make
setup`, then its `.venv`)

    {regenerate}

which also runs it and prints the verdict.
""")
    return sorted(set(directory.iterdir()) - before | {directory / "README.md", directory / "outside_tb.v"})
