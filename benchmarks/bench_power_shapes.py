"""Gate-level energy at SmolLM2's real layer shapes: the spiking tile against both MAC tiles.

    python benchmarks/bench_power_shapes.py [--out out/power_shapes] [--shapes q_proj,down_proj,kirin_q_proj]
                                            [--write]

Exports block-0 projections of the embedded SmolLM2-135M exactly as the main
job does (8 tokens, full size, P and L from ``SpikeConfig.for_layer``: q_proj
576→576 and down_proj 1536→576 at P = 24, L = 2), then runs ``spikeacc
power`` on each: the spiking tile, the MAC tile (every weight read and
multiplied) and the zero-skipping MAC tile, each synthesized to OSU 0.18 µm
cells, simulated bit-exact with SAIF and charged from the Liberty. Prints
one row per shape. ``--write`` stores the figures in
``energy/data/recorded_power.json`` with today's date, the commit and this
command, for the main job to show when it does not measure them itself.

A first run synthesizes and builds three netlists per shape (minutes each on
2 cores); a second run reuses them.
"""

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.energy.power import run_power
from spikeacc.energy.recorded import summarize, vectors_digest, write_recorded
from spikeacc.golden.synthetic_vectors import crop_vectors, random_vectors
from spikeacc.golden.vector_export import export_layers
from spikeacc.golden.vectors import load_vectors, save_vectors

# name -> (mode, projection, variant): the real projection (None), cropped to the default 64×16 tile with P = 4
# ("64x16"), or seeded random codes with that zero fraction on the projection's own tile (the same netlists): the
# shapes and sparsities the break-even model is fitted on
SHAPES = {"q_proj": ("spikequant", "self_attn.q_proj", None), "down_proj": ("spikequant", "mlp.down_proj", None),
          "kirin_q_proj": ("kirin", "self_attn.q_proj", None),
          "q_proj_64x16": ("spikequant", "self_attn.q_proj", "64x16"),
          "down_proj_64x16": ("spikequant", "mlp.down_proj", "64x16"),
          "q_proj_zeros10": ("spikequant", "self_attn.q_proj", 0.10),
          "q_proj_zeros60": ("spikequant", "self_attn.q_proj", 0.60)}


def commit() -> str:
    """The commit whose sources this run imported (taken at start), marked when they had uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    sources = ("app", "energy", "golden", "hw", "spikeacc", "verif", "benchmarks")
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=all", "--", *sources) else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/power_shapes")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated of {', '.join(SHAPES)}")
    ap.add_argument("--build-dir", default=None)
    ap.add_argument("--write", action="store_true", help="record the figures for the main job")
    args = ap.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        sys.exit(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    out = Path(args.out)
    measured_at = commit()
    records, rows, exported = {}, [], set()
    for name in shapes:
        mode, proj, variant = SHAPES[name]
        base = PRESETS["smollm2"].with_arithmetic_of(SpikeConfig().in_mode(mode))
        path = out / mode / f"{proj}.npz"
        if path not in exported:   # exported by this run (the code that exports may have changed since the last)
            exported.add(path)
            export_layers(layers=[f"model.layers.0.{proj}"], tokens=8, outs=[path], base=base)
        if variant == "64x16":
            path = save_vectors(path.with_name(f"{proj}_64x16.npz"),
                                crop_vectors(load_vectors(path), SpikeConfig().in_mode(mode)))
        elif variant is not None:
            tile = load_vectors(path).config
            path = save_vectors(path.with_name(f"{proj}_random_zeros{variant:.2f}.npz"),
                                random_vectors(tile, 8, seed=1, zero_fraction=variant))
        vectors = load_vectors(path)
        t0 = time.perf_counter()
        power = run_power(path, out=out / name, build_root=args.build_dir).to_dict()
        seconds = time.perf_counter() - t0
        records[vectors_digest(vectors)] = {
            **summarize(power, vectors),
            "measured": {"date": datetime.date.today().isoformat(), "commit": measured_at,
                         "command": f"python benchmarks/bench_power_shapes.py --shapes {name} --write",
                         "seconds": round(seconds)}}
        d, r = power["designs"], power["ratio_mac_over_spiking"]
        rows.append((name, power["shape"], d, r, seconds))
        print(f"{name}: {seconds:.0f} s; {json.dumps({k: round(v, 3) for k, v in r['by_design'][r['against']].items()})}",
              flush=True)
    print(f"\n{'shape':14} {'M×K×N':>12} {'design':>18} {'logic nJ':>9} {'clock':>7} {'weights':>8} {'total nJ':>9}"
          f" {'MAC÷spk':>8}")
    for name, shape, d, r, _ in rows:
        for design, entry in d.items():
            total = entry["logic_pj"] + entry["weight_memory_pj"] + entry["threshold_memory_pj"]
            ratio = r["by_design"][design]["tile_with_clock_and_weight_memory"] if design != "tile" else None
            print(f"{name:14} {'×'.join(map(str, shape)):>12} {design:>18} {entry['logic_pj'] / 1e3:9.1f}"
                  f" {entry['by_class_pj']['clock'] / 1e3:7.1f} {entry['weight_memory_pj'] / 1e3:8.1f}"
                  f" {total / 1e3:9.1f} {f'{ratio:.2f}x' if ratio else '':>8}")
    if args.write:
        print(f"wrote {write_recorded(records)}")


if __name__ == "__main__":
    main()
