"""The spiking PE: one integrate-and-fire neuron, spikes in, a count out (SpikeQuant and Kirin)."""

from __future__ import annotations

from spikeacc.config import SpikeConfig
from spikeacc.hw.datasheet import PE_RESET, contract
from spikeacc.hw.registry import Datasheet, Design, register

FIRING_PROTOCOL = {
    "division": ("`firing = division`: the count is found by restoring division, one bit per cycle; it is final "
                 "at most {fire_cycles} cycles after `fire` (2 when it saturates), and `done` strobes the "
                 "cycle after; `spike_out` strobes with `done` when the count is nonzero."),
    "serial": ("`firing = serial`: the neuron fires while V ≥ Θ, subtracting Θ, one spike per cycle on "
               "`spike_out`, at most 2^b_out − 1 times; `done` strobes n + 1 cycles after `fire` for n spikes."),
    "silence": ("`firing = silence` (Kirin): an output window of steps k = 1..{steps}, one per cycle after `fire`; "
                "the threshold falls as (2^b_out − k)·Θ and the neuron fires once, at the first k with V ≥ θ_k: "
                "`spike_out` strobes in that cycle, `fire_step` = k and `count` = 2^b_out − k (a neuron that "
                "stays silent: both 0). `done` strobes {fire_cycles} cycles after `fire`, always."),
}


def _build(cfg: SpikeConfig):
    from spikeacc.hw.pe import SpikingPE
    return SpikingPE(cfg)


def _facts(cfg: SpikeConfig, component) -> dict:
    protocol = [
        "Assert `start` for one cycle with `theta`, `phi` and `scale_shift` valid: current ← 0, membrane ← 0, "
        "Θ, Φ and s latched.",
        f"For each time step t = 1..{cfg.window - 1}, present the spikes of the inputs with |mantissa| = "
        f"T − t (T = {cfg.window}), up to {cfg.lanes} per cycle on `spikes`, with `step` high on the last "
        "cycle of the step (a step with no spike still takes one cycle with `step` high).",
        "Assert `fire` for one cycle (no spikes, no step): `count` becomes clamp(floor(V/Θ), 0, "
        "2^b_out − 1) for the potential V = floor(2^F·Σ/2^s) + Φ. `fire` may coincide with the next `start`.",
        FIRING_PROTOCOL[cfg.firing].format(fire_cycles=cfg.fire_cycles, steps=cfg.max_count),
        "`count` is valid from `done` until the next `fire`.",
    ]
    if cfg.kirin:
        protocol.insert(2, (
            f"Kirin integer outliers (|q| in {cfg.spike_max + 1}..{cfg.outlier_max}, shift e): in the cycles of "
            f"step {cfg.window - 1}, after its spikes and before `step`, present one spike per set bit j of |q| "
            f"(j = 0..{cfg.outlier_planes - 1}) with shift e + j and the sign of q: the PE adds w·q·2^e once."))
    return {"protocol": protocol, "reset": PE_RESET,
            "contract": contract(cfg, ("shift", "weight", "theta", "phi", "scale_shift"), checked=False)}


def _example(cfg: SpikeConfig) -> dict:
    return {"spikes": [{"valid": 1, "negative": j % 2, "shift": min(1, cfg.shift_max), "weight": j - 2}
                       for j in range(cfg.lanes)]}


SPIKING_PE = register(Design(
    name="pe", label="spiking PE", kind="pe", arithmetic="spiking", build=_build,
    datasheet=Datasheet(facts=_facts, example=_example)))
