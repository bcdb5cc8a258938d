"""Building blocks of the tiles, one job each: the TTFS event queues and a tagged delay line.

:class:`EventQueues` is the spiking tile's encoder: it sorts a token's nonzero
mantissas by magnitude so they can be replayed in TTFS order, and drops zeros
(no weight read, no add). :class:`DelayLine` carries a strobe and a tag a fixed
number of cycles; both tiles use it to write a block's counts once they are
final.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig, unsigned_bits_for

__all__ = ["EventQueues", "DelayLine", "CountdownDelay", "event_layout", "outlier_layout", "activation_lane_layout",
           "drive_contract_error"]


def activation_lane_layout(cfg: SpikeConfig) -> data.StructLayout:
    """One activation element as stored in the activation buffer: ``v = mantissa · 2^shift``."""
    from amaranth import signed
    return data.StructLayout({"mantissa": signed(cfg.mantissa_bits), "shift": unsigned(cfg.shift_bits)})


def event_layout(cfg: SpikeConfig) -> data.StructLayout:
    """A queued TTFS spike: which input fired, its polarity and its shift."""
    return data.StructLayout({"index": unsigned(cfg.k_bits), "negative": unsigned(1),
                              "shift": unsigned(cfg.shift_bits)})


def outlier_layout(cfg: SpikeConfig) -> data.StructLayout:
    """A queued Kirin integer outlier: which input, its sign, its magnitude |q| and its shift."""
    return data.StructLayout({"index": unsigned(cfg.k_bits), "negative": unsigned(1),
                              "magnitude": unsigned(max(cfg.outlier_planes, 1)), "shift": unsigned(cfg.shift_bits)})


class EventQueues(wiring.Component):
    """One queue per mantissa magnitude |m| = 1..2^b_a − 1, each of L banks (SPEC §3 encoding).

    A magnitude-|m| element spikes at step ``T − |m|``, so replaying the queues
    from |m| = T − 1 down to 1 is the TTFS order. Each cycle with ``write``
    high, the L lanes of one activation word are appended, L at most per queue:
    lane j of magnitude |m| goes to bank ``(count + rank) mod L``, so one row of
    L events per magnitude is written and later read in one cycle, with no
    bank conflicts. Zero mantissas are dropped.

    Kirin mode (``outlier_bits``): an element with ``|m| > 2^b_a − 1`` does not
    spike; it goes to one more queue of L banks, the outliers, filled the same
    way and replayed by the integer path (``read_outliers``). A token
    without outliers leaves it empty and costs nothing extra.

    Members
    -------
    clear : In(1)
        Empty every queue (a new token).
    write, base, lanes : In
        Append ``lanes`` (elements ``base + j``) this cycle.
    count : Out(ArrayLayout(unsigned, T))
        Events queued per magnitude (index 0 is unused).
    row, read_magnitude, read : In
        Read row ``row`` of magnitude ``read_magnitude`` from the banks set in
        ``read`` (one bit per bank); the events appear one cycle later. Only
        those banks are enabled, as an SRAM would be.
    events : Out(ArrayLayout(event_layout, L))
        The row read last cycle, one event per bank (banks not read hold
        their previous data).
    outlier_count : Out(unsigned)
        Kirin mode: outliers queued.
    read_outliers : In(1)
        Kirin mode: read row ``row`` of the outlier queue instead of a magnitude.
    outliers : Out(ArrayLayout(outlier_layout, L))
        Kirin mode: the outlier row read last cycle.
    """

    def __init__(self, config: SpikeConfig):
        self._config = cfg = config
        self.depth = cfg.k_words  # worst case: every element of a token has the same magnitude
        super().__init__({
            "clear": In(1),
            "write": In(1),
            "base": In(unsigned(cfg.k_bits + 1)),
            "lanes": In(data.ArrayLayout(activation_lane_layout(cfg), cfg.lanes)),
            "count": Out(data.ArrayLayout(unsigned(cfg.k_bits + 1), cfg.window)),
            "row": In(unsigned(unsigned_bits_for(self.depth))),
            "read_magnitude": In(unsigned(cfg.a_bits + 1)),
            "read": In(cfg.lanes),
            "events": Out(data.ArrayLayout(event_layout(cfg), cfg.lanes)),
            "outlier_count": Out(unsigned(cfg.k_bits + 1)),
            "read_outliers": In(1),
            "outliers": Out(data.ArrayLayout(outlier_layout(cfg), cfg.lanes)),
        })

    def elaborate(self, platform):
        cfg = self._config
        L, T = cfg.lanes, cfg.window
        lane_bits = unsigned_bits_for(L - 1) if L > 1 else 0
        mags = range(1, T)
        m = Module()
        banks = {}
        for mag in mags:
            for bank in range(L):
                mem = memory.Memory(shape=event_layout(cfg), depth=self.depth, init=[])
                m.submodules[f"queue{mag}_{bank}"] = mem
                banks[mag, bank] = (mem.write_port(), mem.read_port())

        magnitude = [Signal(unsigned(cfg.mantissa_bits - 1), name=f"mag{j}") for j in range(L)]
        position = [Signal(unsigned(cfg.k_bits + 1), name=f"pos{j}") for j in range(L)]
        for j, lane in enumerate(self.lanes):
            m.d.comb += magnitude[j].eq(Mux(lane.mantissa < 0, -lane.mantissa, lane.mantissa))
            rank = sum((magnitude[i] == magnitude[j]) for i in range(j)) if j else 0
            m.d.comb += position[j].eq(self.count[magnitude[j][:cfg.a_bits]] + rank)
        if cfg.kirin:
            self._outlier_queue(m, magnitude)
        for (mag, bank), (wp, rp) in banks.items():
            m.d.comb += [rp.addr.eq(self.row),
                         rp.en.eq(self.read[bank] & (self.read_magnitude == mag) & ~self.read_outliers)]
            for j in reversed(range(L)):  # at most one lane matches; the loop just builds the mux
                hit = self.write & (magnitude[j] == mag)
                if L > 1:
                    hit &= position[j][:lane_bits] == bank
                with m.If(hit):
                    m.d.comb += [wp.en.eq(1), wp.addr.eq(position[j] >> lane_bits),
                                 wp.data.index.eq(self.base + j),
                                 wp.data.negative.eq(self.lanes[j].mantissa < 0),
                                 wp.data.shift.eq(self.lanes[j].shift)]
        with m.If(self.clear):
            m.d.sync += [self.count[mag].eq(0) for mag in mags]
        with m.Elif(self.write):
            m.d.sync += [self.count[mag].eq(self.count[mag] + sum(magnitude[j] == mag for j in range(L)))
                         for mag in mags]
        shown = Signal.like(self.read_magnitude)  # the magnitude read last cycle, whose data arrives now
        m.d.sync += shown.eq(self.read_magnitude)
        for j in range(L):
            with m.Switch(shown):
                for mag in mags:
                    with m.Case(mag):
                        m.d.comb += self.events[j].eq(banks[mag, j][1].data)
        return m

    def _outlier_queue(self, m: Module, magnitude) -> None:
        """Kirin's integer path in the encoder: L more banks for the elements too large to spike."""
        cfg = self._config
        L = cfg.lanes
        lane_bits = unsigned_bits_for(L - 1) if L > 1 else 0
        outlier = [Signal(name=f"outlier{j}") for j in range(L)]
        for j in range(L):
            m.d.comb += outlier[j].eq(magnitude[j] > cfg.spike_max)
        for bank in range(L):
            mem = memory.Memory(shape=outlier_layout(cfg), depth=self.depth, init=[])
            m.submodules[f"outliers_{bank}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [rp.addr.eq(self.row), rp.en.eq(self.read[bank] & self.read_outliers),
                         self.outliers[bank].eq(rp.data)]
            for j in reversed(range(L)):
                position = self.outlier_count + (sum(outlier[:j]) if j else 0)
                hit = self.write & outlier[j]
                if L > 1:
                    hit &= position[:lane_bits] == bank
                with m.If(hit):
                    m.d.comb += [wp.en.eq(1), wp.addr.eq(position >> lane_bits),
                                 wp.data.index.eq(self.base + j),
                                 wp.data.negative.eq(self.lanes[j].mantissa < 0),
                                 wp.data.magnitude.eq(magnitude[j]),
                                 wp.data.shift.eq(self.lanes[j].shift)]
        with m.If(self.clear):
            m.d.sync += self.outlier_count.eq(0)
        with m.Elif(self.write):
            m.d.sync += self.outlier_count.eq(self.outlier_count + sum(outlier))


class DelayLine(wiring.Component):
    """A strobe and its tag, delayed by ``depth`` registers; ``pending`` while any is in flight.

    Members
    -------
    strobe, tag : In
    delayed, delayed_tag : Out
        ``strobe`` and ``tag`` of ``depth`` cycles ago.
    pending : Out(1)
        Some strobe is still travelling.
    """

    def __init__(self, depth: int, tag_width: int):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        super().__init__({"strobe": In(1), "tag": In(unsigned(tag_width)), "delayed": Out(1),
                          "delayed_tag": Out(unsigned(tag_width)), "pending": Out(1)})

    def elaborate(self, platform):
        m = Module()
        strobes = [Signal(name=f"strobe{i}") for i in range(self.depth)]
        tags = [Signal.like(self.tag, name=f"tag{i}") for i in range(self.depth)]
        m.d.sync += [strobes[0].eq(self.strobe), tags[0].eq(self.tag)]
        for i in range(1, self.depth):
            m.d.sync += [strobes[i].eq(strobes[i - 1]), tags[i].eq(tags[i - 1])]
        m.d.comb += [self.delayed.eq(strobes[-1]), self.delayed_tag.eq(tags[-1]),
                     self.pending.eq(Cat(*strobes) != 0)]
        return m


class CountdownDelay(DelayLine):
    """:class:`DelayLine` for a strobe that is never closer than ``depth + 1`` cycles to the next.

    With at most one strobe in flight a counter and one tag register do the
    job of ``depth`` stages: ⌈log2(depth + 1)⌉ + tag bits of flip-flops
    instead of ``depth·(1 + tag bits)``, and only they are clocked. The
    spiking tile's capture delay is ``fire_cycles + 1`` (257 stages with
    serial firing at b_out = 8), and its fires are ``fire_gap`` = depth + 1
    apart, so this is the one it uses. A strobe arriving while one is in
    flight restarts the count (the caller's spacing rules that out).
    """

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(range(self.depth + 1))
        m.d.comb += [self.pending.eq(remaining != 0), self.delayed.eq(remaining == 1)]
        with m.If(self.strobe):
            m.d.sync += [remaining.eq(self.depth), self.delayed_tag.eq(self.tag)]
        with m.Elif(remaining != 0):
            m.d.sync += remaining.eq(remaining - 1)
        return m


def _any(terms):
    return reduce(or_, terms, Const(0))


def drive_contract_error(m: Module, cfg: SpikeConfig, error, *, start, token, exponent, act, weights,
                         thresholds) -> None:
    """Make ``error`` a sticky flag: some word read for this token is outside the input contract.

    The ports are wider than the contract in a few places (a mantissa or
    weight of −2^b, a shift above e_max, Θ = 0, a token beyond the buffers, an
    exponent outside ``exponent_min..exponent_max``).
    Rather than compute something silently wrong, the tile raises ``error``;
    it is cleared when a token starts. Each of ``act``, ``weights`` (one per
    lane) and ``thresholds`` is ``(valid, data)``: data the tile uses this cycle.
    """
    act_valid, lanes = act
    shift_checked = cfg.shift_max < (1 << cfg.shift_bits) - 1  # else every shift the port holds is legal
    bad_lanes = _any((lane.mantissa == -(cfg.mantissa_max + 1)) | ((lane.shift > cfg.shift_max) if shift_checked else 0)
                     for lane in lanes)
    bad_weights = _any(valid & _any(w == -(cfg.weight_max + 1) for w in word) for valid, word in weights)
    thresh_valid, thresh_word = thresholds
    bad_thresh = _any(neuron.theta == 0 for neuron in thresh_word)
    width = len(exponent)
    exponent_checked = cfg.exponent_min > -(1 << (width - 1)) or cfg.exponent_max < (1 << (width - 1)) - 1
    bad_start = ((token >= cfg.max_tokens) if cfg.max_tokens < (1 << len(token)) else 0) | (
        ((exponent < cfg.exponent_min) | (exponent > cfg.exponent_max)) if exponent_checked else 0)
    with m.If(start):
        m.d.sync += error.eq(bad_start)
    with m.Elif((act_valid & bad_lanes) | bad_weights | (thresh_valid & bad_thresh)):
        m.d.sync += error.eq(1)
