"""A design's gate-level energy per token-layer, typed: by kind, by role, and its modelled memories.

Measured runs (:mod:`spikeacc.energy.power`) and the figures the project
recorded (:mod:`spikeacc.energy.recorded`) read the same way, so the totals
the report, the break-even model and the ratios use are computed here once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["EnergyBreakdown", "GatePower", "total_pj"]


@dataclass(frozen=True)
class EnergyBreakdown:
    """pJ per token-layer of one design: logic by kind (``by_class_pj``: clock, registers, combinational,
    the tile's own memories, leakage) and by role, then the weight and threshold memory, modelled apart."""

    cycles: int                            # of the whole run (all tokens)
    by_class_pj: dict[str, float]
    by_role_pj: dict[str, float]
    by_role_class_pj: dict[str, dict[str, float]]
    logic_pj: float
    logic_without_clock_pj: float
    weight_reads: int
    weight_memory_pj: float
    threshold_memory_pj: float

    @property
    def memory_pj(self) -> float:
        """The modelled SRAM reads: weights and threshold constants."""
        return self.weight_memory_pj + self.threshold_memory_pj

    @property
    def total_pj(self) -> float:
        """Logic with clock, plus the modelled weight and threshold memory: the figure ratios are taken of."""
        return self.logic_pj + self.memory_pj

    def role_pj(self, role: str, clock: bool = True) -> float:
        split = self.by_role_class_pj.get(role, {})
        return sum(v for c, v in split.items() if clock or c != "clock")

    @classmethod
    def from_dict(cls, d: dict) -> "EnergyBreakdown":
        """The breakdown of a ``power.json`` design entry or a recorded one (extra keys ignored)."""
        return cls(**{f.name: d.get(f.name, 0.0) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GatePower(EnergyBreakdown):
    """A measured run's breakdown with its netlist's facts and files."""

    cells: dict[str, int]
    flip_flops: int
    enable_flip_flops: int
    memories: str                          # the tile's own memories: "sram" macros or "flops"
    area_um2: float
    by_module_pj: dict[str, float]
    by_module_class_pj: dict[str, dict[str, float]]
    threshold_reads: int
    unannotated_pins: int
    pins: int
    saif: str
    netlist: str
    seconds: float


def total_pj(d: dict | EnergyBreakdown) -> float:
    """Logic plus modelled memory of a design entry, typed or as JSON."""
    return (d if isinstance(d, EnergyBreakdown) else EnergyBreakdown.from_dict(d)).total_pj
