"""Hand-off to FPGA/ASIC flows: generated package, FuseSoC core, synthesis, a second simulator."""

import json
import shutil
import subprocess
import sys

import pytest

from spikeacc.app.cli import main
from spikeacc.config import SpikeConfig
from spikeacc.hw.package import write_package
from spikeacc.verif.runner import run_pe_regression


@pytest.mark.parametrize("design", ["pe", "tile", "mac", "mac_pe"])
def test_package_has_every_file_and_is_reproducible(tmp_path, design):
    a = write_package(design, SpikeConfig(), tmp_path / "a")
    b = write_package(design, SpikeConfig(), tmp_path / "b")
    assert set(a) == {"verilog", "noinit", "manifest", "filelist", "core", "sdc", "config", "readme", "datasheet"}
    for kind in a:
        assert a[kind].read_bytes() == b[kind].read_bytes(), kind
    manifest = json.loads(a["manifest"].read_text())
    assert manifest["config"] == SpikeConfig().to_dict()
    assert manifest["derived"]["membrane_bits"] == SpikeConfig().membrane_bits
    assert {"amaranth", "spikeacc"} <= set(manifest["tools"])
    assert manifest["clock"] == "clk" and [p["name"] for p in manifest["ports"]][:2] == ["clk", "rst"]
    assert a["filelist"].read_text().strip() == a["verilog"].name
    assert "create_clock -name clk" in a["sdc"].read_text()
    sheet = a["datasheet"].read_text()  # every port of the Verilog is in the datasheet, clk/rst first
    ports = [p["name"] for p in manifest["datasheet"]["ports"]]
    assert ports[:2] == ["clk", "rst"] and all(f"| `{p}` |" in sheet for p in ports)
    assert "## Input ranges" in sheet and "Worked examples" in sheet


def test_fusesoc_parses_the_core(tmp_path):
    files = write_package("pe", SpikeConfig(), tmp_path)
    fusesoc = shutil.which("fusesoc") or str(sys.executable).replace("python", "fusesoc")
    name = f"spikeacc:pe:{files['verilog'].stem}:0.1.0"
    run = subprocess.run([fusesoc, "--cores-root", str(tmp_path), "core-info", name],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for target in ("lint", "synth"):
        assert target in run.stdout


@pytest.mark.icarus
@pytest.mark.parametrize("design", ["pe", "tile"])
def test_fusesoc_sim_runs_the_example_testbench_and_passes(tmp_path, design):
    """The core's sim target is a simulation, not a compile: the example bench under Icarus with -g2005."""
    assert main(["generate", design, "--out", str(tmp_path / "pkg"), "--no-lint"]) == 0
    top = next((tmp_path / "pkg").glob("*.core")).stem
    fusesoc = shutil.which("fusesoc") or str(sys.executable).replace("python", "fusesoc")
    run = subprocess.run([fusesoc, "--cores-root", str(tmp_path / "pkg"), "run", "--target", "sim",
                          "--build-root", str(tmp_path / "build"), f"spikeacc:{design}:{top}:0.1.0"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "PASS: " in run.stdout, run.stdout[-2000:]


def test_cli_generate_writes_the_package(tmp_path, capsys):
    assert main(["generate", "tile", "--out", str(tmp_path), "--no-lint"]) == 0
    out = capsys.readouterr().out
    for kind in ("verilog", "filelist", "core", "sdc", "manifest", "readme"):
        assert f"({kind})" in out


@pytest.mark.yosys
def test_pe_synthesizes_without_latches_and_fits_ice40(tmp_path):
    from spikeacc.hw.synth import synthesize
    files = write_package("pe", SpikeConfig(), tmp_path / "rtl")
    result = synthesize(files["verilog"], files["verilog"].stem, tmp_path / "work")
    assert result.luts > 0 and result.flip_flops > 0
    assert not any("LATCH" in cell.upper() for cell in result.generic_cells)
    assert result.fits and result.fmax_mhz > 10


@pytest.mark.slow  # WebAssembly yosys on the default tile: about two minutes
@pytest.mark.yosys
def test_tile_event_queues_become_ice40_block_ram(tmp_path):
    """Each of the (T − 1)·L queue banks is one SB_RAM40_4K, not flip-flops.

    At the default K = 64 a bank holds 32 events; yosys keeps much smaller
    queues (K = 16: 8 events) in logic, as it should.
    """
    from spikeacc.hw.synth import synthesize
    cfg = SpikeConfig()
    files = write_package("tile", cfg, tmp_path / "rtl")
    result = synthesize(files["verilog"], files["verilog"].stem, tmp_path / "work", place_and_route=False)
    assert result.brams == (cfg.window - 1) * cfg.lanes, result.ice40_cells
    assert result.flip_flops < 2500, result.ice40_cells


@pytest.mark.verilator
@pytest.mark.icarus
def test_icarus_and_verilator_agree_on_the_pe():
    cfg = SpikeConfig()
    icarus = run_pe_regression(cfg, n_random=20, simulator="icarus").report
    verilator = run_pe_regression(cfg, n_random=20, simulator="verilator").report
    assert icarus["passed"] and verilator["passed"]
    assert icarus["outputs"] == verilator["outputs"] and len(icarus["outputs"]) == icarus["compared"]


def test_unknown_simulator_is_refused():
    with pytest.raises(ValueError, match="simulator must be 'verilator' or 'icarus'"):
        run_pe_regression(SpikeConfig(), n_random=1, simulator="xcelium")


@pytest.mark.icarus
@pytest.mark.parametrize("design, cfg", [("pe", SpikeConfig()), ("tile", SpikeConfig()), ("mac", SpikeConfig()),
                                         ("mac_pe", SpikeConfig()), ("tile", SpikeConfig(outlier_bits=8, firing="silence")),
                                         ("tile", SpikeConfig(input_step="static"))],
                         ids=["pe", "tile", "mac", "mac_pe", "kirin-tile", "static-tile"])
def test_every_package_carries_an_example_testbench_that_passes(tmp_path, capsys, design, cfg):
    """`spikeacc generate` writes example/; its README's one command runs it under Icarus and prints PASS,
    from the RTL and from the X-initial `_noinit.v`; a corrupted expected count makes it print FAIL."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg.to_dict()))
    assert main(["generate", design, "--out", str(tmp_path / "pkg"), "--no-lint", "--config", str(config)]) == 0
    assert "a runnable testbench" in capsys.readouterr().out
    example = tmp_path / "pkg" / "example"
    readme = (example / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("iverilog"))
    for rtl in ("", "_noinit"):
        run = subprocess.run(command.replace(".v &&", f"{rtl}.v &&"), shell=True, cwd=example,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1].startswith("PASS:"), run.stdout[-2000:]
    expected = (example / "expected.hex").read_text().splitlines()
    expected[0] = "f" * len(expected[0])     # a count (word) that cannot be right
    (example / "expected.hex").write_text("\n".join(expected) + "\n")
    run = subprocess.run(command, shell=True, cwd=example, capture_output=True, text=True)
    assert run.stdout.strip().splitlines()[-1].startswith("FAIL:") and "MISMATCH" in run.stdout
