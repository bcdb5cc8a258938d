"""Where the spiking tile pays: an event model fitted to gate-level runs, evaluated over zero fraction, K and P.

Gate level is measured at a handful of shapes (``energy/data/recorded_power.json``).
Between them this model interpolates, per design and gate-level role, with
costs per event the hardware actually has:

- spiking PEs: a cost per nonzero input per neuron (its spike add), one per
  neuron (the TTFS window's membrane adds and the firing), and the clock per
  PE-cycle;
- MAC PEs: a cost per input per neuron (every multiply-accumulate; the
  zero-skipping MAC pays a smaller one for a skipped input and a full one
  for a nonzero input), one per neuron (requantize), the clock per PE-cycle;
- encoder and queues: per input written and per row of events read per block;
- control: per cycle;
- weight and threshold memory: exact read counts at the modelled SRAM energy.

Cycles come from the designs' own cycle models (each tile's declared ``cycles``,
:mod:`spikeacc.hw.registry`). The costs are fitted by least squares
on every recorded SpikeQuant shape; each shape's error is measured leaving
that shape out of the fit (:func:`fit`), and it is the model's stated error.
"""

from __future__ import annotations

import numpy as np

from spikeacc.config import SpikeConfig
from spikeacc.energy.breakdown import total_pj
from spikeacc.hw import registry

__all__ = ["parts", "point_events", "fit", "predict", "break_even_grid"]

def point_events(cfg: SpikeConfig, design: str, nonzero: float, cycles: float) -> dict[str, float]:
    """Event counts per token-layer of ``design`` at ``nonzero`` nonzero inputs per token and ``cycles``."""
    N, K, P, L = cfg.out_features, cfg.in_features, cfg.pes, cfg.lanes
    return {"pe_cycles": P * cycles, "nonzero_inputs": N * nonzero, "zero_inputs": N * (K - nonzero),
            "all_inputs": N * K, "neurons": N, "inputs": K, "event_rows": (N / P) * nonzero / L, "cycles": cycles}


def memory_pj(cfg: SpikeConfig, design: str, nonzero: float, pj_per_bit: float) -> float:
    """Weight and threshold reads per token-layer: exact counts at the modelled SRAM energy per bit."""
    from spikeacc.energy.power import threshold_word_bits
    read = nonzero if registry.design(design).skip_zeros else cfg.in_features
    return (cfg.out_features * read * cfg.weight_bits + cfg.blocks * threshold_word_bits(cfg, design)) * pj_per_bit


def _target(record: dict, design: str, role: str, part: str) -> float:
    split = record["designs"][design]["by_role_class_pj"].get(role, {})
    clock = split.get("clock", 0.0)
    return clock if part == "clock" else (sum(split.values()) - clock if part == "rest" else sum(split.values()))


def _point(record: dict, design: str) -> dict[str, float]:
    cfg = SpikeConfig.from_dict(record["config"])
    cycles = record["designs"][design]["cycles"] / record["tokens"]
    return point_events(cfg, design, record["nonzero_per_token"], cycles)


def _solve(rows: list[dict], targets: list[float], events: tuple[str, ...]) -> dict[str, float]:
    """Least squares with costs ≥ 0 (an event with a negative fit is dropped and the rest refitted)."""
    active = list(events)
    while True:
        a = np.array([[r[e] for e in active] for r in rows], dtype=np.float64)
        scale = a.max(axis=0)
        scale[scale == 0] = 1.0
        coef = np.linalg.lstsq(a / scale, np.asarray(targets, dtype=np.float64), rcond=None)[0] / scale
        if (coef >= 0).all() or len(active) == 1:
            return {e: float(max(c, 0.0)) for e, c in zip(active, coef)} | {e: 0.0 for e in events if e not in active}
        active.pop(int(np.argmin(coef)))


def parts() -> dict[tuple[str, str, str], tuple[str, ...]]:
    """(design, gate role, part) -> the events whose counts carry its energy, from each tile's declaration;
    a "clock" part is fitted on the role's clock alone."""
    return {(name, role, part): events for name in registry.tiles()
            for (role, part), events in registry.design(name).energy.events.items()}


def _costs(records: list[dict]) -> dict:
    costs = {}
    for (design, role, part), events in parts().items():
        usable = [r for r in records if design in r["designs"]]
        if not usable:
            continue
        costs[design, role, part] = _solve([_point(r, design) for r in usable],
                                           [_target(r, design, role, part) for r in usable], events)
    return costs


def predict(costs: dict, cfg: SpikeConfig, design: str, nonzero: float, cycles: float, pj_per_bit: float) -> float:
    """Model energy (pJ per token-layer) of ``design``, logic and memory."""
    events = point_events(cfg, design, nonzero, cycles)
    logic = sum(c * events[e] for (d, _, _), cost in costs.items() if d == design for e, c in cost.items())
    return logic + memory_pj(cfg, design, nonzero, pj_per_bit)


def fit(records: list[dict]) -> dict:
    """Costs from every record, and each record's error with the costs fitted without it (leave one out)."""
    records = [r for r in records if "nonzero_per_token" in r and not SpikeConfig.from_dict(r["config"]).kirin]
    if len(records) < 3:
        raise ValueError(f"the break-even model needs at least 3 recorded SpikeQuant shapes, has {len(records)}")
    costs = _costs(records)
    errors = []
    for i, r in enumerate(records):
        held_out = _costs(records[:i] + records[i + 1:])
        cfg = SpikeConfig.from_dict(r["config"])
        row = {"layer": r["layer"], "shape": r["shape"]}
        for design in r["designs"]:
            model = predict(held_out, cfg, design, r["nonzero_per_token"],
                            r["designs"][design]["cycles"] / r["tokens"], r["sram_pj_per_bit"])
            measured = total_pj(r["designs"][design])
            row[design] = model / measured - 1
        errors.append(row)
    worst = max(abs(v) for row in errors for k, v in row.items() if k in registry.tiles())
    return {"costs": {"|".join(k): v for k, v in costs.items()}, "errors": errors, "worst_error": worst,
            "sram_pj_per_bit": records[0]["sram_pj_per_bit"], "config": records[0]["config"],
            "magnitudes": _magnitudes(records)}


def _magnitudes(records: list[dict]) -> list[float]:
    """The nonzero mantissa magnitudes' distribution the grid spreads its nonzero inputs over (pooled)."""
    hist = np.zeros(len(records[0]["magnitude_histogram"]))
    for r in records:
        hist += np.asarray(r["magnitude_histogram"], dtype=np.float64)
    hist[0] = 0.0
    return (hist / hist.sum()).tolist()


def _token_cycles(cfg: SpikeConfig, name: str, hist: np.ndarray) -> int:
    """A token's cycles on tile ``name`` when its nonzero mantissas have the magnitudes counted in ``hist``."""
    row = np.repeat(np.arange(len(hist)), hist)[None, :]
    return registry.design(name).cycles(cfg, row)[0][0]


def break_even_grid(model: dict, ks=(64, 192, 576, 1536), ps=(4, 8, 24, 32), n: int = 576,
                    zero_fractions=tuple(np.round(np.linspace(0.0, 0.95, 20), 3))) -> dict:
    """MAC ÷ spiking (model, against the stronger MAC) over zero fraction for each K and P; break-even points."""
    costs = {tuple(k.split("|")): v for k, v in model["costs"].items()}
    fitted = [name for name in registry.tiles() if any(d == name for d, _, _ in costs)]
    spiking = registry.SPIKING_TILE
    macs = [name for name in fitted if registry.design(name).is_mac]
    base = SpikeConfig.from_dict(model["config"])
    p_mag = np.asarray(model["magnitudes"])
    curves = {}
    for k in ks:
        for p in ps:
            cfg = base.replace(in_features=k, out_features=n, pes=p, max_tokens=8)
            ratios, dense = [], []
            for z in zero_fractions:
                nonzero = k * (1 - z)
                hist = np.round(p_mag * nonzero).astype(int)
                energy = {name: predict(costs, cfg, name, nonzero, _token_cycles(cfg, name, hist),
                                        model["sram_pj_per_bit"]) for name in fitted}
                ratios.append(float(min(energy[m] for m in macs) / energy[spiking]))
                dense.append(float(energy[registry.DENSE_MAC] / energy[spiking]))
            above = [float(z) for z, r in zip(zero_fractions, ratios) if r >= 1.0]
            curves[f"K{k}_P{p}"] = {"k": k, "p": p, "ratios": ratios, "ratios_dense_mac": dense,
                                    "break_even_zero_fraction": above[0] if above else None}
    return {"zero_fractions": list(map(float, zero_fractions)), "n": n, "curves": curves}
