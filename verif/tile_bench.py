"""cocotb bench of the spiking tile: one layer vector file, every output count compared.

Buffers are preloaded by the harness (``$readmemh``); Python starts each token
and then sleeps until the tile reports a new block or ``done``, so Verilator
runs the cycles on its own. Progress goes to a small file the parent process
turns into a progress bar.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, ValueChange

from spikeacc.config import SpikeConfig
from spikeacc.verif.scoreboard import Scoreboard
from spikeacc.verif.tile_harness import CLOCK_PERIOD_NS, read_counts


@dataclass
class TokenDriver:
    """Starts one token at a time and waits for ``done``; reports progress per block."""

    dut: object
    progress_path: str
    blocks: int
    cycles: list[int] = field(default_factory=list)
    error_tokens: list[int] = field(default_factory=list)

    async def run_token(self, token: int, total_tokens: int) -> None:
        dut = self.dut
        dut.token.value = token
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        done = RisingEdge(dut.done)
        while True:
            fired = await First(done, ValueChange(dut.block))
            if fired is done:
                break
            self._progress(token * self.blocks + int(dut.block.value), total_tokens * self.blocks)
        self.cycles.append(int(dut.cycles.value))
        if str(dut.error.value) != "0":  # the tile saw an out-of-contract word (or X)
            self.error_tokens.append(token)
        self._progress((token + 1) * self.blocks, total_tokens * self.blocks)

    def _progress(self, done_blocks: int, total: int) -> None:
        with open(self.progress_path, "w") as f:
            f.write(f"{done_blocks} {total}\n")


@cocotb.test()
async def tile_matches_golden(dut):
    """Every output spike count of every token equals the vector file's expected value."""
    expected = np.load(os.environ["SPIKEACC_EXPECTED"])
    cfg = SpikeConfig.from_json(os.environ["SPIKEACC_CONFIG"])  # the tile's shape may differ from the export's
    tokens = expected.shape[0]

    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())
    dut.start.value = 0
    dut.dump.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    driver = TokenDriver(dut, os.environ["SPIKEACC_PROGRESS"], cfg.blocks)
    t0 = time.perf_counter()
    for token in range(tokens):
        await driver.run_token(token, tokens)
    wall = time.perf_counter() - t0
    dut.dump.value = 1
    await RisingEdge(dut.clk)
    dut.dump.value = 0
    await RisingEdge(dut.clk)

    got = read_counts(cfg, os.environ["SPIKEACC_OUT"], tokens)
    flip = os.environ.get("SPIKEACC_FLIP")
    if flip:  # fault injection: prove the checker sees a wrong RTL output
        t, n = (int(i) for i in flip.split(","))
        got[t, n] ^= 1
    board = Scoreboard()
    board.compare(expected=expected, got=got)
    board.require(not driver.error_tokens, f"the tile raised error on tokens {driver.error_tokens[:10]}")
    report = board.report(cycles=sum(driver.cycles), cycles_per_token=driver.cycles, wall_seconds=wall,
                          tokens=tokens, shape=[tokens, cfg.in_features, cfg.out_features])
    with open(os.environ["SPIKEACC_REPORT"], "w") as f:
        json.dump(report, f, indent=2)
    board.assert_clean()
