"""The tile's output quantizer: calibrated output ranges and the fixed-point Θ/Φ of SPEC §3.

The tile never emits a float. Each neuron i fires
``n_i = clamp(floor((2^F·acc_i + Φ_i)/Θ_i), 0, 2^b_out − 1)`` and the float parts
of the network see ``ŷ_i = Δ_i·(n_i − z_y,i)``. This module owns the two things
that define that quantizer:

* where ``Δ`` and ``z_y`` come from (:data:`OUT_POLICIES`, :class:`OutputCalibration`);
* :func:`threshold_pair`, the one function that turns steps into Θ and Φ. The
  golden model's hardware-faithful path, the vector export, the random vectors
  and the benchmarks all call it, so the numbers the perplexity measures are
  the numbers the RTL is checked against.

Output policies (SPEC §3, "Realizable output steps"):

``channel``
    one static ``(Δ_i, z_y,i)`` per output neuron, calibrated offline. Θ_i and
    Φ_i are per neuron anyway, so this costs the hardware nothing. The default.
``tensor``
    one static ``(Δ, z_y)`` per projection (mean of the calibration tokens'
    per-token min and max), for comparison.
``oracle``
    ``(Δ, z_y)`` from the min/max of the very output being computed. No single
    pass can know it before the neuron fires: an upper bound, always labelled.

Input steps: with per-token (dynamic) activation steps ``s_x(t)`` the ratio
``Δ_i/(s_i·s_x(t))`` changes per token. With power-of-two steps
``s_x(t) = 2^−j_t`` (:func:`pow2_steps`) the threshold is a shift of a per-neuron
constant, ``Θ_i(t) = Θ_i·2^(j_t − j_0)``, computed here exactly as a shifter
would (left shift, or arithmetic right shift below ``j_0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikeacc.config import check_out_bits, code_max
from spikeacc.golden.steps import asym_params, pow2_steps

__all__ = ["OUT_POLICIES", "OutputCalibration", "OutputQuant", "TokenThresholds", "threshold_pair", "pow2_steps",
           "fire_counts_torch"]

OUT_POLICIES = ("channel", "tensor", "oracle")
RANKS_KEPT = 8  # extreme values per channel kept during calibration (for clipped ranges)


def check_policy(policy) -> str:
    if policy not in OUT_POLICIES:
        raise ValueError(f"output policy must be one of {list(OUT_POLICIES)}, got {policy!r}")
    return policy


def threshold_pair(ratio: torch.Tensor, zero: torch.Tensor, frac_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``Θ = round(2^F·r)``, ``Φ = round(2^F·(z_y + ½)·r)`` with ``r = Δ/(s_i·s_x)`` (SPEC §3), int64.

    ``ratio`` and ``zero`` broadcast against each other; everything is float64
    until the final rounding so numpy and torch callers agree bit for bit.
    """
    ratio = torch.as_tensor(ratio, dtype=torch.float64)
    zero = torch.as_tensor(zero, dtype=torch.float64)
    scaled = ratio * float(2 ** frac_bits)
    theta = torch.round(scaled).to(torch.int64)
    phi = torch.round((zero + 0.5) * scaled).to(torch.int64)
    if (theta < 1).any():
        raise ValueError(f"F = {frac_bits} fraction bits are too few to represent threshold Θ "
                         f"(Δ/(s_w·s_x) down to {float(ratio.min()):.3g}): raise frac_bits")
    return theta, phi


@dataclass(frozen=True)
class TokenThresholds:
    """The thresholds a tile holds and the exponents that pick them: constants [R, N], exponent d [M].

    Token t fires against row ``d_t mod R`` with the scale shift ``s_t = ⌊d_t/R⌋``
    (:func:`spikeacc.golden.integer.fire_potential`). The tile's realizable
    policies keep R = the input-step grid (1 for static steps); an arbitrary
    per-token step or the oracle has one row per token (R = M, d_t = t, s = 0):
    a golden-only evaluation, which no tile reads.
    """

    theta: torch.Tensor     # int64 [R, N]
    phi: torch.Tensor       # int64 [R, N]
    exponent: torch.Tensor  # int64 [M]

    @property
    def rows(self) -> int:
        return self.theta.shape[0]

    def per_token(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Θ [M, N], Φ [M, N], s [M, 1])``."""
        row = self.exponent % self.rows
        return self.theta[row], self.phi[row], torch.div(self.exponent, self.rows, rounding_mode="floor")[:, None]


def fire_counts_torch(acc: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor, frac_bits: int,
                      out_bits: int, scale_shift=0) -> torch.Tensor:
    """Torch twin of :func:`spikeacc.golden.integer.fire_count` (int64, floor division)."""
    s = torch.as_tensor(scale_shift, dtype=torch.int64)
    potential = ((acc << torch.clamp(frac_bits - s, min=0)) >> torch.clamp(s - frac_bits, min=0)) + phi
    return torch.clamp(torch.div(potential, theta, rounding_mode="floor"), 0, code_max(out_bits))


@dataclass
class OutputCalibration:
    """Running statistics of one projection's float outputs over calibration tokens.

    Keeps, per output channel, the ``RANKS_KEPT`` largest and smallest values
    (so a clipped range can drop the few most extreme tokens), the sum of
    per-token minima and maxima (for the per-tensor range) and, for power-of-two
    input steps, the smallest exponent ``j`` seen.
    """

    top: torch.Tensor | None = None      # [R, N] largest values, descending
    bottom: torch.Tensor | None = None   # [R, N] smallest values, ascending
    token_lo: float = 0.0
    token_hi: float = 0.0
    tokens: int = 0
    j_min: int | None = None

    def add(self, y: torch.Tensor, j: torch.Tensor | None = None) -> None:
        y = y.reshape(-1, y.shape[-1]).double()
        r = min(RANKS_KEPT, y.shape[0])
        top = torch.topk(y, r, dim=0).values
        bottom = -torch.topk(-y, r, dim=0).values
        if self.top is not None:
            top = torch.topk(torch.cat([self.top, top]), min(RANKS_KEPT, self.top.shape[0] + r), dim=0).values
            bottom = -torch.topk(-torch.cat([self.bottom, bottom]), top.shape[0], dim=0).values
        self.top, self.bottom = top, bottom
        self.token_lo += float(y.amin(dim=1).sum())
        self.token_hi += float(y.amax(dim=1).sum())
        self.tokens += y.shape[0]
        if j is not None and j.numel():
            low = int(j.min())
            self.j_min = low if self.j_min is None else min(self.j_min, low)

    def output_range(self, policy: str, clip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lo, hi)``: per channel [N] (``clip`` drops that many extreme tokens per side) or per tensor []."""
        if not self.tokens:
            raise ValueError("the output range needs calibration tokens: run calibration first")
        if policy == "tensor":
            return (torch.tensor(self.token_lo / self.tokens, dtype=torch.float64),
                    torch.tensor(self.token_hi / self.tokens, dtype=torch.float64))
        if policy != "channel":
            raise ValueError(f"no calibrated range for output policy {policy!r}")
        rank = min(clip, self.top.shape[0] - 1)
        return self.bottom[rank], self.top[rank]


@dataclass(frozen=True)
class OutputQuant:
    """A projection's output quantizer, ready for the hardware: steps, zero points, Θ/Φ rule.

    ``step`` and ``zero`` are [N] (channel), [] (tensor) or [M, 1] (oracle,
    computed per call). ``j0`` is the reference exponent of power-of-two input
    steps (``None`` otherwise).
    """

    policy: str
    out_bits: int
    frac_bits: int
    step: torch.Tensor | None
    zero: torch.Tensor | None
    j0: int | None = None
    grid: int | None = None

    @classmethod
    def calibrated(cls, calib: OutputCalibration, policy: str, out_bits: int, frac_bits: int,
                   clip: int = 0, grid: int | None = None, floor: float | None = None,
                   margin: float = 0.0) -> "OutputQuant":
        """The quantizer of a calibrated range, widened by ``margin`` of its span on each side.

        A token beyond the calibrated range saturates at code 0 or 2^b_out − 1;
        a little headroom costs a slightly coarser step and saves those tokens
        (measured: docs/measurements.md, "Near-FP weights").
        """
        check_policy(policy)
        check_out_bits(out_bits)
        step = zero = None
        if policy != "oracle":
            lo, hi = calib.output_range(policy, clip)
            lo, hi = lo - margin * (hi - lo), hi + margin * (hi - lo)
            if floor is not None:
                lo = torch.clamp(lo, min=floor)
            if lo.dim():  # a channel that never left 0 gets the median channel's span (any step fits it)
                span = hi.clamp(min=0) - lo.clamp(max=0)
                dead = span <= 0
                if dead.any() and not dead.all():
                    hi = torch.where(dead, span[~dead].median(), hi)
            step, zero = asym_params(lo, hi, out_bits)
        j0 = calib.j_min if grid else None
        if grid and j0 is None:
            raise ValueError("power-of-two input steps need calibration tokens to fix the reference shift j0")
        return cls(policy, out_bits, frac_bits, step, zero, j0, grid)

    def steps_for(self, acc_float: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Δ, z_y) broadcastable to [M, N]; the oracle takes them from the output itself."""
        if self.policy == "oracle":
            return asym_params(acc_float.amin(dim=1, keepdim=True), acc_float.amax(dim=1, keepdim=True),
                               self.out_bits)
        return self.step.double(), self.zero.double()

    @property
    def reference_exponent(self) -> int | None:
        """R·⌊j0/R⌋: the grid exponent of the first threshold constant (None without power-of-two inputs)."""
        return None if self.j0 is None else (self.j0 // (self.grid or 1)) * (self.grid or 1)

    def thresholds(self, w_scale: torch.Tensor, x_step: torch.Tensor, out_step: torch.Tensor,
                   out_zero: torch.Tensor, j: torch.Tensor | None = None, tokens: int = 1) -> TokenThresholds:
        """The constants and per-token exponents for input steps ``x_step`` ([M, 1] or []) and weight scales [N].

        With power-of-two inputs on the grid ``2^(−j/R)`` the R per-neuron
        constants are computed at ``s_x = 2^(−(R·q0 + r)/R)``, ``q0 = ⌊j0/R⌋``,
        and token t's exponent is ``d = j_t − R·q0``: row ``d mod R`` = ``j_t mod R``,
        scale shift ``⌊d/R⌋`` = ``⌊j_t/R⌋ − q0``. A step per tensor (static) gives
        one row; any other per-token step, one row per token.
        """
        w_scale = w_scale.double()[None, :]
        out_step = torch.as_tensor(out_step, dtype=torch.float64)
        out_zero = torch.as_tensor(out_zero, dtype=torch.float64)
        if self.j0 is not None and j is not None:
            grid = self.grid or 1
            exps = torch.arange(grid, dtype=torch.float64) + self.reference_exponent   # j of each constant
            base = out_step / (w_scale * torch.pow(2.0, -exps / grid)[:, None])       # [R, N]
            theta, phi = threshold_pair(base, out_zero, self.frac_bits)               # both [R, N]
            return TokenThresholds(theta, phi, j.reshape(-1) - self.reference_exponent)
        ratio = out_step / (w_scale * torch.as_tensor(x_step, dtype=torch.float64))
        theta, phi = threshold_pair(ratio, out_zero, self.frac_bits)
        theta, phi = torch.broadcast_tensors(theta, phi)
        if theta.shape[0] == 1:          # one step for every token: one row of constants
            return TokenThresholds(theta, phi, torch.zeros(tokens, dtype=torch.int64))
        return TokenThresholds(theta, phi, torch.arange(theta.shape[0], dtype=torch.int64))
