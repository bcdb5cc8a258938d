"""The whole LLM through the RTL: wall time, counts compared and simulated cycles per second.

    python benchmarks/bench_infer.py [--out out/bench_infer] [--workers 2] [--max-new-tokens 8]

Runs `spikeacc infer --rtl` on a 32-token prompt through all 210 SmolLM2
projections (fresh build directory, so the builds are in the wall time), then
one single q_proj call on one token and on 32 tokens for the per-call figures,
and prints the Llama-2-7B plan from the measured rate and the exact cycle model.
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from spikeacc.config import PRESETS
from spikeacc.golden.vectors import random_vectors
from spikeacc.hw.tile import token_cycles
from spikeacc.app.infer import TILE_TOKENS, hardware_model, run_infer, run_tile_call

PROMPT = ("The GNU General Public License is a free, copyleft license for software and other kinds of works. "
          "The licenses for most software are designed to take away your freedom")


def single_call(build_root: str, tokens: int) -> dict:
    cfg = PRESETS["smollm2"].replace(max_tokens=TILE_TOKENS).for_layer(576, 576)
    v = random_vectors(cfg, tokens, seed=1)
    arrays = dict(w=v.w, mant=v.mant, shift=v.shift, theta=v.theta, phi=v.phi, exponent=v.exponent)
    run_tile_call(cfg.to_dict(), arrays, build_root)           # the first call checks the build
    t0 = time.perf_counter()
    r = run_tile_call(cfg.to_dict(), arrays, build_root)
    wall = time.perf_counter() - t0
    assert np.array_equal(r["counts"], v.expected)
    return {"tokens": tokens, "wall": wall, "cycles": r["cycles"], "cycles_per_second": r["cycles"] / wall}


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
    return [("one core", total, total / rate), ("64 workers, siblings concurrent (built)", critical, critical / rate),
            ("64 workers, output blocks split (not built)", total / 64, total / 64 / rate)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench_infer")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    args = ap.parse_args()
    out = Path(args.out)
    build_root = out / "sim_build"
    shutil.rmtree(build_root, ignore_errors=True)
    t0 = time.perf_counter()
    hardware = hardware_model()
    rep = run_infer(PROMPT, max_new_tokens=args.max_new_tokens, out=out, build_root=str(build_root),
                    workers=args.workers, hardware=hardware)
    wall = time.perf_counter() - t0
    t = rep["totals"]
    print(f"prompt ({rep['prompt_tokens']} tokens): {rep['prompt']!r}")
    print(f"text (RTL = golden: {rep['identical']}): {rep['text']!r}")
    print(f"projections on the RTL: {rep['layers_on_rtl']}, calls {t['calls']}, output counts compared "
          f"{t['outputs_compared']:,}, mismatches {t['mismatches']}")
    print(f"wall {wall:.0f} s including model load/calibration {rep['model_setup_seconds']} s and fresh builds "
          f"{rep['builds']['seconds']} s; RTL calls {t['rtl_wall_seconds']} s for {t['simulated_cycles']:,} cycles = "
          f"{t['simulated_cycles_per_wall_second']:,} cycles/s (whole run)")
    for tokens in (1, TILE_TOKENS):
        c = single_call(str(build_root), tokens)
        print(f"single q_proj call, {tokens} token(s): {c['wall'] * 1000:.0f} ms, {c['cycles']:,} cycles, "
              f"{c['cycles_per_second']:,.0f} cycles/s (process start and buffer files included)")
    rate = t["simulated_cycles_per_wall_second"] / max(1, rep["workers"] or 1)
    print(f"\nLlama-2-7B per token at {rate:,.0f} cycles/s per simulator (this run's rate per worker):")
    for case, cycles, seconds in llama2_plan(rate):
        print(f"  {case:<48}{cycles / 1e6:>8.1f} M cycles  {seconds:>8.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
