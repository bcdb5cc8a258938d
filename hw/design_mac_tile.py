"""The MAC tiles: the spiking tile's buffers and handshake around P multiply-accumulate PEs.

Two baselines: the dense MAC reads and multiplies every weight; the
zero-skipping MAC skips the weight read and holds its multiplier for a zero
activation. Reports compare the spiking tile with the stronger of the two.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikeacc.config import SpikeConfig
from spikeacc.hw.registry import Datasheet, Design, EnergyRoles, register

TIMING_MEANING = {
    "cycles_per_token": "from the cycle after `start` to the cycle before `done`, as `cycles` reports",
    "output_delay": "from the cycle after a block's last `act__en` to its `out__en`: the shared "
                    "requantizer takes one output per cycle",
    "write_delay": "from the cycle with `act__en` high for a block's last word to that block's `out__en`",
}

ENERGY = EnergyRoles(
    modules=(("mac", "PE arithmetic"), ("requant", "PE arithmetic"), ("output_delay", "control"),
             ("top", "control")),
    module_nets={"requant": "requantizer", "output_delay": "control"},
    nets=(("MAC multipliers", r"^(product|scaled)\d+$"),
          ("accumulators", r"^acc$"),
          ("requantizer", r"^(requant_|held|params|stage_)"),
          ("control", r"^(act__|weight__\d+__|thresh__|out__)(addr|data|en)$"),
          ("control", r"^(blk|block|busy|clear|control_state|counts|cycles|done|drain|end_of_block|error|exponent|"
                      r"inputs|lanes|last|nonzero\d+|s1_word|scale_shift|start|sums|threshold_row|thresholds|token|"
                      r"word|write|written_block)$")),
    datapath=("MAC multipliers", "accumulators", "requantizer"),
    multiplier=r"^(product|scaled)\d+$",
    first_pe="mac0",
    ops_per_read=("multiply", "accumulate_add"),
    events={("PE arithmetic", "clock"): ("pe_cycles",),
            ("PE arithmetic", "rest"): ("all_inputs", "neurons"),
            ("control", "all"): ("cycles",)})

SKIPPING_ENERGY = dataclasses.replace(ENERGY, events={
    ("PE arithmetic", "clock"): ("pe_cycles",),
    ("PE arithmetic", "rest"): ("nonzero_inputs", "zero_inputs", "neurons"),
    ("control", "all"): ("cycles",)})


def _check(cfg: SpikeConfig) -> None:
    from spikeacc.hw.mac import requant_groups
    requant_groups(cfg)      # K/L >= 4 words per block, or one line saying to use fewer lanes


def _builder(skip_zeros: bool):
    def build(cfg: SpikeConfig):
        from spikeacc.hw.mac import MacTile
        return MacTile(cfg, skip_zeros=skip_zeros)
    return build


def _cycles(skip_zeros: bool):
    def cycles(cfg: SpikeConfig, mant) -> tuple[list[int], int]:
        """Every token the same: the MAC streams every word, zeros included."""
        from spikeacc.hw.mac import mac_cycles
        tokens = np.atleast_2d(mant).shape[0]
        return [mac_cycles(cfg, skip_zeros=skip_zeros)] * tokens, tokens * cfg.blocks * cfg.k_words
    return cycles


def _facts(skip_zeros: bool):
    def facts(cfg: SpikeConfig, component) -> dict:
        from spikeacc.hw.mac import mac_output_delay
        cycles = component.timing()["cycles_per_token"]
        delay = mac_output_delay(cfg, skip_zeros=skip_zeros)
        diagram = "\n".join([
        "clk        _|‾|_|‾|_|‾|_|‾|_|‾|_ ... _|‾|_|‾|_|‾|_|‾|_",
        "start      _/‾‾‾\\_________________ ... ______________",
        "busy       _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾ ... ‾‾‾‾‾‾‾‾‾\\______",
        "act__en    _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾ ... ‾‾‾\\____________   (K/L words per block, every block)",
        "thresh__en _______________/‾‾‾\\__ ... ______________   (with the last word of each block)",
        f"out__en    ____________________ .../‾‾‾\\___________   "
        f"({delay + 1} cycles after the act__en of each block's last word)",
        "done       ____________________ ... _________/‾‾‾\\_",
        ])
        schedule = [
            f"Each block streams the token's K/L = {cfg.k_words} activation words in order, one `act__en` per cycle, "
            "with no gap between blocks: the words are read N/P times per token.",
            ("The weights of input k are read on every lane with `weight__j__en` a cycle after its activation word, "
             "only for a nonzero mantissa" if skip_zeros else
             "The weights of input k are read on every lane in the same cycle as its activation word, zeros included")
            + "; `thresh__en` is high " + ("the cycle after the block's last activation word." if skip_zeros
                                          else "in the cycle of the block's last activation word."),
        ]
        return {"schedule": schedule, "timing": {"cycles_formula": f"cycles = (N/P)·(K/L) + {component.output_delay + 2} = {cycles}",
                           "cycles_exact": cycles,
                           "scope": "for every token: the MAC streams every word whatever its value"},
                "diagram": diagram}
    return facts


def _timing(component) -> dict:
    values = dict(component.timing())
    values["write_delay"] = values["output_delay"] + 1
    return values


def _datasheet(skip_zeros: bool, weight_reads: str) -> Datasheet:
    return Datasheet(facts=_facts(skip_zeros), timing_meaning=TIMING_MEANING, timing=_timing,
                     weight_reads=weight_reads,
                     threshold_reads="one word per block and token, with the block's last weights",
                     activation_reads=("every word once per output block: the token's {words} words are read "
                                       "{blocks} times (N/P), in order, block after block; a FIFO source must "
                                       "replay them for every block"),
                     activation_words_read=lambda cfg: cfg.blocks * cfg.k_words)


DENSE_MAC = register(Design(
    name="mac", label="MAC", kind="tile", arithmetic="mac", build=_builder(False), check=_check,
    cycles=_cycles(False), energy=ENERGY,
    datasheet=_datasheet(False, "every word is read for every block, zeros included")))

ZERO_SKIPPING_MAC = register(Design(
    name="mac_skip", label="zero-skipping MAC", kind="tile", arithmetic="mac", build=_builder(True), check=_check,
    skip_zeros=True, cycles=_cycles(True), energy=SKIPPING_ENERGY, in_main_job=False,
    datasheet=_datasheet(True, "read only for inputs whose mantissa is nonzero, once per block, a cycle after "
                               "their activation word")))
