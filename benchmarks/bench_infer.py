"""The whole LLM through the RTL: wall time, counts compared and simulated cycles per second.

    python benchmarks/bench_infer.py [--out out/bench_infer] [--workers 2] [--max-new-tokens 8] [--fresh-builds]
                                     [--per-call]

Runs `spikeacc infer` on the README's 32-token prompt through all 210 SmolLM2
projections (resident simulators, or the per-call harness with --per-call;
--fresh-builds empties the build directory first, so the builds are in the
wall time), then:

* single q_proj calls on 1 and 32 tokens, resident and per call;
* the ceiling: the tile's Verilator model in a pure C++ loop (no Python, no
  I/O, buffers resident) on the q_proj and down_proj shapes, and the infer
  path's rate as a fraction of it;
* the Llama-2-7B plan from the measured rate and the exact cycle model.
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from spikeacc.config import PRESETS
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.hw.tile import token_cycles
from spikeacc.app.infer import hardware_model, run_infer
from spikeacc.app.tile_calls import TILE_TOKENS, run_tile_call, simulator
from spikeacc.verif.resident import ResidentSimulator, bank_key

PROMPT = ("The GNU General Public License is a free, copyleft license for software and other kinds of works. "
          "The licenses for most software are designed to take away your freedom")
SHAPES = {"q_proj": (576, 576), "down_proj": (1536, 576)}


def shape_config(k: int, n: int):
    return PRESETS["smollm2"].replace(max_tokens=TILE_TOKENS).for_layer(k, n)


def single_call(build_root: str, tokens: int, per_call: bool) -> dict:
    """One q_proj call's wall, after a first call that builds or checks the simulator and banks the weights."""
    cfg = shape_config(*SHAPES["q_proj"])
    v = random_vectors(cfg, tokens, seed=1)
    bank = dict(key=bank_key(cfg, v.w, v.theta, v.phi), w=v.w, theta=v.theta, phi=v.phi)
    arrays = dict(mant=v.mant, shift=v.shift, exponent=v.exponent)
    run_tile_call(cfg.to_dict(), bank, arrays, build_root, per_call)
    t0 = time.perf_counter()
    r = run_tile_call(cfg.to_dict(), bank, arrays, build_root, per_call)
    wall = time.perf_counter() - t0
    assert np.array_equal(r["counts"], v.expected)
    return {"tokens": tokens, "wall": wall, "cycles": r["cycles"], "cycles_per_second": r["cycles"] / wall}


def ceiling(build_root: str, shape: str, seconds: float = 5.0) -> dict:
    """The simulator's own cycles/s on ``shape``: 32 tokens repeated inside C++ for about ``seconds``."""
    cfg = shape_config(*SHAPES[shape])
    v = random_vectors(cfg, TILE_TOKENS, seed=1)
    sim = ResidentSimulator(cfg, simulator(cfg, build_root))
    try:
        key = bank_key(cfg, v.w, v.theta, v.phi)
        sim.load(key, v.w, v.theta, v.phi)
        counts, cycles = sim.run(key, v.mant, v.shift, v.exponent)
        assert np.array_equal(counts, v.expected)
        _, once = sim.time(1)
        cycles, wall = sim.time(max(1, round(seconds / max(once, 1e-3))))
    finally:
        sim.close()
    return {"shape": shape, "cycles": cycles, "wall": wall, "cycles_per_second": cycles / wall}


def llama2_plan(rate: float) -> list[tuple[str, float, float]]:
    """(case, cycles on the critical path per token, seconds per token) from the exact cycle model."""
    rng = np.random.default_rng(0)
    base = PRESETS["smollm2"].replace(max_tokens=1)
    cycles = {}
    for name, (k, n) in {"attn": (4096, 4096), "up": (4096, 11008), "down": (11008, 4096)}.items():
        mant = rng.integers(-15, 16, size=(4, k))
        mant[rng.random((4, k)) < 0.22] = 0
        cycles[name] = float(np.mean(token_cycles(base.for_layer(k, n), mant)))
    layers = 32
    total = layers * (4 * cycles["attn"] + 2 * cycles["up"] + cycles["down"])
    critical = layers * (2 * cycles["attn"] + cycles["up"] + cycles["down"])
    return [("one core", total, total / rate), ("64 workers, siblings concurrent", critical, critical / rate),
            ("64 workers, output blocks split (--split)", total / 64, total / 64 / rate)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench_infer")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--fresh-builds", action="store_true", help="empty the build directory first")
    ap.add_argument("--per-call", action="store_true", help="the per-call harness instead of resident simulators")
    args = ap.parse_args()
    out = Path(args.out)
    build_root = out / "sim_build"
    if args.fresh_builds:
        shutil.rmtree(build_root, ignore_errors=True)
    t0 = time.perf_counter()
    hardware = hardware_model()
    setup = time.perf_counter() - t0
    rep = run_infer(PROMPT, max_new_tokens=args.max_new_tokens, out=out, build_root=str(build_root),
                    workers=args.workers, hardware=hardware, per_call=args.per_call)
    wall = time.perf_counter() - t0
    t = rep["totals"]
    print(f"prompt ({rep['prompt_tokens']} tokens): {rep['prompt']!r}")
    print(f"text (RTL = golden: {rep['identical']}): {rep['text']!r}")
    print(f"projections on the RTL: {rep['layers_on_rtl']}, calls {t['calls']}, output counts compared "
          f"{t['outputs_compared']:,}, mismatches {t['mismatches']}; path: {rep['path']}")
    print(f"wall {wall:.0f} s: model load and calibration {setup:.1f} s, golden generation "
          f"{rep['golden_wall_seconds']} s, builds {rep['builds']['seconds']} s, RTL generation "
          f"{t['rtl_wall_seconds']} s for {t['simulated_cycles']:,} cycles = "
          f"{t['simulated_cycles_per_wall_second']:,} cycles/s (whole run)")
    for per_call in (False, True):
        for tokens in (1, TILE_TOKENS):
            c = single_call(str(build_root), tokens, per_call)
            path = "per call (process start, buffer files)" if per_call else "resident"
            print(f"single q_proj call, {tokens:>2} token(s), {path}: {c['wall'] * 1000:.1f} ms, "
                  f"{c['cycles']:,} cycles, {c['cycles_per_second']:,.0f} cycles/s")
    workers = max(1, rep["workers"] or 1)
    print("\nthe simulator's own speed (pure C++ loop, 32 tokens, buffers resident):")
    for shape in SHAPES:
        c = ceiling(str(build_root), shape)
        print(f"  {shape:<10} {c['cycles_per_second']:>10,.0f} cycles/s ({c['cycles']:,} cycles in {c['wall']:.2f} s)")
        if shape == "q_proj":
            single = single_call(str(build_root), TILE_TOKENS, False)
            print(f"  infer path, one 32-token q_proj call: {single['cycles_per_second'] / c['cycles_per_second']:.0%} "
                  f"of it; whole infer run per worker: "
                  f"{t['simulated_cycles_per_wall_second'] / workers / c['cycles_per_second']:.0%}")
    rate = t["simulated_cycles_per_wall_second"] / workers
    print(f"\nLlama-2-7B per token at {rate:,.0f} cycles/s per simulator (this run's rate per worker):")
    for case, cycles, seconds in llama2_plan(rate):
        print(f"  {case:<48}{cycles / 1e6:>8.1f} M cycles  {seconds:>8.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
