"""The papers' model shape end to end: a Llama-2-7B-shaped checkpoint through the streamed golden model.

Slow (13.5 GB written once, then GPTQ of a 7B block: about 15 minutes on 2
cores). Set ``SPIKEACC_LLAMA2_7B`` to a folder written by
``benchmarks/write_llama2_7b.py`` to reuse one; otherwise it is written into
the test's temporary directory. Memory and time are measured by
``benchmarks/bench_llama2_7b.py``, not here.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeacc.app.cli import main
from spikeacc.golden.checkpoint import Checkpoint
from spikeacc.golden.vectors import load_vectors

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def llama2_7b(tmp_path_factory):
    from write_llama2_7b import ensure_llama2_7b

    given = os.environ.get("SPIKEACC_LLAMA2_7B")
    return ensure_llama2_7b(Path(given) if given else tmp_path_factory.mktemp("llama2-7b") / "model")


def test_the_synthetic_checkpoint_is_laid_out_like_the_release(llama2_7b):
    checkpoint = Checkpoint(llama2_7b)
    config = checkpoint.config
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size) == \
        (4096, 11008, 32, 32000)
    assert len(list(llama2_7b.glob("model-*-of-00007.safetensors"))) == 7
    assert not (llama2_7b / "tokenizer.json").exists() and (llama2_7b / "tokenizer.model").is_file()
    assert str(checkpoint.tensor("model.layers.31.mlp.down_proj.weight").dtype) == "torch.float16"


def test_block_0_q_proj_vectors_of_a_7b_checkpoint(llama2_7b, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKEACC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "q.npz"
    assert main(["vectors", "--model", str(llama2_7b), "--layer", "model.layers.0.self_attn.q_proj",
                 "--tokens", "8", "--out", str(out)]) == 0
    v = load_vectors(out)   # the contract: every array checked against its configuration
    assert v.w.shape == (4096, 4096) and v.mant.shape == (8, 4096)
    assert np.array_equal(v.expected, v.golden_counts())
    assert v.meta["weights"] == "gptq" and len(list((tmp_path / "cache" / "gptq").glob("*.pt"))) == 1
    err = capsys.readouterr().err
    assert "GPTQ weights: block 1/1" in err and "layer inputs: block 1/1" in err
