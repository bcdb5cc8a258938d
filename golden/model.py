"""Seeded synthetic Llama-2-7B material: one decoder layer for full-size hardware tests,
and a whole checkpoint folder shaped like the real release for the streamed golden model.

No real Llama-2 weights are reachable offline; the shapes, the configuration
and the file layout are what make a 7B run cost what it costs, and those are
the release's own. Loading real models lives in
:mod:`spikeacc.golden.checkpoint` and :mod:`spikeacc.golden.stream`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

__all__ = ["synthetic_llama2_layer", "synthetic_activations", "write_synthetic_checkpoint", "write_sentencepiece_tokenizer",
           "LLAMA2_7B"]

# Llama-2-7B's config.json (meta-llama/Llama-2-7b-hf), the fields that shape the model
LLAMA2_7B = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096, intermediate_size=11008,
                 num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=32, vocab_size=32000,
                 max_position_embeddings=4096, rms_norm_eps=1e-05, rope_theta=10000.0, hidden_act="silu",
                 tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, torch_dtype="float16",
                 attention_bias=False, mlp_bias=False, initializer_range=0.02)
SHARD_BYTES = 2 * 10**9   # the release's shards are about 2 GB each


def synthetic_llama2_layer(seed: int = 0, hidden: int = 4096, intermediate: int = 11008):
    """One Llama-2-7B-shaped decoder layer with seeded random weights.

    Weights ~ N(0, 0.02) like Llama's init; used to exercise the hardware at
    full size (q_proj 4096×4096, down_proj 11008 → 4096) without the real weights.
    """
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=32,
                      num_key_value_heads=32, num_hidden_layers=1, vocab_size=32000)
    torch.manual_seed(seed)
    layer = LlamaDecoderLayer(cfg, layer_idx=0)
    for p in layer.parameters():
        if p.dim() == 2:
            nn.init.normal_(p, std=0.02)
    return layer.eval(), cfg


def synthetic_activations(tokens: int, features: int, seed: int = 0, outlier_channels: int = 8,
                          outlier_gain: float = 20.0) -> torch.Tensor:
    """Real-looking LLM activations: Gaussian body, heavy tails, a few outlier channels ~20×."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, features, generator=g)
    x = x * (1 + 0.5 * torch.rand(features, generator=g))  # channel-wise spread
    channels = torch.randperm(features, generator=g)[:outlier_channels]
    x[:, channels] *= outlier_gain
    return x


def write_synthetic_checkpoint(folder: str | Path, *, seed: int = 0, tokenizer_from=None, overrides: dict | None = None,
                               dtype: torch.dtype = torch.float16, shard_bytes: int = SHARD_BYTES, say=None) -> Path:
    """A Hugging Face folder shaped like Llama-2-7B's release, with seeded N(0, 0.02) weights.

    ``config.json`` is the release's (``overrides`` changes fields: a tiny
    multi-shard folder for the fast tests), the weights are fp16 safetensors
    in shards of about ``shard_bytes`` with ``model.safetensors.index.json``.
    Written one shard at a time, so writing 13.5 GB needs about 3 GB. ``tokenizer_from`` is a tokenizer to save beside
    it (default: none; the folder is then for the weights only).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**LLAMA2_7B, **(overrides or {})}
    h, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = h // heads
    shapes = {"model.embed_tokens.weight": (vocab, h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "self_attn.q_proj.weight": (h, h),
                       p + "self_attn.k_proj.weight": (kv * head_dim, h), p + "self_attn.v_proj.weight": (kv * head_dim, h),
                       p + "self_attn.o_proj.weight": (h, h), p + "post_attention_layernorm.weight": (h,),
                       p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
                       p + "mlp.down_proj.weight": (h, inter)})
    shapes["model.norm.weight"] = (h,)
    if not config.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (vocab, h)
    gen = torch.Generator().manual_seed(seed)
    width = torch.finfo(dtype).bits // 8
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        nbytes = width * int(torch.tensor(shape).prod())
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = shape
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for k, names in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape in names.items():
            t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * 0.02
            tensors[name] = t.to(dtype)
            weight_map[name] = file
            total += t.numel() * width
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        del tensors
        if say:
            say(f"synthetic checkpoint: shard {k + 1}/{len(shards)} written")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer_from is not None:
        tokenizer_from.save_pretrained(folder)
    return folder


def write_sentencepiece_tokenizer(folder: str | Path, text: str, vocab_size: int = 2000) -> Path:
    """A sentencepiece BPE ``tokenizer.model`` trained on ``text``, laid out as Llama-2's release ships it.

    Llama-2's folder has ``tokenizer.model`` and ``tokenizer_config.json``,
    no ``tokenizer.json``; ids 0/1/2 are unk, bos (``<s>``, prepended) and
    eos. The real vocabulary is not reachable offline: this one is learnt
    from ``text`` (at most ``vocab_size`` pieces, fewer if the text has
    fewer), so every id fits Llama-2's 32,000-row embedding.
    """
    import tempfile

    import sentencepiece as spm

    folder = Path(folder)
    with tempfile.TemporaryDirectory() as work:
        corpus = Path(work) / "corpus.txt"
        corpus.write_text(text, encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(Path(work) / "tokenizer"),
                                       vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
                                       hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                       minloglevel=2)
        (folder / "tokenizer.model").write_bytes((Path(work) / "tokenizer.model").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
         "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 4096}, indent=2) + "\n")
    return folder
