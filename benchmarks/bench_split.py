"""One projection over several Dask workers: speed-up of the output-block split on a LocalCluster.

    python benchmarks/bench_split.py [--workers 1,2,4] [--shapes q_proj,down_proj] [--build-dir DIR]

For each worker count W, a LocalCluster of W single-threaded worker processes
runs SmolLM2-shaped projections (seeded codes) cut into S = W parts of whole
output blocks, each part on the resident simulator of the part's
configuration in its worker; the joined counts are compared with the unsplit
tile's (and the golden counts) for every call. Timed: a 1-token call (a
decode step) and a 32-token call, after a first call that builds and banks.
Then the Llama-2-7B per-token estimate from the measured per-worker rate
(a model: the exact cycle model of the parts, plus the measured per-call
overhead of the Dask path for each projection in series).
"""

import argparse
import time

import numpy as np

from spikeacc import workdirs
from spikeacc.app.tile_calls import TILE_TOKENS, run_tile_call, split_config, split_parts, split_projection
from spikeacc.config import PRESETS
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.hw.tile import token_cycles

SHAPES = {"q_proj": (576, 576), "down_proj": (1536, 576)}
LLAMA2 = {"attn": ((4096, 4096), 4), "up": ((4096, 11008), 2), "down": ((11008, 4096), 1)}   # shape, per layer


def shape_config(k: int, n: int, tokens: int = TILE_TOKENS):
    return PRESETS["smollm2"].replace(max_tokens=tokens).for_layer(k, n)


def timed_calls(client, cfg, v, parts: int, tokens: int, build_root: str, repeats: int) -> dict:
    """Wall per call of ``tokens`` tokens split in ``parts``, after one untimed call; every join checked."""
    banks = [(c, client.scatter([b], hash=False)[0]) for c, b in split_projection(cfg, v.w, v.theta, v.phi, parts)]
    arrays = {"mant": v.mant[:tokens], "shift": v.shift[:tokens], "exponent": v.exponent[:tokens]}

    def call():
        futures = [client.submit(run_tile_call, c.to_dict(), b, arrays, build_root, pure=False) for c, b in banks]
        results = client.gather(futures)
        counts = np.concatenate([r["counts"] for r in results], axis=1)
        bad = np.argwhere(counts != v.expected[:tokens])
        if len(bad):
            raise SystemExit(f"split {parts}: {len(bad)} counts differ from the unsplit golden counts, first at "
                             f"(token, neuron) {tuple(bad[0])}")
        return sum(r["cycles"] for r in results)

    call()
    t0 = time.perf_counter()
    for _ in range(repeats):
        cycles = call()
    wall = (time.perf_counter() - t0) / repeats
    return {"wall": wall, "cycles": cycles}


def llama2_estimate(rate: float, overhead: float, workers: int = 64) -> tuple[float, float]:
    """(seconds per token, simulated part-cycles per token) for Llama-2-7B with ``--split workers``: each
    projection's parts run at once, projections one after another (a model)."""
    rng = np.random.default_rng(0)
    seconds = cycles = 0.0
    for (k, n), count in LLAMA2.values():
        cfg = PRESETS["smollm2"].replace(max_tokens=1).for_layer(k, n)
        parts = split_parts(cfg, workers)
        part = split_config(cfg, parts)
        mant = rng.integers(-15, 16, size=(4, k))
        mant[rng.random((4, k)) < 0.22] = 0
        part_cycles = float(np.mean(token_cycles(part, mant)))
        seconds += 32 * count * (part_cycles / rate + overhead)
        cycles += 32 * count * parts * part_cycles
    return seconds, cycles


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--shapes", default="q_proj,down_proj")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--build-dir", default=None, help="simulator builds (default: the shared build root)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    build_root = str(workdirs.build_root(args.build_dir).resolve())
    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    for shape in args.shapes.split(","):
        cfg = shape_config(*SHAPES[shape])
        v = random_vectors(cfg, TILE_TOKENS, seed=7)
        for w in counts:
            with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                for tokens in (1, TILE_TOKENS):
                    r = timed_calls(client, cfg, v, w, tokens, build_root, args.repeats)
                    rows.append({"shape": shape, "workers": w, "tokens": tokens, **r})
                    base = next(x for x in rows if x["shape"] == shape and x["tokens"] == tokens)
                    print(f"{shape:<10} {w} worker(s), split {w}, {tokens:>2} token(s): {r['wall'] * 1000:8.1f} ms "
                          f"per call ({r['cycles']:,} cycles), speed-up {base['wall'] / r['wall']:.2f}x", flush=True)
    one = [r for r in rows if r["workers"] == 1 and r["tokens"] == TILE_TOKENS]
    rate = sum(r["cycles"] for r in one) / sum(r["wall"] for r in one)
    single = [r for r in rows if r["workers"] == 1 and r["tokens"] == 1]
    overhead = float(np.mean([r["wall"] - r["cycles"] / rate for r in single]))
    print(f"\nper-worker rate (1 worker, 32-token calls): {rate:,.0f} cycles/s; Dask-path overhead per call "
          f"(1-token calls less their simulated time): {overhead * 1000:.1f} ms")
    seconds, cycles = llama2_estimate(rate, overhead)
    print(f"Llama-2-7B, every projection split over 64 workers (model): {seconds:.1f} s per token "
          f"({cycles / 1e6:.1f} M part-cycles per token, 224 projections in series)")


if __name__ == "__main__":
    raise SystemExit(main())
