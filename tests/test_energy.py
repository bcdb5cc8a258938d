"""Energy from RTL activity: toggle counting, op counts, and the spiking-vs-MAC report."""


import pytest

from spikeacc.config import SpikeConfig
from spikeacc.golden.energy import add_pj, mult_pj, op_counts, sram_read_pj
from spikeacc.golden.vectors import random_vectors, save_vectors
from spikeacc.verif.saif import read_saif


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


@pytest.mark.verilator
def test_energy_report_on_random_vectors(tmp_path):
    """Both tiles bit-exact under tracing; RTL-counted weight reads equal the golden op counts."""
    from spikeacc.verif.energy import run_energy
    cfg = SpikeConfig()
    v = random_vectors(cfg, 3, seed=4)
    path = save_vectors(tmp_path / "v.npz", v)
    r = run_energy(path, out=tmp_path / "energy")
    assert r["designs"]["tile"]["weight_reads"] == r["op_counts"]["spiking"]["weight_read"]
    assert r["designs"]["mac"]["weight_reads"] == r["op_counts"]["mac"]["weight_read"]
    for key in ("toggles_datapath", "toggles_total_with_weight_memory", "ops_datapath"):
        assert r["ratio_mac_over_spiking"][key] > 0
    assert r["ratio_mac_over_spiking"]["paper"] == 4.6
    for name in ("energy.json", "energy.md", "energy.png", "tile.saif", "mac.saif"):
        assert (tmp_path / "energy" / name).is_file()
    roles = r["designs"]["tile"]["energy_pj"]
    assert {"spike/current adders", "membrane adders", "threshold/fire", "weight memory reads"} <= set(roles)
    assert {"MAC multipliers", "accumulators", "requant multiplier"} <= set(r["designs"]["mac"]["energy_pj"])


@pytest.mark.verilator
def test_energy_refuses_a_design_that_is_not_bit_exact(tmp_path):
    from spikeacc.verif.energy import run_energy
    cfg = SpikeConfig()
    from spikeacc.errors import VerificationFailed
    v = random_vectors(cfg, 2, seed=4)
    path = save_vectors(tmp_path / "v.npz", v)
    with pytest.raises(VerificationFailed, match=r"tile is not bit-exact .* first at index \(0, 3\)"):
        run_energy(path, out=tmp_path / "energy", inject_fault=(0, 3))
