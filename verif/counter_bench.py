"""cocotb bench for the toggle-count calibration: run the counter for a known number of cycles."""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge


@cocotb.test()
async def count_cycles(dut):
    cycles = int(os.environ["SPIKEACC_CYCLES"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.en.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.en.value = 1
    await ClockCycles(dut.clk, cycles)
    await FallingEdge(dut.clk)
    dut.en.value = 0
    await ClockCycles(dut.clk, 2)
    with open(os.environ["SPIKEACC_REPORT"], "w") as f:
        f.write('{"count": %d}' % int(dut.count.value))
