"""Error-compensating weight rounding (GPTQ) into the tile's per-channel weight codes (SPEC §2).

GPTQ (Frantar et al., arXiv 2210.17323) rounds a projection's weights column by
column and pushes each column's rounding error onto the columns not yet
rounded, weighted by the inverse Hessian ``H = X̃ᵀX̃`` of the layer's inputs, so
that ``‖(W − Ŵ)X̃‖`` stays small rather than each weight's own error. It only
changes *which* codes the tile gets: every row keeps one asymmetric b_w-bit
step and zero point, so ``w``, Θ and Φ mean what they always meant and the RTL
does not notice.

Two choices of ours, both measured (docs/measurements.md, "Near-FP weights"):

* ``X̃`` is what the tile really receives: the layer's inputs through its own
  activation quantizer (salient mantissas and shifts included). With float
  inputs GPTQ optimised for activations the tile never sees and made
  SpikeQuant worse (58.1 → 81.0 PPL), while it helped Kirin.
* Each row's range is searched (shrunk from its min/max on a grid) for the
  smallest Hessian-weighted rounding error before GPTQ runs, instead of
  always spanning min..max; a clipped range is still one step and zero point.

Layers are quantized in order, each on the inputs that the already quantized
earlier layers produce (weights quantized, as in the paper's sequential
procedure). Everything is float64 so the codes are the same on every CPU.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

import torch

from spikeacc.config import code_max
from spikeacc.golden.quant import WeightQuant

__all__ = ["gptq_quantize", "search_range", "gptq_network", "cached_gptq_network", "GPTQ_VERSION"]

# Bump when the algorithm changes: cached codes of an older version are not reused.
GPTQ_VERSION = 1
BLOCK = 128          # columns updated together (the paper's lazy batch)
DAMPING = 0.1        # of the mean Hessian diagonal: 1,024 calibration tokens want more than the paper's 0.01
RANGE_STEPS = 20     # grid of the range search ...
RANGE_SHRINK = 0.5   # ... from the full min..max down to half of it


def search_range(w: torch.Tensor, importance: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the step and zero point of the shrunk range ``p·[min, max]`` with the least weighted error.

    ``importance`` [K] weighs each column's squared rounding error (the
    Hessian's diagonal). ``p`` runs from 1 down to ``1 − RANGE_SHRINK``; the
    range always includes 0, as :func:`~spikeacc.golden.quant.quantize_weight`'s.
    """
    qmax = code_max(bits)
    lo0, hi0 = w.amin(dim=1).clamp(max=0), w.amax(dim=1).clamp(min=0)
    best = torch.full_like(lo0, float("inf"))
    best_step, best_zero = torch.zeros_like(lo0), torch.zeros_like(lo0)
    for i in range(RANGE_STEPS + 1):
        p = 1 - RANGE_SHRINK * i / RANGE_STEPS
        step = ((hi0 - lo0) * p / qmax).clamp(min=1e-12)
        zero = torch.round(-lo0 * p / step)
        code = torch.clamp(torch.round(w / step[:, None]) + zero[:, None], 0, qmax) - zero[:, None]
        error = ((code * step[:, None] - w) ** 2 * importance[None, :]).sum(dim=1)
        better = error < best
        best = torch.where(better, error, best)
        best_step = torch.where(better, step, best_step)
        best_zero = torch.where(better, zero, best_zero)
    return best_step, best_zero


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, bits: int) -> WeightQuant:
    """GPTQ codes of ``w`` [N, K] for inputs with Hessian ``hessian`` [K, K] (``X̃ᵀX̃/tokens``).

    Columns go in order of decreasing Hessian diagonal (the paper's
    ``act_order``; with one step per row it needs no regrouping), ``BLOCK``
    at a time, with ``DAMPING`` added to the diagonal.
    """
    w = w.double().clone()
    h = hessian.double().clone()
    qmax = code_max(bits)
    dead = torch.diag(h) == 0          # an input that never fires: its weights do not matter
    h[dead, dead] = 1
    w[:, dead] = 0
    step, zero = search_range(w, torch.diag(h), bits)
    order = torch.argsort(torch.diag(h), descending=True, stable=True)
    w, h = w[:, order], h[order][:, order]
    h += DAMPING * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros_like(w, dtype=torch.int64)
    k = w.shape[1]
    for start in range(0, k, BLOCK):
        end = min(start + BLOCK, k)
        block, block_inv = w[:, start:end].clone(), inverse[start:end, start:end]
        errors = torch.zeros_like(block)
        for i in range(end - start):
            code = torch.clamp(torch.round(block[:, i] / step) + zero, 0, qmax) - zero
            codes[:, start + i] = code.to(torch.int64)
            errors[:, i] = (block[:, i] - code * step) / block_inv[i, i]
            block[:, i:] -= errors[:, i:i + 1] * block_inv[i, i:][None, :]
        w[:, end:] -= errors @ inverse[start:end, end:]
    return WeightQuant(codes[:, torch.argsort(order)], step)


class _Captured(Exception):
    """Stops the forward pass once the first decoder layer's inputs are captured."""


def _first_layer_inputs(model, windows) -> tuple[list[torch.Tensor], dict]:
    """The hidden states entering decoder layer 0 for each window, and the keyword arguments it gets."""
    layers = model.model.layers
    states, kwargs = [], {}

    def capture(module, args, kw):
        states.append(args[0] if args else kw["hidden_states"])
        kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})
        raise _Captured

    handle = layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            for ids in windows:
                try:
                    model(ids.reshape(1, -1), use_cache=False)
                except _Captured:
                    pass
    finally:
        handle.remove()
    return states, kwargs


def gptq_network(model, windows, bits: int, input_quantizer: Callable[[torch.Tensor], torch.Tensor],
                 projections, progress: Callable[[int, int], None] | None = None) -> dict[str, WeightQuant]:
    """GPTQ codes of every ``projections`` Linear of every decoder layer, keyed by module name.

    ``input_quantizer(x)`` returns what the tile would see for float inputs
    ``x`` [T, K] (dequantized activation codes); the Hessian is built from it.
    ``model`` is changed in place: its projections end with the quantized
    weights (the sequential procedure feeds each layer the outputs of the
    quantized ones before it).
    """
    states, kwargs = _first_layer_inputs(model, windows)
    layers = model.model.layers
    codes: dict[str, WeightQuant] = {}
    for index, layer in enumerate(layers):
        linears = {name: layer.get_submodule(name) for name in projections}
        sums = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for name, m in linears.items()}
        tokens = dict.fromkeys(linears, 0)
        last = {"input": None}   # q/k/v (and gate/up) get the same tensor: quantize it and form X̃ᵀX̃ once

        def accumulate(module, args, output, name):
            if args[0] is not last["input"]:
                x = input_quantizer(args[0].detach().reshape(-1, module.in_features)).double()
                last.update(input=args[0], gram=x.T @ x, rows=x.shape[0])
            sums[name] += last["gram"]
            tokens[name] += last["rows"]

        handles = [m.register_forward_hook(lambda mod, a, o, name=name: accumulate(mod, a, o, name))
                   for name, m in linears.items()]
        try:
            _run_layer(layer, states, kwargs)
        finally:
            for handle in handles:
                handle.remove()
        for name, linear in linears.items():
            quant = gptq_quantize(linear.weight.detach(), sums[name] / max(tokens[name], 1), bits)
            codes[f"model.layers.{index}.{name}"] = quant
            linear.weight.data = quant.dequant().to(linear.weight.dtype)
        states = _run_layer(layer, states, kwargs)
        if progress:
            progress(index + 1, len(layers))
    return codes


def _run_layer(layer, states: list[torch.Tensor], kwargs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        outputs = [layer(h, **kwargs) for h in states]
    return [o[0] if isinstance(o, tuple) else o for o in outputs]


def _cache_root() -> Path:
    return Path(os.environ.get("SPIKEACC_CACHE", Path.home() / ".cache" / "spikeacc")) / "gptq"


def cached_gptq_network(model, windows, bits: int, input_quantizer, projections, *, key: dict,
                        progress=None) -> dict[str, WeightQuant]:
    """:func:`gptq_network`, remembered on disk under ``key`` (model bytes, settings, calibration tokens).

    The file is written whole or not at all; one that does not load is
    computed again. The model is left with the quantized weights either way.
    """
    from spikeacc import workdirs

    full = {**key, "version": GPTQ_VERSION, "bits": bits, "projections": list(projections),
            "settings": [BLOCK, DAMPING, RANGE_STEPS, RANGE_SHRINK],
            "calibration": hashlib.sha256(torch.cat([w.reshape(-1) for w in windows]).numpy().tobytes()).hexdigest()}
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:24]
    path = _cache_root() / f"{digest}.pt"
    codes = _load(path)
    if codes is None:
        codes = gptq_network(model, windows, bits, input_quantizer, projections, progress)
        buffer = io.BytesIO()
        torch.save({name: (q.code.to(torch.int8), q.scale) for name, q in codes.items()}, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        workdirs.write_atomic(path, buffer.getvalue())
        return codes
    for name, quant in codes.items():
        linear = model.get_submodule(name)
        linear.weight.data = quant.dequant().to(linear.weight.dtype)
    return codes


def _load(path: Path) -> dict[str, WeightQuant] | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, weights_only=True)
        return {name: WeightQuant(code.to(torch.int64), scale) for name, (code, scale) in stored.items()}
    except Exception:   # noqa: BLE001 - a damaged cache entry is a miss, never an error
        return None
