"""The spiking accumulate-only processing element: one integrate-and-fire neuron (SPEC §3)."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeacc.config import SpikeConfig

__all__ = ["SpikingPE", "ScaleShift", "spike_event_layout"]


def spike_event_layout(cfg: SpikeConfig) -> data.StructLayout:
    """One input spike as a PE sees it: polarity, shift and the synapse's weight code.

    The polarity is ``sign(m)`` of the TTFS-encoded mantissa; the shift is the
    salient exponent e, applied to the weight (``w << e``), never a multiply.
    In Kirin mode a bit plane j of an integer outlier arrives as a spike with
    shift ``e + j`` (``config.event_shift_max``).
    """
    return data.StructLayout({
        "valid": unsigned(1),
        "negative": unsigned(1),
        "shift": unsigned(cfg.event_shift_bits),
        "weight": signed(cfg.weight_bits),
    })


class ScaleShift:
    """A token's scale shift s held as the two shift amounts of ``⌊2^F·acc / 2^s⌋``: left F − s, right s − F.

    Decoded once when the neuron loads its thresholds (not per cycle), applied
    once per window. With static steps (s always 0) there is nothing to hold:
    :meth:`apply` is the constant shift by F and the loads are empty.
    """

    def __init__(self, cfg: SpikeConfig, name: str):
        self._cfg = cfg
        self.varies = cfg.scale_shift_max != cfg.scale_shift_min
        left_max, right_max = cfg.frac_bits - cfg.scale_shift_min, max(cfg.scale_shift_max - cfg.frac_bits, 0)
        self.left = Signal(range(left_max + 1), init=cfg.frac_bits, name=f"{name}_left")
        self.right = Signal(range(right_max + 1), name=f"{name}_right")

    def load(self, scale_shift) -> list:
        """Statements (for ``m.d.sync``) that take the amounts of ``scale_shift``."""
        if not self.varies:
            return []
        f = self._cfg.frac_bits
        return [self.left.eq(Mux(scale_shift <= f, f - scale_shift, 0)),
                self.right.eq(Mux(scale_shift > f, scale_shift - f, 0))]

    def copy_from(self, other: "ScaleShift") -> list:
        """Statements that hold ``other``'s amounts (a later pipeline stage)."""
        return [self.left.eq(other.left), self.right.eq(other.right)] if self.varies else []

    def apply(self, value):
        """``⌊2^F·value / 2^s⌋`` as a shift (arithmetic on the right, so it floors)."""
        if not self.varies:
            return value << (self._cfg.frac_bits - self._cfg.scale_shift_min)
        return (value << self.left) >> self.right


class SpikingPE(wiring.Component):
    """Integrate-and-fire neuron with a TTFS current ramp and threshold rescaling.

    Implements SPEC §3. During a window of T steps, every arriving spike adds
    ``±(w << e)`` to the synaptic current I, and each step adds I to the
    membrane. Because a mantissa of magnitude |m| spikes at step ``T − |m|``, its
    weight is added to the membrane |m| times: after the window the membrane
    holds ``Σ w·m·2^e`` using adds only, and firing starts from the potential
    ``V = ⌊2^F·Σ / 2^s⌋ + Φ`` (F fraction bits join there, so the register clocked at
    every step is ``acc_bits`` wide, not ``membrane_bits``; s is the token's scale
    shift, so Θ and Φ stay per-neuron constants while the token's step changes). Firing turns the
    potential V into the count ``n = clamp(floor(V/Θ), 0, 2^b_out − 1)``, the
    next layer's activation code, in one of three ways (``config.firing``):
    ``"serial"`` fires while V ≥ Θ, subtracting Θ each time (reset by
    subtraction), one spike per cycle; ``"division"`` (default) finds the
    same n by restoring division with shifted thresholds, one bit per cycle,
    still without a multiplier; ``"silence"`` is Kirin's silence threshold
    (SPEC §4): over an output window of steps k = 1..2^b_out − 1 the
    threshold falls as ``(2^b_out − k)·Θ`` (one subtraction per step) and the
    neuron fires once, at the first k with V ≥ θ_k, so ``n = 2^b_out − k``
    and ``fire_step`` = k is the TTFS time the next layer expects. A negative
    potential gives 0.

    Kirin mode (``config.outlier_bits``): an integer outlier q reaches the PE
    as the set bit planes j of |q|, spikes with shift ``e + j`` in the last
    step of the window, so ``w·q·2^e`` is integrated once; the PE stays
    adds and shifts only.

    The firing unit has its own potential register, so ``fire`` and ``start``
    may be asserted in the same cycle: the next window integrates while the
    previous one fires.

    Latency and throughput: ``lanes`` spikes per cycle; a window takes one
    cycle per step plus one extra cycle for every further ``lanes`` spikes
    within a step; the count is final ``config.fire_cycles`` cycles after
    ``fire`` at the latest (serially n + 1 for n spikes; by division b_out + 2,
    or 2 when it saturates), ``done`` strobes the cycle after, and ``count``
    stays valid until the next ``fire``.

    Parameters
    ----------
    config : SpikeConfig
        Bit widths; ``in_features`` bounds the accumulator.

    Members
    -------
    start : In(1)
        Begin a window: current ← 0, membrane ← 0, latch ``theta`` and ``phi``.
    spikes : In(ArrayLayout(spike_event_layout, lanes))
        Spikes arriving this cycle, one per lane.
    step : In(1)
        This cycle closes a time step: membrane += current (including this
        cycle's spikes).
    fire : In(1)
        The window is over (no spikes or step this cycle): start firing.
    theta : In(theta_bits)
        Threshold Θ (fixed point, F fraction bits), sampled at ``start``.
    phi : In(signed(phi_bits))
        Start potential Φ (fixed point), sampled at ``start``.
    scale_shift : In(signed(scale_shift_bits))
        The token's scale shift s (``scale_shift_min..scale_shift_max``), sampled at
        ``start``: the potential is ``⌊2^F·Σ/2^s⌋ + Φ``, a shift of the membrane by
        F − s places (left, or arithmetically right when s > F). Static steps: 0.
    spike_out : Out(1)
        Serial firing: strobes once per output spike. Division: strobes with
        ``done`` when the count is nonzero.
    count : Out(count_bits)
        Spikes fired in the last window.
    done : Out(1)
        Strobes when firing has finished.
    busy : Out(1)
        High while firing.
    fire_step : Out(count_bits)
        ``firing="silence"`` only: the output-window step k (1..2^b_out − 1) of
        the neuron's one spike, 0 when it stays silent; valid with ``done``.
        Equals ``(−count) mod 2^b_out``.
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
            "scale_shift": In(signed(config.scale_shift_bits)),
            "spike_out": Out(1),
            "count": Out(unsigned(config.count_bits)),
            "done": Out(1),
            "busy": Out(1),
            **({"fire_step": Out(unsigned(config.count_bits))} if config.firing == "silence" else {}),
        })

    @property
    def config(self) -> SpikeConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()

        current = Signal(signed(cfg.current_bits))
        # The membrane integrates the integer Σ w·m·2^e only (acc_bits wide); Φ and the
        # F fraction bits join once, at fire time, so the register clocked every step is
        # about half the width of the potential (issue #12, "narrower arithmetic").
        membrane = Signal(signed(cfg.acc_bits))
        theta_latched = Signal(unsigned(cfg.theta_bits))
        phi_latched = Signal(signed(cfg.phi_bits))
        scale = ScaleShift(cfg, "scale")   # the token's scale, decoded once per window

        # Sum of this cycle's arriving spikes: ±(w << e) per lane, adds and shifts only.
        arriving = []
        for lane, spike in enumerate(self.spikes):
            shifted = Signal(signed(cfg.weight_bits + cfg.event_shift_max), name=f"shifted{lane}")
            m.d.comb += shifted.eq(spike.weight << spike.shift)
            contribution = Signal(signed(cfg.weight_bits + cfg.event_shift_max + 1), name=f"synapse{lane}")
            m.d.comb += contribution.eq(Mux(spike.valid, Mux(spike.negative, -shifted, shifted), 0))
            arriving.append(contribution)
        current_next = Signal(signed(cfg.current_bits))
        m.d.comb += current_next.eq(current + sum(arriving))
        any_spike = Signal()
        m.d.comb += any_spike.eq(Cat(spike.valid for spike in self.spikes).any())

        with m.If(self.start):
            m.d.sync += [
                current.eq(0),
                membrane.eq(0),
                theta_latched.eq(self.theta),
                phi_latched.eq(self.phi),
                *scale.load(self.scale_shift),
            ]
        with m.Else():
            with m.If(any_spike):               # the current only changes when a spike arrives
                m.d.sync += current.eq(current_next)
            with m.If(self.step):
                m.d.sync += membrane.eq(membrane + current_next)

        # V = ⌊2^F·Σ/2^s⌋ + Φ, formed only in the cycle that fires: the membrane reaches the
        # shifter and adder through AND gates opened by ``fire`` (operand isolation), so they
        # do not toggle at every step while the neuron integrates.
        isolated = Signal(signed(cfg.acc_bits))
        m.d.comb += isolated.eq(Mux(self.fire, membrane, 0))
        scaled = Signal(signed(cfg.membrane_bits), name="scaled_membrane")
        m.d.comb += scaled.eq(scale.apply(isolated))
        potential_at_fire = Signal(signed(cfg.membrane_bits))
        m.d.comb += potential_at_fire.eq(scaled + phi_latched)

        if cfg.firing == "division":
            self._fire_by_division(m, potential_at_fire, theta_latched)
        elif cfg.firing == "silence":
            self._fire_at_silence_threshold(m, potential_at_fire, theta_latched)
        else:
            self._fire_serially(m, potential_at_fire, theta_latched)
        return m

    def _fire_at_silence_threshold(self, m, potential_at_fire, theta_latched):
        """Kirin's output window: one compare per step against a falling threshold, one spike at most.

        ``fire`` loads V and θ_1 = (2^b_out − 1)·Θ = (Θ << b_out) − Θ (a shift
        and a subtraction). Each of the next 2^b_out − 1 cycles is step k: if
        the neuron has not fired and V ≥ θ_k it fires (``spike_out``,
        ``fire_step`` ← k, ``count`` ← 2^b_out − k); then θ ← θ − Θ. ``done``
        strobes the cycle after step 2^b_out − 1: the window has a fixed
        length, so a chained layer sees every spike at its own step.
        """
        cfg = self._config
        b = cfg.out_bits
        potential = Signal(signed(cfg.membrane_bits), name="fire_potential")
        falling = Signal(unsigned(cfg.theta_bits + b), name="fire_threshold")
        theta = Signal(unsigned(cfg.theta_bits), name="fire_theta")
        remaining = Signal(unsigned(b), name="fire_remaining")   # 2^b_out − k: the code if it fires now
        fired = Signal(name="fire_fired")
        reached = Signal()
        m.d.comb += reached.eq(potential >= falling)
        m.d.sync += [self.spike_out.eq(0), self.done.eq(0)]
        with m.If(self.fire):
            m.d.sync += [potential.eq(potential_at_fire), falling.eq((theta_latched << b) - theta_latched),
                         theta.eq(theta_latched), remaining.eq(cfg.max_count), fired.eq(0),
                         self.count.eq(0), self.fire_step.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            m.d.sync += [falling.eq(falling - theta), remaining.eq(remaining - 1)]
            with m.If(~fired & reached):
                m.d.sync += [fired.eq(1), self.spike_out.eq(1), self.count.eq(remaining),
                             self.fire_step.eq(-remaining)]
            with m.If(remaining == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]

    def _fire_serially(self, m, potential_at_fire, theta_latched):
        """One spike per cycle while the potential is ≥ Θ, subtracting Θ (reset by subtraction)."""
        cfg = self._config
        potential = Signal(signed(cfg.membrane_bits), name="fire_potential")
        fire_theta = Signal(unsigned(cfg.theta_bits))
        can_fire = Signal()
        m.d.comb += can_fire.eq((potential >= fire_theta) & (self.count != cfg.max_count))
        m.d.sync += [self.spike_out.eq(0), self.done.eq(0)]
        with m.If(self.fire):
            m.d.sync += [potential.eq(potential_at_fire), fire_theta.eq(theta_latched), self.count.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            with m.If(can_fire):
                m.d.sync += [potential.eq(potential - fire_theta), self.count.eq(self.count + 1),
                             self.spike_out.eq(1)]
            with m.Else():
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]

    def _fire_by_division(self, m, potential_at_fire, theta_latched):
        """The same count by restoring division: b_out shift-and-subtract steps, no multiplier.

        The cycle after ``fire`` checks saturation (V ≥ Θ·2^b_out gives
        2^b_out − 1); then for j = b_out − 1 .. 0, if V ≥ Θ·2^j: V −= Θ·2^j and
        bit j is 1. The divisor is shifted right one place per step, and the
        count shifts its bits in from the top. A negative V gives 0 (no
        compare succeeds). ``spike_out`` strobes once with ``done`` when the
        count is nonzero.
        """
        cfg = self._config
        b = cfg.out_bits
        potential = Signal(signed(cfg.membrane_bits), name="fire_potential")
        divisor = Signal(unsigned(cfg.theta_bits + b), name="fire_divisor")
        steps = Signal(range(b + 2), name="fire_steps")
        # one subtractor serves both the compare (its sign) and the new remainder
        difference = Signal(signed(cfg.membrane_bits + 1), name="fire_difference")
        m.d.comb += difference.eq(potential - divisor)
        ge = Signal()
        m.d.comb += ge.eq(~difference[-1])
        m.d.sync += [self.spike_out.eq(0), self.done.eq(0)]
        with m.If(self.fire):
            m.d.sync += [potential.eq(potential_at_fire), divisor.eq(theta_latched << b), self.count.eq(0),
                         steps.eq(b + 1), self.busy.eq(1)]
        with m.Elif(self.busy):
            m.d.sync += [divisor.eq(divisor >> 1), steps.eq(steps - 1)]
            with m.If(steps == b + 1):          # saturation check against Θ·2^b_out
                with m.If(ge):
                    m.d.sync += [self.count.eq(cfg.max_count), steps.eq(0)]
            with m.Elif(steps != 0):           # bit steps - 1
                m.d.sync += self.count.eq(Cat(ge, self.count[:-1]))
                with m.If(ge):
                    m.d.sync += potential.eq(difference)
            with m.Else():
                m.d.sync += [self.busy.eq(0), self.done.eq(1), self.spike_out.eq(self.count != 0)]
