"""Kirin mode against SpikeQuant mode and the MAC baseline: time steps, cycles and energy.

    python benchmarks/bench_kirin.py [--out out/bench_kirin] [--layers self_attn.q_proj,mlp.down_proj]

For each SmolLM2 block-0 projection it exports the same 8 tokens twice, as
SpikeQuant codes (5-bit salient mantissas with a shift each) and as Kirin codes
(8-bit integer outliers, one shift per token, silence-threshold firing), and
runs the spiking tile and the MAC tile on each under Verilator with SAIF
tracing (bit-exact first, `spikeacc energy`). It prints:

- time steps per token-layer: the TTFS input window of each mode against a
  pure spiking encoding of 8-bit values (2^8 = 256 steps), beside Kirin's
  reported 93.75% reduction, and the output window of each firing unit;
- measured cycles per token-layer of every tile (the RTL's ``cycles`` port);
- energy per token-layer from RTL toggles (45 nm table) and calibrated to
  gate level (an extrapolation: fitted on the SpikeQuant 64×16 tile).
"""

import argparse
import json
import time
from pathlib import Path

from spikeacc.config import KIRIN_MODE, PRESETS
from spikeacc.golden.vector_export import export_layers
from spikeacc.energy.toggles import run_energy

MODES = {"spikequant": PRESETS["smollm2"], "kirin": PRESETS["smollm2"].replace(**KIRIN_MODE)}


def time_steps() -> list[dict]:
    """Input and output windows of each mode, from the configurations (what the RTL is generated from)."""
    eight_bit = 1 << 8
    rows = [{"encoding": "8-bit values as TTFS spikes", "input_steps": eight_bit}]
    for mode, cfg in MODES.items():
        rows.append({"encoding": f"{mode} (W{cfg.w_bits}A{cfg.a_bits}"
                                 f"{'&' + str(cfg.outlier_bits) if cfg.kirin else ''}), firing={cfg.firing}",
                     "input_steps": cfg.window, "reduction_vs_8bit": 1 - cfg.window / eight_bit,
                     "output_cycles": cfg.fire_cycles})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench_kirin")
    ap.add_argument("--layers", default="self_attn.q_proj,mlp.down_proj")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = args.layers.split(",")
    rows = []
    for mode, base in MODES.items():
        paths = export_layers(layers=[f"model.layers.0.{p}" for p in layers], tokens=8,
                              outs=[out / f"{mode}_{p}.npz" for p in layers], base=base)
        for layer, path in zip(layers, paths):
            t0 = time.perf_counter()
            r = run_energy(path, out=out / f"{mode}_{layer}")
            tokens = r.tokens
            rows.append({"mode": mode, "layer": layer, "shape": r.shape,
                         "cycles_spiking": r.designs["tile"]["cycles"] / tokens,
                         "cycles_mac": r.designs["mac"]["cycles"] / tokens,
                         "spiking_pj": r.per_token_layer["tile"]["total_pj"],
                         "mac_pj": r.per_token_layer["mac"]["total_pj"],
                         "ratio_toggles": r.ratio_mac_over_spiking["toggles_total_with_weight_memory"],
                         "spiking_pj_calibrated": r.calibrated["per_token_layer"]["tile"]["total_pj"],
                         "mac_pj_calibrated": r.calibrated["per_token_layer"]["mac"]["total_pj"],
                         "ratio_calibrated": r.calibrated["ratio_mac_over_spiking"],
                         "seconds": time.perf_counter() - t0})
            print(f"{mode} {layer}: done in {rows[-1]['seconds']:.0f} s", flush=True)
    steps = time_steps()
    (out / "kirin_table.json").write_text(json.dumps({"time_steps": steps, "layers": rows}, indent=2) + "\n")

    print("\nTime steps per token-layer (input TTFS window; the firing unit's cycles per neuron block)")
    for s in steps:
        reduction = f"{s['reduction_vs_8bit']:.2%} fewer than 256" if "reduction_vs_8bit" in s else ""
        output = f", output {s['output_cycles']} cycles" if "output_cycles" in s else ""
        print(f"  {s['encoding']:<52}{s['input_steps']:>4} steps  {reduction}{output}")
    print("  Kirin reports 93.75%")
    print(f"\n{'mode':<11}{'layer':<18}{'cycles sp':>10}{'cycles MAC':>11}{'spiking pJ':>12}{'MAC pJ':>10}"
          f"{'MAC/sp tog':>11}{'MAC/sp cal':>11}")
    for r in rows:
        print(f"{r['mode']:<11}{r['layer']:<18}{r['cycles_spiking']:>10.0f}{r['cycles_mac']:>11.0f}"
              f"{r['spiking_pj']:>12.0f}{r['mac_pj']:>10.0f}{r['ratio_toggles']:>10.2f}x{r['ratio_calibrated']:>10.2f}x")
    by = {(r["mode"], r["layer"]): r for r in rows}
    for layer in layers:
        sq, k = by["spikequant", layer], by["kirin", layer]
        print(f"Kirin ÷ SpikeQuant on {layer}: spiking energy {k['spiking_pj'] / sq['spiking_pj']:.2f}x (toggles), "
              f"{k['spiking_pj_calibrated'] / sq['spiking_pj_calibrated']:.2f}x (calibrated), "
              f"cycles {k['cycles_spiking'] / sq['cycles_spiking']:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
