"""Gate-level power: Liberty reading, cell models, a netlist simulated bit-exact, and the energy accounting.

The fast tests read the OSU 0.18 µm Liberty and check every generated cell
model against its Liberty function under Icarus. The gate-level tests (slow
runs: each synthesizes and builds a netlist) simulate a tiny spiking tile's
netlist in the regression harness and check the clock energy against a hand
computation from the Liberty, gating, and both tiles at the default
configuration.
"""

import itertools
import re
import subprocess

import pytest

from spikeacc.app.cli import main
from spikeacc.config import SpikeConfig
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors

TINY = SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2, out_bits=4, max_tokens=2)

pytestmark = pytest.mark.gates


@pytest.fixture(scope="module")
def library():
    from spikeacc.energy.liberty import load_library
    return load_library()


def test_osu018_liberty_is_read_with_power_tables(library):
    assert library.voltage == 1.8 and len(library.cells) == 32
    dff = library.cells["DFFPOSX1"]
    assert dff.ff["next_state"] == "D" and dff.ff["clocked_on"] == "CLK"
    assert dff.pins["CLK"].clock and dff.pins["CLK"].capacitance > 0
    rise, fall = dff.pins["CLK"].power[""]            # the clock pin's own (passive) energy
    assert 0 < rise.at(0, 0.1) < fall.at(0, 0.1) < 1  # pJ per transition
    rise, fall = dff.pins["Q"].power["CLK"]           # output energy grows with its load
    assert rise.at(0.1, 0.1) > rise.at(0.01, 0.1)
    assert library.cells["NAND2X1"].leakage_nw > 0


def _liberty_eval(function: str, values: dict[str, int]) -> int:
    """An independent evaluator of a Liberty boolean function (recursive descent)."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[()!'^*&|+]", function)
    pos = 0

    def primary():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "!":
            v = 1 - primary()
        elif tok == "(":
            v = expr()
            pos += 1  # ')'
        else:
            v = values[tok]
        while pos < len(tokens) and tokens[pos] == "'":
            v, pos = 1 - v, pos + 1
        return v

    def xor_term():
        nonlocal pos
        v = primary()
        while pos < len(tokens) and tokens[pos] == "^":
            pos += 1
            v ^= primary()
        return v

    def and_term():
        nonlocal pos
        v = xor_term()
        while pos < len(tokens) and tokens[pos] not in (")", "|", "+"):
            if tokens[pos] in ("*", "&"):
                pos += 1
            v &= xor_term()
        return v

    def expr():
        nonlocal pos
        v = and_term()
        while pos < len(tokens) and tokens[pos] in ("|", "+"):
            pos += 1
            v |= and_term()
        return v

    return expr()


@pytest.mark.icarus
def test_every_combinational_cell_model_matches_its_liberty_function(library, tmp_path):
    from spikeacc.energy.liberty import cell_models
    cells = [c for c in library.cells.values() if c.ff is None and not c.latch
             and all(c.pins[o].function for o in c.outputs)]
    bench, expected = ["module tb;"], []
    for n, cell in enumerate(cells):
        ins, outs = cell.inputs, cell.outputs
        bench += [f"  reg [{len(ins) - 1}:0] i{n};", f"  wire [{len(outs) - 1}:0] o{n};",
                  f"  {cell.name} u{n} ({', '.join(f'.{p}(i{n}[{k}])' for k, p in enumerate(ins))}, "
                  f"{', '.join(f'.{p}(o{n}[{k}])' for k, p in enumerate(outs))});"]
        for combo in itertools.product((0, 1), repeat=len(ins)):
            values = dict(zip(ins, combo))
            expected.append(f"{cell.name} {''.join(map(str, combo))} "
                            + "".join(str(_liberty_eval(cell.pins[o].function, values)) for o in outs))
    bench.append("  initial begin")
    for n, cell in enumerate(cells):
        k = len(cell.inputs)
        for combo in itertools.product((0, 1), repeat=k):
            word = "".join(map(str, reversed(combo)))
            fmt = "%b" * len(cell.outputs)
            bench.append(f"    i{n} = {k}'b{word}; #1 $display(\"{cell.name} {''.join(map(str, combo))} {fmt}\", "
                         + ", ".join(f"o{n}[{j}]" for j in range(len(cell.outputs))) + ");")
    bench += ["  end", "endmodule"]
    (tmp_path / "tb.v").write_text("\n".join(bench) + "\n")
    (tmp_path / "cells.v").write_text(cell_models(library))
    subprocess.run(["iverilog", "-o", str(tmp_path / "tb"), str(tmp_path / "tb.v"), str(tmp_path / "cells.v")],
                   check=True)
    run = subprocess.run(["vvp", "-n", str(tmp_path / "tb")], capture_output=True, text=True, check=True)
    got = [line.strip() for line in run.stdout.splitlines() if line.strip()]
    assert len(cells) >= 20
    bad = [(e, g) for e, g in zip(expected, got) if e != g]
    assert len(got) == len(expected) and not bad, bad[:5]


@pytest.mark.slow  # synthesis plus a netlist build: about a minute
@pytest.mark.verilator
def test_tiny_tile_netlist_is_bit_exact_and_its_clock_energy_is_the_liberty_sum(tmp_path, library):
    from spikeacc.energy.power import run_power
    v = random_vectors(TINY, 2, seed=1)
    path = save_vectors(tmp_path / "v.npz", v)
    r = run_power(path, designs=("tile",), out=tmp_path / "power", build_root=tmp_path / "build", gated=False)
    d = r.designs["tile"]
    assert d.unannotated_pins == 0 and d.pins > 1000
    # the netlist ran the same number of cycles the RTL cycle model predicts
    from spikeacc.hw.tile import token_cycles
    assert d.cycles == sum(token_cycles(TINY, v.mant))
    # clock: every flip-flop's CLK pin toggles twice a cycle; ½CV² plus its passive table, per toggle
    dff = library.cells["DFFPOSX1"].pins["CLK"]
    rise, fall = dff.power[""]
    per_toggle = 0.5 * dff.capacitance * library.voltage ** 2 + (rise.at(0, 0.1) + fall.at(0, 0.1)) / 2
    from spikeacc.energy.saif import read_saif
    header, nets = read_saif(d.saif)
    clk = next(n for n in nets if n.path and n.path[-1] == "dut" and n.name == "clk")
    assert set(d.cells) >= {"DFFPOSX1"} and not any(k.startswith("DFF") and k != "DFFPOSX1" for k in d.cells)
    expected_clock = d.flip_flops * clk.toggles * per_toggle / v.shape[0]
    assert d.by_class_pj["clock"] == pytest.approx(expected_clock, rel=1e-9)
    # weight reads counted from the netlist's enables: one lane read per nonzero input and block
    assert d.weight_reads == int((v.mant != 0).sum()) * TINY.blocks
    # and threshold reads: one word of constants per block and token
    assert d.threshold_reads == v.shape[0] * TINY.blocks and d.threshold_memory_pj > 0
    assert {"PE arithmetic", "encoder/queues", "control"} <= set(d.by_role_pj)
    assert (tmp_path / "power" / "power.md").read_text().count("|") > 20
    # the event queues stayed SRAM macros, charged per enabled access
    assert d.cells["$mem_v2"] == (TINY.window - 1) * TINY.lanes and d.by_class_pj["memory"] > 0


@pytest.mark.slow
@pytest.mark.verilator
def test_clock_gating_keeps_the_netlist_bit_exact_and_cuts_clock_energy(tmp_path):
    from spikeacc.energy.power import run_power
    path = save_vectors(tmp_path / "v.npz", random_vectors(TINY, 2, seed=1))
    runs = {g: run_power(path, designs=("tile",), out=tmp_path / f"p{g}", build_root=tmp_path / "build", gated=g)
            .designs["tile"] for g in (False, True)}
    assert runs[True].enable_flip_flops > 0 and runs[False].enable_flip_flops == 0
    assert runs[True].cycles == runs[False].cycles
    assert runs[True].by_class_pj["clock"] < 0.8 * runs[False].by_class_pj["clock"]


@pytest.mark.slow
@pytest.mark.verilator
def test_both_tiles_at_gate_level_give_every_ratio(tmp_path):
    from spikeacc.energy.breakdown import total_pj
    from spikeacc.energy.power import run_power
    path = save_vectors(tmp_path / "v.npz", random_vectors(TINY, 2, seed=2))
    r = run_power(path, out=tmp_path / "power", build_root=tmp_path / "build")
    ratios = r.ratio_mac_over_spiking
    keys = {"pe_arithmetic", "pe_arithmetic_without_clock", "tile_without_clock", "tile_with_clock",
            "tile_with_clock_and_weight_memory"}
    assert set(ratios["by_design"]) == {"mac", "mac_skip"} and keys <= set(ratios)
    assert all(ratios["by_design"][d][k] > 0 for d in ratios["by_design"] for k in keys)
    # the headline is against the MAC with the lower energy
    totals = {d: total_pj(r.designs[d]) for d in ("mac", "mac_skip")}
    assert ratios["against"] == min(totals, key=totals.get)
    assert ratios["tile_with_clock_and_weight_memory"] == ratios["by_design"][ratios["against"]]["tile_with_clock_and_weight_memory"]
    # the zero-skipping MAC reads a weight only for a nonzero activation, as the spiking tile does
    assert r.designs["mac_skip"].weight_reads == r.designs["tile"].weight_reads < r.designs["mac"].weight_reads


@pytest.mark.slow
@pytest.mark.opensta
@pytest.mark.verilator
def test_opensta_agrees_with_our_combinational_power(tmp_path):
    """The cross-check: OpenSTA, annotated from the same SAIF, within ±30% per PE and over the tile."""
    from spikeacc.energy.liberty import DEFAULT_LIBERTY
    from spikeacc.energy.power import run_power
    from spikeacc.energy.sta_check import cross_check
    path = save_vectors(tmp_path / "v.npz", random_vectors(TINY, 2, seed=3))
    r = run_power(path, designs=("tile",), out=tmp_path / "power", build_root=tmp_path / "build")
    rows = cross_check(r.designs["tile"].to_dict(), r.tokens, DEFAULT_LIBERTY)
    assert {"pe0", "queues", "sequencer"} <= set(rows)
    for module in ("pe0", "pe1"):
        assert 0.7 < rows[module]["opensta_w"] / rows[module]["ours_w"] < 1.3, rows[module]
    total = sum(x["opensta_w"] for x in rows.values()) / sum(x["ours_w"] for x in rows.values())
    assert 0.7 < total < 1.3, rows


def test_sta_module_writes_plain_flops_and_memory_data_as_inputs():
    from spikeacc.energy.sta_check import sta_module
    module = {"ports": {"clk": {"direction": "input", "bits": [2]}, "a": {"direction": "input", "bits": [3]},
                        "y": {"direction": "output", "bits": [5]}},
              "cells": {"_1_": {"type": "INVX1", "connections": {"A": [3], "Y": [4]}},
                        "_2_": {"type": "SPIKEACC_DFFE", "connections": {"CLK": [2], "D": [4], "E": ["1"], "Q": [5]}},
                        "_3_": {"type": "$mem_v2", "connections": {"RD_DATA": [6, 7]}},
                        "_4_": {"type": "NAND2X1", "connections": {"A": [6], "B": [7], "Y": [8]}}}}
    verilog, inputs, flops = sta_module(module, "m", {"SPIKEACC_DFFE": {}})
    assert "DFFPOSX1 c__2_ (.CLK(p_clk_0), .D(n4), .Q(p_y_0));" in verilog and ".E(" not in verilog
    assert [p for p, _ in inputs] == ["p_clk_0", "p_a_0", "mem_6", "mem_7"]
    assert flops == [("c__2_", 5)] and "$mem" not in verilog and "NAND2X1 c__4_ (.A(mem_6), .B(mem_7), .Y(n8));" in verilog


@pytest.mark.parametrize("argv, message", [
    (["--designs", "pe"], "--designs takes tile, mac and/or mac_skip"),
    (["--liberty", "/nonexistent.lib"], "--liberty /nonexistent.lib does not exist"),
])
def test_power_bad_options_are_one_line_exit_2(tmp_path, capsys, argv, message):
    assert main(["power", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.model
def test_cropped_real_vectors_are_valid_for_the_default_tile(tmp_path):
    """What `spikeacc power` measures by default: real SmolLM2 codes on the 64×16 tile, golden-consistent."""
    from spikeacc.golden.synthetic_vectors import crop_vectors
    from spikeacc.golden.vector_export import export_vectors
    from spikeacc.golden.vectors import load_vectors
    full = load_vectors(export_vectors(layer="model.layers.0.self_attn.q_proj", tokens=2, out=tmp_path / "q.npz"))
    cfg = SpikeConfig()
    v = load_vectors(save_vectors(tmp_path / "c.npz", crop_vectors(full, cfg)))  # the loader re-checks acc/expected
    assert v.shape == (2, cfg.in_features, cfg.out_features)
    assert (v.w == full.w[:16, :64]).all() and (v.mant == full.mant[:, :64]).all()
    assert v.expected.max() == cfg.max_count and v.expected.min() == 0  # the whole output range is used
    with pytest.raises(ValueError, match="cannot crop"):
        crop_vectors(v, SpikeConfig(in_features=128))


def test_power_refuses_a_layer_beside_a_vector_file(tmp_path, capsys):
    assert main(["power", "--vectors", str(tmp_path / "v.npz"), "--full-size", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--vectors FILE is measured as it is" in err and "\n" not in err


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.verilator
def test_power_at_down_projs_real_shape_is_bit_exact_for_all_three_tiles(tmp_path, capsys):
    """The done criterion of issue #25, from the CLI: a full-size SmolLM2 projection, P = 24, every design."""
    out = tmp_path / "o"
    assert main(["power", "--layer", "model.layers.0.mlp.down_proj", "--full-size", "--out", str(out),
                 "--build-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    import json
    r = json.loads((out / "power.json").read_text())
    assert r["shape"] == [8, 1536, 576] and r["config"]["pes"] == 24
    assert set(r["designs"]) == {"tile", "mac", "mac_skip"}
    assert r["designs"]["mac_skip"]["weight_reads"] == r["designs"]["tile"]["weight_reads"]
    assert r["ratio_mac_over_spiking"]["tile_with_clock_and_weight_memory"] > 1.0
