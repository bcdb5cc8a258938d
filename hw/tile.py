"""A tile of spiking PEs computing a whole quantized linear layer (SPEC §3)."""

from __future__ import annotations

import numpy as np
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig, unsigned_bits_for
from spikeacc.hw.pe import SpikingPE
from spikeacc.hw.sequencer import Sequencer
from spikeacc.hw.tile_parts import CountdownDelay, EventQueues, activation_lane_layout, drive_contract_error, event_layout

__all__ = ["SpikingTile", "address_bits", "tile_ports", "activation_lane_layout", "threshold_layout", "event_layout", "tile_cycles",
           "token_cycles", "spike_histogram", "outlier_rows"]


def threshold_layout(cfg: SpikeConfig) -> data.StructLayout:
    """One neuron's threshold Θ and start potential Φ."""
    return data.StructLayout({"theta": unsigned(cfg.theta_bits), "phi": signed(cfg.phi_bits)})


def spike_layout(cfg: SpikeConfig) -> data.StructLayout:
    """What a lane carries from the queues to the PEs besides the weight: polarity and shift."""
    return data.StructLayout({"negative": unsigned(1), "shift": unsigned(cfg.event_shift_bits)})


def address_bits(cfg: SpikeConfig) -> dict[str, int]:
    """Buffer address widths of the tile's ports, derived from the configuration."""
    return {"act": unsigned_bits_for(cfg.max_tokens * cfg.k_words - 1),
            "weight": unsigned_bits_for(cfg.blocks * cfg.in_features - 1),
            "thresh": unsigned_bits_for(cfg.threshold_words - 1),
            "block": unsigned_bits_for(cfg.max_tokens * cfg.blocks - 1),
            "block_index": unsigned_bits_for(cfg.blocks)}


def threshold_row_bits(cfg: SpikeConfig) -> int:
    """Low bits of the token exponent d that pick one of the R threshold constants (R a power of two)."""
    return cfg.threshold_grid.bit_length() - 1


def decode_exponent(m: Module, cfg: SpikeConfig, exponent) -> tuple:
    """``(row, scale_shift)`` of a token exponent d: row ``d mod R`` (its low bits), shift ``⌊d/R⌋`` (arithmetic)."""
    bits = threshold_row_bits(cfg)
    row = Signal(range(cfg.threshold_grid), name="threshold_row")
    scale = Signal(signed(cfg.scale_shift_bits), name="scale_shift")
    m.d.comb += [row.eq(exponent[:bits] if bits else 0), scale.eq(exponent >> bits)]
    return row, scale


def tile_ports(cfg: SpikeConfig, thresholds: data.StructLayout) -> dict:
    """The signature every tile shares (spiking and MAC): control, then the four buffer ports.

    The buffers are ``amaranth.lib.memory`` port signatures seen from the
    tile's side (flipped): synchronous read ports with an enable for the
    activation, weight (one per lane) and threshold buffers, a write port for
    the output counts. ``en`` is high exactly on the cycles whose read data
    the tile uses one cycle later, so an integrator may share or gate the
    SRAM on it. Only the threshold word differs between designs
    (``thresholds``), so both run in the same harness on the same vector files.
    """
    widths = address_bits(cfg)
    return {
        "start": In(1),
        "token": In(unsigned(cfg.token_bits)),
        "exponent": In(signed(cfg.exponent_bits)),
        "busy": Out(1),
        "done": Out(1),
        "cycles": Out(32),
        "block": Out(unsigned(widths["block_index"])),
        "error": Out(1),
        "act": In(memory.ReadPort.Signature(addr_width=widths["act"],
                                            shape=data.ArrayLayout(activation_lane_layout(cfg), cfg.lanes))),
        "weight": In(memory.ReadPort.Signature(addr_width=widths["weight"],
                                               shape=data.ArrayLayout(signed(cfg.weight_bits), cfg.pes))
                     ).array(cfg.lanes),
        "thresh": In(memory.ReadPort.Signature(addr_width=widths["thresh"], shape=data.ArrayLayout(thresholds, cfg.pes))),
        "out": In(memory.WritePort.Signature(addr_width=widths["block"],
                                             shape=data.ArrayLayout(unsigned(cfg.count_bits), cfg.pes))),
    }


BUFFERS = ("act", "weight", "thresh", "out")


def spike_histogram(cfg: SpikeConfig, mant_row) -> tuple[np.ndarray, int]:
    """One token's spiking elements per magnitude |m| (index 0..T−1) and its Kirin outliers."""
    mag = np.abs(np.asarray(mant_row, dtype=np.int64))
    outlier = mag > cfg.spike_max
    return np.bincount(mag[~outlier], minlength=cfg.window)[:cfg.window], int(outlier.sum())


def token_cycles(cfg: SpikeConfig, mant) -> list[int]:
    """The tile's ``cycles`` for each token (row) of ``mant``, by :func:`tile_cycles`."""
    return [tile_cycles(cfg, *spike_histogram(cfg, row))["total"] for row in np.atleast_2d(mant)]


def outlier_rows(cfg: SpikeConfig, outliers: int) -> int:
    """Kirin: cycles the integer path adds to each block, one row of L outliers per bit plane."""
    return cfg.outlier_planes * -(-int(outliers) // cfg.lanes)


def tile_cycles(cfg: SpikeConfig, nonzero_per_magnitude, outliers: int = 0) -> dict:
    """Cycles of one token-layer, walking the control FSM state by state.

    ``nonzero_per_magnitude[j]`` is the number of spiking elements with |m| = j
    (j = 1..2^b_a − 1), ``outliers`` the number of Kirin integer outliers.
    Returns the exact count the tile's ``cycles`` output reports, the ideal
    ``(N/P)·⌈K_nz/L⌉`` and the dense bound ``K·N/(L·P) + T·N/P``.
    """
    rows = sum(max(1, -(-int(nonzero_per_magnitude[m]) // cfg.lanes)) for m in range(1, cfg.window))
    rows += outlier_rows(cfg, outliers)
    gap = SpikingTile.fire_gap_for(cfg)
    t = cfg.k_words + SpikingTile.ENCODE_TAIL  # ENCODE: one read per word, then drain the read pipeline
    last_fire = None
    for b in range(cfg.blocks):
        if last_fire is not None:            # OPEN waits until the previous fire has been captured
            t = max(t, last_fire + gap)
        if b > 0:
            last_fire = t
        t += 1 + rows                        # OPEN (step 0), then the rows of steps 1..T-1
    t = max(t, last_fire + gap) if last_fire is not None else t
    last_fire = t                            # LAST_FIRE
    t = last_fire + SpikingTile.PIPELINE + gap + 1   # DRAIN: the last counts are captured, then done
    nonzero = sum(int(nonzero_per_magnitude[m]) for m in range(1, cfg.window)) + int(outliers)
    return {
        "total": t,
        "ideal": cfg.blocks * -(-nonzero // cfg.lanes),
        "dense_bound": cfg.in_features * cfg.out_features // (cfg.lanes * cfg.pes) + cfg.window * cfg.blocks,
    }


class SpikingTile(wiring.Component):
    """P spiking PEs sharing a broadcast of L spike events per cycle: one linear layer.

    Per token the tile first **encodes**: it reads the token's (mantissa,
    shift) pairs, L per cycle, and sorts every nonzero mantissa into one of
    2^b_a − 1 event queues by magnitude |m| (its TTFS step is ``T − |m|``).
    Zero mantissas are dropped here: they cost no weight read and no add. Each
    queue has L banks filled round-robin, so L events of one magnitude are
    written and later read in one cycle without conflicts.

    Then, for each block of P output neurons, it **replays** the queues in time
    order: step t broadcasts the events of magnitude ``T − t``, L per cycle;
    each PE reads its weights (one read port per lane), adds ``±(w << e)`` to
    its current, and the last cycle of each step adds the current to the
    membrane. The cycle that opens a block is step 0 (when no spike can arrive),
    loads Θ/Φ and fires the previous block, whose counts are written to the
    output buffer a fixed :meth:`write_delay_for` cycles later.

    Kirin mode (``config.outlier_bits`` = B, SPEC §4): elements with
    ``|m| > 2^b_a − 1`` are integer outliers. The encoder queues them apart;
    after the spikes of the last step each block replays the outlier rows
    once per bit plane j = 0..B − 2, a lane spiking where bit j of |q| is set
    with shift ``e + j``, and the last of these rows closes the step: the
    integer path is shift-and-add through the PEs' own spike adders, so a
    PE gains no multiplier and one more shift bit, and a token without
    outliers costs nothing extra. It adds ``(B − 1)·⌈n_q/L⌉`` cycles per block
    for n_q outliers (a 5×8 multiplier per PE and lane would take one row
    instead of B − 1; ``spikeacc synth`` measures what the shift-add costs).

    Cycles per token-layer, exactly what the ``cycles`` port reports (and
    the number of cycles ``busy`` is high; see :func:`tile_cycles`), with
    ``E = Σ_{t=1}^{T−1} max(1, ⌈n_t/L⌉) + (B − 1)·⌈n_q/L⌉`` rows of events per
    block (n_q = 0 outside Kirin mode)::

        (K/L + 2)                                  encode
        + (1 + E)                                  block 0: open, then the rows
        + (N/P − 1) · max(1 + E, G)                further blocks (a fire waits until the
                                                   previous block's counts are captured)
        + G + 3                                    last fire, pipeline, drain

    with the fire gap ``G`` = b_out + 4 (``firing="division"``, the default:
    each PE finds its count by restoring division, one bit per cycle) or
    2^b_out + 2 (``firing="serial"``, one spike per cycle; ``"silence"``,
    Kirin's output window of 2^b_out − 1 steps, one spike per neuron).

    against the ideal ``(N/P)·⌈K_nz/L⌉`` (K_nz nonzero mantissas) and the
    dense bound ``K·N/(L·P) + T·N/P``. The overhead is the encode pass, the
    open cycle and partly filled rows (at most T − 1 per block), so
    utilization approaches 1 as K grows: measured 90% at K = 576 and 98.6% at
    K = 4096 and 11008 with P = 32, L = 2.

    Buffers sit outside the tile as synchronous-read memories (one cycle of
    latency, as SRAM macros and FPGA block RAM behave). Word layouts:

    - activations: address ``token·K/L + word``, L × :func:`activation_lane_layout`;
    - weights: address ``block·K + k``, P × signed(b_w + 1), one read port per lane;
    - thresholds: address ``block·R + (d mod R)``, P × :func:`threshold_layout`: R
      per-neuron constants (``threshold_grid``), read as each block opens with the
      row the token's exponent d picks; the scale shift ``⌊d/R⌋`` goes to the PEs;
    - output counts: address ``token·N/P + block``, P × unsigned(b_out).

    Each read port's ``en`` is high only on cycles whose data the tile uses
    (the encode pass, lanes carrying an event, a block's open).

    Members
    -------
    start : In(1)
        Begin computing token ``token`` (ignored while busy).
    token : In(token_bits)
    exponent : In(signed(exponent_bits))
        The token's step exponent d (``exponent_min..exponent_max``), sampled with
        ``start``: threshold row ``d mod R``, scale shift ``⌊d/R⌋``. 0 with static steps.
    busy : Out(1)
    done : Out(1)
        Strobes when the token's last output word has been written.
    cycles : Out(32)
        Cycles since the last ``start``, frozen at ``done``.
    block : Out
        Block being replayed (progress).
    error : Out(1)
        A word read for this token was outside the input contract (see
        :func:`~spikeacc.hw.tile_parts.drive_contract_error`); the token's
        counts are then don't-care. Cleared at ``start``, valid with ``done``.
    act, weight[L], thresh : In(memory.ReadPort.Signature)
        Buffer read ports as above (``addr``, ``en`` out of the tile, ``data`` in).
    out : In(memory.WritePort.Signature)
        Output-count write port (``addr``, ``data``, ``en`` out of the tile).
    """

    PIPELINE = 2     # sequencer -> queue read -> weight read -> PE
    ENCODE_TAIL = 2  # after the last activation read: its data arrives, then the queues settle

    @staticmethod
    def fire_gap_for(cfg: SpikeConfig) -> int:
        """Fewest cycles between two fires, so a block's counts are captured before the next fire.

        The PEs' counts are final ``cfg.fire_cycles`` cycles after a fire
        (b_out + 2 by division, 2^b_out serially); the capture takes them one
        cycle later, and the next fire may load the PEs the cycle after that.
        """
        return cfg.fire_cycles + 2

    @classmethod
    def write_delay_for(cls, cfg: SpikeConfig) -> int:
        """Cycles from a fire command (the ``thresh__en`` opening the next block) to the fired block's ``out__en``."""
        return cls.PIPELINE + cls.fire_gap_for(cfg) - 1

    def __init__(self, config: SpikeConfig):
        if not isinstance(config, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {config!r}")
        cfg = config
        self._config = cfg
        super().__init__(tile_ports(cfg, threshold_layout(cfg)))

    @property
    def config(self) -> SpikeConfig:
        return self._config

    @property
    def fire_gap(self) -> int:
        return self.fire_gap_for(self._config)

    def timing(self) -> dict:
        """The constants :func:`tile_cycles` uses, for manifests (one source for both)."""
        cfg = self._config
        return {"pipeline": self.PIPELINE, "fire_capture_delay": self.fire_gap - 1, "fire_gap": self.fire_gap,
                "write_delay": self.write_delay_for(cfg),
                "encode_cycles": cfg.k_words + self.ENCODE_TAIL, "lanes": cfg.lanes, "pes": cfg.pes}

    def elaborate(self, platform):
        """The sequencer, the event queues, a two-stage replay pipeline into the PEs, and the capture delay line."""
        cfg = self._config
        L, P = cfg.lanes, cfg.pes
        m = Module()
        m.submodules.sequencer = seq = Sequencer(cfg, self.fire_gap)
        m.submodules.queues = queues = EventQueues(cfg)
        m.submodules.capture = capture = CountdownDelay(self.fire_gap - 1, unsigned_bits_for(cfg.blocks))
        token, blk = seq.current_token, seq.block
        exponent = Signal(signed(cfg.exponent_bits))
        with m.If(self.start & ~seq.busy):
            m.d.sync += exponent.eq(self.exponent)
        row, scale = decode_exponent(m, cfg, exponent)

        # ---- stage 0: the sequencer, its buffer reads and the encode pass into the queues ----
        m.d.comb += [seq.start.eq(self.start), seq.token.eq(self.token), self.busy.eq(seq.busy),
                     self.done.eq(seq.done), self.cycles.eq(seq.cycles), self.block.eq(blk),
                     self.act.addr.eq(token * cfg.k_words + seq.word), self.act.en.eq(seq.act_en),
                     self.thresh.addr.eq(blk * cfg.threshold_grid + row),
                     self.thresh.en.eq(seq.open),  # Θ/Φ are latched into stage 2 as the block opens
                     queues.clear.eq(seq.queue_clear), queues.write.eq(seq.queue_write),
                     queues.base.eq(seq.queue_base), queues.lanes.eq(self.act.data),
                     seq.queue_count.eq(queues.count), queues.row.eq(seq.row),
                     queues.read_magnitude.eq(seq.magnitude), queues.read.eq(seq.lanes),
                     seq.capture_pending.eq(capture.pending),
                     seq.outlier_count.eq(queues.outlier_count), queues.read_outliers.eq(seq.read_outliers)]

        # ---- stage 1: queue data -> events; issue weight reads ----
        s1_open, s1_fire, s1_step = Signal(), Signal(), Signal()
        s1_lanes = Signal(L)
        s1_blk = Signal.like(blk)
        m.d.sync += [s1_open.eq(seq.open), s1_fire.eq(seq.fire), s1_step.eq(seq.step),
                     s1_lanes.eq(seq.lanes), s1_blk.eq(blk)]
        # what each lane carries to the PEs: a spike, or (Kirin) bit plane j of an outlier as a spike
        # with shift e + j, present only where that bit of |q| is set
        s1_events = Signal(data.ArrayLayout(spike_layout(cfg), L))
        s1_spiking = Signal(L)
        if cfg.kirin:
            s1_outliers, s1_plane = Signal(), Signal.like(seq.plane)
            m.d.sync += [s1_outliers.eq(seq.read_outliers), s1_plane.eq(seq.plane)]
        for j in range(L):
            spike, outlier = queues.events[j], queues.outliers[j]
            index = spike.index
            m.d.comb += [s1_events[j].negative.eq(spike.negative), s1_events[j].shift.eq(spike.shift),
                         s1_spiking[j].eq(s1_lanes[j])]
            if cfg.kirin:
                index = Mux(s1_outliers, outlier.index, spike.index)
                with m.If(s1_outliers):
                    m.d.comb += [s1_events[j].negative.eq(outlier.negative),
                                 s1_events[j].shift.eq(outlier.shift + s1_plane),
                                 s1_spiking[j].eq(s1_lanes[j] & outlier.magnitude.bit_select(s1_plane, 1))]
            m.d.comb += [self.weight[j].addr.eq(s1_blk * cfg.in_features + index),
                         self.weight[j].en.eq(s1_spiking[j])]

        # ---- stage 2: weights arrive; drive the PEs ----
        s2_open, s2_fire, s2_step = Signal(), Signal(), Signal()
        s2_lanes = Signal(L)
        s2_events = Signal(data.ArrayLayout(spike_layout(cfg), L))
        s2_thresh = Signal(data.ArrayLayout(threshold_layout(cfg), P))
        m.d.sync += [s2_open.eq(s1_open), s2_fire.eq(s1_fire), s2_step.eq(s1_step), s2_lanes.eq(s1_spiking)]
        # load only what the PEs will use: Θ/Φ as a block opens, events when a lane carries one
        # (enables that synthesis keeps, so these wide registers can be clock-gated)
        with m.If(s1_open):
            m.d.sync += s2_thresh.eq(self.thresh.data)
        with m.If(s1_spiking.any()):
            m.d.sync += s2_events.eq(s1_events)
        for p in range(P):
            pe = SpikingPE(cfg)
            m.submodules[f"pe{p}"] = pe
            m.d.comb += [pe.start.eq(s2_open), pe.fire.eq(s2_fire), pe.step.eq(s2_step),
                         pe.theta.eq(s2_thresh[p].theta), pe.phi.eq(s2_thresh[p].phi), pe.scale_shift.eq(scale),
                         self.out.data[p].eq(pe.count)]
            for j in range(L):
                m.d.comb += [pe.spikes[j].valid.eq(s2_lanes[j]), pe.spikes[j].negative.eq(s2_events[j].negative),
                             pe.spikes[j].shift.eq(s2_events[j].shift),
                             pe.spikes[j].weight.eq(self.weight[j].data[p])]

        drive_contract_error(m, cfg, self.error, start=seq.queue_clear, token=self.token, exponent=self.exponent,
                             act=(seq.queue_write, self.act.data),
                             weights=[(s2_lanes[j], self.weight[j].data) for j in range(L)],
                             thresholds=(s1_open, self.thresh.data))

        # ---- capture each fired block's counts once every PE has finished firing ----
        fired_blk = Signal.like(blk)
        # the block fired by s2_fire: the one before the opened block, or the last one
        m.d.sync += fired_blk.eq(Mux(s1_open, s1_blk - 1, s1_blk))
        m.d.comb += [capture.strobe.eq(s2_fire), capture.tag.eq(fired_blk),
                     self.out.en.eq(capture.delayed), self.out.addr.eq(token * cfg.blocks + capture.delayed_tag)]
        return m
