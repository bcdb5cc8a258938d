"""Gate level at real shapes: one module per distinct submodule, recorded figures, the break-even model."""

import json
import re

import numpy as np
import pytest

from spikeacc.config import SpikeConfig
from spikeacc.golden.synthetic_vectors import random_vectors


@pytest.mark.parametrize("design", ["tile", "mac"])
def test_identical_submodules_become_one_module_with_every_instance(tmp_path, design):
    from spikeacc.energy.shared_modules import share_identical_modules
    from spikeacc.hw.generate import generate

    cfg = SpikeConfig(pes=8, out_features=16)
    text = generate(design, cfg, tmp_path).verilog.read_text()
    shared = share_identical_modules(text)
    prefix = "pe" if design == "tile" else "mac"
    before = re.findall(rf"^module \S+\.{prefix}\d+ ", text, re.M)
    after = re.findall(rf"^module \S+\.{prefix}\d+ ", shared.verilog, re.M)
    assert len(before) == cfg.pes and len(after) == 1
    # every instance is still there, by its own name, now of the one kept module
    instances = re.findall(rf"^  (\S+) +({prefix}\d+) \(", shared.verilog, re.M)
    assert sorted(i for _, i in instances) == sorted(f"{prefix}{p}" for p in range(cfg.pes))
    assert {kind for kind, _ in instances} == {after[0].split()[1]}
    assert max(shared.kept.values()) == cfg.pes
    # and no connection names a port the kept module does not have
    header = re.search(rf"^module {re.escape(after[0].split()[1])}\s*\((.*?)\);", shared.verilog, re.M | re.S)
    ports = {p.strip() for p in header.group(1).split(",")}
    for block in re.findall(rf"^  \S+ +{prefix}\d+ \((.*?)\);", shared.verilog, re.M | re.S):
        assert set(re.findall(r"\.(\\?\S+?) ?\(", block)) <= ports


def test_text_without_duplicates_is_unchanged(tmp_path):
    from spikeacc.energy.shared_modules import share_identical_modules
    from spikeacc.hw.generate import generate

    text = generate("pe", SpikeConfig(), tmp_path).verilog.read_text()
    assert share_identical_modules(text).verilog == text


@pytest.mark.slow
@pytest.mark.verilator
def test_shared_modules_give_the_same_netlist_energy_as_separate_copies(tmp_path, monkeypatch):
    """Synthesizing a PE once for all instances is the same logic: bit-exact, the same cycles, and the same energy
    within 2% (ABC maps each separately synthesized copy a little differently, so exact equality is not expected)."""
    from spikeacc.energy import shared_modules
    from spikeacc.energy.breakdown import total_pj
    from spikeacc.energy.power import run_power
    from spikeacc.golden.vectors import save_vectors

    cfg = SpikeConfig(in_features=16, out_features=8, pes=4, lanes=2, out_bits=4, max_tokens=2)
    path = save_vectors(tmp_path / "v.npz", random_vectors(cfg, 2, seed=7))
    shared = run_power(path, designs=("tile",), out=tmp_path / "a", build_root=tmp_path / "b1").designs["tile"]
    monkeypatch.setattr(shared_modules, "share_identical_modules",
                        lambda text: shared_modules.SharedModules(text, {}))
    copies = run_power(path, designs=("tile",), out=tmp_path / "c", build_root=tmp_path / "b2").designs["tile"]
    assert shared.cycles == copies.cycles and shared.weight_reads == copies.weight_reads
    assert sum(shared.cells.values()) == pytest.approx(sum(copies.cells.values()), rel=0.02)
    assert total_pj(shared) == pytest.approx(total_pj(copies), rel=0.02)
    for role, pj in copies.by_role_pj.items():
        assert shared.by_role_pj[role] == pytest.approx(pj, rel=0.03), role


def test_a_recorded_figure_applies_to_its_own_vectors_only(tmp_path):
    from spikeacc.energy.recorded import find_recorded, vectors_digest, write_recorded

    cfg = SpikeConfig()
    v = random_vectors(cfg, 2, seed=1)
    path = write_recorded({vectors_digest(v): {"layer": "x", "measured": {"date": "2026-12-03"}}},
                          tmp_path / "rec.json")
    assert find_recorded(v, path)["layer"] == "x"
    v.w[0, 0] = -v.w[0, 0] if v.w[0, 0] else 1     # one weight changed: another layer
    assert find_recorded(v, path) is None
    assert find_recorded(random_vectors(cfg.replace(lanes=4), 2, seed=1), path) is None   # another tile shape
    assert find_recorded(v, tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert find_recorded(v, tmp_path / "bad.json") is None


def _synthetic_record(cfg: SpikeConfig, zero: float, costs: dict, noise: float = 0.0, seed: int = 0) -> dict:
    """A record whose energies follow ``costs`` exactly (times 1 + noise)."""
    from spikeacc.energy.break_even import memory_pj, parts, point_events
    from spikeacc.hw.mac import mac_cycles

    rng = np.random.default_rng(seed)
    nonzero = cfg.in_features * (1 - zero)
    designs = {}
    for design in ("tile", "mac", "mac_skip"):
        cycles = (cfg.blocks * (nonzero / cfg.lanes + 40) if design == "tile"
                  else mac_cycles(cfg, design == "mac_skip"))
        events = point_events(cfg, design, nonzero, cycles)
        split = {}
        for (d, role, part), names in parts().items():
            if d != design:
                continue
            pj = sum(costs.get(f"{design}:{e}", 0.0) * events[e] for e in names)
            pj *= 1 + noise * rng.standard_normal()
            cls = split.setdefault(role, {"clock": 0.0, "combinational": 0.0})
            cls["clock" if part == "clock" else "combinational"] += pj
        logic = sum(sum(c.values()) for c in split.values())
        mem = memory_pj(cfg, design, nonzero, 2.5)
        designs[design] = {"by_role_class_pj": split, "cycles": cycles * 8, "logic_pj": logic,
                           "weight_memory_pj": mem, "threshold_memory_pj": 0.0}
    return {"layer": f"z{zero}", "shape": [8, cfg.in_features, cfg.out_features], "tokens": 8,
            "config": cfg.to_dict(), "designs": designs, "sram_pj_per_bit": 2.5, "nonzero_per_token": nonzero,
            "magnitude_histogram": [0] + [10] * (cfg.window - 1)}


COSTS = {"tile:pe_cycles": 7.0, "tile:nonzero_inputs": 8.0, "tile:neurons": 900.0, "tile:inputs": 30.0,
         "tile:event_rows": 20.0, "tile:cycles": 15.0, "mac:pe_cycles": 5.0, "mac:all_inputs": 14.0,
         "mac:neurons": 400.0, "mac:cycles": 10.0, "mac_skip:pe_cycles": 5.0, "mac_skip:nonzero_inputs": 14.0,
         "mac_skip:zero_inputs": 2.0, "mac_skip:neurons": 400.0, "mac_skip:cycles": 11.0}


def test_break_even_model_recovers_known_costs_and_measures_its_error():
    from spikeacc.energy.break_even import break_even_grid, fit

    shapes = [SpikeConfig(in_features=k, out_features=576, pes=p) for k, p in ((576, 24), (1536, 24), (64, 4), (192, 8))]
    records = [_synthetic_record(cfg, z, COSTS) for cfg, z in zip(shapes, (0.27, 0.4, 0.1, 0.6))]
    model = fit(records)
    assert model["worst_error"] < 1e-6       # exact data: every held-out shape predicted exactly
    for key, cost in model["costs"].items():
        design, _, _ = key.split("|")
        for event, value in cost.items():
            assert value == pytest.approx(COSTS[f"{design}:{event}"], rel=1e-6), (key, event)
    noisy = fit([_synthetic_record(cfg, z, COSTS, noise=0.05, seed=i)
                 for i, (cfg, z) in enumerate(zip(shapes, (0.27, 0.4, 0.1, 0.6)))])
    assert 0.0 < noisy["worst_error"] < 0.5   # noise shows up as a held-out error, not hidden
    grid = break_even_grid(model, ks=(64, 576), ps=(4, 24))
    assert set(grid["curves"]) == {"K64_P4", "K64_P24", "K576_P4", "K576_P24"}
    for curve in grid["curves"].values():    # more zeros never make the spiking tile worse against the dense MAC
        dense = curve["ratios_dense_mac"]
        assert all(b >= a - 1e-9 for a, b in zip(dense, dense[1:])), curve
        assert all(r <= d + 1e-9 for r, d in zip(curve["ratios"], dense))   # the stronger MAC is never weaker
    with pytest.raises(ValueError, match="at least 3"):
        fit(records[:2])


def test_the_recorded_figures_cover_the_main_jobs_real_shapes():
    """The shipped records: both tiles bit-exact at SmolLM2 q_proj and down_proj full size, and Kirin's q_proj."""
    from spikeacc.energy.recorded import RECORDED_PATH

    records = json.loads(RECORDED_PATH.read_text())
    shapes = {(r["layer"].split(".")[-1], tuple(r["shape"][1:]), SpikeConfig.from_dict(r["config"]).kirin,
               r["config"]["pes"]) for r in records.values()}
    assert {("q_proj", (576, 576), False, 24), ("down_proj", (1536, 576), False, 24),
            ("q_proj", (576, 576), True, 24)} <= shapes
    for r in records.values():
        assert set(r["designs"]) == {"tile", "mac", "mac_skip"}
        assert r["measured"]["date"] and r["measured"]["commit"] and "bench_power_shapes" in r["measured"]["command"]
