"""Cycles per token-layer of the spiking tile for each output width b_out, on real SmolLM2 vectors.

Wider outputs cost firing cycles (up to 2^b_out − 1 per neuron, overlapped with
the next block's integration; blocks must be 2^b_out + 3 cycles apart). The
exact cycle model (`tile_cycles`, checked against the RTL by the tests) gives
every width; the RTL itself runs the widths the accuracy table recommends.

    python benchmarks/bench_out_bits.py [--tokens 8] [--rtl 6,8] [--out out/bench_out_bits]
"""

import argparse
import json
from pathlib import Path


from spikeacc.config import PRESETS
from spikeacc.golden.network import PROJECTIONS
from spikeacc.golden.vector_export import export_layers
from spikeacc.golden.vectors import load_vectors
from spikeacc.hw.tile import token_cycles
from spikeacc.verif.tile_regress import run_tile_regression


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--widths", default="4,6,8")
    ap.add_argument("--rtl", default="6,8", help="widths also run on the RTL (bit-exact, cycles compared)")
    ap.add_argument("--out", default="out/bench_out_bits")
    args = ap.parse_args()
    widths = [int(b) for b in args.widths.split(",")]
    rtl = [int(b) for b in args.rtl.split(",") if b]
    out = Path(args.out)
    layers = [f"model.layers.0.{p}" for p in PROJECTIONS]
    rows = {layer: {"layer": layer} for layer in layers}
    for b in sorted(set(widths) | set(rtl)):
        paths = export_layers(layers=layers, tokens=args.tokens, outs=[out / f"{p}_o{b}.npz" for p in PROJECTIONS],
                              base=PRESETS["smollm2"].replace(out_bits=b))
        for layer, path in zip(layers, paths):
            v = load_vectors(path)
            cfg, row = v.config, rows[layer]
            model = sum(token_cycles(cfg, v.mant))
            row.update(shape=list(v.shape), pes=cfg.pes)
            row[f"cycles_o{b}"] = model // v.shape[0]
            if b in rtl:
                _, rep = run_tile_regression(path, progress=False)
                assert rep.passed, f"{layer} b_out {b}: {rep.mismatch_count} mismatches"
                assert rep.cycles == model, (rep.cycles, model)
                row[f"rtl_o{b}"] = f"PASS {rep.compared}, utilization {rep.utilization:.1%}"
            print(json.dumps(row), flush=True)
    rows = list(rows.values())
    (out / "bench_out_bits.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = f"{'layer':<34}{'M×K×N':>16}{'P':>4}" + "".join(f"{'b_out ' + str(b):>12}" for b in widths)
    print("\ncycles per token-layer (exact model; RTL-checked, bit-exact, for b_out in --rtl)\n" + head)
    for r in rows:
        print(f"{r['layer']:<34}{'×'.join(map(str, r['shape'])):>16}{r['pes']:>4}"
              + "".join(f"{r[f'cycles_o{b}']:>12,}" for b in widths)
              + "  " + ", ".join(f"o{b}: {r[f'rtl_o{b}']}" for b in rtl))


if __name__ == "__main__":
    raise SystemExit(main())
