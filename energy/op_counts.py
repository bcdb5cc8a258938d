"""Energy model: one table of per-operation energies, and the operation counts of each design.

Constants are Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, 45 nm, 0.9 V:

=====================  ========  ==============================================
operation              energy    scaling used here
=====================  ========  ==============================================
32-bit integer add     0.1 pJ    ∝ width (ripple/carry chain length)
32-bit integer mult    3.1 pJ    ∝ product of operand widths (array multiplier)
fp32 add / mult        0.9/3.7   (for reference; nothing here is floating point)
8 KB SRAM, 64-bit read 10 pJ     ∝ bits read (per-bit 0.156 pJ)
=====================  ========  ==============================================

Per-toggle energies for the activity model divide an operation's energy by the
bits of its result: an adder output bit toggle costs 0.1/32 pJ; a multiplier
output bit toggle costs 3.1/32 pJ scaled by (√(n·m)/32) for n×m-bit operands;
registers and control nets are charged like adder bits. These are first-order
estimates for comparing two designs in one technology, not sign-off numbers.
"""

from __future__ import annotations

import math

import numpy as np

from spikeacc.hw.registry import MAC_ARITHMETIC
from spikeacc.config import SpikeConfig

__all__ = ["ENERGY_PJ", "add_pj", "mult_pj", "sram_read_pj", "toggle_pj", "op_counts", "op_energy", "PAPER_RATIO"]

ENERGY_PJ = {"add32": 0.1, "mult32": 3.1, "fadd32": 0.9, "fmult32": 3.7, "sram64_read_8kB": 10.0}
PAPER_RATIO = 4.6  # SpikeQuant's "up to 4.6x lower energy" (op-count estimate)


def add_pj(bits: int) -> float:
    return ENERGY_PJ["add32"] * bits / 32


def mult_pj(n_bits: int, m_bits: int) -> float:
    return ENERGY_PJ["mult32"] * (n_bits * m_bits) / (32 * 32)


def sram_read_pj(bits: int) -> float:
    return ENERGY_PJ["sram64_read_8kB"] * bits / 64


def toggle_pj(kind: str, operand_bits: tuple[int, int] | None = None) -> float:
    """Energy of one output-bit toggle of a signal of this kind."""
    if kind == "multiplier":
        n, m = operand_bits
        return ENERGY_PJ["mult32"] / 32 * math.sqrt(n * m) / 32
    return ENERGY_PJ["add32"] / 32


def op_counts(cfg: SpikeConfig, mant: np.ndarray, counts: np.ndarray) -> dict[str, dict[str, int]]:
    """Operations each design performs on these tokens (golden model side).

    Spiking: one current add per nonzero input per neuron, T membrane adds per
    neuron, n + 1 threshold compare-subtracts per neuron that fires n spikes,
    one weight read per nonzero input per neuron. MAC: one multiply and one add
    per input per neuron (zeros included), one requant add and b_out
    compare-subtracts (its restoring division) per neuron, one weight read per
    input per neuron.
    """
    m, k = mant.shape
    n = cfg.out_features
    nonzero = int((mant != 0).sum())
    return {
        "spiking": {"current_add": nonzero * n, "membrane_add": m * n * cfg.window,
                    "fire_subtract": int(counts.sum()) + m * n, "weight_read": nonzero * n},
        MAC_ARITHMETIC: {"multiply": m * k * n, "accumulate_add": m * k * n, "requant_add": m * n,
                "requant_subtract": m * n * cfg.out_bits, "weight_read": m * k * n},
    }


def op_energy(cfg: SpikeConfig, ops: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    """pJ per operation class, from the table above and the configuration's widths."""
    w = cfg.weight_bits
    per_op = {
        "spiking": {"current_add": add_pj(cfg.current_bits), "membrane_add": add_pj(cfg.acc_bits),
                    "fire_subtract": add_pj(cfg.membrane_bits), "weight_read": sram_read_pj(w)},
        MAC_ARITHMETIC: {"multiply": mult_pj(w, cfg.mantissa_bits), "accumulate_add": add_pj(cfg.acc_bits),
                "requant_add": add_pj(cfg.membrane_bits),
                "requant_subtract": add_pj(cfg.theta_bits + cfg.out_bits),
                "weight_read": sram_read_pj(w)},
    }
    return {d: {op: count * per_op[d][op] for op, count in ops[d].items()} for d in ops}
