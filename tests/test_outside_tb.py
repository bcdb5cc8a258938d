"""The datasheet is enough: a plain-Verilog Icarus testbench built from the manifest JSON alone.

:mod:`spikeacc.verif.outside_tb` plays the outside integrator. It runs here on
the PE, a small spiking tile and the MAC tile with every Verilog initial value
stripped (X-initial, as an ASIC starts), so reset alone must make the design
defined; without reset the same bench must fail.
"""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors
from spikeacc.hw.package import write_package
from spikeacc.verif import outside_tb
from spikeacc.hw.package import strip_initial_values
from spikeacc.verif.outside_tb import run_outside
from spikeacc.verif.pe_cases import make_cases

from spikeacc.config import KIRIN_MODE, SpikeConfig

SMALL_TILE = SpikeConfig(in_features=128, out_features=16, pes=4, lanes=2)


# Kirin mode: integer outliers and the silence-threshold neuron, from X-initial too
KIRIN_TILE = SMALL_TILE.replace(**KIRIN_MODE)


def _package(tmp_path, design):
    cfg = {"pe": SpikeConfig(), "kirin-tile": KIRIN_TILE}.get(design, SMALL_TILE)
    files = write_package(design.removeprefix("kirin-"), cfg, tmp_path / design)
    if design == "pe":
        vectors = tmp_path / "cases.npz"
        make_cases(cfg, 150, seed=2).save(vectors)
    else:
        vectors = save_vectors(tmp_path / "vectors.npz",
                               random_vectors(cfg, 3, seed=1, salient_fraction=0.2 if cfg.kirin else 0.025))
    return files["manifest"], vectors


def test_outside_testbench_imports_nothing_from_spikeacc():
    """The outside_* modules know a design from its manifest only: they import no spikeacc but each other."""
    for path in Path(outside_tb.__file__).parent.glob("outside_*.py"):
        tree = ast.parse(path.read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        ours = {m for m in modules if m and m.startswith("spikeacc")}
        assert all(m.startswith("spikeacc.verif.outside_") for m in ours), (path.name, ours)


def test_stripping_removes_every_initial_value():
    text = "  reg [3:0] a = 4'h0;\n  reg \\$auto$x$1  = 0;\n  reg [1:0] m [3:0];\n  initial begin\n    m[0] = 2'h0;\n  end\n"
    out = strip_initial_values(text)
    assert "=" not in out and "initial" not in out
    assert "reg \\$auto$x$1 ;" in out  # an escaped identifier keeps the space that ends it


@pytest.mark.icarus
@pytest.mark.parametrize("design", ["pe", "tile", "mac", "kirin-tile"])
def test_manifest_alone_drives_the_design_bit_exact_from_x_initial(tmp_path, design):
    manifest, vectors = _package(tmp_path, design)
    rtl = Path(manifest).with_suffix(".v").read_text()
    assert strip_initial_values(rtl) != rtl, "the generated RTL has initial values; the test must remove them"
    result = run_outside(manifest, vectors, tmp_path / "work", no_initial_values=True)
    assert result["passed"], result
    assert result["compared"] == np.load(vectors)["expected"].size
    if design != "pe":
        assert result["compared"] == 3 * 16


@pytest.mark.icarus
def test_without_reset_the_x_initial_design_fails(tmp_path):
    manifest, vectors = _package(tmp_path, "tile")
    result = run_outside(manifest, vectors, tmp_path / "work", no_initial_values=True, reset_cycles=0)
    assert not result["passed"]


@pytest.mark.icarus
def test_a_wrong_expected_count_is_reported_with_its_index(tmp_path, capsys):
    manifest, vectors = _package(tmp_path, "tile")
    with np.load(vectors) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["expected"][2, 5] ^= 1
    np.savez(tmp_path / "bad.npz", **arrays)
    assert outside_tb.main([str(manifest), str(tmp_path / "bad.npz")]) == 1
    out = capsys.readouterr().out
    assert "mismatch at (2, 5)" in out and out.rstrip().splitlines()[-1].startswith("FAIL: 48 outputs compared, 1 mismatches")


def test_a_manifest_without_datasheet_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "old.json").write_text(json.dumps({"design": "tile", "top": "x"}))
    np.savez(tmp_path / "v.npz", expected=np.zeros(1))
    assert outside_tb.main([str(tmp_path / "old.json"), str(tmp_path / "v.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no datasheet" in err


@pytest.mark.icarus
@pytest.mark.parametrize("design, fact", [("tile", "write_delay"), ("kirin-tile", "write_delay"),
                                          ("mac", "write_delay"), ("mac", "words_read_per_token"),
                                          ("kirin-tile", "fire_gap")])
def test_the_bench_checks_the_datasheets_read_pattern_and_write_times(tmp_path, design, fact):
    """The stated facts are checked, not only the counts: a manifest one cycle (or one read) off fails,
    naming the token and block."""
    manifest, vectors = _package(tmp_path, design)
    assert run_outside(manifest, vectors, tmp_path / "good")["passed"]
    data = json.loads(Path(manifest).read_text())
    if fact == "words_read_per_token":
        data["datasheet"]["buffers"]["act"][fact] //= data["config"]["out_features"] // data["config"]["pes"]
    else:
        data["timing"]["values"][fact] += 300 if fact == "fire_gap" else 1
    Path(manifest).write_text(json.dumps(data))
    result = run_outside(manifest, vectors, tmp_path / "bad")
    assert not result["passed"] and result["mismatch_count"] == 0
    assert result["timing_differences"] and result["timing_differences"][0].startswith("TIMING token 0")
