"""Offline rotations: exact Hadamard matrices, and a rotated network that computes what the original does."""

import pytest
import torch

from spikeacc.config import PRESETS
from spikeacc.golden.checkpoint import Checkpoint
from spikeacc.golden.network import gptq_codes
from spikeacc.golden.perplexity import default_text, token_splits
from spikeacc.golden.rotation import Rotation, hadamard, rotation_matrix
from spikeacc.golden.spiking_linear import QuantSpec
from spikeacc.golden.stream import StreamedLlama, run_block

from tiny_models import tiny_llama_folder


@pytest.mark.parametrize("n", [1, 2, 12, 20, 36, 64, 576, 1536])
def test_hadamard_orders_the_models_need_are_exact(n):
    h = hadamard(n)
    assert h is not None, f"no Hadamard matrix of order {n}"
    assert set(h.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


def test_an_order_without_a_construction_gets_a_seeded_random_orthogonal_matrix():
    assert hadamard(18) is None
    r, kind = rotation_matrix(18, seed=3)
    assert kind == "random-orthogonal"
    assert torch.allclose(r @ r.T, torch.eye(18, dtype=torch.float64), atol=1e-12)
    assert torch.equal(r, rotation_matrix(18, seed=3)[0]), "the same seed, the same matrix"
    assert not torch.equal(r, rotation_matrix(18, seed=4)[0])


def _logits(net, ids):
    states = [net.embed(ids)]
    for i in range(net.blocks):
        states = run_block(net, net.block(i), states)
    return net.logits(states[0])


def test_a_rotated_network_computes_the_same_logits_with_other_weights(tmp_path):
    folder = tiny_llama_folder(tmp_path / "tiny")
    plain, rotated = StreamedLlama(Checkpoint(folder)), StreamedLlama(Checkpoint(folder), rotation="hadamard")
    ids = torch.randint(0, 100, (24,), generator=torch.Generator().manual_seed(1))
    a, b = _logits(plain, ids), _logits(rotated, ids)
    assert torch.allclose(a, b, rtol=0, atol=1e-5 * a.abs().max().item()), (a - b).abs().max()
    for name in ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"):
        wa = plain.block(0).get_submodule(name).weight
        wb = rotated.block(0).get_submodule(name).weight
        assert not torch.allclose(wa, wb), f"{name} was not rotated"
    assert torch.equal(rotated.block(0).input_layernorm.weight, torch.ones(64, dtype=torch.float64))
    assert plain.chain(2) != rotated.chain(2), "rotated codes must not share the plain ones' cache entries"


def test_rotation_refuses_projections_with_biases():
    rot = Rotation(8, 4)
    state = {f"{p}.weight": torch.ones(8, 8, dtype=torch.float64) for p in
             ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    state |= {"input_layernorm.weight": torch.ones(8, dtype=torch.float64),
              "post_attention_layernorm.weight": torch.ones(8, dtype=torch.float64),
              "self_attn.q_proj.bias": torch.zeros(8, dtype=torch.float64)}
    with pytest.raises(ValueError, match="biases"):
        rot.block(state)


@pytest.mark.model
def test_rotated_gptq_codes_are_cached_apart_from_the_plain_ones(tmp_path, monkeypatch):
    from spikeacc.golden.checkpoint import open_checkpoint
    monkeypatch.setenv("SPIKEACC_CACHE", str(tmp_path / "cache"))
    tokenizer = open_checkpoint().tokenizer
    folder = tiny_llama_folder(tmp_path / "tiny", tokenizer, num_hidden_layers=1)
    calib, _ = token_splits(tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    plain = gptq_codes(StreamedLlama(Checkpoint(folder)), spec, calib[:1, :64], upto=0)
    rotated = gptq_codes(StreamedLlama(Checkpoint(folder), rotation="hadamard"), spec, calib[:1, :64], upto=0)
    assert len(list((tmp_path / "cache" / "gptq").glob("*.pt"))) == 2
    name = "model.layers.0.self_attn.q_proj"
    assert not torch.equal(plain[name].code, rotated[name].code)
