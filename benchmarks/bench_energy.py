"""Energy benchmark: MAC ÷ spiking on several SmolLM2 projections and on random vectors.

    python benchmarks/bench_energy.py [--out out/bench_energy]

Each row runs both tiles under Verilator with SAIF tracing on the same vectors
(bit-exact first) and prints the ratios from toggles and from op counts, and
the toggle model calibrated to gate level (an extrapolation beyond the 64×16
tile it was fitted on).
"""

import argparse
import json
import time
from pathlib import Path

from spikeacc.config import PRESETS
from spikeacc.golden.vector_export import export_vectors
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors
from spikeacc.energy.toggles import run_energy

LAYERS = ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench_energy")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(f"SmolLM2 L0 {p}", lambda p=p: export_vectors(layer=f"model.layers.0.{p}", tokens=8,
                                                           out=out / f"{p}.npz")) for p in LAYERS]
    jobs.append(("random 576x576 (22% zeros)",
                 lambda: save_vectors(out / "random.npz", random_vectors(PRESETS["smollm2"], 8, seed=1))))
    rows = []
    for name, make in jobs:
        t0 = time.perf_counter()
        r = run_energy(make(), out=out / name.replace(" ", "_"))
        rat = r.ratio_mac_over_spiking
        rows.append({"vectors": name, "shape": r.shape, "zero_fraction": r.zero_fraction,
                     **{k: v for k, v in rat.items()}, "seconds": time.perf_counter() - t0,
                     "spiking_pj": r.per_token_layer["tile"]["total_pj"],
                     "mac_pj": r.per_token_layer["mac"]["total_pj"],
                     "calibrated": r.calibrated["ratio_mac_over_spiking"]})
        print(f"{name}: done in {rows[-1]['seconds']:.0f} s", flush=True)
    (out / "energy_table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{'vectors':<30}{'MxKxN':>16}{'zeros':>7}{'dp tog':>8}{'logic tog':>10}{'total tog':>10}"
          f"{'dp ops':>8}{'total ops':>10}{'paper':>7}{'gate-cal':>9}")
    for r in rows:
        print(f"{r['vectors']:<30}{'x'.join(map(str, r['shape'])):>16}{r['zero_fraction']:>7.1%}"
              f"{r['toggles_datapath']:>7.2f}x{r['toggles_logic']:>9.2f}x{r['toggles_total_with_weight_memory']:>9.2f}x"
              f"{r['ops_datapath']:>7.2f}x{r['ops_total_with_weight_memory']:>9.2f}x{r['paper']:>6}x"
              f"{r['calibrated']:>8.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
