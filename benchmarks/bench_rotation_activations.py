"""Why rotation does not pay for SpikeQuant: weights and activations apart, with and without the rotation.

W4A16 (GPTQ and round to nearest), plain per-token 4-bit activations with
8-bit weights (no salient path), and SpikeQuant's activations with 8-bit
weights (the MAD salient path), each with float outputs, calibrated on the
shipped text's head, evaluated on its 2,048 held-out tokens; once unrotated,
once with the Hadamard R1 + R2 folded into the weights.

    python benchmarks/bench_rotation_activations.py
"""

import time

from spikeacc.golden.network import evaluate
from spikeacc.golden.perplexity import FLOAT_BITS, _input, _spec, config_splits, row_label
from spikeacc.config import PRESETS
from spikeacc.golden.stream import streamed_model

ROWS = [dict(method="rtn", w_bits=4, a_bits=FLOAT_BITS, mode="none", weights="gptq"),
        dict(method="rtn", w_bits=4, a_bits=FLOAT_BITS, mode="none", weights="rtn"),
        dict(method="rtn", w_bits=8, a_bits=4, **_input("any")),
        dict(method="spikequant", w_bits=8, a_bits=4, **_input("any"))]


def main():
    print(f"{'row':<48}{'unrotated':>12}{'rotated':>12}{'salient (rotated)':>20}")
    results = {}
    for rotation in ("none", "hadamard"):
        net = streamed_model(None, rotation)
        calib, windows = config_splits(net.tokenizer, PRESETS["default"], 2048)
        for row in ROWS:
            t0 = time.perf_counter()
            r = evaluate(net, _spec(row), calib, windows)
            results[row_label(row), rotation] = (r.ppl, r.ratio("salient"), time.perf_counter() - t0)
    for row in ROWS:
        plain, rotated = results[row_label(row), "none"], results[row_label(row), "hadamard"]
        print(f"{row_label(row):<48}{plain[0]:>12.2f}{rotated[0]:>12.2f}{rotated[1]:>19.2%}")


if __name__ == "__main__":
    raise SystemExit(main())
