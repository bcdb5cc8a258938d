"""``SpikeQuantLinear``: a drop-in for an LLM projection with a fake-quant float path, an
integer spiking path, and a hardware-faithful path that returns exactly what the tile emits
(SPEC §3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikeacc.config import (KIRIN_MODE, PRESETS, WEIGHT_ROUNDINGS, SpikeConfig, check_out_bits, check_outlier_bits,
                             code_max, step_grid)
from spikeacc.golden.integer import accumulate
from spikeacc.golden.output_quant import (OutputCalibration, OutputQuant, TokenThresholds, check_policy,
                                          fire_counts_torch, threshold_pair)
from spikeacc.golden.quant import (ActQuant, WeightQuant, mad_salient, quantize_activation, quantize_weight,
                                   quantize_weight_pow2_groups)

__all__ = ["SpikeQuantLinear", "QuantSpec", "HardwareResult", "thresholds", "ideal_counts", "METHODS",
           "WEIGHT_ROUNDINGS", "CALIBRATION_STAGES", "calibration_stages"]

METHODS = ("fp", "rtn", "spikequant", "kirin")
# GPTQ codes need the whole network's calibration inputs (golden.network.QuantizedBlocks).
# Static activation ranges first (measured on the float network), then output ranges (measured
# with every input quantized as it will be): the order the hardware's thresholds depend on them.
CALIBRATION_STAGES = ("input", "output")


_DEFAULT = PRESETS["default"]   # QuantSpec's defaults: the configuration's own, not a second set


@dataclass(frozen=True)
class QuantSpec:
    """How one projection is quantized. ``a_bits=None`` leaves activations in float (W-only).

    Widths, the salient rule, the step policy and the weight rounding are the
    configuration's (:meth:`from_config`; the defaults are the default
    configuration's). ``out_bits=None`` returns the output in float (input-only
    quantization, the fake-quant rows). An integer ``out_bits`` is the
    hardware-faithful mode: the projection returns ``Δ_i·(n_i − z_y,i)`` with
    ``n_i`` the tile's spike count. ``input_step`` is the configuration's
    vocabulary (:data:`spikeacc.config.INPUT_STEPS`: ``static``, one step per
    tensor, or per-token steps on the grid ``2^(−j/R)``). ``method="kirin"``
    keeps the salient values as signed ``outlier_bits`` integers with one
    power-of-two shift per token (Kirin's W4A4&8, SPEC §4) instead of
    SpikeQuant's 5-bit mantissa with a shift per element.

    Golden-only policies, which no tile implements and the rows that use them
    are labelled: the method ``fp``/``rtn`` baselines, ``input_step="any"`` (a
    float step per token), ``w_group`` (power-of-two weight groups), and where
    the output range comes from (``out_policy`` — see ``golden/output_quant.py``
    — ``out_clip``, ``out_margin``, ``out_floor``).
    """

    method: str = "spikequant"
    w_bits: int = _DEFAULT.w_bits
    a_bits: int | None = _DEFAULT.a_bits
    input_step: str = _DEFAULT.input_step
    kappa: float = _DEFAULT.kappa
    e_max: int = _DEFAULT.shift_max
    out_bits: int | None = None
    exponent_headroom: int = _DEFAULT.exponent_headroom  # pow2 steps: a token's may exceed the calibrated largest by 2^H
    frac_bits: int = _DEFAULT.frac_bits
    outlier_bits: int = KIRIN_MODE["outlier_bits"]
    weights: str = _DEFAULT.weight_rounding
    # golden-only
    w_group: int | None = None  # power-of-two group steps (float path only; see quantize_weight_pow2_groups)
    out_policy: str = "channel"
    out_clip: int = 0
    out_margin: float = 1 / 16   # headroom of a calibrated output range, a fraction of its span per side
    out_floor: float | None = None  # lowest output the range must cover (e.g. where SiLU is already ~0)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.weights not in WEIGHT_ROUNDINGS:
            raise ValueError(f"weights must be one of {list(WEIGHT_ROUNDINGS)}, got {self.weights!r}")
        step_grid(self.input_step)   # one of the configuration's steps, or the golden-only "any"
        if self.method == "kirin":
            check_outlier_bits(self.outlier_bits, self.a_bits or _DEFAULT.a_bits)
        if self.out_bits is not None:
            check_out_bits(self.out_bits)
            check_policy(self.out_policy)
            if self.w_group:
                raise ValueError("hardware-faithful outputs need per-channel weights (w_group=None)")
            if self.method == "fp" or self.a_bits is None:
                raise ValueError("hardware-faithful outputs need quantized weights and activations")

    @property
    def mode(self) -> str:
        """``static`` (one activation step per tensor, calibrated) or ``dynamic`` (a step per token)."""
        return "static" if self.input_step == "static" else "dynamic"

    @property
    def hardware_faithful(self) -> bool:
        return self.out_bits is not None

    @property
    def step_grid(self) -> int | None:
        """R when per-token input steps lie on the grid ``2^(−j/R)``; None for static or any steps."""
        return step_grid(self.input_step)

    def replace(self, **changes) -> "QuantSpec":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_config(cls, cfg: SpikeConfig, *, hardware_faithful: bool = True, input_step: str | None = None,
                    **golden_only) -> "QuantSpec":
        """How the golden model quantizes a projection that a tile of configuration ``cfg`` computes.

        Every width, the salient rule, the weight rounding and the step policy
        come from ``cfg`` (SpikeQuant or Kirin by its ``outlier_bits``); only
        what the configuration does not say is chosen here: float outputs with
        ``hardware_faithful=False`` (the input-only rows), ``input_step`` to
        evaluate a step policy the tile does not implement (``any``: labelled
        golden-only rows), and the golden-only output-range fields.
        """
        return cls(method=cfg.mode, w_bits=cfg.w_bits, a_bits=cfg.a_bits, input_step=input_step or cfg.input_step,
                   kappa=cfg.kappa, e_max=cfg.shift_max, frac_bits=cfg.frac_bits,
                   out_bits=cfg.out_bits if hardware_faithful else None, exponent_headroom=cfg.exponent_headroom,
                   outlier_bits=cfg.outlier_bits if cfg.kirin else cls.outlier_bits,
                   weights=cfg.weight_rounding, **golden_only)

    def input_quantizer(self):
        """``x [T, K] -> x̃``: the activations a projection of this spec computes with, dequantized.

        What GPTQ builds its Hessian from, so the codes are fitted to the very
        activations the tile gets (their step grid included: with per-token
        steps of any size instead, SpikeQuant's hardware-faithful row came out
        41.6 rather than 37.1). Static mode uses per-token ranges here (its
        tensor range is calibrated only after the weights are fixed); float
        activations (``a_bits=None``) pass unchanged.
        """
        if self.method == "fp" or self.a_bits is None:
            return lambda x: x
        return lambda x: self.quantize_activations(x).dequant()

    def quantize_activations(self, x: torch.Tensor, *, static_range=None, min_exponent: int | None = None) -> ActQuant:
        """The activation contract (mantissa, shift, step) of this spec for ``x`` [..., K].

        ``static_range`` (static mode, calibrated) gives one step per tensor;
        without it the steps are per token, on the spec's grid, no larger than
        ``min_exponent`` allows. RTN rows ignore both: plain per-token steps.
        """
        if self.method == "rtn":
            return quantize_activation(x, self.a_bits, kappa=None, e_max=0)
        outliers = self.outlier_bits if self.method == "kirin" else None
        if static_range is not None:
            return quantize_activation(x, self.a_bits, kappa=self.kappa, e_max=self.e_max,
                                       static_range=static_range, outlier_bits=outliers)
        return quantize_activation(x, self.a_bits, kappa=self.kappa, e_max=self.e_max, pow2=self.step_grid,
                                   outlier_bits=outliers, min_exponent=min_exponent)

    def weight_key(self) -> dict:
        """What decides GPTQ's codes (its cache key): widths, the activation quantizer, the rounding."""
        return dict(method=self.method, w_bits=self.w_bits, a_bits=self.a_bits, kappa=self.kappa, e_max=self.e_max,
                    input_step=self.step_grid, outlier_bits=self.outlier_bits if self.method == "kirin" else None,
                    weights=self.weights)


def calibration_stages(spec: QuantSpec) -> list[str]:
    """The calibration stages a projection of ``spec`` needs, in order (see :data:`CALIBRATION_STAGES`)."""
    stages = []
    if spec.method != "fp" and spec.a_bits is not None and spec.mode == "static":
        stages.append("input")
    if spec.hardware_faithful and (spec.out_policy != "oracle" or spec.step_grid is not None):
        stages.append("output")
    return stages


@dataclass
class HardwareResult:
    """One call of the tile on tokens [M, K]: codes in, counts out, and the thresholds between."""

    act: ActQuant
    acc: torch.Tensor      # int64 [M, N]
    thresholds: TokenThresholds   # constants [R, N] and the tokens' exponents [M]
    counts: torch.Tensor   # int64 [M, N]
    out_step: torch.Tensor
    out_zero: torch.Tensor

    def output(self) -> torch.Tensor:
        """What the float parts of the network see: ``Δ_i·(n_i − z_y,i)``."""
        return (self.counts.double() - self.out_zero) * self.out_step


def thresholds(w_scale: np.ndarray, x_step: np.ndarray, out_step: np.ndarray, out_zero: np.ndarray,
               frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Θ and Φ as numpy arrays: :func:`~spikeacc.golden.output_quant.threshold_pair` of Δ/(s_i·s_x).

    Arguments broadcast to [M, N]: ``w_scale`` [N], ``x_step`` [M, 1], ``out_step``
    and ``out_zero`` [M, 1] (dynamic) or scalars (static).
    """
    ratio = np.asarray(out_step, dtype=np.float64) / (np.asarray(x_step, dtype=np.float64)
                                                      * np.asarray(w_scale, dtype=np.float64)[None, :])
    theta, phi = threshold_pair(torch.from_numpy(np.ascontiguousarray(ratio)),
                                torch.as_tensor(np.asarray(out_zero, dtype=np.float64)), frac_bits)
    return theta.numpy(), phi.numpy()


def ideal_counts(acc: np.ndarray, w_scale, x_step, out_step, out_zero, out_bits: int) -> np.ndarray:
    """``clamp(round(acc·s_i·s_x/Δ) + z_y, 0, 2^b_out − 1)`` in float64: the unquantized-threshold ideal."""
    y = acc * np.asarray(w_scale, dtype=np.float64)[None, :] * np.asarray(x_step, dtype=np.float64)
    return np.clip(np.floor(y / np.asarray(out_step, dtype=np.float64) + np.asarray(out_zero) + 0.5),
                   0, code_max(out_bits)).astype(np.int64)


class SpikeQuantLinear(nn.Module):
    """A quantized replacement for ``nn.Linear``.

    ``forward`` is the fake-quant float path ``y = (s_x·v) @ (s_i·w)ᵀ + b``, or,
    when ``spec.out_bits`` is set, the hardware-faithful path
    :meth:`hardware_forward`: the tile's spike counts ``n`` through the
    fixed-point thresholds, returned as ``Δ_i·(n_i − z_y,i)``.
    :meth:`integer_forward` returns the exact integer accumulator
    ``acc = Σ w·m·2^e`` the spiking hardware integrates; ``y = s_i·s_x·acc + b``.

    Calibration runs in two stages on calibration tokens (see
    :class:`spikeacc.golden.network.QuantizedBlocks`): ``calibrating`` records activation
    ranges (static mode: the threshold is a per-output constant), then
    ``calibrating_output`` records output ranges for the output quantizer.
    """

    def __init__(self, linear: nn.Linear, spec: QuantSpec, weights: WeightQuant | None = None):
        super().__init__()
        self.spec = spec
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=False)
        if spec.hardware_faithful and self.bias is not None:
            raise ValueError("hardware-faithful outputs cover bias-free (Llama) projections; this one has a bias")
        w = linear.weight.detach()
        if spec.method == "fp":
            self.register_buffer("weight_deq", w.clone())
            self.w_code = self.w_scale = None
        else:
            if weights is None and spec.weights == "gptq":
                raise ValueError("GPTQ weight codes come from calibrating the whole network: convert with "
                                 "spikeacc.golden.network.QuantizedBlocks (hardware_network), or pass the codes")
            if weights is not None and tuple(weights.code.shape) != tuple(w.shape):
                raise ValueError(f"weight codes of shape {tuple(weights.code.shape)} for a {tuple(w.shape)} projection")
            wq = weights if weights is not None else quantize_weight(w, spec.w_bits)
            self.register_buffer("w_code", wq.code.to(torch.int8))
            self.register_buffer("w_scale", wq.scale)
            if spec.w_group:
                self.register_buffer("weight_deq", quantize_weight_pow2_groups(w, spec.w_bits, spec.w_group))
            else:
                self.register_buffer("weight_deq", wq.dequant().to(w.dtype))
        self.calibrating = False
        self.calibrating_output = False
        self._calib: list[torch.Tensor] = []
        self.out_calib = OutputCalibration()
        self.out_quant: OutputQuant | None = None
        self.record: list[HardwareResult] | None = None  # set to a list to keep every hardware call
        # Stands in for hardware_forward when set: ``executor(module, x [M, K]) -> HardwareResult``
        # (``spikeacc infer --rtl`` puts the generated tile's simulation here)
        self.executor = None
        self.register_buffer("static_lo", torch.tensor(0.0))
        self.register_buffer("static_hi", torch.tensor(0.0))
        self.salient_count = 0
        self.zero_count = 0
        self.element_count = 0

    @property
    def activations_quantized(self) -> bool:
        return self.spec.method != "fp" and self.spec.a_bits is not None

    @property
    def needs_output_calibration(self) -> bool:
        return "output" in calibration_stages(self.spec)

    def quantize_input(self, x: torch.Tensor) -> ActQuant:
        """The activation contract (mantissa, shift, step) for input ``x`` [..., K]."""
        static = (self.static_lo, self.static_hi) if self.spec.mode == "static" else None
        return self.spec.quantize_activations(x, static_range=static, min_exponent=self.min_exponent)

    @property
    def min_exponent(self) -> int | None:
        """The largest step the tile's thresholds reach, as an exponent of 2^(−1/R): R·(q0 − H); None before calibration."""
        ref = self.out_quant.reference_exponent if self.out_quant is not None else None
        return None if ref is None else ref - (self.spec.step_grid or 1) * self.spec.exponent_headroom

    def finish_calibration(self) -> None:
        """Static range = mean over calibration tokens of each token's non-salient min and max."""
        if not self._calib:
            raise RuntimeError("static mode needs calibration data before use")
        stats = torch.cat(self._calib)
        self.static_lo.fill_(float(stats[:, 0].mean()))
        self.static_hi.fill_(float(stats[:, 1].mean()))
        self._calib.clear()
        self.calibrating = False

    def finish_output_calibration(self) -> None:
        """Fix Δ, z_y (and j0 for power-of-two inputs) from the recorded output ranges."""
        spec = self.spec
        self.out_quant = OutputQuant.calibrated(self.out_calib, spec.out_policy, spec.out_bits, spec.frac_bits,
                                                clip=spec.out_clip, grid=spec.step_grid,
                                                floor=spec.out_floor, margin=spec.out_margin)
        self.calibrating_output = False

    @property
    def calibration_stages(self) -> list[str]:
        """The calibration stages this projection needs, in order (see :data:`CALIBRATION_STAGES`)."""
        return calibration_stages(self.spec)

    def release_float_weights(self) -> None:
        """Drop the float copy of the weights once calibrated: the hardware path reads only the codes.

        A calibrated hardware-faithful projection computes from ``w_code``
        (1 byte a weight) and its thresholds; the float64 ``weight_deq`` (8
        bytes a weight) served calibration only. Kept resident, Llama-2-7B's
        224 projections are 6.5 GB of codes instead of 52 GB of floats.
        """
        if self.spec.hardware_faithful and not (self.calibrating or self.calibrating_output) \
                and (self.out_quant is not None or not self.needs_output_calibration):
            self.weight_deq = None

    def start_calibration(self, stage: str) -> None:
        if stage == "input":
            self.calibrating = True
        else:
            self.calibrating_output = True

    def finish_calibration_stage(self, stage: str) -> None:
        (self.finish_calibration if stage == "input" else self.finish_output_calibration)()

    @torch.no_grad()
    def calibrate_on(self, batches) -> None:
        """Calibrate this projection alone on its own calibration inputs (each [.., K])."""
        batches = list(batches)
        for stage in self.calibration_stages:
            self.start_calibration(stage)
            for x in batches:
                self(x)
            self.finish_calibration_stage(stage)

    def _count(self, aq: ActQuant) -> None:
        self.salient_count += int(aq.salient.sum())
        self.zero_count += int((aq.mantissa == 0).sum())
        self.element_count += aq.mantissa.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            flat = x.reshape(-1, self.in_features)
            sal = mad_salient(flat, self.spec.kappa)
            lo = torch.where(sal, torch.full_like(flat, float("inf")), flat).amin(-1).clamp(max=0)
            hi = torch.where(sal, torch.full_like(flat, float("-inf")), flat).amax(-1).clamp(min=0)
            self._calib.append(torch.stack([lo, hi], dim=1))
        elif self.spec.hardware_faithful and not self.calibrating_output:
            flat = x.reshape(-1, self.in_features)
            hw = self.executor(self, flat) if self.executor is not None else self.hardware_forward(flat)
            return hw.output().reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        elif self.activations_quantized:
            aq = self.quantize_input(x)
            if not self.calibrating_output:
                self._count(aq)
            x = aq.dequant().to(x.dtype)
            if self.calibrating_output:
                y = nn.functional.linear(x, self.weight_deq, self.bias)
                self.out_calib.add(y.detach(), aq.exponent)
                return y
        return nn.functional.linear(x, self.weight_deq, self.bias)

    def _accumulate(self, value: torch.Tensor) -> torch.Tensor:
        """Exact ``acc = v @ wᵀ`` in int64 (a float64 matmul where every sum is below 2^53)."""
        w = self.w_code   # int8: |code| ≤ 2^b_w − 1, so abs() cannot overflow and double() is exact
        bound = int(value.abs().sum(dim=1).max()) * int(w.abs().max()) if value.numel() else 0
        if bound < 2**53:
            return torch.round(value.double() @ w.double().T).to(torch.int64)
        return value @ w.to(torch.int64).T

    def hardware_forward(self, x: torch.Tensor) -> HardwareResult:
        """What the tile computes for tokens ``x`` [M, K]: codes, thresholds and spike counts (SPEC §3).

        Vectorized torch integer arithmetic: ``n = clamp(floor(V/Θ), 0, 2^b_out − 1)`` with
        ``V = ⌊2^F·acc/2^s⌋ + Φ``, the same formula as :func:`~spikeacc.golden.integer.fire_count`.
        """
        spec = self.spec
        if not spec.hardware_faithful:
            raise ValueError("hardware_forward needs a spec with out_bits (the tile's output width)")
        if self.out_quant is None:
            if self.needs_output_calibration:
                raise ValueError("the output quantizer is not calibrated: run calibrate() on calibration "
                                 "tokens first")
            self.out_quant = OutputQuant.calibrated(self.out_calib, spec.out_policy, spec.out_bits,
                                                    spec.frac_bits)
        aq = self.quantize_input(x)
        self._count(aq)
        acc = self._accumulate(aq.value)
        x_step = aq.step.double()
        y = acc.double() * self.w_scale.double()[None, :] * x_step
        out_step, out_zero = self.out_quant.steps_for(y)
        held = self.out_quant.thresholds(self.w_scale, x_step, out_step, out_zero, aq.exponent, tokens=acc.shape[0])
        theta, phi, scale_shift = held.per_token()
        counts = fire_counts_torch(acc, theta, phi, spec.frac_bits, spec.out_bits, scale_shift)
        result = HardwareResult(aq, acc, held, counts, out_step.expand(1, -1) if out_step.dim() == 1
                                else out_step, out_zero.expand(1, -1) if out_zero.dim() == 1 else out_zero)
        if self.record is not None:
            self.record.append(result)
        return result

    def integer_forward(self, x: torch.Tensor) -> tuple[ActQuant, np.ndarray]:
        """Exact integer accumulators [M, N] for tokens ``x`` [M, K], as the hardware computes them."""
        if not self.activations_quantized:
            raise ValueError("the integer path needs quantized weights and activations")
        if self.spec.w_group:
            raise ValueError("power-of-two group weights are a float-path experiment; the hardware "
                             "contract uses per-channel weights (set w_group=None)")
        aq = self.quantize_input(x.reshape(-1, self.in_features))
        acc = accumulate(self.w_code.numpy(), aq.mantissa.numpy(), aq.shift.numpy())
        return aq, acc

    @property
    def salient_ratio(self) -> float:
        return self.salient_count / self.element_count if self.element_count else 0.0

    @property
    def zero_ratio(self) -> float:
        return self.zero_count / self.element_count if self.element_count else 0.0
