"""A tile of spiking PEs computing a whole quantized linear layer (SPEC §3)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig, unsigned_bits_for
from spikeacc.hw.pe import SpikingPE
from spikeacc.hw.tile_parts import DelayLine, EventQueues, activation_lane_layout, event_layout

__all__ = ["SpikingTile", "address_bits", "tile_ports", "activation_lane_layout", "threshold_layout", "event_layout", "tile_cycles"]


def threshold_layout(cfg: SpikeConfig) -> data.StructLayout:
    """One neuron's threshold Θ and start potential Φ."""
    return data.StructLayout({"theta": unsigned(cfg.theta_bits), "phi": signed(cfg.phi_bits)})


def address_bits(cfg: SpikeConfig) -> dict[str, int]:
    """Buffer address widths of the tile's ports, derived from the configuration."""
    return {"act": unsigned_bits_for(cfg.max_tokens * cfg.k_words - 1),
            "weight": unsigned_bits_for(cfg.blocks * cfg.in_features - 1),
            "block": unsigned_bits_for(cfg.max_tokens * cfg.blocks - 1),
            "block_index": unsigned_bits_for(cfg.blocks)}


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
        "busy": Out(1),
        "done": Out(1),
        "cycles": Out(32),
        "block": Out(unsigned(widths["block_index"])),
        "act": In(memory.ReadPort.Signature(addr_width=widths["act"],
                                            shape=data.ArrayLayout(activation_lane_layout(cfg), cfg.lanes))),
        "weight": In(memory.ReadPort.Signature(addr_width=widths["weight"],
                                               shape=data.ArrayLayout(signed(cfg.weight_bits), cfg.pes))
                     ).array(cfg.lanes),
        "thresh": In(memory.ReadPort.Signature(addr_width=widths["block"], shape=data.ArrayLayout(thresholds, cfg.pes))),
        "out": In(memory.WritePort.Signature(addr_width=widths["block"],
                                             shape=data.ArrayLayout(unsigned(cfg.count_bits), cfg.pes))),
    }


BUFFERS = ("act", "weight", "thresh", "out")


def tile_cycles(cfg: SpikeConfig, nonzero_per_magnitude) -> dict:
    """Cycles of one token-layer, walking the control FSM state by state.

    ``nonzero_per_magnitude[j]`` is the number of elements with |m| = j
    (j = 1..2^b_a − 1). Returns the exact count the tile's ``cycles`` output
    reports, the ideal ``(N/P)·⌈K_nz/L⌉`` and the dense bound ``K·N/(L·P) + T·N/P``.
    """
    rows = sum(max(1, -(-int(nonzero_per_magnitude[m]) // cfg.lanes)) for m in range(1, cfg.window))
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
    t = last_fire + SpikingTile.PIPELINE + cfg.max_count + 4   # DRAIN: capture, then done
    nonzero = sum(int(nonzero_per_magnitude[m]) for m in range(1, cfg.window))
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
    output buffer a fixed ``max_count + 2`` cycles later.

    Cycles per token-layer (exactly, see :func:`tile_cycles`), with
    ``R = Σ_{t=1}^{T−1} max(1, ⌈n_t/L⌉)`` rows of events per block::

        (K/L + 2)                                  encode
        + (N/P) · (1 + R)                          blocks (each at least 2^b_out + 2
                                                   cycles after block 0, so counts are
                                                   captured before the next fire)
        + 1 + 2 + 2^b_out + 3                      last fire, pipeline, drain

    against the ideal ``(N/P)·⌈K_nz/L⌉`` (K_nz nonzero mantissas) and the
    dense bound ``K·N/(L·P) + T·N/P``. The overhead is the encode pass, the
    open cycle and partly filled rows (at most T − 1 per block), so
    utilization approaches 1 as K grows: measured 90% at K = 576 and 98.6% at
    K = 4096 and 11008 with P = 32, L = 2.

    Buffers sit outside the tile as synchronous-read memories (one cycle of
    latency, as SRAM macros and FPGA block RAM behave). Word layouts:

    - activations: address ``token·K/L + word``, L × :func:`activation_lane_layout`;
    - weights: address ``block·K + k``, P × signed(b_w + 1), one read port per lane;
    - thresholds: address ``token·N/P + block``, P × :func:`threshold_layout`;
    - output counts: address ``token·N/P + block``, P × unsigned(b_out).

    Each read port's ``en`` is high only on cycles whose data the tile uses
    (the encode pass, lanes carrying an event, a block's open).

    Members
    -------
    start : In(1)
        Begin computing token ``token`` (ignored while busy).
    token : In(token_bits)
    busy : Out(1)
    done : Out(1)
        Strobes when the token's last output word has been written.
    cycles : Out(32)
        Cycles since the last ``start``, frozen at ``done``.
    block : Out
        Block being replayed (progress).
    act, weight[L], thresh : In(memory.ReadPort.Signature)
        Buffer read ports as above (``addr``, ``en`` out of the tile, ``data`` in).
    out : In(memory.WritePort.Signature)
        Output-count write port (``addr``, ``data``, ``en`` out of the tile).
    """

    PIPELINE = 2     # sequencer -> queue read -> weight read -> PE
    ENCODE_TAIL = 2  # after the last activation read: its data arrives, then the queues settle

    @staticmethod
    def fire_gap_for(cfg: SpikeConfig) -> int:
        """Fewest cycles between two fires, so a block's counts are captured before the next fire."""
        return cfg.max_count + 3

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
        return {"pipeline": self.PIPELINE, "fire_capture_delay": cfg.max_count + 2, "fire_gap": self.fire_gap,
                "encode_cycles": cfg.k_words + self.ENCODE_TAIL, "lanes": cfg.lanes, "pes": cfg.pes}

    def elaborate(self, platform):
        """The sequencer (stage 0), a two-stage replay pipeline into the PEs, and the capture delay line."""
        cfg = self._config
        L, P, T = cfg.lanes, cfg.pes, cfg.window
        lane_bits = unsigned_bits_for(L - 1) if L > 1 else 0
        m = Module()
        m.submodules.queues = queues = EventQueues(cfg)
        m.submodules.capture = capture = DelayLine(self.fire_gap - 1, unsigned_bits_for(cfg.blocks))

        # ---- control state ----
        token = Signal(unsigned(cfg.token_bits))
        word = Signal(unsigned(unsigned_bits_for(cfg.k_words)))
        act_valid = Signal()
        blk = Signal(unsigned(unsigned_bits_for(cfg.blocks)))
        step = Signal(unsigned(cfg.step_bits + 1))
        row = Signal(unsigned(unsigned_bits_for(queues.depth)))
        since_fire = Signal(unsigned(unsigned_bits_for(self.fire_gap)), init=self.fire_gap)
        m.d.comb += self.block.eq(blk)

        # ---- encode: the activation word read last cycle goes into the queues ----
        m.d.comb += [queues.write.eq(act_valid), queues.lanes.eq(self.act.data),
                     queues.base.eq((word - 1) << lane_bits), queues.row.eq(row)]

        # ---- sequencer (stage 0) ----
        cmd_open, cmd_fire, cmd_step = Signal(), Signal(), Signal()
        cmd_lanes = Signal(L)   # lanes holding an event of the current step's row
        cmd_spikes = Signal(L)  # the same, only while replaying a step
        cur_count = Signal(unsigned(cfg.k_bits + 1))
        m.d.comb += cur_count.eq(queues.count[(T - step)[:cfg.a_bits]])
        last_row = Signal()
        m.d.comb += last_row.eq(((row + 1) << lane_bits) >= cur_count)
        for j in range(L):
            m.d.comb += cmd_lanes[j].eq(((row << lane_bits) + j) < cur_count)
        m.d.comb += self.act.addr.eq(token * cfg.k_words + word)
        m.d.comb += self.thresh.en.eq(cmd_open)  # Θ/Φ are latched into stage 2 as the block opens
        m.d.comb += self.thresh.addr.eq(token * cfg.blocks + blk)
        m.d.sync += since_fire.eq(Mux(since_fire == self.fire_gap, since_fire, since_fire + 1))
        m.d.sync += act_valid.eq(0)

        m.d.sync += self.done.eq(0)
        with m.FSM(name="control") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += queues.clear.eq(1)
                    m.d.sync += [token.eq(self.token), word.eq(0), self.cycles.eq(0), blk.eq(0)]
                    m.next = "ENCODE"
            with m.State("ENCODE"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(word != cfg.k_words):
                    m.d.comb += self.act.en.eq(1)
                    m.d.sync += [word.eq(word + 1), act_valid.eq(1)]
                with m.Elif(~act_valid):
                    m.next = "OPEN"
            with m.State("OPEN"):  # step 0 of block blk: load Θ/Φ, fire the previous block
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If((blk == 0) | (since_fire == self.fire_gap)):
                    m.d.comb += [cmd_open.eq(1), cmd_fire.eq(blk != 0)]
                    with m.If(blk != 0):
                        m.d.sync += since_fire.eq(1)
                    m.d.sync += [step.eq(1), row.eq(0)]
                    m.next = "STEP"
            with m.State("STEP"):  # steps 1..T-1: magnitude T - step, L events per cycle
                m.d.sync += self.cycles.eq(self.cycles + 1)
                m.d.comb += [cmd_step.eq(last_row), cmd_spikes.eq(cmd_lanes)]
                with m.If(last_row):
                    m.d.sync += [row.eq(0), step.eq(step + 1)]
                    with m.If(step == T - 1):
                        with m.If(blk == cfg.blocks - 1):
                            m.next = "LAST_FIRE"
                        with m.Else():
                            m.d.sync += blk.eq(blk + 1)
                            m.next = "OPEN"
                with m.Else():
                    m.d.sync += row.eq(row + 1)
            with m.State("LAST_FIRE"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(since_fire == self.fire_gap):
                    m.d.comb += cmd_fire.eq(1)
                    m.d.sync += since_fire.eq(1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If((since_fire == self.fire_gap) & ~capture.pending):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # ---- stage 1: queue data -> events; issue weight reads ----
        s1_open, s1_fire, s1_step = Signal(), Signal(), Signal()
        s1_lanes = Signal(L)
        s1_blk = Signal.like(blk)
        m.d.sync += [s1_open.eq(cmd_open), s1_fire.eq(cmd_fire), s1_step.eq(cmd_step),
                     s1_lanes.eq(cmd_spikes), queues.select.eq(T - step), s1_blk.eq(blk)]
        for j in range(L):
            m.d.comb += [self.weight[j].addr.eq(s1_blk * cfg.in_features + queues.events[j].index),
                         self.weight[j].en.eq(s1_lanes[j])]

        # ---- stage 2: weights arrive; drive the PEs ----
        s2_open, s2_fire, s2_step = Signal(), Signal(), Signal()
        s2_lanes = Signal(L)
        s2_events = Signal(data.ArrayLayout(event_layout(cfg), L))
        s2_thresh = Signal(data.ArrayLayout(threshold_layout(cfg), P))
        m.d.sync += [s2_open.eq(s1_open), s2_fire.eq(s1_fire), s2_step.eq(s1_step), s2_lanes.eq(s1_lanes),
                     s2_thresh.eq(self.thresh.data), s2_events.eq(queues.events)]
        for p in range(P):
            pe = SpikingPE(cfg)
            m.submodules[f"pe{p}"] = pe
            m.d.comb += [pe.start.eq(s2_open), pe.fire.eq(s2_fire), pe.step.eq(s2_step),
                         pe.theta.eq(s2_thresh[p].theta), pe.phi.eq(s2_thresh[p].phi),
                         self.out.data[p].eq(pe.count)]
            for j in range(L):
                m.d.comb += [pe.spikes[j].valid.eq(s2_lanes[j]), pe.spikes[j].negative.eq(s2_events[j].negative),
                             pe.spikes[j].shift.eq(s2_events[j].shift),
                             pe.spikes[j].weight.eq(self.weight[j].data[p])]

        # ---- capture each fired block's counts once every PE has finished firing ----
        fired_blk = Signal.like(blk)
        # the block fired by s2_fire: the one before the opened block, or the last one
        m.d.sync += fired_blk.eq(Mux(s1_open, s1_blk - 1, s1_blk))
        m.d.comb += [capture.strobe.eq(s2_fire), capture.tag.eq(fired_blk),
                     self.out.en.eq(capture.delayed), self.out.addr.eq(token * cfg.blocks + capture.delayed_tag)]
        return m
