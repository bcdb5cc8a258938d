"""``spikeacc power``: gate-level energy of the spiking and MAC tiles on the same vectors.

Each design is synthesized to the Liberty's standard cells, its netlist
simulated bit-exact in the regression harness with SAIF, and charged from the
Liberty (:mod:`spikeacc.energy.gate_power`). This is the energy figure the
project publishes; ``spikeacc energy`` (the per-bit toggle model) is the
fast estimate for layers too big to simulate at gate level.

Weight-memory reads are modelled, not simulated (an open 0.18 µm kit has no
SRAM macro): Horowitz (ISSCC 2014) gives 10 pJ for a 64-bit read of an 8 KB
SRAM at 45 nm, 0.9 V; scaled to the Liberty's node by C ∝ feature size and
E ∝ V², that is ``0.156 pJ/bit × (node/45 nm) × (V/0.9 V)²`` (2.5 pJ/bit at
0.18 µm, 1.8 V). Reads are counted from the netlist's own enables. Every
ratio is reported with and without them. The spiking tile's event queues are
memories too (written once per token, read per block): by default they stay
SRAM macros, charged per enabled access at the same rate (a small register
file would cost less, so this is conservative); ``sram=False`` maps them to
flip-flops instead, the before-and-after of that architecture step.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path


from spikeacc.errors import VerificationFailed
from spikeacc.hw import registry
from spikeacc.golden.vectors import load_vectors
from spikeacc.energy.breakdown import GatePower, total_pj
from spikeacc.energy.gate_power import CLASSES, CLOCK_PERIOD_S, GATED_CELL, GateLevel, gate_energy
from spikeacc.energy.liberty import DEFAULT_LIBERTY, load_library
from spikeacc.energy.saif import read_saif
from spikeacc.verif.results import VectorFileRun
from spikeacc.verif.tile_regress import run_tile_regression, tile_config_for

__all__ = ["PowerResult", "run_power", "sram_pj_per_bit", "role_of_module", "progress_line"]


@dataclass(frozen=True)
class PowerResult(VectorFileRun):
    """Gate-level energy of synthesized netlists simulated on one vector file (``power.json`` is :meth:`to_dict`)."""

    tokens: int
    memories: str                 # the tile's own memories: "sram" macros charged per access, or "flops"
    clock_gating: bool
    liberty: str
    voltage: float
    node_nm: float
    sram_pj_per_bit: float
    designs: dict[str, GatePower]  # per design: energy by kind, role and module; memory reads; netlist, SAIF
    ratio_mac_over_spiking: dict | None   # when both designs ran
    opensta: dict | None          # OpenSTA's power of the same netlist and activity, when asked for

SRAM_45NM_PJ_PER_BIT = 10.0 / 64   # Horowitz ISSCC 2014: 8 KB SRAM, 64-bit read, 45 nm, 0.9 V

def progress_line(line: str) -> None:
    """A progress line on stderr, wherever it goes (a terminal or a log file)."""
    print(f"spikeacc: {line}", file=sys.stderr, flush=True)


def sram_pj_per_bit(node_nm: float = 180.0, voltage: float = 1.8) -> float:
    """The cited 45 nm SRAM read energy per bit, scaled to ``node_nm`` and ``voltage``."""
    return SRAM_45NM_PJ_PER_BIT * (node_nm / 45.0) * (voltage / 0.9) ** 2


def role_of_module(design: str, module: str) -> str:
    """The gate-level role of instance ``module`` of ``design``, as the design declares it."""
    return registry.design(design).energy.module_role(module)


def _reads(header: dict, nets: list, names: set[str]) -> int:
    """Cycles with one of the named buffer read enables high, summed over them, from the netlist's SAIF."""
    unit = header["TIMESCALE"]
    reads = 0.0
    for net in nets:
        if net.path and net.path[-1] == "dut" and net.name in names:
            reads += net.high_time * unit / CLOCK_PERIOD_S
    return round(reads)


def run_power(vectors_path, *, designs=None, liberty=DEFAULT_LIBERTY, out="out/power",
              build_root=None, pes=None, lanes=None, node_nm: float = 180.0, sram: bool = True,
              gated: bool = True, firing: str | None = None) -> PowerResult:
    """Gate-level energy per token-layer for each design; writes power.json and power.md into ``out``.

    ``sram`` keeps the designs' own memories (the spiking tile's event
    queues) as SRAM macros charged per access at the same modelled energy per
    bit as the weight memory; ``False`` synthesizes them to flip-flops.
    ``gated`` clock-gates every register yosys infers an enable for;
    ``firing`` overrides the vectors' firing unit (``"division"``/``"serial"``).
    """
    designs = registry.tiles() if designs is None else designs
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    library = load_library(liberty)
    vectors = load_vectors(vectors_path)
    cfg = tile_config_for(vectors, pes, lanes, firing)
    tokens = vectors.shape[0]
    e_bit = sram_pj_per_bit(node_nm, library.voltage)
    results = {}
    opensta = {} if shutil.which("sta") else None   # the OpenSTA cross-check, where it runs
    for i, design in enumerate(designs):
        t0 = time.perf_counter()
        progress_line(f"power: {design} ({i + 1}/{len(designs)}): synthesis to {library.path.name}, netlist build and "
             f"simulation of {tokens} tokens (minutes at a real shape the first time; built netlists are reused)")
        gates = GateLevel(library, sram=sram, gated=gated)
        saif = out / f"{design}.gates.saif"
        _, rep = run_tile_regression(vectors_path, build_root=build_root, pes=pes, lanes=lanes, design=design,
                                     saif_to=saif, progress=False, gates=gates, firing=firing)
        if not rep.passed:
            first = rep.mismatches[0] if rep.mismatches else {"index": "-", "expected": "-", "got": "-"}
            raise VerificationFailed(f"the {design} netlist is not bit-exact on {vectors_path}: "
                                     f"{rep.mismatch_count} mismatches, first at {tuple(first['index'])}; "
                                     f"{'; '.join(rep.failures)}")
        header, nets = read_saif(saif)
        energy = gate_energy(gates.netlist, library, (header, nets), ("dut",), sram_pj_per_bit=e_bit)
        reads = _reads(header, nets, {f"weight__{j}__en" for j in range(cfg.lanes)})
        memory_pj = reads * cfg.pes * cfg.weight_bits * e_bit
        # the threshold memory: one word of P constants read as each block opens (the MAC's words carry R too)
        thresh_reads = _reads(header, nets, {"thresh__en"})
        thresh_pj = thresh_reads * threshold_word_bits(cfg, design) * e_bit
        role_classes: dict[str, dict[str, float]] = {}
        for module, classes in energy["by_module_class"].items():
            split = role_classes.setdefault(role_of_module(design, module), dict.fromkeys(CLASSES, 0.0))
            for c, v in classes.items():
                split[c] += v / tokens
        roles = {role: sum(split.values()) for role, split in role_classes.items()}
        cells = gates.netlist.cells
        results[design] = GatePower(
            cycles=rep.cycles,
            by_class_pj={c: v / tokens for c, v in energy["by_class"].items()},
            by_role_pj=roles, by_role_class_pj=role_classes,
            logic_pj=energy["total_pj"] / tokens,
            logic_without_clock_pj=(energy["total_pj"] - energy["by_class"]["clock"]) / tokens,
            weight_reads=reads, weight_memory_pj=memory_pj / tokens, threshold_memory_pj=thresh_pj / tokens,
            cells=cells, flip_flops=sum(v for k, v in cells.items()
                                        if k == GATED_CELL or (k in library.cells and library.cells[k].ff)),
            enable_flip_flops=cells.get(GATED_CELL, 0), memories="sram" if sram else "flops",
            area_um2=gates.netlist.area,
            by_module_pj={m: v / tokens for m, v in energy["by_module"].items()},
            by_module_class_pj={m: {c: v / tokens for c, v in d.items()} for m, d in energy["by_module_class"].items()},
            threshold_reads=thresh_reads, unannotated_pins=energy["unannotated_pins"], pins=energy["pins"],
            saif=str(saif), netlist=str(gates.netlist.json), seconds=time.perf_counter() - t0)
        progress_line(f"power: {design}: {results[design].logic_pj:,.1f} pJ logic per token-layer, "
             f"{time.perf_counter() - t0:.0f} s")
        if opensta is not None:
            opensta[design] = _opensta(results[design].to_dict(), tokens, library.path, (header, nets))
    result = PowerResult(
        vectors=str(vectors_path), layer=vectors.meta.get("layer"), model=vectors.meta.get("model"),
        shape=tuple(vectors.shape), config=cfg, tokens=tokens, memories="sram" if sram else "flops",
        clock_gating=gated, liberty=str(library.path), voltage=library.voltage, node_nm=node_nm,
        sram_pj_per_bit=e_bit, designs=results,
        ratio_mac_over_spiking=mac_ratios(results),
        opensta=opensta)
    (out / "power.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (out / "power.md").write_text(power_markdown(result.to_dict()))
    return result


def _opensta(entry: dict, tokens: int, liberty: Path, saif: tuple[dict, list]) -> dict:
    """OpenSTA's combinational power beside ours for one design (the cross-check), from the SAIF already read."""
    from spikeacc.energy.sta_check import cross_check
    rows = cross_check(entry, tokens, liberty, saif)
    ours, theirs = sum(r["ours_w"] for r in rows.values()), sum(r["opensta_w"] for r in rows.values())
    return {"ours_w": ours, "opensta_w": theirs, "ratio": theirs / ours if ours else None, "by_module": rows}


def mac_ratios(results: dict) -> dict | None:
    """MAC ÷ spiking per MAC design that ran, and against the stronger one (the lower total with memory)."""
    spiking = registry.spiking_tile().name
    macs = [d for d in registry.macs() if d in results]
    if spiking not in results or not macs:
        return None
    ratios = {d: _ratios(results[spiking], results[d], spiking, d) for d in macs}
    strongest = min(macs, key=lambda d: results[d].total_pj)
    return {**ratios[strongest], "against": strongest, "by_design": ratios}


def _ratios(s: GatePower, m: GatePower, s_name: str, m_name: str) -> dict:
    def pe(d):
        return d.by_role_pj.get("PE arithmetic", 0.0)

    def pe_no_clock(d, name):
        return sum(v for mod, cls in d.by_module_class_pj.items()
                   if role_of_module(name, mod) == "PE arithmetic" for c, v in cls.items() if c != "clock")

    return {
        "pe_arithmetic": pe(m) / pe(s),
        "pe_arithmetic_without_clock": pe_no_clock(m, m_name) / pe_no_clock(s, s_name),
        "tile_without_clock": m.logic_without_clock_pj / s.logic_without_clock_pj,
        "tile_with_clock": m.logic_pj / s.logic_pj,
        "tile_with_clock_and_weight_memory": m.total_pj / s.total_pj,
    }


def threshold_word_bits(cfg, design: str) -> int:
    """Bits of one threshold-memory word: P × (Θ, Φ), the same for every tile design."""
    per_neuron = cfg.theta_bits + cfg.phi_bits
    return cfg.pes * per_neuron


def power_markdown(r: dict) -> str:
    names = {d: registry.label(d) for d in r["designs"]}
    designs = list(r["designs"])
    head = "| pJ per token-layer | " + " | ".join(names.get(d, d) for d in designs) + " |"
    lines = [f"# Gate-level energy: {r['layer']} ({r['model']}), M×K×N = {'×'.join(map(str, r['shape']))}", "",
             f"Netlists mapped to `{Path(r['liberty']).name}` ({r['voltage']} V), simulated bit-exact on the vectors "
             "with SAIF, charged from the Liberty (switching ½CV² on cell input pins, internal-power tables, "
             "leakage). No wires, no clock tree, no glitches. Weight-memory reads modelled at "
             f"{r['sram_pj_per_bit']:.2f} pJ/bit (Horowitz 45 nm SRAM scaled to {r['node_nm']:.0f} nm); the "
             + ("tile's own memories (event queues) are SRAM macros charged per access at the same rate."
                if r["memories"] == "sram" else "tile's own memories (event queues) are flip-flops.")
             + (" Clock gating: every register yosys infers an enable for is clock-gated (its clock pin toggles "
                "only on enabled cycles), with one always-clocked integrated clock gate per enable net, charged "
                "as one flip-flop clock pin." if r["clock_gating"] else " Ungated clock."), "",
             head, "|---" * (len(designs) + 1) + "|"]
    rows = [(c, lambda d, c=c: d["by_class_pj"][c]) for c in CLASSES]
    rows += [("**logic total**", lambda d: d["logic_pj"]), ("logic without clock", lambda d: d["logic_without_clock_pj"]),
             ("weight memory (modelled)", lambda d: d["weight_memory_pj"]),
             ("threshold memory (modelled)", lambda d: d.get("threshold_memory_pj", 0.0)),
             ("**with weight and threshold memory**", total_pj)]
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(f"{get(r['designs'][d]):,.1f}" for d in designs) + " |")
    lines += ["", "By role (pJ per token-layer):", ""]
    for d in designs:
        roles = ", ".join(f"{k} {v:,.1f}" for k, v in sorted(r["designs"][d]["by_role_pj"].items(), key=lambda kv: -kv[1]))
        x = r["designs"][d]
        lines.append(f"- {names.get(d, d)}: {roles}; {x['flip_flops']:,} flip-flops, "
                     f"{sum(x['cells'].values()):,} cells, {x['area_um2'] / 1e6:.2f} mm², {x['cycles']:,} cycles")
    if r.get("ratio_mac_over_spiking"):
        by = r["ratio_mac_over_spiking"]["by_design"]
        lines += ["", "| MAC ÷ spiking | " + " | ".join(names[d] for d in by) + " |", "|---" * (len(by) + 1) + "|"]
        for key, label in (("pe_arithmetic", "PE arithmetic"), ("pe_arithmetic_without_clock", "PE arithmetic without clock"),
                           ("tile_without_clock", "whole tile without clock"), ("tile_with_clock", "whole tile with clock"),
                           ("tile_with_clock_and_weight_memory", "with clock and modelled weight memory")):
            lines.append(f"| {label} | " + " | ".join(f"{rat[key]:.2f}×" for rat in by.values()) + " |")
        lines += ["", "Above 1 the spiking tile uses less energy. The headline is against the "
                  f"{names[r['ratio_mac_over_spiking']['against']]} (the lower energy with memory)."]
    if r.get("opensta"):
        lines += ["", "OpenSTA cross-check (combinational power, each leaf module annotated from the SAIF, its "
                  "internal power counted once per transition; `spikeacc.energy.sta_check`): OpenSTA ÷ ours = "
                  + ", ".join(f"{names.get(d, d)} {c['ratio']:.2f}×" for d, c in r["opensta"].items()) + "."]
    return "\n".join(lines) + "\n"
