"""Quantization steps shared by the activation and the output quantizers (SPEC §2, §3).

Both quantizers need the step and zero point of an asymmetric range, and the
rounding of a step up to the grid ``2^(−j/R)`` that makes a threshold a shift.
"""

from __future__ import annotations

import torch

from spikeacc.config import code_max

__all__ = ["asym_params", "pow2_steps"]


def asym_params(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step and zero point of a b-bit asymmetric range that always includes 0."""
    lo = lo.clamp(max=0)
    hi = hi.clamp(min=0)
    step = ((hi - lo) / code_max(bits)).clamp(min=1e-8)
    return step, torch.round(-lo / step)


def pow2_steps(step: torch.Tensor, grid: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Round steps up to the grid ``2^(−j/R)`` (so the range is still covered); returns (step, j).

    R = 1 gives powers of two. With R > 1 the neuron holds R threshold
    constants (one per ``j mod R``) and shifts the chosen one by ``⌊j/R⌋``.
    """
    j = -torch.ceil(torch.log2(step.double()) * grid - 1e-9)
    return torch.pow(2.0, -j / grid).to(step.dtype), j.to(torch.int64)
