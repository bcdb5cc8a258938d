"""The spiking accumulate-only processing element: one integrate-and-fire neuron (SPEC §3)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig

__all__ = ["SpikingPE", "spike_event_layout"]


def spike_event_layout(cfg: SpikeConfig) -> data.StructLayout:
    """One input spike as a PE sees it: polarity, shift and the synapse's weight code.

    The polarity is ``sign(m)`` of the TTFS-encoded mantissa; the shift is the
    salient exponent e, applied to the weight (``w << e``), never a multiply.
    """
    return data.StructLayout({
        "valid": unsigned(1),
        "negative": unsigned(1),
        "shift": unsigned(cfg.shift_bits),
        "weight": signed(cfg.weight_bits),
    })


class SpikingPE(wiring.Component):
    """Integrate-and-fire neuron with a TTFS current ramp and threshold rescaling.

    Implements SPEC §3. During a window of T steps, every arriving spike adds
    ``±(w << e)`` to the synaptic current I, and each step adds I to the
    membrane. Because a mantissa of magnitude |m| spikes at step ``T − |m|``, its
    weight is added to the membrane |m| times: after the window the membrane
    holds ``Φ + 2^F·Σ w·m·2^e`` using adds and shifts only. The neuron then
    fires while its potential is ≥ Θ, subtracting Θ each time (reset by
    subtraction), at most ``2^b_out − 1`` times; the spike count is the next
    layer's activation code. A negative potential fires nothing.

    The firing unit has its own potential register, so ``fire`` and ``start``
    may be asserted in the same cycle: the next window integrates while the
    previous one fires.

    Latency and throughput: ``lanes`` spikes per cycle; a window takes one
    cycle per step plus one extra cycle for every further ``lanes`` spikes
    within a step; firing n spikes takes n + 1 cycles after ``fire``
    (``done`` strobes then, with ``count`` valid from that cycle until the
    next ``fire``).

    Parameters
    ----------
    config : SpikeConfig
        Bit widths; ``in_features`` bounds the accumulator.

    Members
    -------
    start : In(1)
        Begin a window: current ← 0, membrane ← ``phi``, latch ``theta``.
    spikes : In(ArrayLayout(spike_event_layout, lanes))
        Spikes arriving this cycle, one per lane.
    step : In(1)
        This cycle closes a time step: membrane += current (including this
        cycle's spikes) · 2^F.
    fire : In(1)
        The window is over (no spikes or step this cycle): start firing.
    theta : In(theta_bits)
        Threshold Θ (fixed point, F fraction bits), sampled at ``start``.
    phi : In(signed(phi_bits))
        Start potential Φ (fixed point), sampled at ``start``.
    spike_out : Out(1)
        Strobes once per output spike.
    count : Out(count_bits)
        Spikes fired in the last window.
    done : Out(1)
        Strobes when firing has finished.
    busy : Out(1)
        High while firing.
    """

    def __init__(self, config: SpikeConfig):
        if not isinstance(config, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {config!r}")
        self._config = config
        super().__init__({
            "start": In(1),
            "spikes": In(data.ArrayLayout(spike_event_layout(config), config.lanes)),
            "step": In(1),
            "fire": In(1),
            "theta": In(unsigned(config.theta_bits)),
            "phi": In(signed(config.phi_bits)),
            "spike_out": Out(1),
            "count": Out(unsigned(config.count_bits)),
            "done": Out(1),
            "busy": Out(1),
        })

    @property
    def config(self) -> SpikeConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()

        current = Signal(signed(cfg.current_bits))
        membrane = Signal(signed(cfg.membrane_bits))
        theta_latched = Signal(unsigned(cfg.theta_bits))

        # Sum of this cycle's arriving spikes: ±(w << e) per lane, adds and shifts only.
        arriving = []
        for lane, spike in enumerate(self.spikes):
            shifted = Signal(signed(cfg.weight_bits + cfg.shift_max), name=f"shifted{lane}")
            m.d.comb += shifted.eq(spike.weight << spike.shift)
            contribution = Signal(signed(cfg.weight_bits + cfg.shift_max + 1), name=f"synapse{lane}")
            m.d.comb += contribution.eq(Mux(spike.valid, Mux(spike.negative, -shifted, shifted), 0))
            arriving.append(contribution)
        current_next = Signal(signed(cfg.current_bits))
        m.d.comb += current_next.eq(current + sum(arriving))

        with m.If(self.start):
            m.d.sync += [
                current.eq(0),
                membrane.eq(self.phi),
                theta_latched.eq(self.theta),
            ]
        with m.Else():
            m.d.sync += current.eq(current_next)
            with m.If(self.step):
                m.d.sync += membrane.eq(membrane + (current_next << cfg.frac_bits))

        # Firing unit: reset by subtraction, one spike per cycle.
        potential = Signal(signed(cfg.membrane_bits), name="fire_potential")
        fire_theta = Signal(unsigned(cfg.theta_bits))
        can_fire = Signal()
        m.d.comb += can_fire.eq((potential >= fire_theta) & (self.count != cfg.max_count))
        m.d.sync += [self.spike_out.eq(0), self.done.eq(0)]
        with m.If(self.fire):
            m.d.sync += [
                potential.eq(membrane),
                fire_theta.eq(theta_latched),
                self.count.eq(0),
                self.busy.eq(1),
            ]
        with m.Elif(self.busy):
            with m.If(can_fire):
                m.d.sync += [
                    potential.eq(potential - fire_theta),
                    self.count.eq(self.count + 1),
                    self.spike_out.eq(1),
                ]
            with m.Else():
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
