"""GPTQ weight codes (golden/gptq.py): the tile's contract kept, the error lower, the cache trustworthy."""

import copy
import math

import pytest
import torch

from spikeacc.config import PRESETS
from spikeacc.golden.gptq import gptq_quantize
from spikeacc.golden.model import PROJECTIONS, load_model, network_weights, quantized_layers
from spikeacc.golden.perplexity import FP_ROW, run_ppl_table, spec_row
from spikeacc.golden.quant import quantize_weight
from spikeacc.golden.spiking_linear import QuantSpec

pytestmark = [pytest.mark.model]


def correlated_inputs(tokens=512, features=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(features, features, generator=g, dtype=torch.float64) / math.sqrt(features)
    x = torch.randn(tokens, features, generator=g, dtype=torch.float64) @ mix
    x[:, 3] *= 8   # an outlier channel, as real LLM inputs have
    return x


def test_gptq_codes_keep_the_per_channel_contract_and_lower_the_output_error():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(32, 64, generator=g, dtype=torch.float64) * 0.05
    x = correlated_inputs()
    gptq = gptq_quantize(w, x.T @ x / len(x), bits=4)
    rtn = quantize_weight(w, 4)
    span = gptq.code.amax(dim=1) - gptq.code.amin(dim=1)
    assert gptq.code.dtype == torch.int64 and int(span.max()) <= 15, "a row spans more than 16 codes"
    assert int(gptq.code.amin()) >= -15 and int(gptq.code.amax()) <= 15
    assert bool((gptq.code.amin(dim=1) <= 0).all() and (gptq.code.amax(dim=1) >= 0).all()), \
        "every row's range includes 0 (zero point in range)"

    def output_error(q):
        return float(((w - q.dequant()) @ x.T).pow(2).sum())

    assert output_error(gptq) < 0.7 * output_error(rtn), (output_error(gptq), output_error(rtn))


def tiny_llama_folder(path, tokenizer):
    """A two-block Llama with SmolLM2's tokenizer, saved as a Hugging Face folder (what --model takes)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                      num_hidden_layers=2, vocab_size=len(tokenizer))
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    _, tokenizer, _ = load_model()
    folder = tiny_llama_folder(tmp_path / "tiny", tokenizer)
    monkeypatch.setenv("SPIKEACC_CACHE", str(tmp_path / "cache"))
    return folder


def test_a_local_llama_folder_gets_gptq_rows_in_both_modes(tiny_folder, tmp_path):
    rows = [FP_ROW] + [spec_row(QuantSpec.from_config(PRESETS["default"].in_mode(mode)), overrides="silu-floor")
                       for mode in ("spikequant", "kirin")]
    results = run_ppl_table(model=str(tiny_folder), out=tmp_path / "ppl", tokens=512, rows=rows)
    assert [r["weights"] for r in results[1:]] == ["gptq", "gptq"]
    assert all(math.isfinite(r["ppl"]) and r["ppl"] > 1 for r in results)
    assert len(list((tmp_path / "cache" / "gptq").glob("*.pt"))) == 2, "one cached set of codes per mode"


def test_cached_codes_are_the_computed_ones_and_a_damaged_cache_is_recomputed(tiny_folder, tmp_path):
    from spikeacc.golden.perplexity import default_text, token_splits
    net, tokenizer, _ = load_model(str(tiny_folder))
    calib, _ = token_splits(tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    first = network_weights(copy.deepcopy(net), spec, calib)
    assert set(first) == {f"model.layers.{i}.{p}" for i in range(2) for p in PROJECTIONS}
    (cached,) = (tmp_path / "cache" / "gptq").glob("*.pt")
    again = network_weights(copy.deepcopy(net), spec, calib)
    cached.write_bytes(b"not a torch file")
    recomputed = network_weights(copy.deepcopy(net), spec, calib)
    for name, q in first.items():
        assert torch.equal(q.code, again[name].code) and torch.equal(q.scale, again[name].scale), name
        assert torch.equal(q.code, recomputed[name].code), name
    other = network_weights(copy.deepcopy(net), spec.replace(method="kirin"), calib)
    assert any(not torch.equal(first[n].code, other[n].code) for n in first), "Kirin's codes have their own key"


def test_a_converted_network_holds_the_gptq_codes(tiny_folder):
    from spikeacc.golden.model import quantize_network
    from spikeacc.golden.perplexity import default_text, token_splits
    net, tokenizer, _ = load_model(str(tiny_folder))
    calib, _ = token_splits(tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    codes = network_weights(copy.deepcopy(net), spec, calib)
    quantize_network(net, spec, calib)
    for name, module in quantized_layers(net).items():
        assert torch.equal(module.w_code.to(torch.int64), codes[name].code), name


def test_gptq_without_the_network_is_refused_with_the_fix():
    from spikeacc.golden.spiking_linear import SpikeQuantLinear
    with pytest.raises(ValueError, match="GPTQ weight codes come from calibrating the whole network"):
        SpikeQuantLinear(torch.nn.Linear(8, 4, bias=False), QuantSpec(weights="gptq"))
    with pytest.raises(ValueError, match="weight_rounding must be one of"):
        PRESETS["default"].replace(weight_rounding="awq")
