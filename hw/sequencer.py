"""The spiking tile's control: one token's encode pass, then each block's TTFS replay, then drain.

Split out of :class:`~spikeacc.hw.tile.SpikingTile` so the FSM can be read
(and its timing checked against :func:`~spikeacc.hw.tile.tile_cycles`) without
the datapath around it. It issues commands only; the tile turns them into
buffer addresses, queue reads and PE controls.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig, unsigned_bits_for

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Stage 0 of the spiking tile: the FSM IDLE → ENCODE → (OPEN → STEP…)·N/P → LAST_FIRE → DRAIN.

    ENCODE reads the token's K/L activation words, one per cycle
    (``act_en``, ``word``), and asks the event queues to append each one a
    cycle later (``queue_write``, ``queue_base``). Each block then opens with
    step 0 (``open``; also ``fire`` for the previous block) and replays steps
    1..T−1: step t shows the queue row ``row`` of magnitude ``magnitude`` =
    T − t, with ``lanes`` marking the banks that hold an event, and ``step``
    closes a time step on its last row. A fire waits until ``fire_gap``
    cycles after the previous one, so the capture delay line never holds two
    blocks; DRAIN waits for the last capture (``capture_pending``).

    Members
    -------
    start, token : In
        Begin token ``token`` (sampled here; ignored while busy).
    busy, done, cycles, block : Out
        As on the tile: ``done`` strobes one cycle with ``busy`` already low.
    current_token : Out
        The token being computed, for buffer addresses.
    act_en, word : Out
        Read activation word ``word`` of the current token this cycle.
    queue_clear, queue_write, queue_base : Out
        Empty the queues (at ``start``); append last cycle's word, elements ``queue_base + j``.
    queue_count : In(ArrayLayout(unsigned, T))
        Events queued per magnitude.
    row, magnitude : Out
        Queue row and magnitude being replayed.
    open, fire, step : Out(1)
        Block open (step 0; load Θ/Φ), fire the previous block, close a time step.
    lanes : Out(L)
        Lanes of ``row`` holding an event (only while replaying a step).
    capture_pending : In(1)
        A fired block's counts are still on their way to the output buffer.
    outlier_count : In
        Kirin mode: integer outliers queued for this token.
    read_outliers, plane : Out
        Kirin mode: replaying outlier rows, bit plane ``plane`` of their magnitudes.

    Kirin mode: the last step (T − 1) does not close after its spikes when
    the token has outliers; the OUTLIERS state replays the outlier rows once
    per bit plane j = 0..B − 2 (an outlier's lane carries a spike where bit j
    of |q| is set, shift e + j), and the last of those rows closes the step,
    so each outlier is integrated exactly once: ``w·q·2^e`` with adds only.
    """

    def __init__(self, config: SpikeConfig, fire_gap: int):
        self._config = cfg = config
        self.fire_gap = fire_gap
        self.depth = cfg.k_words
        super().__init__({
            "start": In(1),
            "token": In(unsigned(cfg.token_bits)),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(32),
            "block": Out(unsigned(unsigned_bits_for(cfg.blocks))),
            "current_token": Out(unsigned(cfg.token_bits)),
            "act_en": Out(1),
            "word": Out(unsigned(unsigned_bits_for(cfg.k_words))),
            "queue_clear": Out(1),
            "queue_write": Out(1),
            "queue_base": Out(unsigned(cfg.k_bits + 1)),
            "queue_count": In(data.ArrayLayout(unsigned(cfg.k_bits + 1), cfg.window)),
            "row": Out(unsigned(unsigned_bits_for(self.depth))),
            "magnitude": Out(unsigned(cfg.a_bits + 1)),
            "open": Out(1),
            "fire": Out(1),
            "step": Out(1),
            "lanes": Out(cfg.lanes),
            "capture_pending": In(1),
            "outlier_count": In(unsigned(cfg.k_bits + 1)),
            "read_outliers": Out(1),
            "plane": Out(unsigned(unsigned_bits_for(max(cfg.outlier_planes - 1, 0)))),
        })

    def elaborate(self, platform):
        cfg = self._config
        L, T, gap = cfg.lanes, cfg.window, self.fire_gap
        lane_bits = unsigned_bits_for(L - 1) if L > 1 else 0
        m = Module()

        blk, word, row = self.block, self.word, self.row
        step = Signal(unsigned(cfg.step_bits + 1))
        since_fire = Signal(unsigned(unsigned_bits_for(gap)), init=gap)
        gap_over = Signal()
        m.d.comb += [gap_over.eq(since_fire == gap), self.magnitude.eq(T - step)]
        m.d.sync += since_fire.eq(Mux(gap_over, since_fire, since_fire + 1))

        # the activation word read last cycle arrives now: append it to the queues
        m.d.sync += self.queue_write.eq(0)
        m.d.comb += self.queue_base.eq((word - 1) << lane_bits)

        # rows of the current step: lane j of row r holds event r·L + j if that is below the count
        count = Signal(unsigned(cfg.k_bits + 1))
        last_row = Signal()
        row_lanes = Signal(L)
        m.d.comb += [count.eq(self.queue_count[self.magnitude[:cfg.a_bits]]),
                     last_row.eq(((row + 1) << lane_bits) >= count)]
        for j in range(L):
            m.d.comb += row_lanes[j].eq(((row << lane_bits) + j) < count)
        # Kirin: the outlier rows, replayed once per bit plane after the last step's spikes
        outlier_last_row = Signal()
        outlier_lanes = Signal(L)
        outliers_follow = Signal()
        if cfg.kirin:
            m.d.comb += [outlier_last_row.eq(((row + 1) << lane_bits) >= self.outlier_count),
                         outliers_follow.eq((step == T - 1) & (self.outlier_count != 0))]
            for j in range(L):
                m.d.comb += outlier_lanes[j].eq(((row << lane_bits) + j) < self.outlier_count)

        def next_block():
            """After the last step of block ``blk``: open the next block, or fire the last one."""
            with m.If(blk == cfg.blocks - 1):
                m.next = "LAST_FIRE"
            with m.Else():
                m.d.sync += blk.eq(blk + 1)
                m.next = "OPEN"

        m.d.sync += self.done.eq(0)
        with m.FSM(name="control") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += self.queue_clear.eq(1)
                    m.d.sync += [self.current_token.eq(self.token), word.eq(0), self.cycles.eq(0), blk.eq(0)]
                    m.next = "ENCODE"
            with m.State("ENCODE"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(word != cfg.k_words):
                    m.d.comb += self.act_en.eq(1)
                    m.d.sync += [word.eq(word + 1), self.queue_write.eq(1)]
                with m.Elif(~self.queue_write):
                    m.next = "OPEN"
            with m.State("OPEN"):  # step 0 of block blk: load Θ/Φ, fire the previous block
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If((blk == 0) | gap_over):
                    m.d.comb += [self.open.eq(1), self.fire.eq(blk != 0)]
                    with m.If(blk != 0):
                        m.d.sync += since_fire.eq(1)
                    m.d.sync += [step.eq(1), row.eq(0)]
                    m.next = "STEP"
            with m.State("STEP"):  # steps 1..T-1: magnitude T - step, L events per cycle
                m.d.sync += self.cycles.eq(self.cycles + 1)
                m.d.comb += [self.step.eq(last_row & ~outliers_follow), self.lanes.eq(row_lanes)]
                with m.If(last_row):
                    m.d.sync += [row.eq(0), step.eq(step + 1)]
                    if cfg.kirin:
                        with m.If(outliers_follow):
                            m.d.sync += self.plane.eq(0)
                            m.next = "OUTLIERS"
                        with m.Elif(step == T - 1):
                            next_block()
                    else:
                        with m.If(step == T - 1):
                            next_block()
                with m.Else():
                    m.d.sync += row.eq(row + 1)
            if cfg.kirin:
                with m.State("OUTLIERS"):  # bit plane `plane` of every outlier, L per cycle
                    m.d.sync += self.cycles.eq(self.cycles + 1)
                    last_plane = self.plane == cfg.outlier_planes - 1
                    m.d.comb += [self.read_outliers.eq(1), self.lanes.eq(outlier_lanes),
                                 self.step.eq(outlier_last_row & last_plane)]
                    with m.If(outlier_last_row):
                        m.d.sync += [row.eq(0), self.plane.eq(self.plane + 1)]
                        with m.If(last_plane):
                            next_block()
                    with m.Else():
                        m.d.sync += row.eq(row + 1)
            with m.State("LAST_FIRE"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(gap_over):
                    m.d.comb += self.fire.eq(1)
                    m.d.sync += since_fire.eq(1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(gap_over & ~self.capture_pending):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
