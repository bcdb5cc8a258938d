"""Fixed-point thresholds vs ideal rounding on real SmolLM2 activations, for F = 8, 12, 16.

    python benchmarks/bench_rounding.py

For every projection of decoder block 0 (dynamic mode, 64 tokens) it compares
the bit-exact spike count floor((2^F·acc + Φ)/Θ) with the ideal
clamp(round(acc·s_i·s_x/Δ) + z_y) and prints how often they differ.
"""

import numpy as np
import torch

from spikeacc.golden.model import PROJECTIONS, load_model
from spikeacc.golden.perplexity import default_text, token_splits
from spikeacc.golden.quant import asym_params
from spikeacc.golden.spiking_linear import QuantSpec, SpikeQuantLinear, ideal_counts, thresholds
from spikeacc.golden.integer import fire_count
from spikeacc.golden.vectors import _layer_inputs


def main():
    net, tok, name = load_model()
    _, windows = token_splits(tok, default_text(), 512)
    print(f"{name}, dynamic mode, 64 tokens per layer")
    print(f"{'layer':<30}" + "".join(f"{'F=' + str(f):>12}" for f in (8, 12, 16)))
    for proj in PROJECTIONS:
        name = f"model.layers.0.{proj}"
        linear, (x,) = _layer_inputs(net, [name], windows[:1])[name]
        q = SpikeQuantLinear(linear, QuantSpec())
        with torch.no_grad():
            aq, acc = q.integer_forward(x[:64])
        w_scale = q.w_scale.numpy().astype(np.float64)
        x_step = aq.step.numpy().astype(np.float64).reshape(-1, 1)
        y = acc * w_scale[None, :] * x_step
        step, zero = (t.numpy() for t in asym_params(torch.tensor(y.min(1, keepdims=True)),
                                                      torch.tensor(y.max(1, keepdims=True)), 4))
        ideal = ideal_counts(acc, w_scale, x_step, step, zero, 4)
        rates = []
        for f in (8, 12, 16):
            theta, phi = thresholds(w_scale, x_step, step, zero, f)
            rates.append(float((fire_count(acc, theta, phi, f, 4) != ideal).mean()))
        print(f"{proj:<30}" + "".join(f"{r:>12.2e}" for r in rates))


if __name__ == "__main__":
    raise SystemExit(main())
