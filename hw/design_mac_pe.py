"""The MAC PE: one multiply-accumulate neuron with its requantizer, the spiking PE's baseline."""

from __future__ import annotations

from spikeacc.config import SpikeConfig
from spikeacc.hw.datasheet import PE_RESET, contract
from spikeacc.hw.registry import Datasheet, Design, register


def _build(cfg: SpikeConfig):
    from spikeacc.hw.mac import MacPE
    return MacPE(cfg)


def _facts(cfg: SpikeConfig, component) -> dict:
    protocol = [
        f"Each cycle, present up to {cfg.lanes} (weight, mantissa, shift) triples on `inputs` with `valid` set; "
        "the PE adds Σ (w·m) << e to its accumulator.",
        "Assert `clear` with the first word of a neuron: the accumulator restarts from that word, and `params` "
        "(Θ, Φ) and `scale_shift` s are sampled.",
        "Assert `requant` with the last word: `count` = clamp(floor(y/Θ), 0, 2^b_out − 1) with "
        "y = floor(2^F·acc/2^s) + Φ, computed by restoring division, is valid from the third cycle after it, "
        "while the next neuron accumulates.",
    ]
    return {"protocol": protocol, "reset": PE_RESET,
            "contract": contract(cfg, ("mantissa", "shift", "weight", "theta", "phi", "scale_shift"), checked=False)}


def _example(cfg: SpikeConfig) -> dict:
    return {"inputs": [{"valid": 1, "mantissa": -3 + j, "shift": min(j, cfg.shift_max), "weight": j + 1}
                       for j in range(cfg.lanes)]}


MAC_PE = register(Design(
    name="mac_pe", label="MAC PE", kind="pe", arithmetic="mac", build=_build,
    datasheet=Datasheet(facts=_facts, example=_example)))
