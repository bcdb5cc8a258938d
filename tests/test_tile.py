"""The spiking tile under Verilator: bit-exact on random and real layer vectors, cycle model, CLI."""

import json

import numpy as np
import pytest

from spikeacc.app.cli import main
from spikeacc.config import KIRIN_MODE, PRESETS, SpikeConfig
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors
from spikeacc.hw.generate import generate
from spikeacc.hw.tile import SpikingTile, token_cycles
from spikeacc.verif.tile_regress import run_tile_regression
from spikeacc.verif.toolchain import lint



def write_random(tmp_path, cfg, tokens=3, seed=0, name="v.npz", **kw):
    return save_vectors(tmp_path / name, random_vectors(cfg, tokens, seed=seed, **kw))


def predicted_cycles(cfg, mant):
    return token_cycles(cfg, mant)


# The default shape under Verilator in the default suite; the other shapes (one
# Verilator build each) are slow runs; tests/test_tile_unit.py covers tiny
# shapes of every kind in Amaranth's simulator without a build.
@pytest.mark.parametrize("cfg", [
    pytest.param(SpikeConfig(), id="default-out8"),                   # K=64, N=16, P=4, L=2
    pytest.param(SpikeConfig(in_features=48, out_features=12, pes=3, lanes=4, salient=False),
                 id="L4-no-salient", marks=pytest.mark.slow),
    pytest.param(SpikeConfig(in_features=32, out_features=8, pes=8, lanes=1, out_bits=3, frac_bits=12),
                 id="L1-P8-out3", marks=pytest.mark.slow),
    pytest.param(SpikeConfig(in_features=96, out_features=8, pes=2, lanes=2, out_bits=6),
                 id="out6", marks=pytest.mark.slow),
])
@pytest.mark.verilator
def test_tile_bit_exact_and_cycle_model(tmp_path, cfg):
    path = write_random(tmp_path, cfg, tokens=4)
    run, rep = run_tile_regression(path, progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.compared == 4 * cfg.out_features
    from spikeacc.golden.vectors import load_vectors
    v = load_vectors(path)
    # the docstring's cycle count is exact, token by token
    assert rep.cycles_per_token == predicted_cycles(v.config, v.mant)


@pytest.mark.verilator
def test_tile_skips_zero_mantissas(tmp_path):
    """All-zero tokens cost only the encode pass and one cycle per step: no weight work."""
    cfg = SpikeConfig()
    v = random_vectors(cfg, 2, seed=3)
    v.mant[0] = 0
    v.acc[0] = 0
    v.expected = v.golden_counts()
    path = save_vectors(tmp_path / "z.npz", v)
    _, rep = run_tile_regression(path, progress=False)
    assert rep.passed, rep.mismatches[:10]
    empty, busy = rep.cycles_per_token
    assert empty == predicted_cycles(cfg, v.mant[:1])[0] < busy


@pytest.mark.verilator
def test_generated_tile_is_lint_clean(tmp_path):
    design = generate("tile", SpikeConfig(), tmp_path)
    lint([design.verilog], design.top)


def test_tile_rejects_non_config():
    with pytest.raises(TypeError, match="config must be a SpikeConfig"):
        SpikingTile(None)


@pytest.mark.verilator
def test_cli_reports_a_wrong_rtl_output_with_its_index(tmp_path, capsys):
    """A flipped bit in the RTL's output (fault injection) fails the run, naming the index."""
    cfg = SpikeConfig()
    v = random_vectors(cfg, 2, seed=5)
    path = save_vectors(tmp_path / "v.npz", v)
    report = tmp_path / "r.json"
    assert main(["regress", "--design", "tile", "--vectors", str(path), "--report", str(report),
                 "--inject-fault", "1,7"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 mismatches" in out and "index (1, 7)" in out
    rep = json.loads(report.read_text())
    assert rep["mismatches"] == [{"index": [1, 7], "expected": int(v.expected[1, 7]),
                                  "got": int(v.expected[1, 7]) ^ 1}]


def test_loader_refuses_an_expected_value_the_formula_does_not_give(tmp_path, capsys):
    cfg = SpikeConfig()
    v = random_vectors(cfg, 2, seed=5)
    v.expected[1, 7] = (v.expected[1, 7] + 3) % (cfg.max_count + 1)
    path = save_vectors(tmp_path / "bad.npz", v)
    assert main(["regress", "--design", "tile", "--vectors", str(path)]) == 2
    assert "'expected' is not clamp(floor((⌊2^F·acc/2^s⌋ + Φ)/Θ)) at (1, 7)" in capsys.readouterr().err


def test_cli_refuses_bad_vector_files(tmp_path, capsys):
    assert main(["regress", "--design", "tile", "--vectors", str(tmp_path / "none.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = SpikeConfig()
    v = random_vectors(cfg, 1)
    v.mant = v.mant.astype(np.int16)
    np.savez(tmp_path / "wide.npz", w=v.w, mant=v.mant, shift=v.shift, theta=v.theta, phi=v.phi,
             frac_bits=16, out_bits=4, acc=v.acc, expected=v.expected, meta=json.dumps(v.meta))
    assert main(["regress", "--design", "tile", "--vectors", str(tmp_path / "wide.npz")]) == 2
    assert "'mant' must be int8, is int16" in capsys.readouterr().err


def test_cli_refuses_a_tile_shape_that_does_not_cover_the_layer(tmp_path, capsys):
    path = write_random(tmp_path, SpikeConfig(), tokens=1)
    assert main(["regress", "--design", "tile", "--vectors", str(path), "--pes", "5"]) == 2
    assert "out_features (16) is not a multiple of pes (5)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def block0_vectors(tmp_path_factory):
    """Real SmolLM2-135M vectors of every projection of decoder block 0, 8 tokens, one pass per mode."""
    from spikeacc.golden.network import PROJECTIONS
    from spikeacc.golden.vector_export import export_layers
    exported = {}

    def vectors(mode: str) -> dict:
        if mode not in exported:
            out = tmp_path_factory.mktemp(f"block0_{mode}")
            base = PRESETS["smollm2"].replace(**(KIRIN_MODE if mode == "kirin" else {}))
            layers = [f"model.layers.0.{p}" for p in PROJECTIONS]
            exported[mode] = dict(zip(PROJECTIONS, export_layers(
                layers=layers, tokens=8, outs=[out / f"{p}.npz" for p in PROJECTIONS], base=base)))
        return exported[mode]
    return vectors


# Slow runs (one export of all seven per mode, a Verilator build per shape); `spikeacc run`
# (the main job) verifies all seven in both modes every time, and the default suite puts
# real q_proj codes through the default tile in both modes (cropped).
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["spikequant", "kirin"])
@pytest.mark.parametrize("proj", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"])
@pytest.mark.verilator
def test_smollm2_layer0_projection_bit_exact(block0_vectors, mode, proj):
    """Real SmolLM2-135M vectors, 8 tokens, every projection of block 0 at full size (8-bit outputs)."""
    _, rep = run_tile_regression(block0_vectors(mode)[proj], progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.compared == 8 * rep.shape[2]
    assert rep.cycles_per_token == rep.predicted_cycles_per_token
    assert rep.config.out_bits == 8
    assert rep.config.outlier_bits == (8 if mode == "kirin" else None)


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("proj", ["self_attn.q_proj", "mlp.down_proj"])
def test_llama2_7b_shape_bit_exact(tmp_path, proj):
    """Synthetic Llama-2-7B layer at full size: q_proj 4096x4096, down_proj 11008 -> 4096."""
    from spikeacc.golden.vector_export import export_vectors
    path = export_vectors(layer=proj, tokens=1, out=tmp_path / "v.npz", llama2_shape=True)
    _, rep = run_tile_regression(path, progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.compared == 4096
    assert rep.utilization >= 0.9


# The full 576 × 576 layer needs a tile build of its own (slow); real codes cropped
# to the default tile reuse the default build.
@pytest.mark.verilator
@pytest.mark.parametrize("size", ["cropped-64x16", pytest.param("full", marks=pytest.mark.slow)])
def test_smollm2_static_mode_vectors_bit_exact(tmp_path, size):
    """Static (calibrated) mode: one threshold per output for every token, fully dequantization-free."""
    from spikeacc.golden.synthetic_vectors import crop_vectors
    from spikeacc.golden.vector_export import export_vectors
    from spikeacc.golden.vectors import load_vectors, save_vectors
    path = export_vectors(layer="model.layers.0.self_attn.q_proj", tokens=8, out=tmp_path / "s.npz",
                          base=PRESETS["smollm2"].replace(input_step="static"))
    v = load_vectors(path)
    assert v.theta.shape[0] == v.phi.shape[0] == 1 and not v.exponent.any()   # one constant per neuron
    if size != "full":
        path = save_vectors(tmp_path / "s64.npz", crop_vectors(v, SpikeConfig(input_step="static")))
    _, rep = run_tile_regression(path, progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.compared == 8 * load_vectors(path).shape[2]


@pytest.mark.verilator
@pytest.mark.model
@pytest.mark.parametrize("size", ["cropped-64x16", pytest.param("full", marks=pytest.mark.slow)])
def test_rotated_corpus_calibrated_codes_are_bit_exact_on_the_same_tile(tmp_path, size):
    """The tile's contract does not change with the rotation or the calibration: other codes, the same checks."""
    from spikeacc.golden.synthetic_vectors import crop_vectors
    from spikeacc.golden.vector_export import export_vectors
    from spikeacc.golden.vectors import load_vectors, save_vectors
    base = PRESETS["smollm2"].replace(rotation="hadamard", calibration="corpus", calibration_tokens=1024)
    path = export_vectors(layer="model.layers.0.self_attn.q_proj", tokens=8, out=tmp_path / "r.npz", base=base)
    plain = export_vectors(layer="model.layers.0.self_attn.q_proj", tokens=8, out=tmp_path / "p.npz",
                           base=PRESETS["smollm2"])
    v = load_vectors(path)
    assert not np.array_equal(v.w, load_vectors(plain).w), "the rotated layer exported the plain codes"
    if size != "full":
        path = save_vectors(tmp_path / "r64.npz", crop_vectors(v, SpikeConfig()))
    _, rep = run_tile_regression(path, progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.compared == 8 * load_vectors(path).shape[2]


@pytest.mark.verilator
def test_mac_baseline_bit_exact_and_cycle_model(tmp_path):
    """The MAC tile passes the same regression, and its docstring's cycle count is exact."""
    path = write_random(tmp_path, SpikeConfig(), tokens=3)
    _, rep = run_tile_regression(path, progress=False, design="mac")
    assert rep.passed, rep.mismatches[:10]
    assert rep.cycles_per_token == rep.predicted_cycles_per_token


# --- Kirin mode (SPEC §4): integer outliers beside the spikes, silence-threshold firing ---------------

KIRIN = PRESETS["kirin"]


@pytest.mark.verilator
def test_kirin_tile_bit_exact_on_random_and_real_codes(tmp_path):
    """One Kirin build at the default shape: random codes with many outliers, then real q_proj codes cropped."""
    from spikeacc.golden.synthetic_vectors import crop_vectors
    from spikeacc.golden.vector_export import export_vectors
    from spikeacc.golden.vectors import load_vectors
    path = write_random(tmp_path, KIRIN, tokens=4, salient_fraction=0.1)
    v = load_vectors(path)
    assert (np.abs(v.mant.astype(int)) > KIRIN.spike_max).sum(axis=1).min() >= 3
    _, rep = run_tile_regression(path, progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.compared == 4 * KIRIN.out_features
    assert rep.cycles_per_token == predicted_cycles(KIRIN, v.mant)   # outlier rows included, token by token
    real = export_vectors(layer="model.layers.0.self_attn.q_proj", tokens=8, out=tmp_path / "kq.npz",
                          base=PRESETS["smollm2"].replace(**KIRIN_MODE))
    cropped = save_vectors(tmp_path / "kq64.npz", crop_vectors(load_vectors(real), KIRIN))
    assert (np.abs(load_vectors(cropped).mant.astype(int)) > KIRIN.spike_max).any(), "real outliers reach the tile"
    _, rep = run_tile_regression(cropped, progress=False)
    assert rep.passed, rep.mismatches[:10]
    assert rep.config.outlier_bits == 8 and rep.config.firing == "silence"


@pytest.mark.verilator
@pytest.mark.slow
def test_mac_baseline_takes_kirin_vectors(tmp_path):
    """The MAC baseline on Kirin codes: its multipliers widen to the 8-bit outliers (the fair W4A4&8 baseline)."""
    path = write_random(tmp_path, KIRIN, tokens=3, salient_fraction=0.1)
    _, rep = run_tile_regression(path, progress=False, design="mac")
    assert rep.passed, rep.mismatches[:10]
