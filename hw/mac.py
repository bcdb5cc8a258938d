"""The conventional baseline: a W4A4 multiply-accumulate tile with a shared requantizer (SPEC §6).

Same configuration, buffers, ports, threshold words and vector contract as
:class:`SpikingTile`, same P and L, so an energy comparison isolates the
arithmetic: here every weight is multiplied by its activation (zeros
included, unless ``skip_zeros``), and each block's outputs are requantized
one after another by one unit shared among the PEs instead of a firing
threshold per neuron. The standalone :class:`MacPE` has a requantizer of its own.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig, unsigned_bits_for
from spikeacc.hw.pe import ScaleShift
from spikeacc.hw.tile import decode_exponent, threshold_layout, tile_ports
from spikeacc.hw.tile_parts import drive_contract_error

__all__ = ["MacAccumulator", "MacPE", "MacTile", "accumulate", "mac_cycles", "mac_output_delay", "requant_groups",
           "requantize"]


def accumulate(m: Module, cfg: SpikeConfig, inputs, clear, name: str = "acc"):
    """The multiply-accumulate: each cycle up to L products ``(w·m) << e`` (5×5-bit signed) join ``acc``.

    ``clear`` starts a new sum with this cycle's products. Returns the accumulator.
    """
    products = []
    for j, lane in enumerate(inputs):
        product = Signal(signed(cfg.weight_bits + cfg.mantissa_bits), name=f"product{j}")
        m.d.comb += product.eq(lane.weight * lane.mantissa)  # the INT4 x INT4 multiply
        shifted = Signal(signed(cfg.weight_bits + cfg.mantissa_bits + cfg.shift_max), name=f"scaled{j}")
        m.d.comb += shifted.eq(Mux(lane.valid, product << lane.shift, 0))
        products.append(shifted)
    acc = Signal(signed(cfg.acc_bits), name=name)
    total = sum(products)
    m.d.sync += acc.eq(Mux(clear, total, acc + total))
    return acc


def requantize(m: Module, cfg: SpikeConfig, *, form_y, acc, phi, scale: ScaleShift, theta):
    """The requantizer, bit-identical to the spiking neuron's ``clamp(⌊y/Θ⌋)``.

    In a ``form_y`` cycle ``y = ⌊2^F·acc/2^s⌋ + Φ`` is registered (the
    accumulator reaches the shifter and adder only then: operand isolation);
    the next cycle the returned value is the count: ``0`` if y < 0,
    ``2^b_out − 1`` if y ≥ 2^b_out·Θ, else ``⌊y/Θ⌋`` from ``theta`` as it is
    in that cycle, by b_out compare-and-subtract stages of restoring division
    (a quotient of b_out bits needs no more). An exact fixed-point reciprocal
    R = ⌈2^S/Θ⌉ would need S = 88 at SmolLM2's shapes: a 41 × 89-bit
    multiplier that, shared by 24 PEs at q_proj, spent a quarter of the MAC
    tile's logic energy (docs/measurements.md).
    """
    y = Signal(signed(cfg.membrane_bits), name="requant_y")
    isolated = Signal(signed(cfg.acc_bits), name="requant_isolated")
    m.d.comb += isolated.eq(Mux(form_y, acc, 0))
    with m.If(form_y):
        m.d.sync += y.eq(scale.apply(isolated) + phi)
    ceiling = Signal(unsigned(cfg.theta_bits + cfg.out_bits), name="requant_ceiling")
    m.d.comb += ceiling.eq(theta << cfg.out_bits)
    count = Signal(unsigned(cfg.count_bits), name="requant_count")
    m.d.comb += count.eq(Mux(y < 0, 0, Mux(y >= ceiling, cfg.max_count, _quotient(m, cfg, y, theta))))
    return count


def _quotient(m: Module, cfg: SpikeConfig, y, theta):
    """⌊y/Θ⌋ for 0 ≤ y < 2^b_out·Θ by restoring division, one stage per quotient bit."""
    width = cfg.theta_bits + cfg.out_bits
    remainder = y[:width]
    bits = []
    for i in reversed(range(cfg.out_bits)):
        trial = Signal(signed(width + 1), name=f"requant_trial{i}")
        m.d.comb += trial.eq(remainder - (theta << i))
        fits = ~trial[-1]     # no borrow: Θ·2^i fits in what remains
        bits.append(fits)
        kept = Signal(unsigned(width), name=f"requant_remainder{i}")
        m.d.comb += kept.eq(Mux(fits, trial[:width], remainder))
        remainder = kept
    return Cat(*reversed(bits))


def mac_lane_layout(cfg: SpikeConfig) -> data.StructLayout:
    return data.StructLayout({"valid": unsigned(1), "mantissa": signed(cfg.mantissa_bits),
                              "shift": unsigned(cfg.shift_bits), "weight": signed(cfg.weight_bits)})


class MacPE(wiring.Component):
    """One output neuron of a MAC array with its own requantizer (the standalone PE of ``spikeacc synth``).

    Each cycle up to L products ``(w·m) << e`` (a 5×5-bit signed multiply per
    lane) are added to the accumulator. ``requant`` hands the accumulator to a
    two-stage requantizer (:func:`requantize`); ``count`` is valid two cycles
    after ``requant`` + 1, while the next block accumulates. The MAC *tile*
    shares one requantizer among its PEs instead (:class:`MacTile`).
    """

    def __init__(self, config: SpikeConfig):
        if not isinstance(config, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {config!r}")
        self._config = config
        cfg = config
        super().__init__({
            "clear": In(1),
            "inputs": In(data.ArrayLayout(mac_lane_layout(cfg), cfg.lanes)),
            "requant": In(1),
            "params": In(threshold_layout(cfg)),
            "scale_shift": In(signed(cfg.scale_shift_bits)),
            "count": Out(unsigned(cfg.count_bits)),
        })

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        acc = accumulate(m, cfg, self.inputs, self.clear)
        # `requant` marks the block's last word, which reaches acc at the end of that cycle;
        # stage A forms y from it, stage B multiplies.
        params = Signal(threshold_layout(cfg))
        held = Signal(threshold_layout(cfg))
        scale, held_scale = ScaleShift(cfg, "scale"), ScaleShift(cfg, "held_scale")
        stage_a, stage_b = Signal(), Signal()
        m.d.sync += [stage_a.eq(self.requant), stage_b.eq(stage_a)]
        with m.If(self.clear):
            m.d.sync += [params.eq(self.params), *scale.load(self.scale_shift)]
        with m.If(self.requant):
            m.d.sync += [held.eq(params), *held_scale.copy_from(scale)]
        count = requantize(m, cfg, form_y=stage_a, acc=acc, phi=held.phi, scale=held_scale, theta=held.theta)
        with m.If(stage_b):
            m.d.sync += self.count.eq(count)
        return m


class MacAccumulator(wiring.Component):
    """One output neuron of the MAC tile: the multiply-accumulate alone (the tile requantizes)."""

    def __init__(self, config: SpikeConfig):
        self._config = config
        super().__init__({"clear": In(1), "inputs": In(data.ArrayLayout(mac_lane_layout(config), config.lanes)),
                          "acc": Out(signed(config.acc_bits))})

    def elaborate(self, platform):
        m = Module()
        acc = accumulate(m, self._config, self.inputs, self.clear)
        m.d.comb += self.acc.eq(acc)
        return m


def requant_groups(cfg: SpikeConfig) -> tuple[int, int]:
    """``(units, group)``: shared requantizers in the MAC tile and PEs each one serves.

    A unit requantizes its group one output per cycle while the next block
    accumulates, and must write them before that block ends (``group + 3 ≤ K/L``):
    one unit at every SmolLM2 shape (24 PEs, 288+ words per block).
    """
    if cfg.k_words < 4:
        raise ValueError(f"the MAC tile needs K/L >= 4 words per block to requantize while it accumulates; "
                         f"K = {cfg.in_features}, L = {cfg.lanes}: use fewer lanes")
    units = -(-cfg.pes // (cfg.k_words - 3))
    return units, -(-cfg.pes // units)


def mac_output_delay(cfg: SpikeConfig, skip_zeros: bool = False) -> int:
    """Cycles from the ``act__en`` of a block's last word to its ``out__en``, less one.

    The last word's products reach the accumulators (+1 with zero skipping,
    whose weights are read a cycle after their activations), the sums are
    held, the shared requantizer takes ``group`` cycles, its last count is
    registered, then written.
    """
    return requant_groups(cfg)[1] + 3 + int(skip_zeros)


def mac_cycles(cfg: SpikeConfig, skip_zeros: bool = False) -> int:
    """Cycles per token-layer the MAC tile's ``cycles`` output reports.

    STREAM takes one cycle per activation word and block, ``(N/P)·(K/L)``;
    DRAIN waits ``output delay + 2`` cycles for the last block's counts to be written.
    """
    return cfg.blocks * cfg.k_words + mac_output_delay(cfg, skip_zeros) + 2


class MacTile(wiring.Component):
    """P MAC neurons reading L activations per cycle, one shared requantizer; the spiking tile's interface.

    Per token and block of P outputs, the tile streams all K/L activation
    words while each PE reads its L weights and accumulates. At the block's
    end the P sums are held and one requantizer (:func:`requantize`, b_out
    stages of restoring division) turns them into counts one per cycle while
    the next block accumulates, as a MAC array designer shares the unit that
    works once per output (:func:`requant_groups`); the block's counts are
    written together. The threshold word (Θ and Φ per neuron, the spiking
    tile's) is read with the block's last word.

    ``skip_zeros`` builds the zero-skipping MAC of sparse accelerators: the
    weights of a word are read a cycle after its activations, only for lanes
    whose mantissa is nonzero, and the multiplier operands hold their last
    values on skipped lanes. Cycles per token-layer: :func:`mac_cycles`.
    """

    def __init__(self, config: SpikeConfig, skip_zeros: bool = False):
        if not isinstance(config, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {config!r}")
        cfg = config
        self._config = cfg
        self.skip_zeros = skip_zeros
        self.output_delay = mac_output_delay(cfg, skip_zeros)
        super().__init__(tile_ports(cfg, threshold_layout(cfg)))

    @property
    def config(self) -> SpikeConfig:
        return self._config

    def timing(self) -> dict:
        cfg = self._config
        return {"cycles_per_token": mac_cycles(cfg, self.skip_zeros), "output_delay": self.output_delay}

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
        m.d.comb += [self.block.eq(blk), self.act.addr.eq(token * cfg.k_words + word), self.act.en.eq(issue)]

        drain = Signal(range(self.output_delay + 3))
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
                with m.If(drain == self.output_delay + 1):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # stage 1: the activation word arrives
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_blk, s1_word = Signal.like(blk), Signal.like(word)
        m.d.sync += [s1_valid.eq(issue), s1_first.eq(first), s1_last.eq(last), s1_blk.eq(blk), s1_word.eq(word)]
        lanes = Signal(data.ArrayLayout(mac_lane_layout(cfg), L))
        if self.skip_zeros:
            # weights are read a cycle later, only for nonzero lanes; the lane operands load only then
            read_valid, read_last, read_blk, read_word = s1_valid, s1_last, s1_blk, s1_word
            a_valid, a_first, a_last, a_blk = Signal(), Signal(), Signal(), Signal.like(blk)
            m.d.sync += [a_valid.eq(s1_valid), a_first.eq(s1_first), a_last.eq(s1_last), a_blk.eq(s1_blk)]
            for j in range(L):
                nonzero = Signal(name=f"nonzero{j}")
                m.d.comb += [nonzero.eq(s1_valid & (self.act.data[j].mantissa != 0)),
                             self.weight[j].en.eq(nonzero)]
                m.d.sync += lanes[j].valid.eq(nonzero)
                with m.If(nonzero):
                    m.d.sync += [lanes[j].mantissa.eq(self.act.data[j].mantissa),
                                 lanes[j].shift.eq(self.act.data[j].shift)]
        else:
            read_valid, read_last, read_blk, read_word = issue, last, blk, word
            a_valid, a_first, a_last, a_blk = s1_valid, s1_first, s1_last, s1_blk
            for j in range(L):
                m.d.comb += [self.weight[j].en.eq(issue), lanes[j].valid.eq(s1_valid),
                             lanes[j].mantissa.eq(self.act.data[j].mantissa),
                             lanes[j].shift.eq(self.act.data[j].shift)]
        for j in range(L):
            m.d.comb += self.weight[j].addr.eq(read_blk * cfg.in_features + (read_word << (L.bit_length() - 1)) + j)
        m.d.comb += [self.thresh.addr.eq(read_blk * cfg.threshold_grid + row),
                     self.thresh.en.eq(read_valid & read_last)]

        # stage A: the products join the accumulators; the last word's thresholds arrive with it
        accs = []
        for p in range(P):
            pe = MacAccumulator(cfg)
            m.submodules[f"mac{p}"] = pe
            m.d.comb += pe.clear.eq(a_valid & a_first)
            for j in range(L):
                m.d.comb += [pe.inputs[j].valid.eq(lanes[j].valid), pe.inputs[j].mantissa.eq(lanes[j].mantissa),
                             pe.inputs[j].shift.eq(lanes[j].shift), pe.inputs[j].weight.eq(self.weight[j].data[p])]
            accs.append(pe.acc)
        end_of_block = Signal()
        m.d.comb += end_of_block.eq(a_valid & a_last)
        m.submodules.requant = requant = SharedRequantizer(cfg, len(blk))
        m.d.comb += [requant.end_of_block.eq(end_of_block), requant.sums.eq(Cat(*accs)),
                     requant.thresholds.eq(self.thresh.data), requant.scale_shift.eq(scale), requant.block.eq(a_blk),
                     self.out.en.eq(requant.write), self.out.data.eq(requant.counts),
                     self.out.addr.eq(token * cfg.blocks + requant.written_block)]

        weights = ([(a_valid & lanes[j].valid, self.weight[j].data) for j in range(L)] if self.skip_zeros
                   else [(s1_valid, self.weight[j].data) for j in range(L)])
        drive_contract_error(m, cfg, self.error, start=fsm.ongoing("IDLE") & self.start, token=self.token,
                             exponent=self.exponent, act=(s1_valid, self.act.data), weights=weights,
                             thresholds=(end_of_block, self.thresh.data))
        return m


class SharedRequantizer(wiring.Component):
    """The MAC tile's requantizers, ``units`` of them, each serving ``group`` PEs one per cycle (:func:`requant_groups`).

    In an ``end_of_block`` cycle the block's thresholds, scale and index are
    taken; the next cycle the P sums are held (the accumulators restart with
    the next block). Each unit then requantizes its group, one output per
    cycle (:func:`requantize`), and ``write`` strobes with all P ``counts``.
    """

    def __init__(self, config: SpikeConfig, block_bits: int):
        self._config = config
        self.units, self.group = requant_groups(config)
        P = config.pes
        super().__init__({
            "end_of_block": In(1),
            "sums": In(data.ArrayLayout(signed(config.acc_bits), P)),
            "thresholds": In(data.ArrayLayout(threshold_layout(config), P)),
            "scale_shift": In(signed(config.scale_shift_bits)),
            "block": In(unsigned(block_bits)),
            "write": Out(1),
            "counts": Out(data.ArrayLayout(unsigned(config.count_bits), P)),
            "written_block": Out(unsigned(block_bits)),
        })

    def elaborate(self, platform):
        cfg, P, group = self._config, self._config.pes, self.group
        m = Module()
        params = Signal(data.ArrayLayout(threshold_layout(cfg), P), name="block_params")
        held = Signal(data.ArrayLayout(signed(cfg.acc_bits), P), name="block_sums")
        scale = ScaleShift(cfg, "scale")
        hold, running = Signal(), Signal()
        index = Signal(range(group))
        with m.If(self.end_of_block):
            m.d.sync += [params.eq(self.thresholds), *scale.load(self.scale_shift), self.written_block.eq(self.block)]
        m.d.sync += hold.eq(self.end_of_block)
        with m.If(hold):
            m.d.sync += [held.eq(self.sums), index.eq(0), running.eq(1)]
        with m.Elif(running):
            m.d.sync += [index.eq(index + 1), running.eq(index != group - 1)]
        fire, fire_index, last_fire = Signal(), Signal.like(index), Signal()
        m.d.sync += [fire.eq(running), fire_index.eq(index), last_fire.eq(running & (index == group - 1)),
                     self.write.eq(last_fire)]
        for u in range(self.units):
            members = list(range(u * group, min(P, (u + 1) * group)))
            sums = Signal(data.ArrayLayout(signed(cfg.acc_bits), group), name=f"unit{u}_sums")
            words = Signal(data.ArrayLayout(threshold_layout(cfg), group), name=f"unit{u}_params")
            m.d.comb += [sums[i].eq(held[p]) for i, p in enumerate(members)]
            m.d.comb += [words[i].eq(params[p]) for i, p in enumerate(members)]
            theta = Signal(unsigned(cfg.theta_bits), name=f"unit{u}_theta")
            with m.If(running):
                m.d.sync += theta.eq(words[index].theta)
            count = requantize(m, cfg, form_y=running, acc=sums[index], phi=words[index].phi, scale=scale,
                               theta=theta)
            with m.If(fire):
                with m.Switch(fire_index):
                    for i, p in enumerate(members):
                        with m.Case(i):
                            m.d.sync += self.counts[p].eq(count)
        return m
