"""Quantizers of SPEC §2: per-channel weights, asymmetric activations, MAD-salient in place.

Activations come out in the integer contract the hardware consumes: every
element is ``v = mantissa · 2^shift`` (|mantissa| ≤ 2^b_a − 1, shift 0 for
ordinary values), with a step ``s_x`` per token (dynamic) or per tensor (static),
so ``x ≈ s_x · v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikeacc.config import code_max
from spikeacc.golden.steps import asym_params, pow2_steps

__all__ = ["WeightQuant", "ActQuant", "quantize_weight", "quantize_weight_pow2_groups", "mad_salient", "quantize_activation",
           "asym_params", "rtn_activation"]


@dataclass
class WeightQuant:
    """Per-output-channel asymmetric weights: ``W ≈ scale[:, None] · code``, code = Wq − z."""

    code: torch.Tensor   # integer [N, K] (int64 rounded here, int8 from GPTQ), |code| ≤ 2^b_w − 1
    scale: torch.Tensor  # float [N]

    def dequant(self) -> torch.Tensor:
        return self.code.to(self.scale.dtype) * self.scale[:, None]


def quantize_weight(w: torch.Tensor, bits: int) -> WeightQuant:
    """``s_i = (max_i − min_i)/(2^b − 1)``, ``z_i = round(−min_i/s_i)``, range including 0."""
    qmax = code_max(bits)
    lo = w.amin(dim=1).clamp(max=0)
    hi = w.amax(dim=1).clamp(min=0)
    scale = ((hi - lo) / qmax).clamp(min=1e-12)
    zero = torch.round(-lo / scale)
    wq = torch.clamp(torch.round(w / scale[:, None]) + zero[:, None], 0, qmax)
    return WeightQuant((wq - zero[:, None]).to(torch.int64), scale)


def quantize_weight_pow2_groups(w: torch.Tensor, bits: int, group: int = 64, max_shift: int = 3) -> torch.Tensor:
    """Dequantized weights with power-of-two group steps: ``s_g = s_i · 2^−j_g``, j_g ≤ max_shift.

    Each group of ``group`` input columns gets the finest step that is the row's
    step divided by a power of two and still spans the group's range, with its
    own zero point. In hardware the group factor is a left shift of the weight
    code (``w << (max_shift − j_g)`` against a row step ``s_i/2^max_shift``):
    shift-only, like the salient exponent, at the cost of ``max_shift`` more
    shift bits. Returns the dequantized weights (the float path).
    """
    n, k = w.shape
    if k % group:
        raise ValueError(f"in_features {k} is not a multiple of the group size {group}")
    qmax = code_max(bits)
    row_step = ((w.amax(dim=1).clamp(min=0) - w.amin(dim=1).clamp(max=0)) / qmax).clamp(min=1e-12)
    g = w.reshape(n, k // group, group)
    span = g.amax(dim=2).clamp(min=0) - g.amin(dim=2).clamp(max=0)
    ratio = row_step[:, None] * qmax / span.clamp(min=1e-12)
    shift = torch.clamp(torch.floor(torch.log2(ratio)), 0, max_shift)
    step = row_step[:, None] / torch.pow(2.0, shift)
    lo = g.amin(dim=2).clamp(max=0)
    zero = torch.round(-lo / step)
    code = torch.clamp(torch.round(g / step[..., None]) + zero[..., None], 0, qmax) - zero[..., None]
    return (code * step[..., None]).reshape(n, k)


@dataclass
class ActQuant:
    """Activations in the hardware contract: ``x ≈ step · mantissa · 2^shift``."""

    mantissa: torch.Tensor  # int64 [..., K]
    shift: torch.Tensor     # int64 [..., K]
    step: torch.Tensor      # float [..., 1] (per token) or [] (per tensor)
    zero: torch.Tensor      # float, like step: the zero point z_x of ordinary codes
    salient: torch.Tensor   # bool [..., K]
    exponent: torch.Tensor | None = None  # int64 [..., 1]: step = 2^−j (power-of-two steps only)

    @property
    def value(self) -> torch.Tensor:
        """Value in steps, ``v = m · 2^e`` (exact integer)."""
        return self.mantissa << self.shift

    def dequant(self) -> torch.Tensor:
        return self.value.to(self.step.dtype) * self.step


def mad_salient(x: torch.Tensor, kappa: float) -> torch.Tensor:
    """Median-absolute-deviation rule: salient iff ``|x − med| > κ·mad`` (per token)."""
    med = x.median(dim=-1, keepdim=True).values
    dev = (x - med).abs()
    mad = dev.median(dim=-1, keepdim=True).values
    # A token whose values mostly coincide has mad = 0; fall back to a tiny positive spread.
    mad = torch.maximum(mad, dev.amax(dim=-1, keepdim=True) * 1e-6 + 1e-12)
    return dev > kappa * mad


def _exponent_code(x_steps: torch.Tensor, mmax: int, e_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest e ≤ e_max with ``|round(x/2^e)| ≤ mmax``, and the mantissa at that e (saturated)."""
    mag = x_steps.abs()
    e = torch.full_like(mag, e_max, dtype=torch.int64)
    for cand in range(e_max, -1, -1):
        fits = torch.round(mag / (1 << cand)) <= mmax
        e = torch.where(fits, torch.full_like(e, cand), e)
    mant = torch.clamp(torch.round(x_steps / torch.pow(2.0, e.to(x_steps.dtype))), -mmax, mmax)
    return mant.to(torch.int64), e


def _token_shift_code(x_steps: torch.Tensor, salient: torch.Tensor, qmax: int,
                      e_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Kirin outliers: integers ``|q| ≤ qmax`` sharing one shift per token (SPEC §4).

    The token's shift is the smallest ``E ≤ e_max`` at which every salient
    value of the token fits, ``|round(x/2^E)| ≤ qmax`` (saturating at e_max).
    Returns ``(q, E)`` with q [..., K] and E [..., 1].
    """
    mag = torch.where(salient, x_steps.abs(), torch.zeros_like(x_steps)).amax(dim=-1, keepdim=True)
    e = torch.full_like(mag, e_max, dtype=torch.int64)
    for cand in range(e_max, -1, -1):
        e = torch.where(torch.round(mag / (1 << cand)) <= qmax, torch.full_like(e, cand), e)
    q = torch.clamp(torch.round(x_steps / torch.pow(2.0, e.to(x_steps.dtype))), -qmax, qmax)
    return q.to(torch.int64), e


def quantize_activation(x: torch.Tensor, bits: int, *, kappa: float | None, e_max: int,
                        static_range: tuple[torch.Tensor, torch.Tensor] | None = None,
                        pow2: int | None = None, outlier_bits: int | None = None,
                        min_exponent: int | None = None) -> ActQuant:
    """SpikeQuant activation quantizer.

    Dynamic (``static_range=None``): per token, salient by the MAD rule with κ,
    step and zero point over the non-salient values. Static: per-tensor
    ``(lo, hi)`` calibrated offline; salient = whatever falls outside it.
    Salient values keep their place as ``mantissa · 2^e`` (e ≤ e_max).
    ``kappa=None`` (dynamic) disables salient handling: plain per-token RTN.
    ``pow2=R`` (dynamic) rounds each token's step up to the grid ``2^(−j/R)``
    (R = 1: a power of two), so the neuron's threshold is a shift of one of R
    constants (SPEC §3). ``outlier_bits=B`` is Kirin's W4A4&8 (SPEC §4): salient
    values become signed B-bit integers (|q| ≤ 2^(B−1) − 1) sharing one
    power-of-two shift per token instead of a 5-bit mantissa with a shift each;
    ``mantissa``/``shift`` then hold q and the token's shift at those places.
    ``min_exponent`` (with ``pow2``) is the tile's largest step, ``2^(−min_exponent/R)``:
    a token whose range needs a larger step takes that one and saturates.
    """
    qmax = code_max(bits)
    exponent = None
    if static_range is None:
        salient = mad_salient(x, kappa) if kappa is not None else torch.zeros_like(x, dtype=torch.bool)
        lo = torch.where(salient, torch.full_like(x, float("inf")), x).amin(dim=-1, keepdim=True)
        hi = torch.where(salient, torch.full_like(x, float("-inf")), x).amax(dim=-1, keepdim=True)
        lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
        hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
        step, zero = asym_params(lo, hi, bits)
        if pow2:
            step, exponent = pow2_steps(step, pow2)
            if min_exponent is not None and (exponent < min_exponent).any():
                exponent = torch.clamp(exponent, min=min_exponent)
                step = torch.pow(2.0, -exponent.double() / pow2).to(step.dtype)
            zero = torch.round(-lo.clamp(max=0) / step)
    else:
        step, zero = asym_params(static_range[0], static_range[1], bits)
        code = torch.round(x / step) + zero
        salient = (code < 0) | (code > qmax)
    code = torch.clamp(torch.round(x / step) + zero, 0, qmax)
    ordinary = (code - zero).to(torch.int64)
    if kappa is None and static_range is None:
        return ActQuant(ordinary, torch.zeros_like(ordinary), step, zero, salient, exponent)
    if outlier_bits is not None:
        s_mant, s_exp = _token_shift_code(x / step, salient, (1 << (outlier_bits - 1)) - 1, e_max)
        s_exp = s_exp.expand_as(s_mant)
    else:
        s_mant, s_exp = _exponent_code(x / step, qmax, e_max)
    mantissa = torch.where(salient, s_mant, ordinary)
    shift = torch.where(salient, s_exp, torch.zeros_like(s_exp))
    return ActQuant(mantissa, shift, step, zero, salient, exponent)


def rtn_activation(x: torch.Tensor, bits: int) -> ActQuant:
    """Round-to-nearest per-token asymmetric activations, no salient handling (the baseline)."""
    return quantize_activation(x, bits, kappa=None, e_max=0)
