"""Golden SpikeQuant model: quantizers, spiking linear layer, conversion, vectors."""

import json

import numpy as np
import pytest
import torch

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.golden.integer import fire_count, simulate_ttfs
from spikeacc.golden.checkpoint import open_checkpoint
from spikeacc.golden.network import PROJECTIONS, QuantizedBlocks, convert_block, evaluate, quantized_layers
from spikeacc.golden.quant import mad_salient, quantize_activation, quantize_weight
from spikeacc.golden.spiking_linear import QuantSpec, SpikeQuantLinear, ideal_counts, thresholds
from spikeacc.golden.vectors import LayerVectors, VectorFileError, load_vectors, save_vectors


from tiny_models import streamed, tiny_llama_folder

# a lone layer, outside a network: round-to-nearest weights (GPTQ needs the network), any float step
LONE = dict(weights="rtn", input_step="any")


def activations(seed=0, m=16, k=256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g)
    x[:, 5] = 40 + x[:, 5]       # outlier channels, as in LLMs: large and persistent
    x[:, 77] = -60 + x[:, 77]
    return x


def test_weight_codes_are_signed_and_bounded():
    w = torch.randn(32, 64)
    q = quantize_weight(w, 4)
    assert q.code.abs().max() <= 15
    assert (q.dequant() - w).abs().max() <= q.scale.max() * 0.51 + 1e-6


def test_mad_rule_flags_outlier_channels():
    x = activations()
    sal = mad_salient(x, 6.0)
    assert sal[:, 5].all() and sal[:, 77].all()
    assert sal.float().mean() < 0.05


def test_salient_values_kept_in_place_with_exponent():
    x = activations()
    aq = quantize_activation(x, 4, kappa=6.0, e_max=7)
    assert aq.mantissa.abs().max() <= 15 and aq.shift.max() <= 7
    assert (aq.shift[~aq.salient] == 0).all()
    err = (aq.dequant() - x).abs()
    # salient elements: relative error of a 4-bit mantissa, far below the ordinary range clamp
    rel = err[aq.salient] / x[aq.salient].abs()
    assert rel.max() < 0.07
    rtn = quantize_activation(x, 4, kappa=None, e_max=0)
    # the outliers no longer stretch the range: ordinary values are far more precise than RTN's
    ordinary = ~aq.salient
    assert (rtn.dequant() - x).abs()[ordinary].mean() > 5 * err[ordinary].mean()


def test_kirin_outliers_are_8bit_integers_with_one_shift_per_token():
    """W4A4&8 (SPEC §4): ordinary values as SpikeQuant's; salient ones as |q| ≤ 127 sharing a token shift."""
    x = activations()
    x[3, 200] = 900.0                      # one token with a far larger outlier needs a larger shift
    kirin = quantize_activation(x, 4, kappa=6.0, e_max=7, outlier_bits=8)
    spikequant = quantize_activation(x, 4, kappa=6.0, e_max=7)
    assert torch.equal(kirin.salient, spikequant.salient)
    ordinary = ~kirin.salient
    assert torch.equal(kirin.mantissa[ordinary], spikequant.mantissa[ordinary])
    assert (kirin.shift[ordinary] == 0).all()
    assert kirin.mantissa[kirin.salient].abs().max() <= 127
    for t in range(x.shape[0]):                          # one shift per token
        assert len(torch.unique(kirin.shift[t][kirin.salient[t]])) == 1
    assert kirin.shift[3][kirin.salient[3]][0] > kirin.shift[0][kirin.salient[0]][0]
    # 8-bit outliers are finer than 5-bit mantissas with their own shifts
    err = lambda aq: ((aq.dequant() - x).abs()[aq.salient] / x[aq.salient].abs()).mean()  # noqa: E731
    assert err(kirin) < err(spikequant) / 2   # measured 0.009 vs 0.024 (a token shift costs the small ones)


def test_kirin_hardware_faithful_counts_follow_the_integer_formula():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 48, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(method="kirin", out_bits=8, out_policy="oracle", **LONE))
    hw = q.hardware_forward(activations(1))
    assert hw.act.mantissa[hw.act.salient].abs().max() > 15           # outliers really are wider
    exact = (hw.act.value @ q.w_code.to(torch.int64).T)
    assert torch.equal(hw.acc, exact)
    theta, phi, scale = (t.numpy() for t in hw.thresholds.per_token())
    expected = fire_count(hw.acc.numpy(), theta, phi, 16, 8, scale)
    assert np.array_equal(hw.counts.numpy(), expected)
    with pytest.raises(ValueError, match="outlier_bits must be an integer in 6..8"):
        QuantSpec(method="kirin", outlier_bits=1)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_integer_path_equals_float_path(mode):
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 48, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(**LONE | {"input_step": "static" if mode == "static" else "any"}))
    x = activations(1)
    if mode == "static":
        q.calibrating = True
        q(activations(2))
        q.finish_calibration()
    aq, acc = q.integer_forward(x)
    # exact: the integer accumulator is the quantized product
    exact = (aq.value @ q.w_code.to(torch.int64).T).numpy()
    assert np.array_equal(acc, exact)
    # and the float path is s_i * s_x * acc
    y = q(x).double().numpy()
    step = aq.step.double().numpy().reshape(-1, 1) if aq.step.dim() else float(aq.step)
    np.testing.assert_allclose(y, acc * q.w_scale.double().numpy()[None, :] * step, rtol=1e-4, atol=1e-4)


def test_fixed_point_threshold_rounding_vs_ideal():
    """How often floor((2^F acc + Φ)/Θ) differs from ideal rounding, for F = 8, 12, 16."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64, bias=False)
    q = SpikeQuantLinear(lin, QuantSpec(**LONE))
    aq, acc = q.integer_forward(activations(3, m=64))
    y = acc * q.w_scale.numpy()[None, :] * aq.step.numpy()
    lo, hi = y.min(axis=1, keepdims=True), y.max(axis=1, keepdims=True)
    out_step, out_zero = (hi - lo) / 15, np.round(-lo / ((hi - lo) / 15))
    rates = {}
    for f in (8, 12, 16):
        theta, phi = thresholds(q.w_scale.numpy(), aq.step.numpy(), out_step, out_zero, f)
        got = fire_count(acc, theta, phi, f, 4)
        ideal = ideal_counts(acc, q.w_scale.numpy(), aq.step.numpy(), out_step, out_zero, 4)
        rates[f] = float((got != ideal).mean())
    print("fixed-point vs ideal rounding differ rate:", rates)
    assert rates[16] <= rates[8]
    assert rates[16] < 1e-3
    _, stepped = simulate_ttfs(SpikeConfig(in_features=256), q.w_code.numpy(), aq.mantissa.numpy(),
                               aq.shift.numpy(), theta, phi)
    assert np.array_equal(stepped, got)


def test_thresholds_refuse_too_few_fraction_bits():
    with pytest.raises(ValueError, match="F = 0 fraction bits are too few .* raise frac_bits"):
        thresholds(np.array([10.0]), np.array([[10.0]]), np.array([[1.0]]), np.array([[0.0]]), 0)


def test_convert_tiny_llama_all_projections_and_static_calibration(tmp_path):
    net = streamed(tiny_llama_folder(tmp_path / "tiny"))
    ids = torch.randint(0, 100, (1, 32))
    fp = evaluate(net, None, ids, ids)
    blocks = QuantizedBlocks(net, QuantSpec(weights="rtn", input_step="static"), ids)
    converted = [layer for _, layer in blocks]
    layers = [m for layer in converted for m in quantized_layers(layer).values()]
    assert len(layers) == 2 * len(PROJECTIONS)
    assert all(float(m.static_hi) > 0 for m in layers), "static ranges calibrated"
    assert torch.isfinite(torch.tensor(evaluate(net, QuantSpec(weights="rtn", input_step="static"), ids, ids).ppl)) and fp.ppl > 1
    with pytest.raises(ValueError, match="already converted"):
        convert_block(converted[0], QuantSpec(**LONE))


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        open_checkpoint(tmp_path)


def test_non_llama_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="is a 'gpt2' model; spikeacc converts Llama"):
        open_checkpoint(tmp_path)


def small_vectors(rng):
    cfg = SpikeConfig(in_features=32, out_features=8, pes=4, lanes=2, max_tokens=4)
    w = rng.integers(-15, 16, size=(8, 32))
    mant = rng.integers(-15, 16, size=(3, 32))
    shift = np.where(rng.random((3, 32)) < 0.1, 3, 0)
    acc = (mant << shift) @ w.T
    theta = (1 << 20) + np.arange(cfg.threshold_grid)[:, None] * (1 << 17) + np.zeros((1, 8), np.int64)
    phi = np.full((cfg.threshold_grid, 8), 1 << 19)
    v = LayerVectors(w=w, mant=mant, shift=shift, theta=theta, phi=phi, exponent=np.array([0, 5, -3]),
                     frac_bits=16, out_bits=cfg.out_bits, acc=acc, expected=np.zeros_like(acc),
                     meta={"config": cfg.to_dict(), "layer": "test"})
    v.expected = v.golden_counts()
    return v


def test_vector_file_round_trip(tmp_path, rng):
    v = small_vectors(rng)
    path = save_vectors(tmp_path / "v.npz", v)
    back = load_vectors(path)
    assert np.array_equal(back.expected, v.expected) and back.config.in_features == 32
    assert back.w.dtype == np.int8 and back.shift.dtype == np.uint8


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d.pop("acc"), r"missing array\(s\) \['acc'\]"),
    (lambda d: d.update(w=d["w"].astype(np.int16)), "'w' must be int8, is int16"),
    (lambda d: d.update(mant=np.where(np.arange(32) == 4, 16, d["mant"]).astype(np.int8)),
     r"mantissa 16 at \(0, 4\) exceeds ±15"),
    (lambda d: d.update(theta=np.zeros_like(d["theta"])), r"'theta' value 0 at \(0, 0\) is outside 1\.\."),
    (lambda d: d.update(expected=d["expected"][:, :4]), r"'expected' has shape \(3, 4\), expected \(3, 8\)"),
    (lambda d: d.update(theta=d["theta"][:1], phi=d["phi"][:1]),
     r"'theta' has shape \(1, 8\), expected \(4, 8\) \(4 constant\(s\) per neuron for input_step 'pow2/4'\)"),
    (lambda d: d.update(exponent=np.array([0, 5, -9])), r"'exponent' value -9 at \(2,\) is outside -8\.\.151"),
    (lambda d: d.update(expected=np.where(np.arange(8) == 2, d["expected"] ^ 1, d["expected"])),
     r"'expected' is not clamp.* at \(0, 2\)"),
    (lambda d: d.update(meta=np.array("not json")), "'meta' must be a JSON object: Expecting value"),
])
def test_bad_vector_files_are_explained(tmp_path, rng, corrupt, message):
    path = save_vectors(tmp_path / "v.npz", small_vectors(rng))
    with np.load(path) as f:
        arrays = dict(f)
    corrupt(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(VectorFileError, match=message):
        load_vectors(tmp_path / "bad.npz")


def test_missing_vector_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vectors(tmp_path / "none.npz")


@pytest.mark.slow  # full 11008 x 4096 shape
def test_synthetic_llama2_down_proj_vectors(tmp_path):
    """The synthetic Llama-2-7B layer at full shape (11008 -> 4096), one token."""
    from spikeacc.golden.vector_export import export_vectors
    path = export_vectors(layer="mlp.down_proj", tokens=1, out=tmp_path / "d.npz", llama2_shape=True)
    v = load_vectors(path)
    assert v.shape == (1, 11008, 4096)
    assert 0 < v.meta["salient_ratio"] < 0.2
    assert len(np.unique(v.expected)) > 8  # thresholds spread the outputs over the code range


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_smollm2_vectors_all_projections(tmp_path, mode):
    from spikeacc.golden.vector_export import export_vectors
    for proj in PROJECTIONS:
        step = "static" if mode == "static" else "pow2/4"
        path = export_vectors(layer=f"model.layers.0.{proj}", tokens=8, out=tmp_path / f"{proj}.npz",
                              base=PRESETS["smollm2"].replace(input_step=step))
        v = load_vectors(path)
        assert v.shape[0] == 8 and v.meta["input_step"] == step and v.theta.shape[0] == (1 if mode == "static" else 4)


def test_third_party_per_token_thresholds_that_vary_are_refused_with_the_fix(tmp_path, rng):
    """Old-style per-token Θ/Φ rows: accepted when every neuron's row is one constant (a static step)."""
    v = small_vectors(rng)
    theta, phi, _ = v.token_thresholds()
    arrays = dict(w=v.w.astype(np.int8), mant=v.mant.astype(np.int8), shift=v.shift.astype(np.uint8),
                  frac_bits=np.int64(16), out_bits=np.int64(8), acc=v.acc)
    np.savez(tmp_path / "varying.npz", theta=theta, phi=phi, expected=v.expected, **arrays)
    with pytest.raises(VectorFileError, match="of neuron 0 change from token to token; the tile holds per-neuron "
                                              "constants"):
        load_vectors(tmp_path / "varying.npz")
    const_theta, const_phi = np.repeat(v.theta[:1], 3, axis=0), np.repeat(v.phi[:1], 3, axis=0)
    expected = fire_count(v.acc, const_theta, const_phi, 16, 8)
    np.savez(tmp_path / "static.npz", theta=const_theta, phi=const_phi, expected=expected, **arrays)
    back = load_vectors(tmp_path / "static.npz")
    assert back.theta.shape == (1, 8) and not back.exponent.any() and back.config.input_step == "static"


def test_a_folder_without_a_tokenizer_says_what_it_needs_in_whole_sentences(tmp_path):
    tiny_llama_folder(tmp_path)
    with pytest.raises(ValueError) as err:
        open_checkpoint(tmp_path).tokenizer
    message = str(err.value)
    assert message.startswith(f"cannot load the tokenizer of {tmp_path}: a Llama folder needs tokenizer.json")
    assert message.endswith("tokenizer files found: none") and "\n" not in message


def test_an_unwritable_model_cache_is_named_before_the_conversion(tmp_path, monkeypatch):
    """SPIKEACC_CACHE pointing where nothing can be written: one line naming it, before 25 s of work."""
    import time

    from spikeacc.golden import checkpoint
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEACC_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(checkpoint, "_OPEN", {})
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="cannot be written .*; set SPIKEACC_CACHE to a writable folder"):
        open_checkpoint()
    assert time.perf_counter() - t0 < 5, "refused only after the conversion"
