"""OpenSTA ``report_power`` beside our Liberty arithmetic, module by module (a cross-check).

Debian's OpenSTA (2019) reads no SAIF, so each leaf module of a ``spikeacc
power`` netlist is written as a flat Verilog module of its own (clock-gated
flip-flops as the library's plain flip-flop, kept memories' read data as
input ports) and annotated from the run's SAIF: every input port with
``set_power_activity -input_ports``, every flip-flop output with
``sta::set_power_pin_activity`` (activities per clock period); OpenSTA
propagates them through the logic itself. Only the combinational group is
compared: OpenSTA clocks every flip-flop (it knows no gating) and charges
rise + fall internal energy per transition, so its internal power is halved
to count each transition once as we do (``../shared/TOOLCHAIN.md``). The
groups still attribute a net's switching differently (OpenSTA to the driver,
we to the receiving pins), and OpenSTA's propagated activities ignore
correlations: agreement within tens of percent is what a cross-check can
show.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

from spikeacc.energy.gate_power import GATED_BASE, GATED_CELL, INPUT_SLEW_NS, MEMORY_CELL, _Activity, _bit_names
from spikeacc.verif.tile_harness import CLOCK_PERIOD_NS

__all__ = ["sta_module", "cross_check"]


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def sta_module(module: dict, name: str, design: dict) -> tuple[str, list, list]:
    """Flat Verilog of one module for OpenSTA: ``(verilog, inputs [(port, bit)], flops [(instance, Q bit)])``."""
    nets: dict[int, str] = {}
    ports, inputs = [], []
    for pname, port in module["ports"].items():
        for i, bit in enumerate(port["bits"]):
            if isinstance(bit, int) and bit not in nets:
                nets[bit] = f"p_{_name(pname)}_{i}"
                ports.append((nets[bit], port["direction"]))
                if port["direction"] == "input":
                    inputs.append((nets[bit], bit))
    for cell in module["cells"].values():        # a kept memory's read data enters like a port
        if cell["type"] == MEMORY_CELL:
            for bit in cell["connections"].get("RD_DATA", []):
                if isinstance(bit, int) and bit not in nets:
                    nets[bit] = f"mem_{bit}"
                    ports.append((nets[bit], "input"))
                    inputs.append((nets[bit], bit))

    def net(bit) -> str:
        if not isinstance(bit, int):
            return "1'b1" if bit == "1" else "1'b0"
        return nets.setdefault(bit, f"n{bit}")

    cells, flops = [], []
    for inst, cell in module["cells"].items():
        kind, conns = cell["type"], dict(cell["connections"])
        if kind == MEMORY_CELL or kind in design and kind != GATED_CELL:
            continue
        if kind == GATED_CELL:
            kind = GATED_BASE
            conns.pop("E")
        iname = "c_" + _name(inst)
        if "Q" in conns:
            flops.append((iname, conns["Q"][0]))
        cells.append(f"  {kind} {iname} (" + ", ".join(f".{p}({net(b[0])})" for p, b in conns.items()) + ");")
    port_names = {p for p, _ in ports}
    lines = [f"module {name} (" + ", ".join(p for p, _ in ports) + ");"]
    lines += [f"  {'input' if d == 'input' else 'output'} {p};" for p, d in ports]
    lines += [f"  wire {w};" for w in sorted(set(nets.values()) - port_names)]
    return "\n".join(lines + cells + ["endmodule", ""]), inputs, flops


def _parse_group(report: str, group: str) -> tuple[float, float]:
    for line in report.splitlines():
        fields = line.split()
        if fields and fields[0] == group:
            return float(fields[1]), float(fields[2])
    raise RuntimeError(f"no {group} row in OpenSTA's report:\n{report[-1500:]}")


def _instance_type(parent: dict, inst_name: str) -> str:
    """The module an instance of ``parent`` is (identical copies share one module: ``shared_modules``)."""
    for name, cell in parent["cells"].items():
        if name.lstrip("\\") == inst_name:
            return cell["type"]
    raise KeyError(f"no instance {inst_name} in the netlist's top module")


def cross_check(entry: dict, tokens: int, liberty: Path, saif: tuple[dict, list] | None = None,
                sta: str = "sta") -> dict[str, dict[str, float]]:
    """Per module instance: our combinational power and OpenSTA's, in watts, for one design of a power run.

    ``entry`` is the design's record in power.json (its netlist, SAIF and
    ``by_module_class_pj``); ``saif`` is that SAIF already read
    (:func:`~spikeacc.energy.saif.read_saif`; read here when None).
    """
    from spikeacc.energy.saif import read_saif
    modules = json.loads(Path(entry["netlist"]).read_text())["modules"]
    header, saif_nets = saif if saif is not None else read_saif(entry["saif"])
    seconds = header["DURATION"] * header["TIMESCALE"]
    cycles = seconds / (CLOCK_PERIOD_NS * 1e-9)
    top = next(n for n in modules if "." not in n and n != GATED_CELL)
    rows = {}
    for inst_name, classes in entry["by_module_class_pj"].items():
        module = modules[top if inst_name == "top" else _instance_type(modules[top], inst_name)]
        scope = ("dut",) if inst_name == "top" else ("dut", inst_name)
        toggles, high = {}, {}
        for n in saif_nets:
            if n.path[-len(scope):] == scope:
                toggles[n.name], high[n.name] = n.bit_toggles, n.bit_high
        activity = _Activity(toggles, _bit_names(module), high, header["DURATION"])

        def annotation(bit) -> tuple[str, str]:   # (transitions per clock period, duty) from the SAIF
            return (f"{activity.toggles(bit) / cycles:.6g}",
                    f"{min(activity.high(bit) / header['DURATION'], 1.0):.6g}")

        verilog, inputs, flops = sta_module(module, "m", modules)
        clock = next((p for p, _ in inputs if p.startswith("p_clk_")), None)
        with tempfile.TemporaryDirectory(prefix="spikeacc-sta-") as work:
            Path(work, "m.v").write_text(verilog)
            tcl = [f"read_liberty {liberty}", f"read_verilog {Path(work, 'm.v')}", "link_design m"]
            if clock:
                tcl.append(f"create_clock -name clk -period {CLOCK_PERIOD_NS} [get_ports {clock}]")
            tcl += [f"set_input_transition {INPUT_SLEW_NS} [all_inputs]", "report_power > /dev/null"]
            for port, bit in inputs:
                if port != clock:
                    rate, duty = annotation(bit)
                    tcl.append(f"set_power_activity -input_ports [get_ports {port}] -activity {rate} -duty {duty}")
            for inst, bit in flops:
                rate, duty = annotation(bit)
                tcl.append(f"sta::set_power_pin_activity [get_pins {inst}/Q] {rate} {duty}")
            tcl += ["report_power", "exit"]
            Path(work, "m.tcl").write_text("\n".join(tcl) + "\n")
            run = subprocess.run([sta, "-no_splash", str(Path(work, "m.tcl"))], capture_output=True, text=True)
        internal, switching = _parse_group(run.stdout, "Combinational")
        ours = classes["combinational"] * tokens * 1e-12 / seconds
        rows[inst_name] = {"ours_w": ours, "opensta_w": internal / 2 + switching,
                           "opensta_internal_w": internal, "opensta_switching_w": switching}
    return rows
