"""Fixed-point thresholds vs ideal rounding on real SmolLM2 activations.

    python benchmarks/bench_rounding.py

For every projection of decoder block 0 (64 tokens) it compares the bit-exact
spike count floor((2^F·acc + Φ)/Θ) with the ideal
clamp(round(acc·s_i·s_x/Δ) + z_y) and prints how often, and by how much, they
differ, in two settings:

1. the shipped hardware: per-token input steps on 2^(−j/4) (Θ one of four
   per-neuron constants, shifted per token), 8-bit per-channel outputs, F = 16;
2. the original study: any per-token step (Θ computed per token), 4-bit
   outputs with per-token output ranges, F = 8, 12, 16.

Bit-exactness never depends on this (the RTL is checked against the fixed-point
formula); it says how far the fixed-point quantizer is from the real-valued one.
"""

import numpy as np
import torch

from spikeacc.config import PRESETS
from spikeacc.golden.integer import fire_count
from spikeacc.golden.network import HARDWARE_OVERRIDES, PROJECTIONS, layer_inputs
from spikeacc.golden.perplexity import default_text, token_splits
from spikeacc.golden.spiking_linear import QuantSpec, SpikeQuantLinear, ideal_counts, thresholds
from spikeacc.golden.steps import asym_params
from spikeacc.golden.stream import streamed_model

TOKENS = 64


def shipped(net, calib_windows, eval_windows) -> None:
    cfg = PRESETS["smollm2"]
    print(f"\n1. shipped: dynamic pow2/4 steps, {cfg.out_bits}-bit per-channel outputs, F = {cfg.frac_bits}, "
          f"{TOKENS} tokens")
    print(f"{'layer':<20}{'outputs':>9}{'differ':>8}{'max |d|':>9}")
    layers = [f"model.layers.0.{p}" for p in PROJECTIONS]
    found = layer_inputs(net, layers, [eval_windows[:1], calib_windows])
    total = differ = 0
    for proj, name in zip(PROJECTIONS, layers):
        linear, ((x,), calibration) = found[name]
        spec = QuantSpec.from_config(cfg.for_layer(linear.in_features, linear.out_features))
        q = SpikeQuantLinear(linear, spec.replace(weights="rtn", **HARDWARE_OVERRIDES.get(proj, {})))
        q.calibrate_on(calibration)
        with torch.no_grad():
            hw = q.hardware_forward(x[:TOKENS])
        acc = hw.acc.numpy()
        x_step = hw.act.step.double().numpy().reshape(-1, 1)
        ideal = ideal_counts(acc, q.w_scale.double().numpy(), x_step, hw.out_step.numpy(), hw.out_zero.numpy(),
                             cfg.out_bits)
        d = np.abs(hw.counts.numpy() - ideal)
        total, differ = total + d.size, differ + int((d > 0).sum())
        print(f"{proj:<20}{d.size:>9}{int((d > 0).sum()):>8}{int(d.max()):>9}")
    print(f"{'all':<20}{total:>9}{differ:>8}   ({differ / total:.2e} of outputs)")


def study(net, eval_windows) -> None:
    found = layer_inputs(net, [f"model.layers.0.{p}" for p in PROJECTIONS], [eval_windows[:1]])
    print(f"\n2. study: any per-token step, 4-bit per-token output ranges, {TOKENS} tokens: fraction that differs")
    print(f"{'layer':<20}" + "".join(f"{'F=' + str(f):>12}" for f in (8, 12, 16)))
    for proj in PROJECTIONS:
        name = f"model.layers.0.{proj}"
        linear, ((x,),) = found[name]
        q = SpikeQuantLinear(linear, QuantSpec(weights="rtn", input_step="any"))
        with torch.no_grad():
            aq, acc = q.integer_forward(x[:TOKENS])
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
        print(f"{proj:<20}" + "".join(f"{r:>12.2e}" for r in rates))


def main():
    net = streamed_model()
    calib_windows, eval_windows = token_splits(net.tokenizer, default_text(), 512)
    print(net.name)
    shipped(net, calib_windows, eval_windows)
    study(net, eval_windows)


if __name__ == "__main__":
    raise SystemExit(main())
