"""The whole-model golden procedure the streamed one replaced, kept as the oracle of the identity tests.

Everything in memory at once, in float64, through transformers' own
``LlamaForCausalLM``: GPTQ on the states captured at block 0 and run layer
by layer, calibration by whole-network passes (one per stage), perplexity
by whole-network forward calls, each projection with its own Hessian. Only
the arithmetic of one projection (``gptq_quantize``, ``SpikeQuantLinear``)
is shared with the streamed path; the order and the plumbing are the old
ones. For small models only.
"""

import math

import torch

from spikeacc.golden.gptq import gptq_quantize
from spikeacc.golden.network import PROJECTIONS, convert_block, quantized_layers, window_nll
from spikeacc.golden.spiking_linear import CALIBRATION_STAGES


def whole_model(folder, blocks=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(torch.float64).eval()
    if blocks is not None:
        model.model.layers = model.model.layers[:blocks]
        model.config.num_hidden_layers = blocks
    return model


class _Captured(Exception):
    pass


def gptq_whole(model, windows, spec):
    """Codes of every block, as the whole-model ``gptq_network`` computed them (model left quantized)."""
    layers = model.model.layers
    states, kwargs = [], {}

    def capture(module, args, kw):
        states.append(args[0] if args else kw["hidden_states"])
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise _Captured

    handle = layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    with torch.no_grad():
        for ids in windows:
            try:
                model(ids.reshape(1, -1), use_cache=False)
            except _Captured:
                pass
    handle.remove()

    def run(layer, hs):
        with torch.no_grad():
            return [o[0] if isinstance(o, tuple) else o for o in (layer(h, **kwargs) for h in hs)]

    codes = {}
    quantize = spec.input_quantizer()
    for index, layer in enumerate(layers):
        linears = {name: layer.get_submodule(name) for name in PROJECTIONS}
        sums = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for name, m in linears.items()}
        tokens = dict.fromkeys(linears, 0)

        def accumulate(module, args, output, name):   # each projection its own Hessian, as before
            x = quantize(args[0].detach().reshape(-1, module.in_features)).double()
            sums[name] += x.T @ x
            tokens[name] += x.shape[0]

        handles = [m.register_forward_hook(lambda mod, a, o, name=name: accumulate(mod, a, o, name))
                   for name, m in linears.items()]
        run(layer, states)
        for handle in handles:
            handle.remove()
        for name, linear in linears.items():
            quant = gptq_quantize(linear.weight.detach(), sums[name] / max(tokens[name], 1), spec.w_bits)
            codes[f"model.layers.{index}.{name}"] = quant
            linear.weight.data = quant.dequant().to(linear.weight.dtype)
        states = run(layer, states)
    return codes


@torch.no_grad()
def quantize_whole(model, spec, calibration, overrides=None):
    """The old ``quantize_network``: GPTQ codes, every block converted, then one whole-network pass per stage."""
    codes = gptq_whole(model, list(calibration), spec) if spec.weights == "gptq" else {}
    for index, layer in enumerate(model.model.layers):
        prefix = f"model.layers.{index}."
        convert_block(layer, spec, overrides=overrides,
                      weights={n[len(prefix):]: q for n, q in codes.items() if n.startswith(prefix)})
    layers = quantized_layers(model).values()
    for stage in CALIBRATION_STAGES:
        chosen = [m for m in layers if stage in m.calibration_stages]
        for m in chosen:
            m.start_calibration(stage)
        if chosen:
            for ids in calibration:
                model(ids.reshape(1, -1))
        for m in chosen:
            m.finish_calibration_stage(stage)
    return codes


@torch.no_grad()
def perplexity_whole(model, windows):
    nll, count = 0.0, 0
    for ids in windows:
        window, scored = window_nll(model(ids[None]).logits, ids)
        nll += window
        count += scored
    return math.exp(nll / count)
