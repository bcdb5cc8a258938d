"""Tile benchmark: per layer shape, cycles vs ideal, utilization, and simulation speed
under cocotb and under a plain Verilator C++ driver (same RTL, same buffers).

    python benchmarks/bench_tile.py [--quick] [--out out/bench]

Fresh builds are timed (sim_build/bench is wiped first) so the "total" column is
what a user waits for from scratch. Numbers swing 15-40% between runs here.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

from spikeacc.golden.vector_export import export_vectors
from spikeacc.verif.native import run_native
from spikeacc.verif.tile_regress import run_tile_regression

SHAPES = [
    ("SmolLM2 L0 q_proj", dict(layer="model.layers.0.self_attn.q_proj", tokens=8)),
    ("SmolLM2 L0 down_proj", dict(layer="model.layers.0.mlp.down_proj", tokens=8)),
    ("Llama-2-7B q_proj (synthetic)", dict(layer="self_attn.q_proj", tokens=1, llama2_shape=True)),
    ("Llama-2-7B down_proj (synthetic)", dict(layer="mlp.down_proj", tokens=1, llama2_shape=True)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--quick", action="store_true", help="SmolLM2 shapes only")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    build_root = Path("sim_build/bench")
    shutil.rmtree(build_root, ignore_errors=True)
    rows = []
    for name, spec in SHAPES[:2] if args.quick else SHAPES:
        t0 = time.perf_counter()
        path = export_vectors(out=out / f"{spec['layer'].replace('.', '_')}.npz", **spec)
        export_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        _, rep = run_tile_regression(path, build_root=build_root, progress=False)
        verify_s = time.perf_counter() - t1
        native = run_native(path, build_root=build_root)
        m, k, n = rep.shape
        rows.append({
            "layer": name, "M": m, "K": k, "N": n, "P": rep.config.pes, "L": rep.config.lanes,
            "passed": rep.passed and native["passed"], "compared": rep.compared,
            "cycles": rep.cycles, "ideal": rep.ideal_cycles, "dense_bound": rep.dense_bound_cycles,
            "utilization": rep.utilization, "zero_fraction": rep.zero_fraction,
            "build_s": rep.build_seconds, "sim_s": rep.wall_seconds,
            "cocotb_cycles_per_s": rep.cycles_per_second, "verify_total_s": verify_s,
            "native_cycles_per_s": native["cycles_per_second"], "native_sim_s": native["wall_seconds"],
            "export_s": export_s,
        })
        r = rows[-1]
        print(f"{name}: {'PASS' if r['passed'] else 'FAIL'} {r['compared']} outputs, "
              f"verified in {verify_s:.1f} s", flush=True)
    (out / "tile.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = (f"{'layer':<34}{'MxKxN':>18}{'P,L':>6}{'cycles':>10}{'ideal':>10}{'util':>7}{'zeros':>7}"
            f"{'build s':>9}{'sim s':>7}{'cocotb c/s':>12}{'native c/s':>12}{'total s':>9}")
    print("\n" + head)
    for r in rows:
        print(f"{r['layer']:<34}{r['M']:>5}x{r['K']:>5}x{r['N']:>5}{r['P']:>3},{r['L']:<2}{r['cycles']:>10,}"
              f"{r['ideal']:>10,}{r['utilization']:>7.1%}{r['zero_fraction']:>7.1%}{r['build_s']:>9.1f}"
              f"{r['sim_s']:>7.2f}{r['cocotb_cycles_per_s']:>12,.0f}{r['native_cycles_per_s']:>12,.0f}"
              f"{r['verify_total_s']:>9.1f}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
