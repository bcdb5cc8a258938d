"""``SpikeQuantLinear``: a drop-in for an LLM projection with a fake-quant float path
(for perplexity) and an integer spiking path (what the hardware computes, SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikeacc.golden.integer import accumulate, fire_count
from spikeacc.golden.quant import (ActQuant, mad_salient, quantize_activation, quantize_weight,
                                   quantize_weight_pow2_groups)

__all__ = ["SpikeQuantLinear", "QuantSpec", "thresholds", "ideal_counts", "METHODS"]

METHODS = ("fp", "rtn", "spikequant")


@dataclass(frozen=True)
class QuantSpec:
    """How one projection is quantized. ``a_bits=None`` leaves activations in float (W-only)."""

    method: str = "spikequant"
    w_bits: int = 4
    a_bits: int | None = 4
    mode: str = "dynamic"
    kappa: float = 6.0
    e_max: int = 7
    w_group: int | None = None  # power-of-two group steps (float path only; see quantize_weight_pow2_groups)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"mode must be 'dynamic' or 'static', got {self.mode!r}")


def thresholds(w_scale: np.ndarray, x_step: np.ndarray, out_step: np.ndarray, out_zero: np.ndarray,
               frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Θ = round(2^F·Δ/(s_i·s_x)) and Φ = round(2^F·(z_y + ½)·Δ/(s_i·s_x)) (SPEC §3).

    Arguments broadcast to [M, N]: ``w_scale`` [N], ``x_step`` [M, 1], ``out_step``
    and ``out_zero`` [M, 1] (dynamic) or scalars (static).
    """
    ratio = np.asarray(out_step, dtype=np.float64) / (np.asarray(x_step, dtype=np.float64)
                                                      * np.asarray(w_scale, dtype=np.float64)[None, :])
    theta = np.rint(ratio * 2.0**frac_bits).astype(np.int64)
    phi = np.rint((np.asarray(out_zero, dtype=np.float64) + 0.5) * ratio * 2.0**frac_bits).astype(np.int64)
    if (theta < 1).any():
        raise ValueError(f"F = {frac_bits} fraction bits are too few to represent threshold Θ "
                         f"(Δ/(s_w·s_x) down to {ratio.min():.3g}): raise frac_bits")
    return theta, phi


def ideal_counts(acc: np.ndarray, w_scale, x_step, out_step, out_zero, out_bits: int) -> np.ndarray:
    """``clamp(round(acc·s_i·s_x/Δ) + z_y, 0, 2^b_out − 1)`` in float64: the unquantized-threshold ideal."""
    y = acc * np.asarray(w_scale, dtype=np.float64)[None, :] * np.asarray(x_step, dtype=np.float64)
    return np.clip(np.floor(y / np.asarray(out_step, dtype=np.float64) + np.asarray(out_zero) + 0.5),
                   0, (1 << out_bits) - 1).astype(np.int64)


class SpikeQuantLinear(nn.Module):
    """A quantized replacement for ``nn.Linear``.

    ``forward`` is the fake-quant float path: ``y = (s_x·v) @ (s_i·w)ᵀ + b``.
    :meth:`integer_forward` returns the exact integer accumulator
    ``acc = Σ w·m·2^e`` the spiking hardware integrates; ``y = s_i·s_x·acc + b``.
    In static mode the activation range is calibrated (``calibrating = True``
    while running calibration data), so the threshold is a per-output constant.
    """

    def __init__(self, linear: nn.Linear, spec: QuantSpec):
        super().__init__()
        self.spec = spec
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=False)
        w = linear.weight.detach().float()
        if spec.method == "fp":
            self.register_buffer("weight_deq", w.clone())
            self.w_code = self.w_scale = None
        else:
            wq = quantize_weight(w, spec.w_bits)
            self.register_buffer("w_code", wq.code.to(torch.int8))
            self.register_buffer("w_scale", wq.scale)
            if spec.w_group:
                self.register_buffer("weight_deq", quantize_weight_pow2_groups(w, spec.w_bits, spec.w_group))
            else:
                self.register_buffer("weight_deq", wq.dequant())
        self.calibrating = False
        self._calib: list[torch.Tensor] = []
        self.register_buffer("static_lo", torch.tensor(0.0))
        self.register_buffer("static_hi", torch.tensor(0.0))
        self.salient_count = 0
        self.zero_count = 0
        self.element_count = 0

    @property
    def activations_quantized(self) -> bool:
        return self.spec.method != "fp" and self.spec.a_bits is not None

    def quantize_input(self, x: torch.Tensor) -> ActQuant:
        """The activation contract (mantissa, shift, step) for input ``x`` [..., K]."""
        spec = self.spec
        if spec.method == "rtn":
            return quantize_activation(x, spec.a_bits, kappa=None, e_max=0)
        if spec.mode == "static":
            return quantize_activation(x, spec.a_bits, kappa=spec.kappa, e_max=spec.e_max,
                                       static_range=(self.static_lo, self.static_hi))
        return quantize_activation(x, spec.a_bits, kappa=spec.kappa, e_max=spec.e_max)

    def finish_calibration(self) -> None:
        """Static range = mean over calibration tokens of each token's non-salient min and max."""
        if not self._calib:
            raise RuntimeError("static mode needs calibration data before use")
        stats = torch.cat(self._calib)
        self.static_lo.fill_(float(stats[:, 0].mean()))
        self.static_hi.fill_(float(stats[:, 1].mean()))
        self._calib.clear()
        self.calibrating = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.calibrating:
            flat = x.reshape(-1, self.in_features)
            sal = mad_salient(flat, self.spec.kappa)
            lo = torch.where(sal, torch.full_like(flat, float("inf")), flat).amin(-1).clamp(max=0)
            hi = torch.where(sal, torch.full_like(flat, float("-inf")), flat).amax(-1).clamp(min=0)
            self._calib.append(torch.stack([lo, hi], dim=1))
        elif self.activations_quantized:
            aq = self.quantize_input(x)
            self.salient_count += int(aq.salient.sum())
            self.zero_count += int((aq.mantissa == 0).sum())
            self.element_count += aq.mantissa.numel()
            x = aq.dequant().to(x.dtype)
        return nn.functional.linear(x, self.weight_deq, self.bias)

    def integer_forward(self, x: torch.Tensor) -> tuple[ActQuant, np.ndarray]:
        """Exact integer accumulators [M, N] for tokens ``x`` [M, K], as the hardware computes them."""
        if not self.activations_quantized:
            raise ValueError("the integer path needs quantized weights and activations")
        if self.spec.w_group:
            raise ValueError("power-of-two group weights are a float-path experiment; the hardware "
                             "contract uses per-channel weights (set w_group=None)")
        aq = self.quantize_input(x.float().reshape(-1, self.in_features))
        acc = accumulate(self.w_code.numpy(), aq.mantissa.numpy(), aq.shift.numpy())
        return aq, acc

    def spiking_forward(self, x: torch.Tensor, out_step, out_zero, frac_bits: int, out_bits: int):
        """Output spike counts through fixed-point threshold rescaling: the next layer's codes."""
        aq, acc = self.integer_forward(x)
        x_step = aq.step.numpy().reshape(-1, 1) if aq.step.dim() else aq.step.numpy()
        theta, phi = thresholds(self.w_scale.numpy(), x_step, out_step, out_zero, frac_bits)
        return fire_count(acc, theta, phi, frac_bits, out_bits), acc, theta, phi

    @property
    def salient_ratio(self) -> float:
        return self.salient_count / self.element_count if self.element_count else 0.0

    @property
    def zero_ratio(self) -> float:
        return self.zero_count / self.element_count if self.element_count else 0.0
