"""Near-FP accuracy, step by step: what each change of the weight codes and output ranges gives.

For SpikeQuant and Kirin, input-only and hardware-faithful (8-bit per-channel
outputs, the default input steps): round-to-nearest weights with calibrated
output ranges as they were (the earlier default), + 1/16 output-range margin,
+ GPTQ weights (the default now); the W4A16 rows of both roundings beside FP.
Once on the shipped text's held-out tokens, once on a text never calibrated on
(Debian's Apache-2.0 licence, ``--eval-text``).

    python benchmarks/bench_accuracy.py [--out out/bench_accuracy] [--tokens 2048]
"""

import argparse
import time
from pathlib import Path

from spikeacc.config import MODES, PRESETS
from spikeacc.golden.perplexity import FP_ROW, FLOAT_BITS, run_ppl_table, spec_row
from spikeacc.golden.spiking_linear import QuantSpec

UNSEEN = "/usr/share/common-licenses/Apache-2.0"


def rows() -> list[dict]:
    cfg = PRESETS["default"]
    table = [FP_ROW] + [dict(method="rtn", w_bits=cfg.w_bits, a_bits=FLOAT_BITS, mode="none", weights=w)
                        for w in ("rtn", "gptq")]
    for mode in MODES:
        base = cfg.in_mode(mode)
        for weights, margin in (("rtn", 0.0), ("rtn", QuantSpec.out_margin), ("gptq", QuantSpec.out_margin)):
            c = base.replace(weight_rounding=weights)
            if margin == QuantSpec.out_margin:
                table.append(spec_row(QuantSpec.from_config(c, hardware_faithful=False)))
            table.append(spec_row(QuantSpec.from_config(c, out_margin=margin), overrides="silu-floor"))
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/bench_accuracy")
    ap.add_argument("--tokens", type=int, default=2048)
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    shipped = run_ppl_table(out=out / "shipped", tokens=args.tokens, rows=rows())
    unseen = run_ppl_table(out=out / "unseen", tokens=args.tokens, rows=rows(), eval_text=UNSEEN)
    fp = {"shipped": shipped[0]["ppl"], "unseen": unseen[0]["ppl"]}
    print(f"\n{'row':<78}{'shipped':>10}{'× FP':>7}{'unseen':>10}{'× FP':>7}")
    for a, b in zip(shipped, unseen, strict=True):
        print(f"{a['label']:<78}{a['ppl']:>10.2f}{a['ppl'] / fp['shipped']:>7.2f}{b['ppl']:>10.2f}"
              f"{b['ppl'] / fp['unseen']:>7.2f}")
    print(f"\n{len(shipped)} rows on {shipped[0]['tokens']} + {unseen[0]['tokens']} tokens in "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
