"""The hardware-faithful golden model: what the perplexity measures is what the RTL must match."""

import json
import numpy as np
import pytest
import torch

from spikeacc.app.cli import main
from spikeacc.config import PRESETS
from spikeacc.golden.checkpoint import open_checkpoint
from spikeacc.golden.network import PROJECTIONS, convert_block, hardware_network, quantized_layers
from spikeacc.golden.output_quant import OutputCalibration, OutputQuant, fire_counts_torch, pow2_steps, threshold_pair
from spikeacc.golden.perplexity import default_text, row_label, table_rows, token_splits
from spikeacc.golden.spiking_linear import QuantSpec, SpikeQuantLinear
from spikeacc.golden.vectors import load_vectors, save_vectors
from spikeacc.golden.vector_export import vectors_from_hardware

pytestmark = [pytest.mark.model]


from tiny_models import streamed, tiny_llama_folder

# a lone layer, outside a network: round-to-nearest weights (GPTQ needs the network), any float step
LONE = dict(weights="rtn", input_step="any")


def assert_same_counts(expected, got, what):
    bad = np.argwhere(expected != got)
    assert not len(bad), (f"{what}: {len(bad)} counts differ, first at {tuple(bad[0])}: "
                          f"expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}")


@pytest.fixture(scope="module")
def smollm2():
    net = streamed(open_checkpoint().folder, blocks=1)   # block 0 alone: what the exported vectors see
    calib, windows = token_splits(net.tokenizer, default_text(), 512)
    return net, calib, windows


@pytest.mark.parametrize("fields, out_policy", [
    (dict(), "channel"),
    (dict(out_bits=6, input_step="pow2"), "channel"),
    pytest.param(dict(out_bits=4, input_step="static"), "tensor", marks=pytest.mark.slow),
], ids=["grid4-8-channel", "pow2-6-channel", "static-4-tensor"])
def test_hardware_faithful_counts_equal_exported_vectors_on_real_layers(tmp_path, smollm2, fields, out_policy):
    """Block 0 of SmolLM2 in the hardware-faithful mode: each projection's counts, exported as a
    vector file and reloaded, equal ``fire_count`` of the file element for element."""
    streamed_net, calib, windows = smollm2
    base = PRESETS["smollm2"].replace(max_tokens=24, weight_rounding="rtn", **fields)   # one block: no GPTQ
    spec = QuantSpec.from_config(base, out_policy=out_policy)
    net = hardware_network(streamed_net, spec, calib[:, :256])
    layers = quantized_layers(net)
    for m in layers.values():
        m.record = []
    with torch.no_grad():
        net(windows[0, :24][None])
    for name, m in layers.items():
        (hw,) = m.record
        cfg = base.for_layer(m.in_features, m.out_features)
        v = vectors_from_hardware(cfg, m, hw, {"layer": name, "mode": spec.mode, "out_policy": spec.out_policy})
        back = load_vectors(save_vectors(tmp_path / f"{name}.npz", v))
        counts = hw.counts.numpy()
        assert_same_counts(back.golden_counts(), counts, name)
        assert_same_counts(back.expected, counts, name)
        assert 0 <= counts.min() and counts.max() <= cfg.max_count
        assert len(np.unique(counts)) > 3, f"{name}: outputs collapsed to {np.unique(counts)}"
    assert len(layers) == len(PROJECTIONS)


def test_network_sees_step_times_count_minus_zero():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 24, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(out_bits=6, **LONE))
    q.calibrate_on([torch.randn(40, 64) * 3])
    x = torch.randn(5, 64) * 3
    q.record = []
    y = q(x)
    (hw,) = q.record
    expect = (hw.counts.double() - q.out_quant.zero.double()) * q.out_quant.step.double()
    assert torch.equal(y, expect.float())
    # close to the float layer where the output is inside the calibrated range
    ref = torch.nn.functional.linear(q.quantize_input(x).dequant(), q.weight_deq)
    inside = (ref >= q.out_quant.step * -q.out_quant.zero) & (ref <= q.out_quant.step * (63 - q.out_quant.zero))
    assert ((y - ref).abs()[inside] <= q.out_quant.step.expand_as(y)[inside] * 0.5 + 1e-3).all()


def test_pow2_input_thresholds_are_shifts_of_one_constant_per_neuron():
    torch.manual_seed(1)
    lin = torch.nn.Linear(128, 16, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(out_bits=8, input_step="pow2", weights="rtn"))
    q.calibrate_on([torch.randn(64, 128) * s for s in (0.5, 2.0)])
    x = torch.randn(6, 128) * torch.tensor([0.3, 0.7, 1.0, 2.0, 5.0, 9.0])[:, None]
    hw = q.hardware_forward(x)
    _, j = pow2_steps(q.quantize_input(x).step)
    assert torch.equal(hw.act.exponent, j)
    steps = hw.act.step.reshape(-1)
    assert torch.equal(steps, torch.pow(2.0, -j.reshape(-1).double()).float())  # exact powers of two
    oq = q.out_quant
    theta0, phi0 = threshold_pair(oq.step.double()[None, :] / (q.w_scale.double()[None, :] * 2.0 ** -oq.j0),
                                  oq.zero.double()[None, :], oq.frac_bits)
    assert (j.reshape(-1) != oq.j0).any(), "the test needs tokens on other exponents than j0"
    held = hw.thresholds   # one constant per neuron, computed once at j0; each token's exponent d = j − j0
    assert torch.equal(held.theta, theta0) and torch.equal(held.phi, phi0)
    assert torch.equal(held.exponent, j.reshape(-1) - oq.j0)


def test_tiny_llama_hardware_faithful_end_to_end(tmp_path):
    net = streamed(tiny_llama_folder(tmp_path / "tiny"))
    ids = torch.randint(0, 100, (1, 48))
    overrides = {"mlp.down_proj": {"out_bits": 6}}
    block = convert_block(net.block(0), QuantSpec(out_bits=8, **LONE), overrides=overrides)
    assert {m.spec.out_bits for n, m in quantized_layers(block).items() if n.endswith("down_proj")} == {6}
    with pytest.raises(ValueError, match="not calibrated: run calibrate"):
        block(net.embed(ids), **net.context(net.embed(ids)))
    hardware = hardware_network(net, QuantSpec(out_bits=8, **LONE), ids, overrides=overrides)
    assert all(m.weight_deq is None for m in quantized_layers(hardware).values()), "float copies released"
    assert torch.isfinite(hardware(ids).logits).all()


def test_oracle_needs_no_calibration_and_is_labelled():
    lin = torch.nn.Linear(32, 8, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(out_bits=4, out_policy="oracle", **LONE))
    hw = q.hardware_forward(torch.randn(3, 32))
    assert hw.counts.max() == 15 and hw.counts.min() == 0   # each token spans its own full range
    labels = [row_label(r) for r in table_rows() if r.get("out_policy") == "oracle"]
    assert labels and all("oracle" in label for label in labels)


@pytest.mark.parametrize("quick", [True, False])
def test_kirin_rows_sit_beside_spikequant_through_the_same_thresholds(quick):
    rows = table_rows(quick=quick)
    def hardware(method):
        return {(r.get("mode"), r.get("input_step")) for r in rows
                if r["method"] == method and r.get("out_bits") == 8 and r.get("out_policy") == "channel"
                and r.get("overrides") == "silu-floor"}
    assert hardware("kirin") and hardware("kirin") == hardware("spikequant")
    labels = [row_label(r) for r in rows if r["method"] == "kirin"]
    assert all(label.startswith("kirin W4A4&8") for label in labels)
    assert any("out 8b channel" in label for label in labels)


@pytest.mark.parametrize("kwargs, message", [
    (dict(out_bits=9), r"out_bits \(b_out\) must be an integer in 2..8, got 9"),
    (dict(out_bits=1), r"out_bits \(b_out\) must be an integer in 2..8, got 1"),
    (dict(out_bits=8, out_policy="percentile"), r"output policy must be one of \['channel', 'tensor', 'oracle'\]"),
    (dict(input_step="pow3"), r"input_step must be one of \('static', 'pow2', 'pow2/2', 'pow2/4', 'any'\)"),
    (dict(method="kirin", outlier_bits=9), r"outlier_bits must be an integer in 6..8"),
    (dict(out_bits=8, w_group=64), "need per-channel weights"),
])
def test_bad_quant_specs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantSpec(**kwargs)


def test_output_range_needs_calibration_tokens():
    with pytest.raises(ValueError, match="needs calibration tokens"):
        OutputQuant.calibrated(OutputCalibration(), "channel", 8, 16)


@pytest.mark.parametrize("argv, message", [
    (["ppl", "--out-policy", "bogus"], "output policy must be one of"),
    (["ppl", "--out-bits", "9"], "must be an integer in 2..8, got 9"),
    (["ppl", "--out-bits", "x"], "--out-bits takes comma-separated integers"),
    (["ppl", "--tokens", "0"], "--tokens must be an integer of at least 16, got 0"),
    (["vectors", "--out", "v.npz", "--out-bits", "12"], "must be an integer in 2..8, got 12"),
    (["vectors", "--out", "v.npz", "--tokens", "0"], "--tokens must be a positive integer, got 0"),
])
def test_cli_bad_accuracy_options_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_cli_text_too_short_for_calibration(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("A few words only.")
    assert main(["ppl", "--quick", "--text", str(short), "--out", str(tmp_path / "o")]) == 2
    assert "at least 1536 are needed (1024 calibration + one 512-token window)" in capsys.readouterr().err
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    assert main(["ppl", "--quick", "--text", str(binary), "--out", str(tmp_path / "o")]) == 2
    assert f"text file {binary} is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("grid", [2, 4])
def test_grid_input_steps_select_one_of_r_constants_and_shift_it(grid):
    torch.manual_seed(2)
    lin = torch.nn.Linear(64, 8, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(out_bits=8, input_step=f"pow2/{grid}", weights="rtn"))
    q.calibrate_on([torch.randn(64, 64) * s for s in (0.5, 3.0)])
    x = torch.randn(12, 64) * torch.linspace(0.2, 8.0, 12)[:, None]
    hw = q.hardware_forward(x)
    j = hw.act.exponent.reshape(-1)
    assert torch.allclose(hw.act.step.reshape(-1).double(), torch.pow(2.0, -j.double() / grid), rtol=1e-6)
    # R constants per neuron; token t reads row d mod R and scales by 2^⌊d/R⌋, d = j − R·⌊j0/R⌋
    q0 = q.out_quant.j0 // grid
    held = hw.thresholds
    assert held.theta.shape == (grid, 8) and torch.equal(held.exponent, j - grid * q0)
    assert len(set((held.exponent % grid).tolist())) > 1 and len(set((held.exponent // grid).tolist())) > 1, \
        "the test needs tokens on several rows and scales"
    theta, phi, scale = held.per_token()
    assert torch.equal(hw.counts, fire_counts_torch(hw.acc, theta, phi, q.spec.frac_bits, q.spec.out_bits, scale))


def test_cli_bad_input_mode(capsys):
    assert main(["ppl", "--inputs", "pow3"]) == 2
    assert "input_step must be one of ('static', 'pow2', 'pow2/2', 'pow2/4', 'any'), got 'pow3'" in capsys.readouterr().err


def test_a_failed_ppl_run_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    """ppl.json is written after every row: a failure in row 2 leaves row 1 on disk."""
    from spikeacc.golden import perplexity as table
    real, calls = table.evaluate, []

    def fails_second(net, spec, calib, windows, **kw):
        calls.append(spec)
        if len(calls) == 2:
            raise RuntimeError("killed in row 2")
        return real(net, spec, calib, windows[:1, :64], **kw)
    monkeypatch.setattr(table, "evaluate", fails_second)
    with pytest.raises(RuntimeError, match="killed in row 2"):
        table.run_ppl_table(out=tmp_path, tokens=512, rows=[table.FP_ROW, dict(table.FP_ROW)])
    rows = json.loads((tmp_path / "ppl.json").read_text())
    assert len(rows) == 1 and rows[0]["label"] == "FP" and rows[0]["ppl"] > 1
