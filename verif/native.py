"""The tile harness driven by a plain Verilator C++ main: the speed reference for cocotb.

Same generated RTL, same buffers and output dump as the cocotb bench, no VPI
and no Python: the difference in cycles/s is what cocotb costs. The same
executable serves resident calls (:mod:`~spikeacc.verif.resident`); here it
runs one call from hex files per process, the per-call path.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

from spikeacc.config import SpikeConfig
from spikeacc.hw import registry
from spikeacc.golden.vectors import load_vectors
from spikeacc.verif.resident import server_cpp
from spikeacc.verif.runner import locked_sources
from spikeacc.verif.scoreboard import Scoreboard
from spikeacc.verif.tile_harness import (
    harness_name,
    harness_verilog,
    read_counts,
    write_buffers,
)
from spikeacc.verif.tile_regress import tile_config_for
from spikeacc.verif.toolchain import BUILD_WAIVERS, make_env, use_verilator

from spikeacc import workdirs
from spikeacc.errors import ToolFailure, VerificationFailed, build_failure
from spikeacc.verif.resident import SimulatorBroken, reply_bound

__all__ = ["run_native", "build_native", "call_native"]


def build_native(cfg: SpikeConfig, build_root=None) -> Path:
    """The native harness executable for ``cfg``, built once (incrementally, under the build lock)."""
    bin_dir = use_verilator()
    build_dir = (workdirs.build_root(build_root) / f"native_{cfg.tag}_t{cfg.max_tokens}").resolve()
    top = harness_name(cfg, registry.SPIKING_TILE)
    exe = build_dir / "obj" / f"V{top}"
    extra = {f"rtl/{top}.v": harness_verilog(cfg, registry.SPIKING_TILE, resident=True),
             "main.cpp": server_cpp(cfg, top)}
    with locked_sources(build_dir, registry.SPIKING_TILE, cfg, extra) as (_, sources):
        if not exe.is_file() or any(s.stat().st_mtime > exe.stat().st_mtime for s in sources):
            cmd = [str(bin_dir / "verilator"), "--cc", "--exe", "--build", "-O3", "-j", "2", *BUILD_WAIVERS,
                   "--top-module", top, "--Mdir", str(build_dir / "obj"), *map(str, sources)]
            result = subprocess.run(cmd, capture_output=True, text=True, env=make_env())
            if result.returncode:
                (build_dir / "build.log").write_text(result.stdout + result.stderr)
                raise build_failure("the native Verilator build", build_dir / "build.log")
    return exe


def call_native(cfg: SpikeConfig, exe: Path, vectors) -> tuple[np.ndarray, int, float]:
    """Run ``vectors`` (any object with the contract's arrays) through a built harness.

    Returns ``(counts [M, N], cycles, wall seconds)``. The buffers and the
    output dump live in a directory of this call's own, removed afterwards
    unless the harness failed.
    """
    m = vectors.mant.shape[0]
    with workdirs.run_dir(exe.parent.parent) as work:
        files = write_buffers(cfg, vectors, work.path, registry.SPIKING_TILE)
        out = work / "out.hex"
        t1 = time.perf_counter()
        try:
            result = subprocess.run([str(exe), *[f"+{k}={p}" for k, p in files.items()], f"+out={out}",
                                     f"+tokens={m}"], capture_output=True, text=True, timeout=reply_bound(cfg, m))
        except OSError as exc:
            raise SimulatorBroken(f"the native harness {exe} cannot start: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            work.keep = True
            raise ToolFailure(f"the native harness {exe} did not finish {m} tokens within "
                              f"{reply_bound(cfg, m):.0f} s (it was stopped); buffers kept in {work.path}") from None
        wall = time.perf_counter() - t1
        if result.returncode < 0:
            raise SimulatorBroken(f"the native harness {exe} crashed (signal {-result.returncode})")
        if result.returncode:
            work.keep = True
            raise ToolFailure(f"the native harness {exe} failed (exit {result.returncode}): "
                              + " | ".join(result.stderr.strip().splitlines()[-4:]))
        printed = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        if int(printed["errors"]):
            work.keep = True
            raise VerificationFailed(f"the tile raised its error flag (an out-of-contract word) on "
                                     f"{printed['errors']} of {m} tokens; buffers kept in {work.path}")
        return read_counts(cfg, out, m), int(printed["cycles"]), wall


def run_native(vectors_path, *, build_root=None, pes=None, lanes=None) -> dict:
    """Build (or reuse) and run the native harness on a vector file; compare every output count."""
    vectors = load_vectors(vectors_path)
    cfg = tile_config_for(vectors, pes, lanes)
    t0 = time.perf_counter()
    exe = build_native(cfg, build_root)
    build_seconds = time.perf_counter() - t0
    counts, cycles, wall = call_native(cfg, exe, vectors)
    board = Scoreboard()
    board.compare(expected=vectors.expected, got=counts)
    return {**board.report(), "cycles": cycles, "wall_seconds": wall, "build_seconds": build_seconds,
            "cycles_per_second": cycles / wall if wall else 0.0}
