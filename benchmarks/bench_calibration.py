"""Accuracy on text the golden model never saw: calibration source and size, and rotations.

For W4A16 GPTQ and the hardware-faithful SpikeQuant and Kirin rows (8-bit
per-channel outputs, the default input steps), each calibration step in turn:
the shipped text's first 1,024 tokens (the default), the shipped calibration
corpus at several sizes (GPTQ's Hessians and the static output ranges both
from it), and the corpus with Hadamard rotations folded into the weights.
Every row is evaluated on the shipped text's 2,048 held-out tokens and on the
unseen texts in ``benchmarks/texts`` (kinds the corpus does not contain: a
licence and a narrative history), whole windows from their start.

    python benchmarks/bench_calibration.py [--sizes 1024,8192,65536] [--rotations none,hadamard]
                                           [--modes spikequant,kirin] [--kappa K] [--no-default] [--ablate] [--out out/bench_calibration]

GPTQ codes are cached per block on disk, so the unseen texts reuse them.
"""

import argparse
import json
import re
import time
from pathlib import Path

from spikeacc.config import MODES, PRESETS
from spikeacc.golden.network import PROJECTIONS
from spikeacc.golden.perplexity import FLOAT_BITS, FP_ROW, run_ppl_table, spec_row
from spikeacc.golden.spiking_linear import QuantSpec

TEXTS = Path(__file__).parent / "texts"
UNSEEN = {"Apache-2.0 licence": TEXTS / "apache-2.0.txt", "Debian history (narrative)": TEXTS / "debian-history.txt"}


def steps(sizes, rotations, default: bool = True) -> list[tuple[str, dict]]:
    """(label, calibration fields) of each calibration step, the default first."""
    out = [("shipped text's head, 1024", dict(calibration="shipped-text", calibration_tokens=1024,
                                               rotation="none"))] if default else []
    for rotation in rotations:
        out += [(f"corpus {n}" + (f", {rotation}" if rotation != "none" else ""),
                 dict(calibration="corpus", calibration_tokens=n, rotation=rotation)) for n in sizes]
    return out


def rows(calibration: dict, modes, kappa: float | None = None) -> list[dict]:
    cfg = PRESETS["default"] if kappa is None else PRESETS["default"].replace(kappa=kappa)
    table = [dict(method="rtn", w_bits=cfg.w_bits, a_bits=FLOAT_BITS, mode="none", weights="gptq", **calibration)]
    for mode in modes:
        table.append(spec_row(QuantSpec.from_config(cfg.in_mode(mode)), overrides="silu-floor", **calibration))
    return table


def ablation_rows(calibration: dict) -> list[dict]:
    """The hardware-faithful SpikeQuant row with each projection kind in float in turn (which kinds keep the gap)."""
    base = spec_row(QuantSpec.from_config(PRESETS["default"]), **calibration)
    return [dict(base, overrides=f"float-{name.split('.')[1]}") for name in PROJECTIONS]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024,8192,65536", help="corpus calibration tokens, comma-separated")
    ap.add_argument("--rotations", default="none,hadamard", help="none and/or hadamard")
    ap.add_argument("--modes", default=",".join(MODES), help="hardware-faithful modes: spikequant, kirin")
    ap.add_argument("--texts", default=None,
                    help="evaluate on these only, by first word: shipped, apache-2.0, debian (default: all three)")
    ap.add_argument("--kappa", type=float, default=None,
                    help="the salient rule's κ of the quantized rows (default: the configuration's, 6)")
    ap.add_argument("--no-default", action="store_true", help="leave out the default calibration's rows")
    ap.add_argument("--ablate", action="store_true",
                    help="also the SpikeQuant row with one projection kind in float, at the last calibration step")
    ap.add_argument("--out", type=Path, default=Path("out/bench_calibration"))
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]
    texts = {name: path for name, path in {"shipped text (held out)": None, **UNSEEN}.items()
             if args.texts is None or name.split()[0].lower() in args.texts.lower().split(",")}
    table: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    chosen = steps(sizes, [r for r in args.rotations.split(",") if r], not args.no_default)
    for step, calibration in chosen:
        for text, path in texts.items():
            out = args.out / step.replace(" ", "_").replace(",", "") / text.split()[0]
            first = [FP_ROW] if step == chosen[0][0] else []
            last = args.ablate and (step, calibration) == chosen[-1]
            results = run_ppl_table(out=out, rows=first + rows(calibration, modes, args.kappa)
                                    + (ablation_rows(calibration) if last else []), tokens=2048,
                                    eval_text=None if path is None else str(path))
            for r in results:
                key = "FP" if r["method"] == "fp" else f"{re.sub(r' calib [^ ]+| rotated [^ ]+', '', r['label'])} | {step}"
                table.setdefault(key, {})[text] = r["ppl"]
        (args.out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    fp = table["FP"]
    print(f"\n{'row | calibration':<100}" + "".join(f"{t[:24]:>26}" for t in texts))
    for key, ppl in table.items():
        print(f"{key:<100}" + "".join(f"{ppl[t]:>14.2f} ({ppl[t] / fp[t]:4.2f}×)   " for t in texts))
    print(f"\n{time.perf_counter() - t0:.0f} s; {args.out / 'table.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
