"""Layer vectors from the golden model: a projection's inputs, codes and thresholds written as the contract.

Real checkpoints go through the streamed model (GPTQ codes, the calibrated
hardware layer, the projection's inputs for chosen token positions); without
one, a synthetic Llama-2-shaped layer stands in. What is written is exactly
what the hardware layer computes (:func:`vectors_from_hardware`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.golden.integer import accumulate
from spikeacc.golden.vectors import LayerVectors, load_vectors, save_vectors

__all__ = ["export_vectors", "export_layers", "vectors_from_hardware"]


def _pick_positions(available: int, tokens: int) -> list[int]:
    if tokens > available:
        raise ValueError(f"asked for {tokens} tokens but only {available} are available")
    return [int(i) for i in np.linspace(0, available - 1, tokens).round()]


def _synthetic_inputs(layer_name: str, tokens: int, seed: int):
    """Inputs of one projection of the synthetic Llama-2-7B layer, through its norms and MLP."""
    import torch

    from spikeacc.golden.model import synthetic_activations, synthetic_llama2_layer

    layer, cfg = synthetic_llama2_layer(seed)
    part = layer_name.split(".")[-1]
    modules = {"q_proj": layer.self_attn.q_proj, "k_proj": layer.self_attn.k_proj,
               "v_proj": layer.self_attn.v_proj, "o_proj": layer.self_attn.o_proj,
               "gate_proj": layer.mlp.gate_proj, "up_proj": layer.mlp.up_proj, "down_proj": layer.mlp.down_proj}
    if part not in modules:
        raise ValueError(f"--llama2-shape takes a projection name ending in one of {sorted(modules)}")

    def inputs(n, s):
        hidden = synthetic_activations(n, cfg.hidden_size, seed=s)
        with torch.no_grad():
            if part in ("q_proj", "k_proj", "v_proj", "o_proj"):
                return layer.input_layernorm(hidden)
            normed = layer.post_attention_layernorm(hidden)
            if part == "down_proj":
                return layer.mlp.act_fn(layer.mlp.gate_proj(normed)) * layer.mlp.up_proj(normed)
            return normed

    return modules[part], inputs(tokens, seed + 1), inputs(64, seed + 2)


def export_vectors(*, layer: str, tokens: int, out: str | Path, model: str | None = None,
                   llama2_shape: bool = False, seed: int = 0, base: SpikeConfig | None = None,
                   out_policy: str = "channel", out_bits: int | None = None) -> Path:
    """Quantize one layer on real (or synthetic 7B-shaped) activations and write its vectors.

    See :func:`export_layers`; ``llama2_shape`` takes a projection of the
    seeded synthetic Llama-2-7B decoder layer instead of the model's.
    """
    if not llama2_shape:
        return export_layers(layers=[layer], tokens=tokens, outs=[out], model=model, base=base,
                             out_policy=out_policy, out_bits=out_bits)[0]
    _check_export_args(tokens, out_policy)
    linear, x, calib_x = _synthetic_inputs(layer, tokens, seed)
    source = f"synthetic Llama-2-7B decoder layer (seed {seed})"
    return _export_one(layer, linear, x, [calib_x], list(range(tokens)), source, out,
                       _export_base(base, out_bits), out_policy)


def export_layers(*, layers: list[str], tokens: int, outs: list, model: str | None = None,
                  base: SpikeConfig | None = None, out_policy: str = "channel",
                  out_bits: int | None = None) -> list[Path]:
    """Quantize several projections of one model on real activations; one model load, one pass.

    Each layer is calibrated alone on the calibration tokens (its inputs taken
    from the float network), then run through
    :meth:`SpikeQuantLinear.hardware_forward`, the same path the
    hardware-faithful perplexity uses: the file's ``expected`` is what that
    model feeds the rest of the network, including its per-projection choices
    (:data:`~spikeacc.golden.network.HARDWARE_OVERRIDES`). The configuration
    ``base`` (default: the ``smollm2`` preset) says the arithmetic, the input
    steps included (default: per-token steps on the grid 2^(−j/4), so each
    neuron holds 4 threshold constants and a token's exponent picks one and a
    scale shift); ``out_policy`` the output ranges (default per channel).
    """
    from spikeacc.golden.network import gptq_codes, layer_inputs
    from spikeacc.golden.perplexity import WINDOW, config_splits
    from spikeacc.golden.spiking_linear import QuantSpec
    from spikeacc.golden.stream import streamed_model

    _check_export_args(tokens, out_policy)
    base = _export_base(base, out_bits)
    net = streamed_model(model, base.rotation)
    source = net.name
    calib_windows, eval_windows = config_splits(net.tokenizer, base, WINDOW)
    inputs = layer_inputs(net, layers, [eval_windows[:1], calib_windows])
    evaluated = {name: (linear, sets[0]) for name, (linear, sets) in inputs.items()}
    calibration = {name: (linear, sets[1]) for name, (linear, sets) in inputs.items()}
    # GPTQ codes of the blocks up to the highest named (cached per block); the layer's inputs stay the float network's
    top = max(int(name.split(".")[2]) for name in layers)
    wanted = {name.split(".", 3)[3] for name in layers if int(name.split(".")[2]) == top}
    codes = gptq_codes(net, QuantSpec.from_config(base), calib_windows, top, only=wanted)
    paths = []
    for layer, out in zip(layers, outs, strict=True):
        linear, (xs,) = evaluated[layer]
        positions = _pick_positions(xs.shape[0], tokens)
        paths.append(_export_one(layer, linear, xs[positions], calibration[layer][1], positions, source, out,
                                 base, out_policy, codes.get(layer)))
    return paths


def _check_export_args(tokens, out_policy) -> None:
    from spikeacc.golden.output_quant import check_policy

    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"--tokens must be a positive integer, got {tokens!r}")
    if check_policy(out_policy) == "oracle":
        raise ValueError("--out-policy oracle takes each token's output range from the output itself, which no "
                         "tile can know before it fires: it is a golden-only bound (spikeacc ppl), not exported")


def _export_base(base, out_bits) -> SpikeConfig:
    from spikeacc.config import check_out_bits

    base = base or PRESETS["smollm2"]
    return base if out_bits is None else base.replace(out_bits=check_out_bits(out_bits))


def _export_one(layer, linear, x, calib, positions, source, out, base, out_policy, codes=None) -> Path:
    import torch

    from spikeacc.golden.network import HARDWARE_OVERRIDES
    from spikeacc.golden.spiking_linear import QuantSpec, SpikeQuantLinear

    if linear.bias is not None:
        raise ValueError(f"{layer} has a bias; the vector contract covers bias-free Llama projections")
    n_out, k_in = linear.weight.shape
    cfg = base.replace(max_tokens=max(len(positions), 1)).for_layer(k_in, n_out)
    projection = ".".join(layer.split(".")[-2:])
    spec = QuantSpec.from_config(cfg, out_policy=out_policy).replace(**HARDWARE_OVERRIDES.get(projection, {}))
    if codes is None:   # a layer outside the network GPTQ saw (the synthetic 7B layer): round to nearest
        spec = spec.replace(weights="rtn")
    q = SpikeQuantLinear(linear, spec, codes)
    q.calibrate_on(calib)
    with torch.no_grad():
        hw = q.hardware_forward(x)
    meta = {"model": source, "layer": layer, "token_positions": positions, "input_step": cfg.input_step,
            "out_policy": out_policy, "out_floor": spec.out_floor, "pow2_j0": q.out_quant.j0,
            "reference_exponent": q.out_quant.reference_exponent, "weights": spec.weights}
    path = save_vectors(out, vectors_from_hardware(cfg, q, hw, meta))
    load_vectors(path)  # what we write must pass our own contract
    return path


def vectors_from_hardware(cfg: SpikeConfig, q, hw, meta: dict) -> LayerVectors:
    """The contract arrays of one :class:`~spikeacc.golden.spiking_linear.HardwareResult`."""
    held = hw.thresholds
    theta, phi, exponent = held.theta.numpy().copy(), held.phi.numpy().copy(), held.exponent.numpy().copy()
    if theta.shape[0] != cfg.threshold_grid:
        raise ValueError(f"these thresholds have {theta.shape[0]} rows per neuron, the tile holds "
                         f"{cfg.threshold_grid} (input_step {cfg.input_step!r}): a per-token threshold is a "
                         f"golden-only evaluation")
    if theta.max() > cfg.theta_max:
        raise ValueError(f"threshold Θ = {int(theta.max())} exceeds {cfg.theta_bits} bits: lower frac_bits")
    acc = hw.acc.numpy()
    w = q.w_code.numpy()
    mant, shift = hw.act.mantissa.numpy(), hw.act.shift.numpy()
    if not np.array_equal(acc, accumulate(w, mant, shift)):
        raise AssertionError("torch and numpy accumulators disagree")  # golden self-check, never a user error
    x_step = hw.act.step.double().numpy()
    meta = {**meta, "config": cfg.to_dict(), "salient_ratio": float(hw.act.salient.float().mean()),
            "zero_ratio": float((hw.act.mantissa == 0).float().mean()),
            "scales": {"w_scale": q.w_scale.double().numpy().tolist(), "x_step": np.ravel(x_step).tolist(),
                       "out_step": np.ravel(hw.out_step.numpy()).tolist(),
                       "out_zero": np.ravel(hw.out_zero.numpy()).tolist()}}
    v = LayerVectors(w=w.astype(np.int8), mant=mant.astype(np.int8), shift=shift.astype(np.uint8),
                     theta=theta, phi=phi, exponent=exponent, frac_bits=cfg.frac_bits, out_bits=cfg.out_bits,
                     acc=acc, expected=np.zeros_like(acc), meta=meta)
    v.expected = v.golden_counts()
    if not np.array_equal(v.expected, hw.counts.numpy()):
        raise AssertionError("torch and numpy fire counts disagree")
    return v
