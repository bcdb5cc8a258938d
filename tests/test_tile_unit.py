"""Tiny spiking and MAC tiles in Amaranth's own simulator: values and cycle model, no Verilator build.

The buffers are ``amaranth.lib.memory`` memories joined to the tile's read and
write ports, their words packed with the same layouts the RTL declares, so
these tests also pin the buffer contract an integrator builds against.
"""

import numpy as np
import pytest
from amaranth import ClockDomain, Module, unsigned
from amaranth.lib import data, memory
from amaranth.sim import Simulator
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.hw.mac import MacTile, mac_cycles, mac_output_delay
from spikeacc.hw.tile import SpikingTile, tile_cycles, token_cycles

from spikeacc.config import SpikeConfig


def _word(port, value) -> int:
    """Pack a Python value into the integer a buffer word of ``port``'s data shape holds."""
    return port.signature.members["data"].shape.const(value).as_value().value


def _memory(m, name, port, words, depth):
    width = port.signature.members["data"].shape.size
    mem = memory.Memory(shape=unsigned(width), depth=depth, init=words + [0] * (depth - len(words)))
    m.submodules[name] = mem
    return mem


def simulate(design, cfg, v, trace=None, abort_after=None):
    """Run every token of vectors ``v`` through ``design``; returns (counts [M, N], cycles per token).

    ``trace``, if a dict, receives per token the ``error`` flag at ``done`` and
    the number of cycles ``busy`` was high. ``abort_after``: first start the
    last token and pulse ``rst`` that many cycles into it (reset while busy).
    """
    tokens, k, n = v.shape
    P, L, B = cfg.pes, cfg.lanes, cfg.blocks
    m = Module()
    m.domains.sync = sync = ClockDomain("sync")
    tile = SpikingTile(cfg) if design == "tile" else MacTile(cfg, skip_zeros=design == "mac_skip")
    m.submodules.tile = tile
    acts = [_word(tile.act, [{"mantissa": int(v.mant[t, w * L + j]), "shift": int(v.shift[t, w * L + j])}
                             for j in range(L)]) for t in range(tokens) for w in range(cfg.k_words)]
    weights = [_word(tile.weight[0], [int(v.w[b * P + p, kk]) for p in range(P)]) for b in range(B) for kk in range(k)]
    params = []   # the threshold memory: address block·R + r, the per-neuron constants
    for b in range(B):
        for r in range(cfg.threshold_grid):
            neurons = []
            for p in range(P):
                theta, phi = int(v.theta[r, b * P + p]), int(v.phi[r, b * P + p])
                neurons.append({"theta": theta, "phi": phi})
            params.append(_word(tile.thresh, neurons))
    ports = []
    for name, port, words, depth in [("act", tile.act, acts, 1 << len(tile.act.addr)),
                                     ("thresh", tile.thresh, params, 1 << len(tile.thresh.addr))]:
        ports.append((port, _memory(m, name, port, words, depth).read_port()))
    wmem = _memory(m, "weights", tile.weight[0], weights, 1 << len(tile.weight[0].addr))
    ports += [(tile.weight[j], wmem.read_port()) for j in range(L)]
    for port, rp in ports:
        m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en), port.data.eq(rp.data)]
    out = memory.Memory(shape=unsigned(tile.out.data.shape().size), depth=1 << len(tile.out.addr), init=[])
    m.submodules.out = out
    wp = out.write_port()
    m.d.comb += [wp.addr.eq(tile.out.addr), wp.en.eq(tile.out.en), wp.data.eq(tile.out.data)]

    cycles, counts = [], np.zeros((tokens, n), dtype=np.int64)
    trace = {} if trace is None else trace
    trace.update(error=[], busy=[], strobes=[], weight_reads=0)

    async def bench(ctx):
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        if abort_after is not None:
            ctx.set(tile.token, tokens - 1)
            ctx.set(tile.exponent, int(v.exponent[-1]))
            ctx.set(tile.start, 1)
            await ctx.tick()
            ctx.set(tile.start, 0)
            await ctx.tick().repeat(abort_after)
            assert ctx.get(tile.busy), "the abort must hit a busy tile"
            ctx.set(sync.rst, 1)
            await ctx.tick()
            ctx.set(sync.rst, 0)
            assert not ctx.get(tile.busy) and not ctx.get(tile.error)
        for t in range(tokens):
            ctx.set(tile.token, t)
            ctx.set(tile.exponent, int(v.exponent[t]))
            ctx.set(tile.start, 1)
            await ctx.tick()
            ctx.set(tile.start, 0)
            busy, strobes = 0, {"act": [], "thresh": [], "out": []}
            for cycle in range(100_000):
                busy += ctx.get(tile.busy)
                trace["weight_reads"] += sum(ctx.get(tile.weight[j].en) for j in range(L))
                for port in strobes:
                    if ctx.get(getattr(tile, port).en):
                        strobes[port].append(cycle)
                await ctx.tick()
                if ctx.get(tile.done):
                    assert not ctx.get(tile.busy), "done must come with busy already low"
                    break
            cycles.append(ctx.get(tile.cycles))
            trace["error"].append(ctx.get(tile.error))
            trace["busy"].append(busy)
            trace["strobes"].append(strobes)
        shape = tile.out.signature.members["data"].shape
        for t in range(tokens):
            for b in range(B):
                word = data.Const(shape, ctx.get(out.data[t * B + b]))
                for p in range(P):
                    counts[t, b * P + p] = int(word[p])

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return counts, cycles


def assert_bit_exact(expected, got):
    bad = [tuple(int(i) for i in idx) for idx in np.argwhere(expected != got)]
    assert not bad, f"{len(bad)} mismatches, first at {bad[0]}: expected {expected[bad[0]]}, got {got[bad[0]]}"


TINY = [SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2, out_bits=4, max_tokens=2),
        SpikeConfig(in_features=12, out_features=6, pes=3, lanes=1, out_bits=3, max_tokens=2, frac_bits=8,
                    firing="serial"),
        SpikeConfig(in_features=16, out_features=4, pes=4, lanes=4, out_bits=5, max_tokens=2, salient=False)]
# the input-step policies besides the default grid 2^(−j/4): static (one constant), 2^(−j/2) (two)
STEPS = [SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2, out_bits=4, max_tokens=3, input_step="static"),
         SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2, out_bits=4, max_tokens=3, input_step="pow2/2",
                     exponent_headroom=1)]
# Kirin mode: integer outliers beside the spikes, silence-threshold firing (and with division, one lane)
KIRIN = [SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2, out_bits=4, max_tokens=2, outlier_bits=8,
                     firing="silence"),
         SpikeConfig(in_features=12, out_features=6, pes=3, lanes=1, out_bits=3, max_tokens=2, frac_bits=8,
                     outlier_bits=6, e_max=3)]


@pytest.mark.parametrize("cfg", TINY + KIRIN + STEPS, ids=["K8-P2-L2", "K12-P3-L1-serial", "K16-P4-L4-nosal",
                                                           "kirin-K8-P2-L2-silence", "kirin6-K12-P3-L1", "static",
                                                           "pow2x2-h1"])
def test_tiny_spiking_tile_values_and_cycles(cfg):
    v = random_vectors(cfg, 2, seed=3, salient_fraction=0.3 if cfg.kirin else 0.025)
    if cfg.kirin:
        assert (np.abs(v.mant.astype(int)) > cfg.spike_max).sum(axis=1).min() >= 1, "every token has outliers"
    trace = {}
    counts, cycles = simulate("tile", cfg, v, trace)
    assert_bit_exact(v.expected, counts)
    assert cycles == token_cycles(cfg, v.mant)
    assert trace["busy"] == cycles, "the datasheet promises busy is high for exactly `cycles` cycles"
    assert trace["error"] == [0, 0]
    for strobes in trace["strobes"]:  # the datasheet's write timing: each block's counts, a fixed delay after the next open
        assert len(strobes["out"]) == len(strobes["thresh"]) == cfg.blocks
        assert len(strobes["act"]) == cfg.k_words
        delay = SpikingTile.write_delay_for(cfg)
        assert [o - t for o, t in zip(strobes["out"], strobes["thresh"][1:])] == [delay] * (cfg.blocks - 1)


def _out_of_contract(cfg, v, what):
    """Put one out-of-contract value into token 0 of ``v`` (token 1 stays legal)."""
    if what == "mantissa":
        v.mant[0, 3] = -(cfg.mantissa_max + 1)
    elif what == "weight":  # weight read only for inputs that spike: make input 1 spike in token 0
        v.mant[0, 1], v.mant[1, 1] = 5, 0
        v.w[1, 1] = -(cfg.weight_max + 1)
    elif what == "theta":   # the constant token 0 reads; token 1 reads another row
        rows = cfg.threshold_grid
        v.exponent[1] = v.exponent[0] + 1
        v.theta[v.exponent[0] % rows, 2] = 0
    elif what == "exponent":   # fits the port, outside exponent_min..exponent_max
        v.exponent[0] = cfg.exponent_min - 1
    elif what == "shift":
        v.shift[0, 2] = cfg.shift_max + 1
    return v


@pytest.mark.parametrize("design", ["tile", "mac"])
@pytest.mark.parametrize("what", ["mantissa", "weight", "theta", "shift", "exponent"])
def test_out_of_contract_inputs_raise_error_until_the_next_start(design, what):
    """The datasheet's choice for values that fit the ports but not the contract: ``error``, cleared at start."""
    cfg = TINY[2] if what == "shift" else TINY[0]   # shift > e_max only fits the port without salient
    v = _out_of_contract(cfg, random_vectors(cfg, 2, seed=6), what)
    trace = {}
    simulate(design, cfg, v, trace)
    # the MAC reads every weight for every token; the spiking tile only those of inputs that spike
    assert trace["error"] == ([1, 1] if (design, what) == ("mac", "weight") else [1, 0])


def test_kirin_outlier_of_minus_2_to_the_b_raises_error():
    """Kirin: −2^(B−1) fits the 8-bit mantissa port but not the contract (|q| ≤ 127)."""
    cfg = KIRIN[0]
    v = _out_of_contract(cfg, random_vectors(cfg, 2, seed=6, salient_fraction=0.3), "mantissa")
    assert v.mant[0, 3] == -128
    trace = {}
    simulate("tile", cfg, v, trace)
    assert trace["error"] == [1, 0]


def test_cycle_formula_of_the_datasheet_equals_the_cycle_model():
    """The closed form printed in the datasheet, against the state-by-state model, over many histograms."""
    from spikeacc.hw.datasheet import tile_cycles_closed_form
    rng = np.random.default_rng(0)
    for cfg in TINY + KIRIN + [SpikeConfig(), SpikeConfig(out_bits=3, in_features=512, out_features=64, pes=4)]:
        for _ in range(50):
            hist = rng.integers(0, 3 * cfg.lanes, size=cfg.window)
            hist[rng.random(cfg.window) < 0.3] = 0
            outliers = int(rng.integers(0, 4)) if cfg.kirin else 0
            assert tile_cycles_closed_form(cfg, hist, outliers) == tile_cycles(cfg, hist, outliers)["total"]


@pytest.mark.parametrize("design", ["mac", "mac_skip"])
@pytest.mark.parametrize("cfg", TINY[:2] + KIRIN[:1] + STEPS + [SpikeConfig(max_tokens=2)],
                         ids=["K8-P2-L2", "K12-P3-L1-serial", "kirin-K8-P2-L2", "static", "pow2x2-h1", "K64-P4"])
def test_tiny_mac_tile_values_and_cycles(cfg, design):
    """The MAC baselines on the same vectors; in Kirin mode their multipliers take the 8-bit outliers.

    K/L = 4 gives each PE its own requantizer unit (``group`` 1), K/L = 12 and 32 share one.
    """
    v = random_vectors(cfg, 2, seed=4, salient_fraction=0.3 if cfg.kirin else 0.025)
    trace = {}
    counts, cycles = simulate(design, cfg, v, trace)
    assert_bit_exact(v.expected, counts)
    skip = design == "mac_skip"
    assert cycles == [mac_cycles(cfg, skip)] * 2 == trace["busy"]
    for strobes in trace["strobes"]:  # each block's counts are written output delay + 1 cycles after its last word
        last_words = strobes["act"][cfg.k_words - 1::cfg.k_words]
        assert [o - a for o, a in zip(strobes["out"], last_words)] == [mac_output_delay(cfg, skip) + 1] * cfg.blocks
    if skip:   # a weight is read only for a nonzero activation
        assert trace["weight_reads"] == int((v.mant != 0).sum()) * cfg.blocks


def test_a_wrong_count_is_caught():
    cfg = TINY[0]
    v = random_vectors(cfg, 2, seed=5)
    counts, _ = simulate("tile", cfg, v)
    counts[1, 3] ^= 1
    with pytest.raises(AssertionError, match=r"first at \(1, 3\)"):
        assert_bit_exact(v.expected, counts)


@pytest.mark.parametrize("design", ["tile", "mac", "mac_skip"])
def test_reset_while_busy_aborts_and_the_next_tokens_are_exact(design):
    """The datasheet's promise: `rst` in the middle of a token leaves the tile idle, and what follows is exact."""
    cfg = TINY[0]
    v = random_vectors(cfg, 2, seed=4)
    counts, cycles = simulate(design, cfg, v, abort_after=9)
    assert np.array_equal(counts, v.expected)
    assert cycles == (token_cycles(cfg, v.mant) if design == "tile" else [mac_cycles(cfg, design == "mac_skip")] * 2)
