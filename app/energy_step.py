"""The main job's energy step: gate-level energy at the real q_proj shape first, the models after it.

Gate level (standard-cell netlists of the spiking tile and both MAC tiles,
simulated bit-exact, charged from the Liberty) is what the step leads with.
Its first run at SmolLM2's shape costs minutes of synthesis and netlist
builds, so the step measures it when those netlists are already built for
these very designs or when asked (``spikeacc run --gate-level``); otherwise it
shows the figure the project recorded for these very vectors
(:mod:`spikeacc.energy.recorded`), marked *recorded* with its date, commit and
command. The models follow, each labelled with its measured error: the
calibrated toggle model on this run's RTL activity, the break-even event
model over zero fraction, K and P, and the papers' op-count method.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from spikeacc.config import MODES
from spikeacc.energy.breakdown import total_pj
from spikeacc.hw import registry

__all__ = ["energy_section", "gate_level_figure", "plot_gate_level", "plot_break_even"]

CLASS_ORDER = ("clock", "registers", "combinational", "memory", "leakage")
CLASS_LABELS = {"memory": "tile memories (event queues)"}


def _log(message: str) -> None:
    print(message, flush=True)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _netlists_built(cfg, build_root) -> bool:
    from spikeacc.energy.gate_power import GateLevel
    from spikeacc.energy.liberty import DEFAULT_LIBERTY, load_library
    from spikeacc.verif.tile_regress import tile_is_built

    try:
        gates = GateLevel(load_library(DEFAULT_LIBERTY))
    except (OSError, ValueError):
        return False    # no Liberty here (qflow-tech-osu018 not installed): nothing can be measured
    return all(tile_is_built(cfg, build_root=build_root, design=d, saif=True, gates=gates) for d in registry.tiles())


def gate_level_figure(vectors_path: Path, out: Path, build_root, measure: bool) -> dict | None:
    """The gate-level record of these vectors: measured now (asked, or the netlists are built) or recorded."""
    from spikeacc.energy.power import run_power
    from spikeacc.energy.recorded import find_recorded, summarize
    from spikeacc.golden.vectors import load_vectors
    from spikeacc.verif.tile_regress import tile_config_for

    vectors = load_vectors(vectors_path)
    if measure or _netlists_built(tile_config_for(vectors), build_root):
        power = run_power(vectors_path, designs=registry.tiles(), out=out, build_root=build_root).to_dict()
        return {**summarize(power, vectors), "source": "measured",
                "measured": {"date": datetime.date.today().isoformat(), "commit": "this run",
                             "command": "spikeacc run --gate-level"}}
    record = find_recorded(vectors)
    return {**record, "source": "recorded"} if record else None


def _model_error(ratio: float, gate: dict | None, mode: str, calibration: dict) -> dict:
    """The calibrated model's error: against this run's own gate-level figure when there is one, else its checks."""
    if gate is not None:
        dense = gate["ratio_mac_over_spiking"]["by_design"][registry.DENSE_MAC]["tile_with_clock_and_weight_memory"]
        return {"error": ratio / dense - 1, "against": f"against the gate-level figure of these vectors ({gate['source']})"}
    if mode == "kirin":
        return {"error": None, "against": "not checked in Kirin mode: fitted and checked on SpikeQuant codes"}
    return {"error": calibration["checked"]["calibrated_ratio_error"],
            "against": f"its worst check, {calibration['checked']['layer']}"}


def _gate_headline(mode: str, g: dict) -> str:
    r = g["ratio_mac_over_spiking"]
    dense = r["by_design"][registry.DENSE_MAC]["tile_with_clock_and_weight_memory"]
    shape = f"{g['shape'][1]}→{g['shape'][2]}, P={g['config']['pes']}"
    when = ("measured in this run" if g["source"] == "measured" else
            f"recorded {g['measured']['date']} at {g['measured']['commit']}")
    return (f"gate level ({when}): MAC ÷ spiking on {mode} q_proj ({shape}) {r['tile_with_clock_and_weight_memory']:.2f}x "
            f"against the {registry.label(r['against'])}, {dense:.2f}x against the dense MAC, clock and weight "
            "memory included")


def gate_tables(gate: dict) -> list[tuple[list[str], list[list]]]:
    """Per mode: energy by kind and by role for each design, the weight memory apart."""
    tables = []
    for mode, g in gate.items():
        designs = list(g["designs"])
        head = [f"{mode} q_proj {'×'.join(map(str, g['shape'][1:]))}, nJ per token-layer ({g['source']})"] + \
            [registry.label(d) for d in designs]
        rows = []
        for c in CLASS_ORDER:
            rows.append([CLASS_LABELS.get(c, c)] + [f"{g['designs'][d]['by_class_pj'][c] / 1e3:,.1f}" for d in designs])
        rows.append(["logic total"] + [f"{g['designs'][d]['logic_pj'] / 1e3:,.1f}" for d in designs])
        for role in ("PE arithmetic", "encoder/queues", "control"):
            rows.append([f"  of it {role}"] + [f"{g['designs'][d]['by_role_pj'].get(role, 0.0) / 1e3:,.1f}"
                                              for d in designs])
        rows.append(["weight memory (modelled SRAM)"] + [f"{g['designs'][d]['weight_memory_pj'] / 1e3:,.1f}"
                                                          for d in designs])
        rows.append(["threshold memory (modelled SRAM)"] + [f"{g['designs'][d]['threshold_memory_pj'] / 1e3:,.1f}"
                                                             for d in designs])
        rows.append(["total"] + [f"{total_pj(g['designs'][d]) / 1e3:,.1f}" for d in designs])
        by = g["ratio_mac_over_spiking"]["by_design"]
        rows.append(["MAC ÷ spiking, with weight memory"] + [
            "–" if d == registry.SPIKING_TILE else f"{by[d]['tile_with_clock_and_weight_memory']:.2f}x" for d in designs])
        rows.append(["MAC ÷ spiking, PE arithmetic"] + [
            "–" if d == registry.SPIKING_TILE else f"{by[d]['pe_arithmetic']:.2f}x" for d in designs])
        rows.append(["cycles per token-layer"] + [f"{g['designs'][d]['cycles'] / g['tokens']:,.0f}" for d in designs])
        tables.append((head, rows))
    return tables


def plot_gate_level(gate: dict, path) -> None:
    """Stacked bars by kind per design and mode; the weight memory a bar segment of its own."""
    plt = _plt()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(gate), figsize=(4.2 * len(gate) + 1.8, 3.8), squeeze=False)
    colors = {"clock": "tab:red", "registers": "tab:orange", "combinational": "tab:blue", "memory": "tab:cyan",
              "leakage": "0.4", "weight memory": "0.8", "threshold memory": "0.6"}
    for ax, (mode, g) in zip(axes[0], gate.items()):
        designs = list(g["designs"])
        for x, d in enumerate(designs):
            entry, bottom = g["designs"][d], 0.0
            parts = [(c, entry["by_class_pj"][c]) for c in CLASS_ORDER] + [
                ("weight memory", entry["weight_memory_pj"]), ("threshold memory", entry["threshold_memory_pj"])]
            for name, pj in parts:
                ax.bar(x, pj / 1e3, bottom=bottom, color=colors[name],
                       label=CLASS_LABELS.get(name, name) if x == 0 else None)
                bottom += pj / 1e3
        ax.set_xticks(range(len(designs)), [registry.label(d) for d in designs], fontsize=8)
        ax.set_ylabel("nJ per token-layer")
        r = g["ratio_mac_over_spiking"]
        source = "measured" if g["source"] == "measured" else f"recorded {g['measured']['date']}"
        ax.set_title(f"{mode} q_proj {g['shape'][1]}×{g['shape'][2]}, P={g['config']['pes']}: gate level ({source})\n"
                     f"MAC ÷ spiking {r['tile_with_clock_and_weight_memory']:.2f}x vs the "
                     f"{registry.label(r['against'])}", fontsize=8)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_break_even(grid: dict, model: dict, path) -> None:
    """MAC ÷ spiking (model) over zero fraction: one panel per P, one curve per K; 1 is break-even."""
    plt = _plt()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ps = sorted({c["p"] for c in grid["curves"].values()})
    fig, axes = plt.subplots(1, len(ps), figsize=(3.0 * len(ps), 3.2), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], ps):
        for c in (c for c in grid["curves"].values() if c["p"] == p):
            ax.plot(grid["zero_fractions"], c["ratios"], label=f"K={c['k']}")
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_title(f"P = {p}", fontsize=9)
        ax.set_xlabel("zero fraction of the inputs", fontsize=8)
    axes[0][0].set_ylabel("MAC ÷ spiking (model)", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Break-even (model fitted on gate-level runs, worst leave-one-out error "
                 f"{model['worst_error']:.0%}; against the stronger MAC; N = {grid['n']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _break_even(out: Path) -> tuple[dict | None, dict | None, str | None]:
    """The break-even model fitted on the recorded gate-level shapes, its grid and plot path."""
    import json

    from spikeacc.energy.break_even import break_even_grid, fit
    from spikeacc.energy.recorded import RECORDED_PATH

    try:
        records = list(json.loads(RECORDED_PATH.read_text()).values())
        model = fit(records)
    except (OSError, ValueError) as exc:
        _log(f"  break-even map: not available ({exc})")
        return None, None, None
    grid = break_even_grid(model)
    path = out / "energy" / "break_even.png"
    plot_break_even(grid, model, path)
    return model, grid, str(path)


def _build_mac_activity(paths: dict[str, Path], build_root) -> None:
    """Build both modes' activity-recording MAC tiles at once (the runs below reuse them): each build
    has long single-threaded stretches (Verilator's front end), so two side by side fill both cores."""
    import concurrent.futures

    from spikeacc.golden.vectors import load_vectors
    from spikeacc.verif.tile_regress import build_tile, tile_config_for

    def build(path):
        build_tile(tile_config_for(load_vectors(path)), build_root=build_root, design=registry.DENSE_MAC,
                   saif=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(paths)) as pool:
        list(pool.map(build, paths.values()))


def energy_section(run, paths: dict[str, Path]) -> dict:
    """The energy step's report section for the q_proj vectors of each mode (``paths``)."""
    from spikeacc.energy.toggles import run_energy

    out, build_root = run.out, run.build_root
    gate = {}
    for mode in MODES:
        figure = gate_level_figure(paths[mode], out / "power" / mode, build_root, run.gate_level)
        if figure is not None:
            gate[mode] = figure
            _log(f"  {_gate_headline(mode, figure)}")
        else:
            _log(f"  gate level {mode}: no recorded figure for these vectors; `spikeacc run --gate-level` measures it")
    _build_mac_activity(paths, build_root)
    # one after the other: each plots with pyplot, which is not thread-safe
    results = {mode: run_energy(paths[mode], out=out / "energy" / mode, build_root=build_root) for mode in MODES}
    rows, plots = [], {}
    for mode, r in results.items():
        cal = r.calibrated
        rows.append({"mode": mode, "layer": r.layer, "shape": r.shape,
                     "spiking_pj": r.per_token_layer[registry.SPIKING_TILE]["total_pj"],
                     "mac_pj": r.per_token_layer[registry.DENSE_MAC]["total_pj"],
                     "ratio_toggles": r.ratio_mac_over_spiking["toggles_total_with_weight_memory"],
                     "ratio_ops": r.ratio_mac_over_spiking["ops_total_with_weight_memory"],
                     "ratio_calibrated": cal["ratio_mac_over_spiking"],
                     "calibration_error": _model_error(cal["ratio_mac_over_spiking"], gate.get(mode), mode, cal),
                     "by_role_pj": {d: r.designs[d]["energy_pj"] for d in r.designs}})
        plots[f"energy_{mode}"] = str(out / "energy" / mode / "energy.png")
    if gate:
        plots = {"energy_gate": str(out / "energy" / "gate_level.png"), **plots}
        plot_gate_level(gate, plots["energy_gate"])
    model, grid, be_plot = _break_even(out)
    if be_plot:
        plots = {**{k: v for k, v in plots.items() if k == "energy_gate"}, "break_even": be_plot,
                 **{k: v for k, v in plots.items() if k != "energy_gate"}}
    sq = rows[0]
    err = sq["calibration_error"]
    model_line = (f"calibrated toggle model {sq['ratio_calibrated']:.2f}x against the dense MAC (model, "
                  + (f"error {err['error']:+.0%} {err['against']})" if err["error"] is not None else f"{err['against']})"))
    if "spikequant" in gate:
        headline = _gate_headline("SpikeQuant", gate["spikequant"])
        if "kirin" in gate:
            k = gate["kirin"]["ratio_mac_over_spiking"]
            headline += f"; Kirin {k['tile_with_clock_and_weight_memory']:.2f}x"
        headline += f"; {model_line}"
    else:
        headline = f"no gate-level figure for these vectors (`spikeacc run --gate-level`); {model_line}"
    notes = [f"Gate level, {mode} q_proj: " + ("measured in this run (`spikeacc run --gate-level`, or its netlists "
                                                "were built)." if g["source"] == "measured" else
                                                f"recorded on {g['measured']['date']} at commit {g['measured']['commit']} "
                                                f"on these very vectors; reproduce with `{g['measured']['command']}`.")
             for mode, g in gate.items()]
    return {"status": "PASS", "gate_level": gate, "rows": rows, "plots": plots, "notes": notes,
            "break_even": {"model": model, "grid": grid} if model else None,
            "baseline": ("MAC tiles: the same buffers, P PEs each multiplying weight × activation and accumulating, one "
                         "requantizer (restoring division) shared by the P PEs (hw/mac.py); the dense MAC reads and multiplies "
                         "every weight, the zero-skipping MAC skips the weight read and holds its multiplier for a zero "
                         "activation; the headline ratio is against the stronger of the two"),
            "headline": headline, "files": list(plots.values())}
