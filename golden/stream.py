"""The golden Llama computed one decoder block at a time, in float64, from a lazy checkpoint.

:class:`StreamedLlama` holds no decoder block. It hands out one block at a
time (:meth:`StreamedLlama.block`: read from the checkpoint, made float64),
and the pieces around the blocks: the embedding (only the rows of the
tokens at hand read, then made float64), the rotary tables and causal mask every block of a pass shares
(:meth:`StreamedLlama.context`), and the final norm and LM head
(:meth:`StreamedLlama.logits`). Callers keep only the hidden states between
blocks, for the tokens at hand, and run every window through block *i*
before reading block *i + 1*: what a pass over the network needs is one
block of float64 weights, not the model.

Each piece is the transformers module the whole-model path used, with the
same inputs, so the numbers are the same to the last bit (tested against
the whole model on SmolLM2): float64 everywhere, RMSNorm's own float32 step
included, SDPA attention.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeacc.golden.checkpoint import Checkpoint, open_checkpoint
from spikeacc.golden.rotation import Rotation, check_rotation

__all__ = ["StreamedLlama", "streamed_model", "run_block", "release_freed_memory"]

HEAD_CHUNK_BYTES = 2 << 30   # an LM head larger than this in float64 is applied in vocabulary chunks


class StreamedLlama:
    """A Llama checkpoint as the blocks, embedding and head a streamed pass needs, float64."""

    def __init__(self, checkpoint: Checkpoint, dtype: torch.dtype = torch.float64, rotation: str = "none"):
        from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

        self.dtype = dtype   # float64: the codes must not depend on the CPU's float32 kernels (float32: a test's control)
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.name = checkpoint.name
        self.rotary = LlamaRotaryEmbedding(config=self.config).to(dtype)
        self.norm = LlamaRMSNorm(self.config.hidden_size, eps=self.config.rms_norm_eps)
        self._final_norm = checkpoint.tensor("model.norm.weight").to(dtype)
        # rotated: the norms' scales live in the projections after them (golden/rotation.py)
        self.rotation = None if check_rotation(rotation) == "none" else Rotation(
            self.config.hidden_size, getattr(self.config, "head_dim", None)
            or self.config.hidden_size // self.config.num_attention_heads)
        self.norm.weight = nn.Parameter(self._final_norm if self.rotation is None else torch.ones_like(self._final_norm),
                                        requires_grad=False)
        self._head = None

    def chain(self, blocks: int) -> str:
        """What the embedding and blocks 0..blocks − 1 compute with: the stored weights' digests and the rotation."""
        stored = self.checkpoint.chain(blocks)
        return stored if self.rotation is None else f"{stored}+{self.rotation.key}"

    @property
    def tokenizer(self):
        return self.checkpoint.tokenizer

    @property
    def blocks(self) -> int:
        return self.checkpoint.blocks

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [T] or [1, T] -> hidden states [1, T, H], float64 (only those rows are read)."""
        rows = self.checkpoint.rows("model.embed_tokens.weight", ids.reshape(1, -1)).to(self.dtype)
        return rows if self.rotation is None else self.rotation.embedding(rows)

    def block(self, index: int) -> nn.Module:
        """Decoder block ``index`` with its weights read from the checkpoint, float64, eval mode."""
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        if not 0 <= index < self.blocks:
            raise ValueError(f"decoder block {index} does not exist; the model has {self.blocks} (0..{self.blocks - 1})")
        with torch.device("meta"):
            layer = LlamaDecoderLayer(self.config, index)
        prefix = f"model.layers.{index}."
        names = self.checkpoint.block_names(index)
        state = {n[len(prefix):]: self.checkpoint.tensor(n).to(self.dtype) for n in names}
        if self.rotation is not None:
            state = self.rotation.block(state)
        expected = set(layer.state_dict())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"{self.checkpoint.folder}: decoder block {index} does not match its config "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})")
        layer.load_state_dict(state, assign=True)
        for p in layer.parameters():
            p.requires_grad_(False)
        return layer.eval()

    def context(self, hidden: torch.Tensor, cache=None) -> dict:
        """The keyword arguments every block of one pass gets for ``hidden`` [1, T, H] (as LlamaModel builds them).

        ``cache`` is a transformers ``DynamicCache`` when decoding (positions
        continue after what it holds); None for a pass over whole windows.
        """
        from transformers.masking_utils import create_causal_mask

        past = cache.get_seq_length() if cache is not None else 0
        position_ids = (torch.arange(hidden.shape[1]) + past).unsqueeze(0)
        mask = create_causal_mask(config=self.config, inputs_embeds=hidden, attention_mask=None, cache=cache,
                                  position_ids=position_ids)
        return dict(attention_mask=mask, position_embeddings=self.rotary(hidden, position_ids=position_ids),
                    position_ids=position_ids, cache=cache, use_cache=cache is not None)

    def new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.config)

    @property
    def head(self) -> torch.Tensor:
        """The LM head's weight [V, H] in float64 (the embedding's when tied), read once."""
        if self._head is None:
            self._head = self.checkpoint.tensor(self.checkpoint.head_name).to(self.dtype)
            if self.rotation is not None:
                self._head = self.rotation.head(self._head, self._final_norm)
        return self._head

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: hidden [1, T, H] -> logits [1, T, V] (vocabulary chunks if the head is huge)."""
        normed = self.norm(hidden)
        head = self.head
        if head.numel() * head.element_size() <= HEAD_CHUNK_BYTES:
            return nn.functional.linear(normed, head)
        rows = max(1, HEAD_CHUNK_BYTES // (head.element_size() * head.shape[1]))
        return torch.cat([nn.functional.linear(normed, head[i:i + rows]) for i in range(0, head.shape[0], rows)],
                         dim=-1)


def run_block(model: StreamedLlama, layer: nn.Module, states: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every window's hidden states through one decoder block (no cache: whole windows)."""
    with torch.no_grad():
        outputs = [layer(h, **model.context(h)) for h in states]
    return [o[0] if isinstance(o, tuple) else o for o in outputs]


def release_freed_memory() -> None:
    """Hand the memory freed with the last block back to the system (glibc keeps it otherwise).

    A block's float64 weights and its activations are freed when the next
    block is read, but glibc's heap keeps most of what was freed in pieces
    below its mmap threshold (activations of a few MB): over a pass the
    process grew to 2.4 GB on SmolLM2 while holding 0.1 GB of tensors, and
    ``malloc_trim`` brought it back to 0.5 GB. Elsewhere (no glibc) nothing.
    """
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None
_MODELS: dict[tuple[int, str], StreamedLlama] = {}


def streamed_model(path=None, rotation: str = "none") -> StreamedLlama:
    """The streamed model of the checkpoint at ``path`` (None: the embedded SmolLM2), rotated or not, once per process."""
    checkpoint = open_checkpoint(path)
    key = id(checkpoint), check_rotation(rotation)
    if key not in _MODELS:
        _MODELS[key] = StreamedLlama(checkpoint, rotation=rotation)
    return _MODELS[key]
