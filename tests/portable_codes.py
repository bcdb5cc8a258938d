"""Print a digest of every integer the hardware-faithful path derives, for the portability test.

Run as a script in a fresh process, so that the thread count and the BLAS
kernels set by the environment apply from the start:

    python tests/portable_codes.py float64 [layers] [tokens] [plain|rotated]

It quantizes the first ``layers`` decoder blocks of the embedded SmolLM2
(GPTQ weights computed here, not read from a cache; output ranges calibrated
on the shipped text) and runs ``tokens`` held-out tokens through them. The
digest covers the weight codes, every projection's activation mantissas,
shifts, exponents and spike counts, and the thresholds. ``rotated``: the
Hadamard rotations folded into the weights and windows drawn from the
calibration corpus instead.
"""

import hashlib
import json
import sys

import torch


def main() -> int:
    import os
    import tempfile

    from spikeacc.config import PRESETS
    from spikeacc.golden.checkpoint import Checkpoint, open_checkpoint
    from spikeacc.golden.network import HARDWARE_OVERRIDES, hardware_network, quantized_layers
    from spikeacc.golden.perplexity import config_splits
    from spikeacc.golden.spiking_linear import QuantSpec
    from spikeacc.golden.stream import StreamedLlama

    dtype = getattr(torch, sys.argv[1])
    blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    checkpoint = Checkpoint(open_checkpoint().folder)
    checkpoint.config.num_hidden_layers = blocks
    rotated = len(sys.argv) > 4 and sys.argv[4] == "rotated"
    config = PRESETS["default"].replace(rotation="hadamard", calibration="corpus") if rotated else PRESETS["default"]
    net = StreamedLlama(checkpoint, dtype, rotation=config.rotation)
    calib, windows = config_splits(net.tokenizer, config, 512)
    spec = QuantSpec.from_config(config)
    with tempfile.TemporaryDirectory() as empty:   # GPTQ computed here, never read from a cache
        os.environ["SPIKEACC_CACHE"] = empty
        hardware = hardware_network(net, spec, calib, overrides=HARDWARE_OVERRIDES)
    layers = quantized_layers(hardware)
    for module in layers.values():
        module.record = []
    with torch.no_grad():
        hardware(windows[0, :tokens][None])
    digest = hashlib.sha256()
    for name, module in layers.items():
        digest.update(module.w_code.numpy().tobytes())
        for hw in module.record:
            for t in (hw.act.mantissa, hw.act.shift, hw.act.exponent, hw.counts, hw.thresholds.theta,
                      hw.thresholds.phi, hw.thresholds.exponent):
                digest.update(t.contiguous().numpy().tobytes())
    print(json.dumps({"digest": digest.hexdigest(), "threads": torch.get_num_threads(),
                      "capability": torch.backends.cpu.get_cpu_capability()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
