"""The streamed golden model: one block at a time, bit-identical to the whole-model procedure it replaced."""

import json

import numpy as np
import pytest
import torch

from spikeacc.config import PRESETS
from spikeacc.golden.checkpoint import Checkpoint, open_checkpoint
from spikeacc.golden.network import (HARDWARE_OVERRIDES, QuantizedBlocks, evaluate, gptq_codes, hardware_network,
                                     layer_inputs, quantized_layers)
from spikeacc.golden.model import write_sentencepiece_tokenizer
from spikeacc.golden.perplexity import default_text, token_splits
from spikeacc.golden.spiking_linear import QuantSpec
from spikeacc.golden.stream import run_block

from tiny_models import streamed, tiny_llama_folder
from whole_model import perplexity_whole, quantize_whole, whole_model


def assert_equal_tensors(expected, got, what):
    if not torch.equal(expected, got):
        diff = (expected != got).nonzero()
        raise AssertionError(f"{what}: {len(diff)} elements differ, first at {tuple(diff[0].tolist())}: "
                             f"expected {expected[tuple(diff[0])]}, got {got[tuple(diff[0])]}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEACC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_sharded_fp16_folder_streams_to_the_whole_models_logits(tmp_path):
    folder = tiny_llama_folder(tmp_path / "tiny")
    assert len(list(folder.glob("model-*-of-*.safetensors"))) > 2, "the test needs several shards"
    net = streamed(folder)
    ids = torch.randint(0, 100, (40,), generator=torch.Generator().manual_seed(0))
    states = [net.embed(ids)]
    for i in range(net.blocks):
        states = run_block(net, net.block(i), states)
    with torch.no_grad():
        expected = whole_model(folder)(ids[None]).logits
    assert_equal_tensors(expected, net.logits(states[0]), "logits")


@pytest.mark.model
@pytest.mark.parametrize("mode, fields", [("spikequant", {}), ("kirin", {}),
                                          ("spikequant", {"input_step": "static", "weight_rounding": "rtn"})],
                         ids=["spikequant-gptq", "kirin-gptq", "static-rtn"])
def test_smollm2_streamed_equals_the_whole_model_procedure(cache, mode, fields):
    """Two SmolLM2 blocks: GPTQ codes, calibrated thresholds, every spike count and the perplexity, bit for bit."""
    folder = open_checkpoint().folder
    net = streamed(folder, blocks=2)
    calib, windows = token_splits(net.tokenizer, default_text(), 512)
    window = windows[:1, :96]
    spec = QuantSpec.from_config(PRESETS["default"].in_mode(mode).replace(**fields))

    reference = whole_model(folder, blocks=2)
    ref_codes = quantize_whole(reference, spec, calib, overrides=HARDWARE_OVERRIDES)
    for m in quantized_layers(reference).values():
        m.record = []
    ref_ppl = perplexity_whole(reference, window)

    hardware = hardware_network(net, spec, calib, overrides=HARDWARE_OVERRIDES)
    layers = quantized_layers(hardware)
    for m in layers.values():
        m.record = []
    with torch.no_grad():
        logits = hardware(window)
    expected_layers = quantized_layers(reference)
    assert sorted(layers) == sorted(expected_layers) and len(layers) == 14
    for name, m in layers.items():
        ref = expected_layers[name]
        assert_equal_tensors(ref.w_code, m.w_code, f"{name} weight codes")
        if ref_codes:
            assert_equal_tensors(ref_codes[name].code.to(torch.int8), m.w_code, f"{name} GPTQ codes")
        (got,), (want,) = m.record, ref.record[:1]
        for part in ("theta", "phi", "exponent"):
            assert_equal_tensors(getattr(want.thresholds, part), getattr(got.thresholds, part), f"{name} {part}")
        assert_equal_tensors(want.counts, got.counts, f"{name} spike counts")
    streamed_eval = evaluate(net, spec, calib, window, overrides=HARDWARE_OVERRIDES)
    assert streamed_eval.ppl == ref_ppl, (streamed_eval.ppl, ref_ppl)
    assert torch.isfinite(logits.logits).all()


@pytest.mark.model
def test_layer_inputs_are_the_float_networks_and_read_no_block_above(cache, monkeypatch):
    folder = open_checkpoint().folder
    net = streamed(folder)
    calib, windows = token_splits(net.tokenizer, default_text(), 512)
    names = ["model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    read = []
    block = net.block
    monkeypatch.setattr(net, "block", lambda i: read.append(i) or block(i))
    found = layer_inputs(net, names, [windows[:1], calib[:1]])
    assert read == [0, 1], "blocks above the highest named one were read"
    reference = whole_model(folder)
    captured = {n: [] for n in names}
    handles = [reference.get_submodule(n).register_forward_hook(
        lambda mod, args, out, n=n: captured[n].append(args[0].detach()[0])) for n in names]
    with torch.no_grad():
        reference(windows[:1]), reference(calib[:1])
    for h in handles:
        h.remove()
    for name in names:
        linear, (evaluated, calibration) = found[name]
        assert_equal_tensors(captured[name][0], evaluated[0], f"{name} evaluation input")
        assert_equal_tensors(captured[name][1], calibration[0], f"{name} calibration input")
        assert_equal_tensors(reference.get_submodule(name).weight, linear.weight, f"{name} float weights")
    with pytest.raises(ValueError, match="it has decoder blocks 0..29"):
        layer_inputs(net, ["model.layers.30.mlp.down_proj"], [windows[:1]])


@pytest.mark.model
def test_gptq_resumes_after_the_last_finished_block_and_trusts_no_foreign_entry(tmp_path, cache):
    tokenizer = open_checkpoint().tokenizer
    folder = tiny_llama_folder(tmp_path / "tiny", tokenizer, num_hidden_layers=3)
    net = streamed(folder)
    calib, _ = token_splits(tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"])
    # a run killed after block 0: its codes are on disk, nothing of block 1
    first = gptq_codes(net, spec, calib, upto=0)
    entries = sorted((cache / "gptq").glob("*.pt"))
    assert len(entries) == 1
    blocks = QuantizedBlocks(net, spec, calib)
    for _ in blocks:
        pass
    assert (blocks.gptq.reused, blocks.gptq.computed) == (1, 2), "block 0 is read back, blocks 1 and 2 computed"
    assert_equal_tensors(first["model.layers.0.mlp.down_proj"].code,
                         gptq_codes(net, spec, calib, upto=0)["model.layers.0.mlp.down_proj"].code, "cached codes")
    # a valid entry of other weights (block 1's) placed under block 0's name is not used: its stored key differs
    (block0,) = entries
    later = sorted(set((cache / "gptq").glob("*.pt")) - {block0})
    assert len(later) == 2
    assert torch.load(block0, weights_only=True)["key"] != torch.load(later[0], weights_only=True)["key"]
    block0.write_bytes(later[0].read_bytes())
    again = QuantizedBlocks(net, spec, calib)
    for _ in again:
        pass
    assert (again.gptq.reused, again.gptq.computed) == (2, 1), "an entry stored under another key was trusted"
    # a damaged entry is a miss too
    for path in (cache / "gptq").glob("*.pt"):
        path.write_bytes(b"torn")
    last = QuantizedBlocks(net, spec, calib)
    for _ in last:
        pass
    assert last.gptq.computed == 3


def test_an_unwritable_gptq_cache_is_named_before_the_work(tmp_path, monkeypatch):
    folder = tiny_llama_folder(tmp_path / "tiny")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEACC_CACHE", str(blocker / "cache"))
    net = streamed(folder)
    calib = torch.randint(0, 100, (2, 64))
    with pytest.raises(ValueError, match=r"the GPTQ code cache .*a-file/cache/gptq cannot be written .*SPIKEACC_CACHE"):
        gptq_codes(net, QuantSpec.from_config(PRESETS["default"]), calib, upto=0)


def test_checkpoints_that_cannot_be_streamed_are_refused_in_one_line(tmp_path):
    folder = tiny_llama_folder(tmp_path / "tiny")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="holds pickled weights .*pytorch_model.bin.*reads safetensors only"):
        Checkpoint(pickled)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    gone = sorted(set(index["weight_map"].values()))[1]
    (folder / gone).unlink()
    with pytest.raises(ValueError, match=f"names missing file.*{gone}"):
        Checkpoint(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((pickled / "config.json").read_text())
    with pytest.raises(ValueError, match="no model.safetensors and no model.safetensors.index.json"):
        Checkpoint(empty)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Checkpoint(tmp_path)


def test_a_sentencepiece_only_llama_folder_tokenizes(tmp_path):
    """Llama-2's release ships tokenizer.model (sentencepiece) and a tokenizer_config.json, no tokenizer.json."""
    folder = tiny_llama_folder(tmp_path / "tiny", vocab_size=600)
    write_sentencepiece_tokenizer(folder, default_text(), vocab_size=500)
    assert sorted(p.name for p in folder.glob("tokenizer*")) == ["tokenizer.model", "tokenizer_config.json"]
    tokenizer = Checkpoint(folder).tokenizer
    ids = tokenizer("The GNU General Public License").input_ids
    assert ids[0] == 1 and max(ids) < 500 and tokenizer.decode(ids, skip_special_tokens=True) == \
        "The GNU General Public License"
    assert np.isfinite(evaluate(streamed(folder), None, torch.tensor([ids * 4]), torch.tensor([ids * 3])).ppl)


@pytest.mark.model
@pytest.mark.parametrize("mode", ["spikequant", "kirin"])
def test_a_killed_evaluation_resumes_after_its_last_finished_block(tmp_path, cache, monkeypatch, mode):
    from spikeacc.golden import resume

    tokenizer = open_checkpoint().tokenizer
    folder = tiny_llama_folder(tmp_path / "tiny", tokenizer, num_hidden_layers=3)
    calib, windows = token_splits(tokenizer, default_text(), 512)
    spec = QuantSpec.from_config(PRESETS["default"].in_mode(mode))
    whole = evaluate(streamed(folder), spec, calib, windows, overrides=HARDWARE_OVERRIDES)
    monkeypatch.setattr(resume, "SAVE_EVERY", 0.0)
    net, read, kill = streamed(folder), [], [True]
    block = net.block

    class Killed(Exception):
        pass

    def killed_at_2(index):
        read.append(index)
        if index == 2 and kill[0]:
            kill[0] = False
            raise Killed
        return block(index)
    monkeypatch.setattr(net, "block", killed_at_2)
    with pytest.raises(Killed):
        evaluate(net, spec, calib, windows, overrides=HARDWARE_OVERRIDES)
    assert len(list((cache / "resume").glob("*.pt"))) == 1, "the pass left no resume point"
    read.clear()
    again = evaluate(net, spec, calib, windows, overrides=HARDWARE_OVERRIDES)
    assert read == [2], f"blocks read again after the resume: {read}"
    assert again.ppl == whole.ppl and again.layers == whole.layers
    assert not list((cache / "resume").glob("*.pt")), "a finished pass left its resume file"
    # a torn resume file is a fresh start, never an error
    read.clear()
    kill[0] = True
    with pytest.raises(Killed):
        evaluate(net, spec, calib, windows, overrides=HARDWARE_OVERRIDES)
    (saved,) = (cache / "resume").glob("*.pt")
    saved.write_bytes(saved.read_bytes()[:100])
    read.clear()
    assert evaluate(net, spec, calib, windows, overrides=HARDWARE_OVERRIDES).ppl == whole.ppl and read == [0, 1, 2]
