"""``spikeacc energy``: spiking vs MAC energy on the same vectors, from RTL activity.

Both tiles run the same vector file under Verilator with ``--trace-saif``; every
output is checked bit-exact first. Toggles of the named nets (Amaranth's
anonymous ``$`` intermediates are skipped, as they duplicate the named ones) are
grouped by role and charged per toggled bit (:mod:`spikeacc.energy.op_counts`);
buffer reads are counted from the RTL (cycles in which a lane was valid, from
the SAIF high times) and charged per bit read. The op-count model of the golden
side is the cross-check. Energy runs are separate from correctness runs:
tracing slows simulation.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


from spikeacc.energy.op_counts import PAPER_RATIO, op_counts, op_energy, sram_read_pj, toggle_pj
from spikeacc.golden.vectors import load_vectors
from spikeacc.errors import VerificationFailed
from spikeacc.energy.calibration import compare, estimate, load_calibration
from spikeacc.energy.power import progress_line, threshold_word_bits
from spikeacc.hw import registry
from spikeacc.energy.saif import read_saif
from spikeacc.verif.results import VectorFileRun
from spikeacc.verif.tile_harness import CLOCK_PERIOD_NS
from spikeacc.verif.tile_regress import run_tile_regression, tile_config_for

__all__ = ["EnergyResult", "classify", "activity_energy", "run_energy"]


@dataclass(frozen=True)
class EnergyResult(VectorFileRun):
    """Spiking tile vs MAC tile on one vector file, from RTL toggles (``energy.json`` is :meth:`to_dict`).

    Every figure is a model: the raw 45 nm per-bit toggle table, its gate-level
    calibration (``calibrated``) and the papers' op-count method (``op_*``).
    """

    tokens: int
    designs: dict                 # per design: toggles by role, cycles, energy by role (pJ)
    per_token_layer: dict         # per design: datapath, logic and total pJ per token-layer (raw toggle model)
    op_counts: dict
    op_energy_pj: dict
    op_per_token_layer: dict
    ratio_mac_over_spiking: dict
    zero_fraction: float
    zero_skipping_saved_pj_per_token_layer: float
    calibrated: dict | None = None   # the toggle model calibrated to gate level, with its checked error
    gate_level: dict | None = None   # a `spikeacc power` result of the same vectors, compared

CLOCK_PERIOD_S = CLOCK_PERIOD_NS * 1e-9

def classify(design: str, name: str, module: str = "top") -> str:
    """The energy role of net ``name`` in submodule ``module`` of ``design``, as the design declares it."""
    return registry.design(design).energy.net_role(name, module)


def activity_energy(design: str, saif_path: Path, cfg) -> dict:
    """Toggle counts and pJ by role and by module, plus buffer reads counted from the RTL."""
    header, nets = read_saif(saif_path)
    period = CLOCK_PERIOD_S / header["TIMESCALE"]
    toggles, energy = defaultdict(int), defaultdict(float)
    by_module = defaultdict(float)
    by_gate_role = defaultdict(int)   # the gate-level roles, for the calibrated model
    lane_cycles = threshold_words = 0.0
    roles = registry.design(design).energy
    first_pe = roles.first_pe
    lane_valid = re.compile(r"^(spikes|inputs)\[\d+\]\.valid$")
    for net in nets:
        if len(net.path) < 2 or net.path[1] != "dut":
            continue
        # each valid lane-cycle at a PE input is one weight-word read (P weights, one per PE)
        if net.path[2:] == (first_pe,) and lane_valid.match(net.name):
            lane_cycles += net.high_time / period
        if net.path[2:] == () and net.name == "thresh__en":   # one threshold word read per enabled cycle
            threshold_words += net.high_time / period
        # Amaranth's anonymous `$` nets and struct-field views duplicate named signals
        if "$" in net.name or "." in net.name or "[" in net.name or net.name in ("clk", "rst"):
            continue
        role = classify(design, net.name, net.path[2] if len(net.path) > 2 else "top")
        operands = (cfg.weight_bits, cfg.mantissa_bits) if roles.is_multiplier(net.name) else None
        pj = net.toggles * toggle_pj("multiplier" if operands else "adder", operands)
        toggles[role] += net.toggles
        energy[role] += pj
        by_gate_role[roles.module_role(net.path[2] if len(net.path) > 2 else "top")] += net.toggles
        module = re.sub(r"\d+$", "", net.path[2]) if len(net.path) > 2 else "top"
        by_module[module] += pj
    weight_bits = lane_cycles * cfg.pes * cfg.weight_bits
    energy["weight memory reads"] = sram_read_pj(1) * weight_bits
    synapse_ops = int(round(lane_cycles * cfg.pes))  # one add (spiking) or multiply-add (MAC) per weight read
    return {"toggles": dict(toggles), "toggles_by_gate_role": dict(by_gate_role),
            "energy_pj": dict(energy), "by_module_pj": dict(by_module),
            "weight_reads": synapse_ops, "weight_bits_read": int(round(weight_bits)),
            "threshold_bits_read": int(round(threshold_words)) * threshold_word_bits(cfg, design),
            "rtl_ops": dict.fromkeys(roles.ops_per_read, synapse_ops)}


def run_energy(vectors_path, *, out="out/energy", build_root=None, pes=None, lanes=None,
               inject_fault=None, gate_level: Path | None = None, calibrated: bool = True) -> EnergyResult:
    """Run both tiles with SAIF on one vector file; write energy.json, energy.md and energy.png.

    A design that is not bit-exact stops the run (``inject_fault`` proves it does).
    Besides the raw 45 nm toggle model, every run gives the gate-calibrated
    estimate (:mod:`spikeacc.energy.calibration`); ``gate_level`` names a
    ``spikeacc power`` result (power.json) of the same vectors, whose ratio is
    reported beside both models with their errors. ``calibrated=False`` skips
    the calibrated estimate (``benchmarks/calibrate_energy.py``, which fits it).
    """
    out = Path(out)
    vectors = load_vectors(vectors_path)
    power = _gate_level_run(gate_level, vectors_path) if gate_level is not None else None
    out.mkdir(parents=True, exist_ok=True)
    cfg = tile_config_for(vectors, pes, lanes)
    m = vectors.shape[0]
    designs = {}
    spiking, mac = registry.SPIKING_TILE, registry.DENSE_MAC
    for i, design in enumerate((spiking, mac)):
        t0 = time.perf_counter()
        progress_line(f"energy: {design} ({i + 1}/2): RTL simulation with activity recording")
        saif = out / f"{design}.saif"
        _, rep = run_tile_regression(vectors_path, build_root=build_root, pes=pes, lanes=lanes,
                                     design=design, saif_to=saif, progress=False, inject_fault=inject_fault)
        if not rep.passed:
            first = rep.mismatches[0]
            raise VerificationFailed(f"{design} is not bit-exact on {vectors_path}: {rep.mismatch_count} "
                                     f"mismatches, first at index {tuple(first['index'])} (expected "
                                     f"{first['expected']}, got {first['got']}); energy of a wrong design "
                                     f"means nothing")
        act = activity_energy(design, saif, cfg)
        designs[design] = {**act, "cycles": rep.cycles, "seconds": time.perf_counter() - t0,
                           "saif": str(saif)}
    ops = op_counts(cfg, vectors.mant, vectors.expected)
    ops_pj = op_energy(cfg, ops)

    def per_token(x):
        return x / m

    summary = {}
    for design, d in designs.items():
        e = d["energy_pj"]
        datapath = sum(e.get(r, 0.0) for r in registry.design(design).energy.datapath)
        logic = sum(v for r, v in e.items() if r != "weight memory reads")
        summary[design] = {"datapath_pj": per_token(datapath), "logic_pj": per_token(logic),
                           "total_pj": per_token(logic + e["weight memory reads"])}
    op_summary = {}
    for design, key in ((registry.SPIKING_ARITHMETIC, spiking), (registry.MAC_ARITHMETIC, mac)):
        e = ops_pj[design]
        op_summary[key] = {"datapath_pj": per_token(sum(v for k, v in e.items() if k != "weight_read")),
                           "total_pj": per_token(sum(e.values()))}
    zero = float((vectors.mant == 0).mean())
    skip_saved = zero / (1 - zero) * (ops_pj["spiking"]["current_add"] + ops_pj["spiking"]["weight_read"]) if zero < 1 else 0.0
    result = EnergyResult(
        vectors=str(vectors_path), layer=vectors.meta.get("layer"), model=vectors.meta.get("model"),
        shape=tuple(vectors.shape), config=cfg, tokens=m, designs=designs, per_token_layer=summary,
        op_counts=ops, op_energy_pj=ops_pj, op_per_token_layer=op_summary,
        ratio_mac_over_spiking={
            "toggles_datapath": summary[mac]["datapath_pj"] / summary[spiking]["datapath_pj"],
            "toggles_logic": summary[mac]["logic_pj"] / summary[spiking]["logic_pj"],
            "toggles_total_with_weight_memory": summary[mac]["total_pj"] / summary[spiking]["total_pj"],
            "ops_datapath": op_summary[mac]["datapath_pj"] / op_summary[spiking]["datapath_pj"],
            "ops_total_with_weight_memory": op_summary[mac]["total_pj"] / op_summary[spiking]["total_pj"],
            "paper": PAPER_RATIO,
        },
        zero_fraction=zero, zero_skipping_saved_pj_per_token_layer=per_token(skip_saved))
    if calibrated:
        calibration = load_calibration()
        est = {d: estimate(calibration, d, designs[d], cfg.pes, m) for d in designs}
        result = dataclasses.replace(result, calibrated={
            "per_token_layer": est, "fitted_on": calibration["fitted_on"], "checked": calibration.get("checked"),
            "ratio_mac_over_spiking": est[mac]["total_pj"] / est[spiking]["total_pj"]})
        if power is not None:
            raw = summary[mac]["total_pj"] / summary[spiking]["total_pj"]
            result = dataclasses.replace(result, gate_level={"power_json": str(gate_level),
                                                             **compare(est, raw, power)})
    (out / "energy.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (out / "energy.md").write_text(_markdown(result.to_dict()))
    _plot(result.to_dict(), out / "energy.png")
    return result


def _gate_level_run(path: Path, vectors_path) -> dict:
    """A ``spikeacc power`` result of the same vectors, or a one-line refusal."""
    path = Path(path)
    if path.is_dir():
        path = path / "power.json"
    try:
        power = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--gate-level {path}: not a readable power.json ({exc})") from None
    pair = (registry.SPIKING_TILE, registry.DENSE_MAC)
    if not set(pair) <= set(power.get("designs", {})):
        raise ValueError(f"--gate-level {path}: needs both designs (spikeacc power --designs {','.join(pair)})")
    if Path(power["vectors"]).resolve() != Path(vectors_path).resolve():
        raise ValueError(f"--gate-level {path} measured {power['vectors']}, not {vectors_path}: "
                         "compare runs of the same vectors")
    return power


def _markdown(r: dict) -> str:
    rat = r["ratio_mac_over_spiking"]
    S, M = registry.SPIKING_TILE, registry.DENSE_MAC
    s, mac = r["per_token_layer"][S], r["per_token_layer"][M]
    lines = [f"# Energy: {r['layer']} ({r['model']}), M×K×N = {'×'.join(map(str, r['shape']))}", "",
             "Per token-layer, 45 nm table (Horowitz ISSCC 2014); see `spikeacc.energy.op_counts`.", "",
             "| | spiking | MAC | MAC ÷ spiking |", "|---|---|---|---|",
             f"| datapath, from toggles (pJ) | {s['datapath_pj']:.1f} | {mac['datapath_pj']:.1f} | {rat['toggles_datapath']:.2f}x |",
             f"| all logic incl. control/encoder, from toggles (pJ) | {s['logic_pj']:.1f} | {mac['logic_pj']:.1f} | {rat['toggles_logic']:.2f}x |",
             f"| total with weight-memory reads, from toggles (pJ) | {s['total_pj']:.1f} | {mac['total_pj']:.1f} | {rat['toggles_total_with_weight_memory']:.2f}x |",
             f"| datapath, from op counts (pJ) | {r['op_per_token_layer'][S]['datapath_pj']:.1f} | {r['op_per_token_layer'][M]['datapath_pj']:.1f} | {rat['ops_datapath']:.2f}x |",
             f"| total with weight-memory reads, from op counts (pJ) | {r['op_per_token_layer'][S]['total_pj']:.1f} | {r['op_per_token_layer'][M]['total_pj']:.1f} | {rat['ops_total_with_weight_memory']:.2f}x |",
             f"| SpikeQuant paper (op-count estimate) | | | {rat['paper']}x |"]
    if r["calibrated"]:
        cal = r["calibrated"]["per_token_layer"]
        lines.append(f"| **calibrated to gate level** (OSU 0.18 µm, clock and weight memory included) (pJ) | "
                     f"{cal[S]['total_pj']:.1f} | {cal[M]['total_pj']:.1f} | "
                     f"{r['calibrated']['ratio_mac_over_spiking']:.2f}x |")
    lines.append("")
    g = r["gate_level"]
    if g:
        lines += [f"Gate level (`{g['power_json']}`, same vectors): MAC ÷ spiking = {g['gate_ratio']:.2f}x with "
                  f"clock and weight memory. Error of the calibrated model: {g['calibrated_ratio_error']:+.0%} "
                  f"on the ratio, {g['calibrated_energy_error'][S]:+.0%} (spiking) and "
                  f"{g['calibrated_energy_error'][M]:+.0%} (MAC) on energy; the raw 45 nm toggle model's "
                  f"ratio ({g['raw_toggle_ratio']:.2f}x) is off by {g['raw_toggle_ratio_error']:+.0%}.", ""]
    elif r["calibrated"] and r["calibrated"].get("checked"):
        c = r["calibrated"]["checked"]
        lines += [f"The calibration was fitted on {r['calibrated']['fitted_on']['layer']} and checked on "
                  f"{c['layer']}: ratio error {c['calibrated_ratio_error']:+.0%} against gate level there (raw "
                  f"toggle model {c['raw_toggle_ratio_error']:+.0%}). Pass `--gate-level out/power` for this "
                  "run's own gate-level comparison.", ""]
    lines += [
             f"Zero activation mantissas: {r['zero_fraction']:.1%}; skipping them saved "
             f"{r['zero_skipping_saved_pj_per_token_layer']:.1f} pJ per token-layer (current adds and weight reads).", "",
             "Energy by role (pJ per token-layer, toggles):", ""]
    for design, d in r["designs"].items():
        roles = ", ".join(f"{k} {v / r['tokens']:.1f}" for k, v in sorted(d["energy_pj"].items(), key=lambda kv: -kv[1]))
        lines.append(f"- {design}: {roles}")
    lines += ["", "SAIF files (per-bit toggle counts, for OpenSTA `read_saif` or Vivado): "
              + ", ".join(d["saif"] for d in r["designs"].values()), ""]
    return "\n".join(lines)


def _plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    names = {registry.SPIKING_TILE: "spiking (ACC)", registry.DENSE_MAC: "MAC baseline"}
    colors = {"weight memory reads": "0.75", "control": "tab:olive", "encoder/queues": "tab:cyan",
              "spike/current adders": "tab:green", "membrane adders": "tab:blue", "threshold/fire": "tab:purple",
              "MAC multipliers": "tab:red", "accumulators": "tab:orange", "requantizer": "tab:brown"}
    order = list(colors)
    seen = set()
    for x, (design, d) in enumerate(r["designs"].items()):
        bottom = 0.0
        for role, pj in sorted(d["energy_pj"].items(), key=lambda kv: order.index(kv[0])):
            v = pj / r["tokens"]
            ax.bar(x, v, bottom=bottom, color=colors[role], label=None if role in seen else role)
            seen.add(role)
            bottom += v
    ax.set_xticks(range(len(r["designs"])), [names[d] for d in r["designs"]])
    ax.set_ylabel("pJ per token-layer\n(toggles × 45 nm per-bit energy)")
    # the papers' op-count method, not a measurement: no clock, no registers (gate level: `spikeacc power`)
    ax.set_title(f"{r['layer']}: the papers' op-count method\n"
                 "(45 nm per-bit table on RTL toggles; no clock or registers; not gate level)", fontsize=8)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
