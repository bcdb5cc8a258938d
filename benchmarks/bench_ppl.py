"""Perplexity benchmark: the full `spikeacc ppl` table on the embedded SmolLM2, with its run time.

    python benchmarks/bench_ppl.py [--out out/bench_ppl] [--quick]
"""

import argparse
import json
import time
from pathlib import Path

from spikeacc.golden.perplexity import run_ppl_table


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench_ppl")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = run_ppl_table(out=args.out, quick=args.quick)
    seconds = time.perf_counter() - t0
    (Path(args.out) / "timing.json").write_text(json.dumps({"seconds": seconds, "rows": len(rows)}) + "\n")
    print(f"\n{len(rows)} configurations in {seconds:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
