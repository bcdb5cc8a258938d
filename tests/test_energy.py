"""Energy from RTL activity: toggle counting, op counts, and the spiking-vs-MAC report."""


import pytest

from spikeacc.config import SpikeConfig
from spikeacc.energy.op_counts import add_pj, mult_pj, op_counts, sram_read_pj
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors
from spikeacc.energy.saif import read_saif


@pytest.mark.slow  # a Verilator build with SAIF
@pytest.mark.verilator
def test_toggle_counts_match_a_counter_analytically(tmp_path):
    """An n-bit counter enabled for C cycles toggles bit i exactly floor(C / 2^i) times."""
    from amaranth.back import verilog

    from spikeacc.hw.counter import Counter
    from spikeacc.verif.runner import build_bench, run_bench

    width, cycles = 8, 200
    src = tmp_path / "counter.v"
    src.write_text(verilog.convert(Counter(width), name="toggle_counter", emit_src=False))
    build_bench(top="toggle_counter", sources=[src], build_dir=tmp_path / "build", saif=True)
    (tmp_path / "run").mkdir()
    run = run_bench(top="toggle_counter", build_dir=tmp_path / "build", work_dir=tmp_path / "run",
                    test_module="spikeacc.verif.counter_bench", env={"SPIKEACC_CYCLES": str(cycles)}, saif=True)
    assert run.report["count"] == cycles % (1 << width)
    _, nets = read_saif(tmp_path / "run" / "dump.saif")
    (count,) = [n for n in nets if n.name == "count" and n.path[-1] == "toggle_counter"]
    assert count.bits == width
    assert count.bit_toggles == {i: cycles >> i for i in range(width)}
    assert count.toggles == sum(cycles >> i for i in range(width))


def test_energy_table_scales_with_width():
    assert add_pj(32) == pytest.approx(0.1) and add_pj(16) == pytest.approx(0.05)
    assert mult_pj(32, 32) == pytest.approx(3.1) and mult_pj(4, 4) == pytest.approx(3.1 / 64)
    assert sram_read_pj(64) == pytest.approx(10.0)


def test_op_counts_skip_zero_mantissas():
    cfg = SpikeConfig()
    v = random_vectors(cfg, 3, seed=2)
    ops = op_counts(cfg, v.mant, v.expected)
    nonzero = int((v.mant != 0).sum())
    assert ops["spiking"]["weight_read"] == nonzero * cfg.out_features
    assert ops["mac"]["multiply"] == 3 * cfg.in_features * cfg.out_features


@pytest.mark.slow  # both tiles built with tracing; `spikeacc run` reports energy every time
@pytest.mark.verilator
def test_energy_report_on_random_vectors(tmp_path):
    """Both tiles bit-exact under tracing; RTL-counted weight reads equal the golden op counts."""
    from spikeacc.energy.toggles import run_energy
    cfg = SpikeConfig()
    v = random_vectors(cfg, 3, seed=4)
    path = save_vectors(tmp_path / "v.npz", v)
    r = run_energy(path, out=tmp_path / "energy")
    assert r.designs["tile"]["weight_reads"] == r.op_counts["spiking"]["weight_read"]
    assert r.designs["mac"]["weight_reads"] == r.op_counts["mac"]["weight_read"]
    for key in ("toggles_datapath", "toggles_total_with_weight_memory", "ops_datapath"):
        assert r.ratio_mac_over_spiking[key] > 0
    assert r.ratio_mac_over_spiking["paper"] == 4.6
    for name in ("energy.json", "energy.md", "energy.png", "tile.saif", "mac.saif"):
        assert (tmp_path / "energy" / name).is_file()
    roles = r.designs["tile"]["energy_pj"]
    assert {"spike/current adders", "membrane adders", "threshold/fire", "weight memory reads"} <= set(roles)
    assert {"MAC multipliers", "accumulators", "requantizer"} <= set(r.designs["mac"]["energy_pj"])


@pytest.mark.slow  # a tile build with tracing
@pytest.mark.verilator
def test_energy_refuses_a_design_that_is_not_bit_exact(tmp_path):
    from spikeacc.energy.toggles import run_energy
    cfg = SpikeConfig()
    from spikeacc.errors import VerificationFailed
    v = random_vectors(cfg, 2, seed=4)
    path = save_vectors(tmp_path / "v.npz", v)
    with pytest.raises(VerificationFailed, match=r"tile is not bit-exact .* first at index \(0, 3\)"):
        run_energy(path, out=tmp_path / "energy", inject_fault=(0, 3))


# --- the toggle model calibrated to gate level (energy/calibration.py) ---------------------------------

def _runs(tile_toggles, mac_toggles, tokens=2, cycles=100, pes=4):
    """An RTL energy run and a gate-level run of the same (made-up) vectors, as the two commands write them."""
    common = {"vectors": "v.npz", "config": {"pes": pes}, "layer": "L", "tokens": tokens}
    energy = {**common, "designs": {
        "tile": {"toggles_by_gate_role": tile_toggles, "weight_bits_read": 400, "cycles": cycles},
        "mac": {"toggles_by_gate_role": mac_toggles, "weight_bits_read": 800, "cycles": cycles}}}
    classes = lambda clock, rest: {"clock": clock, "registers": rest / 2, "combinational": rest / 2,  # noqa: E731
                                   "leakage": 0.0, "memory": 0.0}
    power = {**common, "liberty": "x.lib", "memories": "sram", "clock_gating": True, "sram_pj_per_bit": 2.5,
             "designs": {
                 "tile": {"cycles": cycles, "weight_memory_pj": 500.0, "logic_pj": 3100.0, "by_module_class_pj": {
                     "pe0": classes(400.0, 600.0), "pe1": classes(400.0, 600.0), "queues": classes(100.0, 500.0),
                     "sequencer": classes(200.0, 300.0)}},
                 "mac": {"cycles": cycles, "weight_memory_pj": 1000.0, "logic_pj": 2400.0, "by_module_class_pj": {
                     "mac0": classes(300.0, 1500.0), "top": classes(200.0, 400.0)}}}}
    return energy, power


def test_calibrated_model_reproduces_the_run_it_was_fitted_on():
    from spikeacc.energy.calibration import compare, estimate, fit
    energy, power = _runs({"PE arithmetic": 3000, "encoder/queues": 700, "control": 500},
                          {"PE arithmetic": 9000, "control": 800})
    cal = fit(energy, power)
    assert cal["designs"]["tile"]["PE arithmetic"]["clock_pj_per_cycle"] == pytest.approx(800 * 2 / 100 / 4)
    est = {d: estimate(cal, d, energy["designs"][d], 4, 2) for d in ("tile", "mac")}
    assert est["tile"]["logic_pj"] == pytest.approx(3100.0)
    assert est["tile"]["by_role_pj"]["encoder/queues"] == pytest.approx(600.0)
    assert est["mac"]["total_pj"] == pytest.approx(2400.0 + 1000.0)
    errors = compare(est, 2.0, power)
    assert errors["calibrated_ratio_error"] == pytest.approx(0.0, abs=1e-12)
    assert errors["raw_toggle_ratio_error"] == pytest.approx(2.0 / (3400.0 / 3600.0) - 1)


def test_calibrated_model_follows_activity_and_cycles():
    """Twice the toggles doubles the non-clock energy; twice the cycles doubles the clock energy."""
    from spikeacc.energy.calibration import estimate, fit
    energy, power = _runs({"PE arithmetic": 3000, "encoder/queues": 700, "control": 500},
                          {"PE arithmetic": 9000, "control": 800})
    cal = fit(energy, power)
    busier = {**energy["designs"]["tile"], "toggles_by_gate_role": {"PE arithmetic": 6000, "encoder/queues": 1400,
                                                                    "control": 1000}}
    assert estimate(cal, "tile", busier, 4, 2)["logic_pj"] == pytest.approx(3100.0 + 2000.0)
    longer = {**energy["designs"]["tile"], "cycles": 200}
    assert estimate(cal, "tile", longer, 4, 2)["logic_pj"] == pytest.approx(3100.0 + 1100.0)


def test_fit_refuses_runs_of_different_vectors():
    from spikeacc.energy.calibration import fit
    energy, power = _runs({}, {})
    with pytest.raises(ValueError, match="same vectors"):
        fit({**energy, "vectors": "other.npz"}, power)


def test_gate_level_comparison_refuses_another_vector_file(tmp_path):
    import json

    from spikeacc.energy.toggles import _gate_level_run
    (tmp_path / "power.json").write_text(json.dumps({"vectors": str(tmp_path / "a.npz"),
                                                     "designs": {"tile": {}, "mac": {}}}))
    with pytest.raises(ValueError, match="not .*b.npz: compare runs of the same vectors"):
        _gate_level_run(tmp_path, tmp_path / "b.npz")
    with pytest.raises(ValueError, match="not a readable power.json"):
        _gate_level_run(tmp_path / "none", tmp_path / "b.npz")


def test_shipped_calibration_was_fitted_at_a_real_shape_and_checked_within_10_percent():
    """Fitted on SmolLM2 q_proj at full size (P = 24), checked on down_proj at full size and on 64×16 tiles."""
    from spikeacc.energy.calibration import load_calibration
    cal = load_calibration()
    assert set(cal["designs"]) == {"tile", "mac"}
    assert cal["fitted_on"]["config"]["pes"] == 24 and "q_proj" in cal["fitted_on"]["layer"]
    assert cal["fitted"]["calibrated_ratio_error"] == pytest.approx(0.0, abs=1e-9)
    layers = [check["layer"] or "" for check in cal["checked_all"]]
    assert any("down_proj" in layer for layer in layers) and "random" in layers
    for check in cal["checked_all"]:
        assert abs(check["calibrated_ratio_error"]) <= 0.10, check
