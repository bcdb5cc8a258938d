"""Offline scale migration (SmoothQuant/AWQ style) before GPTQ: does it help the hardware-faithful row?

Per decoder block and input group, input channel j is divided by
``s_j = max|X_j|^α / max|W_j|^(1−α)`` and the weight columns multiplied by it,
1/s folded into the RMSNorm before q/k/v and gate/up and into up_proj's rows
before down_proj (exact in float: FP perplexity is printed to show it). α is
searched per group from ``--alphas`` (or no migration) for the least relative
output error of round-to-nearest weights and the tile's activation quantizer on
the calibration tokens. o_proj is left alone: with grouped-query attention its
scales would have to be shared by the heads of a key-value group. Then GPTQ and
the hardware-faithful SpikeQuant row as ``spikeacc ppl`` computes it. The
migration itself works on the whole 135M model in memory (an experiment, not a
path of the tool); the migrated weights are saved as a folder and evaluated
by the streamed golden model like any ``--model``.

    python benchmarks/bench_migration.py [--mode spikequant] [--alphas 0.25,0.5,0.75] [--tokens 2048]

Measured 2026-12-03: 42.78 with migration against 37.09 without it (docs/measurements.md).
"""

import argparse
import tempfile
import time

import torch

from spikeacc.config import PRESETS
from spikeacc.golden.checkpoint import Checkpoint, open_checkpoint
from spikeacc.golden.network import HARDWARE_OVERRIDES, evaluate
from spikeacc.golden.perplexity import default_text, token_splits
from spikeacc.golden.quant import quantize_weight
from spikeacc.golden.spiking_linear import QuantSpec
from spikeacc.golden.stream import StreamedLlama


class _Captured(Exception):
    pass


def _first_layer_inputs(model, windows):
    """The hidden states entering decoder layer 0 for each window, and the keyword arguments it gets."""
    states, kwargs = [], {}

    def capture(module, args, kw):
        states.append(args[0] if args else kw["hidden_states"])
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise _Captured

    handle = model.model.layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for ids in windows:
            try:
                model(ids.reshape(1, -1), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    return states, kwargs


def _run_layer(layer, states, kwargs):
    outputs = [layer(h, **kwargs) for h in states]
    return [o[0] if isinstance(o, tuple) else o for o in outputs]


def relative_error(x, weights, scale, quantize_input, bits) -> float:
    xq = quantize_input(x / scale)
    total = 0.0
    for w in weights:
        ref = x @ w.T
        total += float(((xq @ quantize_weight(w * scale, bits).dequant().T) - ref).pow(2).sum() / ref.pow(2).sum())
    return total


def best_scale(x, weights, alphas, quantize_input, bits):
    """(α or None, s) with the least error; None is no migration (s = 1)."""
    x_max = x.abs().amax(dim=0).clamp(min=1e-5)
    w_max = torch.stack([w.abs().amax(dim=0) for w in weights]).amax(dim=0).clamp(min=1e-5)
    best = (relative_error(x, weights, torch.ones_like(x_max), quantize_input, bits), None, torch.ones_like(x_max))
    for alpha in alphas:
        scale = (x_max.pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)
        error = relative_error(x, weights, scale, quantize_input, bits)
        if error < best[0]:
            best = (error, alpha, scale)
    return best[1], best[2]


@torch.no_grad()
def migrate(net, calib, alphas, spec) -> list[tuple]:
    quantize_input = spec.input_quantizer()
    states, kwargs = _first_layer_inputs(net, list(calib))
    chosen = []
    for index, layer in enumerate(net.model.layers):
        inputs = {}
        taps = {"attention": layer.self_attn.q_proj, "mlp": layer.mlp.gate_proj, "down": layer.mlp.down_proj}
        hooks = [m.register_forward_hook(lambda mod, a, o, n=n: inputs.setdefault(n, []).append(
            a[0].detach().reshape(-1, mod.in_features))) for n, m in taps.items()]
        _run_layer(layer, states, kwargs)
        for hook in hooks:
            hook.remove()
        attention = [layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight]
        mlp = [layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]
        for group, weights, fold in (("attention", attention, layer.input_layernorm.weight),
                                     ("mlp", mlp, layer.post_attention_layernorm.weight)):
            alpha, scale = best_scale(torch.cat(inputs[group]), [w.double() for w in weights], alphas,
                                      quantize_input, spec.w_bits)
            fold.div_(scale.to(fold.dtype))
            for w in weights:
                w.mul_(scale[None, :].to(w.dtype))
            chosen.append((index, group, alpha))
        down = layer.mlp.down_proj.weight
        alpha, scale = best_scale(torch.cat(inputs["down"]), [down.double()], alphas, quantize_input, spec.w_bits)
        layer.mlp.up_proj.weight.div_(scale[:, None].to(down.dtype))
        down.mul_(scale[None, :].to(down.dtype))
        chosen.append((index, "down", alpha))
        states = _run_layer(layer, states, kwargs)
    return chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="spikequant", choices=("spikequant", "kirin"))
    ap.add_argument("--alphas", default="0.25,0.5,0.75")
    ap.add_argument("--tokens", type=int, default=2048)
    args = ap.parse_args()
    cfg = PRESETS["default"].in_mode(args.mode)
    spec = QuantSpec.from_config(cfg)
    from transformers import AutoModelForCausalLM

    original = open_checkpoint()
    calib, windows = token_splits(original.tokenizer, default_text(), args.tokens)
    t0 = time.perf_counter()
    migrated = AutoModelForCausalLM.from_pretrained(original.folder, dtype=torch.float32).to(torch.float64).eval()
    chosen = migrate(migrated, calib, [float(a) for a in args.alphas.split(",")], spec)
    kept = sum(a is not None for _, _, a in chosen)
    with tempfile.TemporaryDirectory() as folder:
        migrated.save_pretrained(folder)
        del migrated
        nets = {"without migration": StreamedLlama(original), "with migration": StreamedLlama(Checkpoint(folder))}
        fp = {name: evaluate(net, None, calib, windows).ppl for name, net in nets.items()}
        print(f"migrated {kept} of {len(chosen)} groups in {time.perf_counter() - t0:.0f} s; FP before "
              f"{fp['without migration']:.4f}, after {fp['with migration']:.4f}")
        for name, net in nets.items():
            ppl = evaluate(net, spec, calib, windows, overrides=HARDWARE_OVERRIDES).ppl
            print(f"{args.mode} hardware-faithful, GPTQ, {name}: {ppl:.2f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
