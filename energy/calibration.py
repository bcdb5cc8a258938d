"""The toggle model calibrated to gate level, and its error against gate level.

The RTL toggle model (:mod:`spikeacc.energy.toggles`) is the fast estimate for
layers too big to simulate as netlists, but its 45 nm per-bit costs knew
nothing of clocks or registers and overstated the spiking tile's advantage
about sevenfold. Here its costs are fitted to a gate-level run
(:mod:`spikeacc.energy.power`) of the same vectors, per design and per
gate-level role (PE arithmetic, encoder/queues, control):

- ``pj_per_toggle``: registers, combinational logic, the tile's own memories
  and leakage of the role at gate level, divided by the RTL toggles of the
  role's named nets;
- ``clock_pj_per_cycle``: the role's clock energy per cycle (per PE for PE
  arithmetic), since clock energy follows cycles and enables, not data.

The fit is made once, on seeded random vectors at the default configuration
(``benchmarks/calibrate_energy.py``), and checked on real SmolLM2 vectors it
was not fitted on; both errors ship with the calibration in
``energy/data/gate_calibration.json``. Configurations far from the default
(other widths, P, L) are extrapolations: run ``spikeacc power`` there.
"""

from __future__ import annotations

import json
from pathlib import Path

from spikeacc.hw import registry

__all__ = ["CALIBRATION_PATH", "fit", "load_calibration", "estimate", "compare"]

CALIBRATION_PATH = Path(__file__).with_name("data") / "gate_calibration.json"
PE_ROLE = "PE arithmetic"


def _gate_roles(design: str, power_design: dict, tokens: int) -> dict[str, dict[str, float]]:
    """Gate-level pJ per role, split into clock and the rest, summed over the run (not per token)."""
    energy = registry.design(design).energy
    roles: dict[str, dict[str, float]] = {}
    for module, classes in power_design["by_module_class_pj"].items():
        r = roles.setdefault(energy.module_role(module), {"clock": 0.0, "rest": 0.0})
        r["clock"] += classes["clock"] * tokens
        r["rest"] += sum(v for c, v in classes.items() if c != "clock") * tokens
    return roles


def fit(energy: dict, power: dict) -> dict:
    """Per-role costs from an RTL energy run and a gate-level run of the same vectors."""
    if energy["vectors"] != power["vectors"] or energy["config"] != power["config"]:
        raise ValueError("the energy and power runs must use the same vectors and configuration")
    designs = {}
    for design in (registry.SPIKING_TILE, registry.DENSE_MAC):
        e, p = energy["designs"][design], power["designs"][design]
        pes = power["config"]["pes"]
        roles = {}
        for role, gate in _gate_roles(design, p, power["tokens"]).items():
            toggles = e["toggles_by_gate_role"].get(role, 0)
            per_cycle = gate["clock"] / p["cycles"] / (pes if role == PE_ROLE else 1)
            roles[role] = {"pj_per_toggle": gate["rest"] / toggles if toggles else 0.0,
                           "clock_pj_per_cycle": per_cycle}
        designs[design] = roles
    return {"fitted_on": {"vectors": power["vectors"], "layer": power["layer"], "config": power["config"],
                          "liberty": power["liberty"], "memories": power["memories"],
                          "clock_gating": power["clock_gating"]},
            "sram_pj_per_bit": power["sram_pj_per_bit"], "designs": designs}


def load_calibration(path: Path = CALIBRATION_PATH) -> dict:
    return json.loads(Path(path).read_text())


def estimate(calibration: dict, design: str, activity: dict, pes: int, tokens: int) -> dict:
    """Calibrated pJ per token-layer of one design from its RTL run (toggles by role, cycles, bits read)."""
    roles = {}
    for role, cost in calibration["designs"][design].items():
        toggles = activity["toggles_by_gate_role"].get(role, 0)
        clock = cost["clock_pj_per_cycle"] * activity["cycles"] * (pes if role == PE_ROLE else 1)
        roles[role] = (cost["pj_per_toggle"] * toggles + clock) / tokens
    logic = sum(roles.values())
    bits = activity["weight_bits_read"] + activity.get("threshold_bits_read", 0)   # the modelled SRAM reads
    memory = bits * calibration["sram_pj_per_bit"] / tokens
    return {"by_role_pj": roles, "logic_pj": logic, "memory_pj": memory, "total_pj": logic + memory}


def compare(calibrated: dict, raw_ratio: float, power: dict) -> dict:
    """Errors of the calibrated and the raw toggle model against a gate-level run of the same vectors."""
    from spikeacc.energy.breakdown import total_pj
    spiking, mac = registry.SPIKING_TILE, registry.DENSE_MAC
    gate = {d: total_pj(power["designs"][d]) for d in (spiking, mac)}
    gate_ratio = gate[mac] / gate[spiking]
    cal_ratio = calibrated[mac]["total_pj"] / calibrated[spiking]["total_pj"]
    return {
        "gate_ratio": gate_ratio,
        "calibrated_ratio": cal_ratio,
        "raw_toggle_ratio": raw_ratio,
        "calibrated_ratio_error": cal_ratio / gate_ratio - 1,
        "raw_toggle_ratio_error": raw_ratio / gate_ratio - 1,
        "calibrated_energy_error": {d: calibrated[d]["total_pj"] / gate[d] - 1 for d in gate},
    }
