"""Small Llama checkpoints written the way the 7B one is (fp16 shards and an index), for fast tests."""

import torch

from spikeacc.golden.checkpoint import Checkpoint
from spikeacc.golden.model import write_synthetic_checkpoint
from spikeacc.golden.stream import StreamedLlama

TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
            num_hidden_layers=2, vocab_size=100, max_position_embeddings=2048)


def tiny_llama_folder(path, tokenizer=None, *, dtype=torch.float16, shard_bytes=40_000, **changes):
    """A two-block Llama folder in several safetensors shards (``tokenizer``: saved beside it, vocabulary to match)."""
    fields = {**TINY, **changes}
    if tokenizer is not None:
        fields["vocab_size"] = len(tokenizer)
    return write_synthetic_checkpoint(path, overrides=fields, dtype=dtype, shard_bytes=shard_bytes,
                                      tokenizer_from=tokenizer)


def streamed(folder, blocks=None) -> StreamedLlama:
    """The streamed model of ``folder``; ``blocks`` keeps only the first blocks (a short network for tests)."""
    checkpoint = Checkpoint(folder)
    if blocks is not None:
        checkpoint.config.num_hidden_layers = blocks
    return StreamedLlama(checkpoint)
