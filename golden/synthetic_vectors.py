"""Vector files made, not exported: seeded random layers, and real layers cropped to a smaller tile.

Both give thresholds that spread the counts over the output range
(:func:`_range_thresholds`) and counts recomputed by the golden formulas, so
every file they write passes :func:`~spikeacc.golden.vectors.load_vectors`.
"""

from __future__ import annotations

import numpy as np

from spikeacc.config import SpikeConfig
from spikeacc.golden.integer import accumulate, check_codes
from spikeacc.golden.vectors import LayerVectors

__all__ = ["crop_vectors", "random_vectors"]


def _range_thresholds(cfg: SpikeConfig, acc: np.ndarray) -> dict:
    """Constants [R, N] and exponents [M] that spread each token's accumulators over the output range.

    The per-token output step Δ/(s_w·s_x) a token needs is its accumulator
    spread over 2^b_out − 1; the tile offers the steps ``ref·2^(d/R)``, so each
    token takes the smallest that covers it (d = R·s + r, clamped to the
    configuration's range; static steps: one step for all tokens). Neurons get
    slightly different constants and the zero point sits mid-range.
    """
    import torch

    from spikeacc.golden.output_quant import threshold_pair

    rows, n = cfg.threshold_grid, acc.shape[1]
    spread = np.maximum(acc.max(axis=1) - acc.min(axis=1), 1).astype(np.float64)
    need = spread / cfg.max_count                                    # Δ/(s_w·s_x) per token
    if cfg.input_step == "static":
        ref, exponent = float(need.max()), np.zeros(len(need), dtype=np.int64)
    else:
        ref = float(np.median(need))
        exponent = np.clip(np.ceil(rows * np.log2(need / ref) - 1e-9), cfg.exponent_min,
                           min(cfg.exponent_max, rows * cfg.frac_bits)).astype(np.int64)
    jitter = 1 + 0.05 * (np.arange(n) % 7) / 7                      # per-neuron constants differ a little
    ratio = ref * np.power(2.0, np.arange(rows) / rows)[:, None] * jitter[None, :]
    zero = np.full((1, n), float(cfg.max_count // 2))
    theta, phi = threshold_pair(torch.from_numpy(ratio), torch.from_numpy(zero), cfg.frac_bits)
    return {"theta": theta.numpy(), "phi": phi.numpy(), "exponent": exponent}


def crop_vectors(v: LayerVectors, cfg: SpikeConfig) -> LayerVectors:
    """The first K inputs and N outputs of a real layer, for a tile of ``cfg``'s shape.

    Weights, mantissas and shifts are the real layer's (its zero and salient
    statistics carry over); the thresholds are recomputed over the cropped
    layer's own per-token range, so the counts use the whole output range, and
    ``acc``/``expected`` come from the golden formula. Gate-level simulation of
    a full 576 × 576 layer is out of reach on a small machine; this is what
    ``spikeacc power`` measures by default.
    """
    m, k, n = v.shape
    if cfg.in_features > k or cfg.out_features > n:
        raise ValueError(f"cannot crop a {k}×{n} layer to {cfg.in_features}×{cfg.out_features}")
    w = v.w[:cfg.out_features, :cfg.in_features]
    mant, shift = v.mant[:, :cfg.in_features], v.shift[:, :cfg.in_features]
    check_codes(cfg, w, mant, shift)
    acc = accumulate(w, mant, shift)
    meta = {**v.meta, "layer": f"{v.meta.get('layer')} [:{cfg.out_features}, :{cfg.in_features}]",
            "cropped_from": [k, n], "thresholds": "recomputed over the cropped layer's per-token range",
            "config": cfg.replace(max_tokens=max(cfg.max_tokens, m)).to_dict()}
    return _with_counts(LayerVectors(w=w.copy(), mant=mant.copy(), shift=shift.copy(), **_range_thresholds(cfg, acc),
                                     frac_bits=cfg.frac_bits, out_bits=cfg.out_bits, acc=acc,
                                     expected=np.zeros_like(acc), meta=meta))


def random_vectors(cfg: SpikeConfig, tokens: int, seed: int = 0, zero_fraction: float = 0.22,
                   salient_fraction: float = 0.025) -> LayerVectors:
    """Seeded random layer vectors in the contract, with SmolLM2-like zero and salient ratios.

    In Kirin mode the salient elements are integer outliers up to ±(2^(B−1) − 1).
    """
    rng = np.random.default_rng(seed)
    k, n = cfg.in_features, cfg.out_features
    w = rng.integers(-cfg.weight_max, cfg.weight_max + 1, size=(n, k))
    mant = rng.integers(-cfg.spike_max, cfg.spike_max + 1, size=(tokens, k))
    mant[rng.random((tokens, k)) < zero_fraction] = 0
    salient = rng.random((tokens, k)) < salient_fraction
    shift = np.where(salient, rng.integers(1, cfg.shift_max + 1, size=(tokens, k)) if cfg.shift_max else 0, 0)
    if cfg.kirin:  # salient values as integer outliers (most too large to spike), with their shifts
        mant = np.where(salient, rng.integers(-cfg.outlier_max, cfg.outlier_max + 1, size=(tokens, k)), mant)
    acc = accumulate(w, mant, shift)
    meta = {"model": f"random (seed {seed})", "layer": "random", "token_positions": list(range(tokens)),
            "input_step": cfg.input_step, "config": cfg.replace(max_tokens=max(cfg.max_tokens, tokens)).to_dict()}
    return _with_counts(LayerVectors(w=w.astype(np.int8), mant=mant.astype(np.int8), shift=shift.astype(np.uint8),
                                     **_range_thresholds(cfg, acc), frac_bits=cfg.frac_bits, out_bits=cfg.out_bits,
                                     acc=acc, expected=np.zeros_like(acc), meta=meta))


def _with_counts(v: LayerVectors) -> LayerVectors:
    v.expected = v.golden_counts()
    return v
