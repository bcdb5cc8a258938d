"""The spiking tile: TTFS encoder, event queues and P integrate-and-fire PEs behind buffer ports."""

from __future__ import annotations

import numpy as np

from spikeacc.config import SpikeConfig
from spikeacc.hw.registry import Datasheet, Design, EnergyRoles, register

TIMING_MEANING = {
    "pipeline": "stages from the sequencer to the PEs (sequencer → queue read → weight read)",
    "fire_capture_delay": "from a fire to the capture of that block's counts",
    "fire_gap": "fewest cycles between two fires",
    "write_delay": ("from the fire of block b to the cycle with `out__en` high for block b. Block b < N/P − 1 "
                    "fires in the cycle with `thresh__en` high that opens block b + 1; the last block fires "
                    "max(1 + E, fire_gap) cycles after the `thresh__en` that opened it (after its E rows of "
                    "events, and never sooner than fire_gap after the fire before it), so its `out__en` comes "
                    "max(1 + E, fire_gap) + write_delay cycles after that `thresh__en`"),
    "encode_cycles": "from the cycle after `start` to the end of the encode pass (K/L reads + 2)",
    "lanes": "L (not a time)", "pes": "P (not a time)",
}

ENERGY = EnergyRoles(
    modules=(("pe", "PE arithmetic"), ("queues", "encoder/queues"), ("sequencer", "control"),
             ("capture", "control"), ("top", "control")),
    module_nets={"queues": "encoder/queues", "sequencer": "control", "capture": "control"},
    nets=(("spike/current adders", r"^(shifted|synapse)\d+$|^current"),
          ("membrane adders", r"^membrane$"),
          ("threshold/fire", r"^(fire_potential|fire_theta|count|spike_out|can_fire|theta_latched|busy|done|phi|theta)$"),
          ("encoder/queues", r"^(queue|queued|mag|pos|event|s2_event|k_base|act_)"),
          ("control", r"^(act__|weight__\d+__|thresh__|out__)(addr|data|en)$"),
          ("control", r"^(any_spike|base|block|capture_pending|clear|cycles|delayed|delayed_tag|error|events|"
                      r"exponent|fire|fire_\w+|fired_blk|ge|isolated|lanes|magnitude|open|outlier_count|outliers|"
                      r"pending|phi_latched|plane|potential_at_fire|reached|read|read_magnitude|read_outliers|row|"
                      r"s1_\w+|s2_\w+|scale_left|scale_right|scale_shift|scaled_membrane|spikes|start|step|strobe|"
                      r"tag|threshold_row|token|word|write)$")),
    datapath=("spike/current adders", "membrane adders", "threshold/fire"),
    first_pe="pe0",
    ops_per_read=("current_add",),
    events={("PE arithmetic", "clock"): ("pe_cycles",),
            ("PE arithmetic", "rest"): ("nonzero_inputs", "neurons"),
            ("encoder/queues", "all"): ("inputs", "event_rows"),
            ("control", "all"): ("cycles",)})


def _build(cfg: SpikeConfig):
    from spikeacc.hw.tile import SpikingTile
    return SpikingTile(cfg)


def _cycles(cfg: SpikeConfig, mant) -> tuple[list[int], int]:
    """Per token, the control FSM walked state by state (:func:`~spikeacc.hw.tile.tile_cycles`)."""
    from spikeacc.hw.tile import spike_histogram, tile_cycles
    model = [tile_cycles(cfg, *spike_histogram(cfg, row)) for row in np.atleast_2d(mant)]
    return [c["total"] for c in model], sum(c["ideal"] for c in model)


def _facts(cfg: SpikeConfig, component) -> dict:
    from spikeacc.hw.tile import SpikingTile

    gap = component.fire_gap
    timing = {
        "cycles_formula": (f"cycles = (K/L + {component.ENCODE_TAIL}) + (1 + E) + (N/P − 1)·max(1 + E, {gap}) "
                           f"+ {gap + 1 + component.PIPELINE}, "
                           "E (rows of events per block) = Σ_{t=1}^{T−1} max(1, ⌈n_t/L⌉)"
                           + (f" + {cfg.outlier_planes}·⌈n_q/L⌉" if cfg.kirin else "")
                           + ", n_t = number of inputs with |mantissa| = T − t"
                           + (f", n_q = number of integer outliers (|mantissa| > {cfg.spike_max})"
                              if cfg.kirin else "")),
        "encode_cycles": cfg.k_words + component.ENCODE_TAIL,
        "fire_gap": gap,
        "scope": ("for tokens inside the input ranges; a token that raises `error` may take a different number "
                  "of cycles" + (f" (a mantissa of −{cfg.outlier_max + 1} is no outlier to the hardware, though "
                                 f"|−{cfg.outlier_max + 1}| > {cfg.spike_max})" if cfg.kirin else "")),
    }
    diagram = "\n".join([
        "           |start| encode (K/L + 2) | block 0: open, E rows | block 1: open+fire 0 ... | last fire | drain |",
        "start      _/‾‾‾\\_____________________________________________________________________________________",
        "busy       _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾\\____",
        "act__en    _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾\\__________________________________________________________________",
        "thresh__en ________________________/‾\\____________________/‾\\_________________________________________",
        "weight__en __________________________/‾‾\\_/‾‾‾\\_‾‾\\____________/‾‾\\_/‾‾\\___________________________   "
        "(lanes carrying an event)",
        f"out__en    _______________________________________________________/‾\\_____ ... __________/‾\\______   "
        f"(block b: {SpikingTile.write_delay_for(cfg)} cycles after the thresh__en opening block b + 1; "
        f"the last block: max(1 + E, {SpikingTile.fire_gap_for(cfg)}) + {SpikingTile.write_delay_for(cfg)} "
        "cycles after the thresh__en that opened it)",
        "done       _____________________________________________________________________________________/‾\\",
    ])
    schedule = [
        f"After `start`: the encode pass reads the token's K/L = {cfg.k_words} activation words, one per cycle, "
        "then settles for 2 cycles.",
        "Block b opens with one cycle of `thresh__en` (its threshold word, row r of the token's exponent); its E "
        "rows of events follow, one per cycle. In a row's cycle `weight__j__en` is high for each lane j that "
        "carries an event: a lane without an event, or a step with no nonzero input, reads no weight.",
        f"Block b + 1 opens max(1 + E, fire_gap = {gap}) cycles after block b opened; that `thresh__en` also "
        "fires block b, whose counts are written write_delay cycles later. The last block fires max(1 + E, "
        "fire_gap) cycles after it opened.",
    ]
    return {"timing": timing, "diagram": diagram, "schedule": schedule}


SPIKING_TILE = register(Design(
    name="tile", label="spiking", kind="tile", arithmetic="spiking", build=_build, skip_zeros=True,
    cycles=_cycles, energy=ENERGY,
    datasheet=Datasheet(
        facts=_facts, timing_meaning=TIMING_MEANING,
        weight_reads=("read only for inputs whose mantissa is nonzero (a Kirin outlier: once per set bit of |q|), "
                      "once per block"),
        threshold_reads="one word per block and token, as the block opens",
        activation_reads=("each of the token's {words} words once, in the encode pass after `start`, before the "
                          "first block opens; the PEs then read the event queues, not `act`"),
        activation_words_read=lambda cfg: cfg.k_words)))
