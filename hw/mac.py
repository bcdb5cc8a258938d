"""The conventional baseline: a W4A4 multiply-accumulate tile with a requantize multiply (SPEC §6).

Same configuration, buffers, ports and vector contract as :class:`SpikingTile`,
same P and L, so an energy comparison isolates the arithmetic: here every
weight is multiplied by its activation (zeros included), and each output is
requantized by a wide fixed-point multiply instead of a firing threshold.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig, unsigned_bits_for
from spikeacc.hw.pe import ScaleShift
from spikeacc.hw.tile import decode_exponent, tile_ports
from spikeacc.hw.tile_parts import DelayLine, drive_contract_error

__all__ = ["MacPE", "MacTile", "mac_cycles", "mac_threshold_layout", "requant_multiplier"]


def requant_multiplier(cfg: SpikeConfig, theta):
    """R = ⌈2^S/Θ⌉ of each threshold constant, computed offline, as MAC accelerators store their requant scales.

    It must be exactly this value: the MAC's counts come from R alone (Θ only
    feeds the saturation compare and the Θ = 0 error), so a wrong R gives wrong
    counts with ``error`` low. Θ = 0 is outside the contract (the tile raises
    ``error``); its R is 0.
    """
    import numpy as np

    s = cfg.requant_shift
    return [((1 << s) + int(t) - 1) // int(t) if int(t) else 0 for t in np.asarray(theta).ravel()]


def mac_cycles(cfg: SpikeConfig) -> int:
    """Cycles per token-layer the MAC tile's ``cycles`` output reports.

    STREAM takes one cycle per activation word and block, ``(N/P)·(K/L)``;
    DRAIN waits ``OUTPUT_DELAY + 2`` cycles for the last block's count to be written.
    """
    return cfg.blocks * cfg.k_words + MacTile.OUTPUT_DELAY + 2


def mac_threshold_layout(cfg: SpikeConfig) -> data.StructLayout:
    return data.StructLayout({"theta": unsigned(cfg.theta_bits), "phi": signed(cfg.phi_bits),
                              "recip": unsigned(cfg.requant_shift + 1)})


class MacPE(wiring.Component):
    """One output neuron of the MAC baseline.

    Each cycle up to L products ``(w·m) << e`` (a 5×5-bit signed multiply per
    lane) are added to the accumulator. ``requant`` hands the accumulator to a
    two-stage requantizer: ``y = ⌊2^F·acc/2^s⌋ + Φ`` (s: the token's scale shift);
    ``n = 0`` if y < 0, ``2^b_out − 1`` if y ≥ 2^b_out·Θ, else ``(y·R) >> S`` —
    bit-identical to the spiking neuron's ``clamp(floor(y/Θ))``. ``count`` is valid two cycles
    after ``requant`` + 1, while the next block accumulates.
    """

    def __init__(self, config: SpikeConfig):
        if not isinstance(config, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {config!r}")
        self._config = config
        cfg = config
        lane = data.StructLayout({"valid": unsigned(1), "mantissa": signed(cfg.mantissa_bits),
                                  "shift": unsigned(cfg.shift_bits), "weight": signed(cfg.weight_bits)})
        super().__init__({
            "clear": In(1),
            "inputs": In(data.ArrayLayout(lane, cfg.lanes)),
            "requant": In(1),
            "params": In(mac_threshold_layout(cfg)),
            "scale_shift": In(signed(cfg.scale_shift_bits)),
            "count": Out(unsigned(cfg.count_bits)),
        })

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        products = []
        for j, lane in enumerate(self.inputs):
            product = Signal(signed(cfg.weight_bits + cfg.mantissa_bits), name=f"product{j}")
            m.d.comb += product.eq(lane.weight * lane.mantissa)  # the INT4 x INT4 multiply
            shifted = Signal(signed(cfg.weight_bits + cfg.mantissa_bits + cfg.shift_max), name=f"scaled{j}")
            m.d.comb += shifted.eq(Mux(lane.valid, product << lane.shift, 0))
            products.append(shifted)
        acc = Signal(signed(cfg.acc_bits))
        total = sum(products)
        m.d.sync += acc.eq(Mux(self.clear, total, acc + total))

        # requantizer: `requant` marks the block's last word, which reaches acc at the
        # end of that cycle; stage A forms y from it, stage B multiplies.
        params = Signal(mac_threshold_layout(cfg))
        held = Signal(mac_threshold_layout(cfg))
        scale, held_scale = ScaleShift(cfg, "scale"), ScaleShift(cfg, "held_scale")
        stage_a, stage_b = Signal(), Signal()
        m.d.sync += [stage_a.eq(self.requant), stage_b.eq(stage_a)]
        with m.If(self.clear):
            m.d.sync += [params.eq(self.params), *scale.load(self.scale_shift)]
        with m.If(self.requant):
            m.d.sync += [held.eq(params), *held_scale.copy_from(scale)]
        y = Signal(signed(cfg.membrane_bits), name="requant_y")
        # the accumulator reaches the scale shifter and the adder only in the cycle that forms y (operand
        # isolation, as the spiking PE does at fire): they do not toggle while the neuron accumulates
        isolated = Signal(signed(cfg.acc_bits), name="requant_isolated")
        m.d.comb += isolated.eq(Mux(stage_a, acc, 0))
        with m.If(stage_a):
            m.d.sync += y.eq(held_scale.apply(isolated) + held.phi)
        ceiling = Signal(unsigned(cfg.theta_bits + cfg.out_bits), name="requant_ceiling")
        m.d.comb += ceiling.eq(held.theta << cfg.out_bits)
        product = Signal(unsigned(cfg.theta_bits + cfg.out_bits + cfg.requant_shift + 1), name="requant_product")
        m.d.comb += product.eq(y[:cfg.theta_bits + cfg.out_bits] * held.recip)
        with m.If(stage_b):
            with m.If(y < 0):
                m.d.sync += self.count.eq(0)
            with m.Elif(y >= ceiling):
                m.d.sync += self.count.eq(cfg.max_count)
            with m.Else():
                m.d.sync += self.count.eq(product >> cfg.requant_shift)
        return m


class MacTile(wiring.Component):
    """P MAC neurons reading L dense activations per cycle; the spiking tile's interface.

    Per token and block of P outputs, the tile streams all K/L activation words
    (zeros are multiplied too, as a conventional MAC array does) while each PE
    reads its L weights; ``requant`` follows the last word and the block's
    counts are written three cycles later, overlapped with the next block.
    Cycles per token-layer: ``(N/P)·(K/L) + 5`` (:func:`mac_cycles`). The threshold memory
    holds the spiking tile's per-neuron constants, each word with R = ⌈2^S/Θ⌉ beside Θ and Φ
    (:func:`mac_threshold_layout`); the token's exponent picks the row and the scale shift.
    """

    OUTPUT_DELAY = 3  # last word -> acc -> y -> count, written as out_en

    def __init__(self, config: SpikeConfig):
        if not isinstance(config, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {config!r}")
        cfg = config
        self._config = cfg
        super().__init__(tile_ports(cfg, mac_threshold_layout(cfg)))

    @property
    def config(self) -> SpikeConfig:
        return self._config

    def timing(self) -> dict:
        cfg = self._config
        return {"cycles_per_token": mac_cycles(cfg), "output_delay": self.OUTPUT_DELAY}

    def elaborate(self, platform):
        cfg = self._config
        L, P = cfg.lanes, cfg.pes
        m = Module()
        token = Signal(unsigned(cfg.token_bits))
        word = Signal(unsigned(unsigned_bits_for(cfg.k_words)))
        blk = Signal(unsigned(unsigned_bits_for(cfg.blocks)))
        issue, first, last = Signal(), Signal(), Signal()
        exponent = Signal(signed(cfg.exponent_bits))
        row, scale = decode_exponent(m, cfg, exponent)
        m.d.comb += [self.block.eq(blk),
                     self.act.addr.eq(token * cfg.k_words + word), self.act.en.eq(issue),
                     self.thresh.addr.eq(blk * cfg.threshold_grid + row), self.thresh.en.eq(issue & first)]
        for j in range(L):
            m.d.comb += [self.weight[j].addr.eq(blk * cfg.in_features + (word << (L.bit_length() - 1)) + j),
                         self.weight[j].en.eq(issue)]

        drain = Signal(range(self.OUTPUT_DELAY + 3))
        m.d.sync += self.done.eq(0)
        with m.FSM(name="control") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [token.eq(self.token), exponent.eq(self.exponent), word.eq(0), blk.eq(0),
                                 self.cycles.eq(0)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                m.d.comb += [issue.eq(1), first.eq(word == 0), last.eq(word == cfg.k_words - 1)]
                with m.If(word == cfg.k_words - 1):
                    m.d.sync += word.eq(0)
                    with m.If(blk == cfg.blocks - 1):
                        m.d.sync += drain.eq(0)
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += blk.eq(blk + 1)
                with m.Else():
                    m.d.sync += word.eq(word + 1)
            with m.State("DRAIN"):
                m.d.sync += [self.cycles.eq(self.cycles + 1), drain.eq(drain + 1)]
                with m.If(drain == self.OUTPUT_DELAY + 1):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # stage 1: activation, weights and thresholds arrive
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_blk = Signal.like(blk)
        m.d.sync += [s1_valid.eq(issue), s1_first.eq(first), s1_last.eq(last), s1_blk.eq(blk)]
        for p in range(P):
            pe = MacPE(cfg)
            m.submodules[f"mac{p}"] = pe
            m.d.comb += [pe.clear.eq(s1_valid & s1_first), pe.requant.eq(s1_valid & s1_last),
                         pe.params.eq(self.thresh.data[p]), pe.scale_shift.eq(scale),
                         self.out.data[p].eq(pe.count)]
            for j in range(L):
                m.d.comb += [pe.inputs[j].valid.eq(s1_valid), pe.inputs[j].mantissa.eq(self.act.data[j].mantissa),
                             pe.inputs[j].shift.eq(self.act.data[j].shift),
                             pe.inputs[j].weight.eq(self.weight[j].data[p])]
        drive_contract_error(m, cfg, self.error, start=fsm.ongoing("IDLE") & self.start, token=self.token,
                             exponent=self.exponent,
                             act=(s1_valid, self.act.data),
                             weights=[(s1_valid, self.weight[j].data) for j in range(L)],
                             thresholds=(s1_valid & s1_first, self.thresh.data))
        # output write: OUTPUT_DELAY cycles after requant
        m.submodules.output_delay = delay = DelayLine(self.OUTPUT_DELAY, len(blk))
        m.d.comb += [delay.strobe.eq(s1_valid & s1_last), delay.tag.eq(s1_blk),
                     self.out.en.eq(delay.delayed), self.out.addr.eq(token * cfg.blocks + delay.delayed_tag)]
        return m
