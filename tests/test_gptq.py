"""GPTQ weight codes (golden/gptq.py): the tile's contract kept, the error lower, the cache trustworthy."""

import math

import pytest
import torch

from spikeacc.config import PRESETS
from spikeacc.golden.gptq import gptq_quantize
from spikeacc.golden.checkpoint import open_checkpoint
from spikeacc.golden.network import PROJECTIONS, gptq_codes, hardware_network, quantized_layers
from spikeacc.golden.perplexity import FP_ROW, run_ppl_table, spec_row
from spikeacc.golden.quant import quantize_weight
from spikeacc.golden.spiking_linear import QuantSpec

from tiny_models import streamed, tiny_llama_folder

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
    assert gptq.code.dtype == torch.int8 and int(span.max()) <= 15, "a row spans more than 16 codes"
    assert int(gptq.code.amin()) >= -15 and int(gptq.code.amax()) <= 15
    assert bool((gptq.code.amin(dim=1) <= 0).all() and (gptq.code.amax(dim=1) >= 0).all()), \
        "every row's range includes 0 (zero point in range)"

    def output_error(q):
        return float(((w - q.dequant()) @ x.T).pow(2).sum())

    assert output_error(gptq) < 0.7 * output_error(rtn), (output_error(gptq), output_error(rtn))


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    folder = tiny_llama_folder(tmp_path / "tiny", open_checkpoint().tokenizer)
    monkeypatch.setenv("SPIKEACC_CACHE", str(tmp_path / "cache"))
    return folder


def test_a_local_llama_folder_gets_gptq_rows_in_both_modes(tiny_folder, tmp_path):
    rows = [FP_ROW] + [spec_row(QuantSpec.from_config(PRESETS["default"].in_mode(mode)), overrides="silu-floor")
                       for mode in ("spikequant", "kirin")]
    results = run_ppl_table(model=str(tiny_folder), out=tmp_path / "ppl", tokens=512, rows=rows)
    assert [r["weights"] for r in results[1:]] == ["gptq", "gptq"]
    assert all(math.isfinite(r["ppl"]) and r["ppl"] > 1 for r in results)
    assert len(list((tmp_path / "cache" / "gptq").glob("*.pt"))) == 4, "one cached set of codes per block and mode"


def test_cached_codes_are_the_computed_ones_and_a_damaged_cache_is_recomputed(tiny_folder, tmp_path):
    from spikeacc.golden.perplexity import default_text, token_splits
    net = streamed(tiny_folder)
    calib, _ = token_splits(net.tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    first = gptq_codes(net, spec, calib, upto=1)
    assert set(first) == {f"model.layers.{i}.{p}" for i in range(2) for p in PROJECTIONS}
    cached = list((tmp_path / "cache" / "gptq").glob("*.pt"))
    assert len(cached) == 2
    again = gptq_codes(net, spec, calib, upto=1)
    for path in cached:
        path.write_bytes(b"not a torch file")
    recomputed = gptq_codes(net, spec, calib, upto=1)
    for name, q in first.items():
        assert torch.equal(q.code, again[name].code) and torch.equal(q.scale, again[name].scale), name
        assert torch.equal(q.code, recomputed[name].code), name
    other = gptq_codes(net, spec.replace(method="kirin"), calib, upto=1)
    assert any(not torch.equal(first[n].code, other[n].code) for n in first), "Kirin's codes have their own key"


def test_a_converted_network_holds_the_gptq_codes(tiny_folder):
    from spikeacc.golden.perplexity import default_text, token_splits
    net = streamed(tiny_folder)
    calib, _ = token_splits(net.tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    codes = gptq_codes(net, spec, calib, upto=1)
    for name, module in quantized_layers(hardware_network(net, spec, calib)).items():
        assert torch.equal(module.w_code, codes[name].code), name


def test_gptq_without_the_network_is_refused_with_the_fix():
    from spikeacc.golden.spiking_linear import SpikeQuantLinear
    with pytest.raises(ValueError, match="GPTQ weight codes come from calibrating the whole network"):
        SpikeQuantLinear(torch.nn.Linear(8, 4, bias=False), QuantSpec(weights="gptq"))
    with pytest.raises(ValueError, match="weight_rounding must be one of"):
        PRESETS["default"].replace(weight_rounding="awq")


@pytest.mark.parametrize("wanted", [{"self_attn.q_proj"}, {"self_attn.o_proj"}, {"mlp.down_proj", "self_attn.k_proj"}])
def test_the_last_block_rounded_in_part_has_the_whole_blocks_codes(tiny_folder, tmp_path, wanted):
    """Vector export rounds only the named projections of its top block: the same codes, and no partial
    block in the cache (every Hessian of a block comes from one float pass through it)."""
    from spikeacc.golden.perplexity import default_text, token_splits
    net = streamed(tiny_folder)
    calib, _ = token_splits(net.tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    part = gptq_codes(net, spec, calib, upto=1, only=wanted)
    assert set(part) == ({f"model.layers.0.{p}" for p in PROJECTIONS} | {f"model.layers.1.{p}" for p in wanted})
    assert len(list((tmp_path / "cache" / "gptq").glob("*.pt"))) == 1, "block 0 cached whole, block 1 not at all"
    whole = gptq_codes(net, spec, calib, upto=1)
    for name, q in part.items():
        assert torch.equal(q.code, whole[name].code) and torch.equal(q.scale, whole[name].scale), name
