"""cocotb bench of the spiking PE: driver, monitor and scoreboard as small classes.

Run through :func:`spikeacc.verif.runner.run_pe_regression`; the case file and
config arrive through environment variables, and the bench writes a JSON
report (cases, mismatches with their case index, cycles) next to cocotb's
results file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from spikeacc.config import SpikeConfig
from spikeacc.hw.pe import spike_event_layout
from spikeacc.verif.packing import pack_array, pack_struct
from spikeacc.verif.pe_cases import PECases, schedule, silence_steps
from spikeacc.verif.scoreboard import Scoreboard


@dataclass
class PEDriver:
    """Drives one neuron evaluation per case, back to back.

    A case's ``start`` shares its cycle with the previous case's ``fire``, so the
    overlap of integration and firing is exercised on every case.
    """

    dut: object
    cfg: SpikeConfig
    cycles: int = 0

    def _spike_word(self, case_w, events) -> int:
        layout = spike_event_layout(self.cfg)
        lanes = [pack_struct(layout, valid=1, negative=int(neg), shift=e, weight=int(case_w[k]))
                 for k, neg, e in events]
        return pack_array(self.dut_spikes_layout, lanes)

    @property
    def dut_spikes_layout(self):
        from amaranth.lib import data
        return data.ArrayLayout(spike_event_layout(self.cfg), self.cfg.lanes)

    async def run(self, cases: PECases) -> None:
        dut = self.dut
        dut.start.value = 0
        dut.step.value = 0
        dut.fire.value = 0
        dut.spikes.value = 0
        for c in range(len(cases)):
            await FallingEdge(dut.clk)
            dut.start.value = 1
            dut.theta.value = int(cases.theta[c])
            dut.phi.value = int(cases.phi[c])
            dut.scale_shift.value = int(cases.scale[c])
            dut.spikes.value = 0
            dut.step.value = 0
            self.cycles += 1
            for closes_step, events in schedule(self.cfg, cases.mant[c], cases.shift[c]):
                await FallingEdge(dut.clk)
                dut.start.value = 0
                dut.fire.value = 0
                dut.spikes.value = self._spike_word(cases.w[c], events)
                dut.step.value = int(closes_step)
                self.cycles += 1
            await FallingEdge(dut.clk)
            dut.spikes.value = 0
            dut.step.value = 0
            while int(dut.busy.value):  # the last window still fires (2^b_out can outlast a window)
                await FallingEdge(dut.clk)
                self.cycles += 1
            dut.fire.value = 1
        await FallingEdge(dut.clk)
        dut.fire.value = 0
        self.cycles += 1


@dataclass
class PEMonitor:
    """Collects the spike count at every ``done`` strobe (and a silence neuron's firing step)."""

    dut: object
    silence: bool = False
    counts: list[int] = field(default_factory=list)
    fire_steps: list[int] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            await RisingEdge(self.dut.done)
            await ReadOnly()
            self.counts.append(int(self.dut.count.value))
            if self.silence:
                self.fire_steps.append(int(self.dut.fire_step.value))


@cocotb.test()
async def pe_matches_golden(dut):
    """Every case's spike count equals the golden model's, bit for bit."""
    cfg = SpikeConfig.from_json(os.environ["SPIKEACC_CONFIG"])
    cases = PECases.load(os.environ["SPIKEACC_CASES"])
    report_path = os.environ["SPIKEACC_REPORT"]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0

    driver, monitor = PEDriver(dut, cfg), PEMonitor(dut, silence=cfg.firing == "silence")
    cocotb.start_soon(monitor.run())
    t0 = time.perf_counter()
    await driver.run(cases)
    # Firing takes at most max_count + 1 cycles after the last fire.
    for _ in range(cfg.max_count + 2):
        if len(monitor.counts) == len(cases):
            break
        await RisingEdge(dut.clk)
    wall = time.perf_counter() - t0

    board = Scoreboard(names=cases.names)
    board.compare(expected=cases.expected, got=monitor.counts)
    if monitor.silence:  # the one spike's step in the output window, against the step-by-step golden neuron
        steps = Scoreboard(names=cases.names)
        steps.compare(expected=silence_steps(cfg, cases), got=monitor.fire_steps)
        board.require(steps.passed, f"fire_step differs from the golden silence neuron: {steps.summary()}")
    report = board.report(cycles=driver.cycles, wall_seconds=wall, outputs=monitor.counts)
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
    board.assert_clean()
