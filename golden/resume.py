"""A long block-by-block pass, resumable: its state after the last finished block, kept on disk.

A perplexity row of Llama-2-7B streams 32 blocks for hours; a kill should
cost the block it was on, not the row. What a pass carries between blocks
is small (the hidden states of its windows, a few MB per 512 tokens at 7B)
and is all a later block needs: the finished blocks themselves are not kept.
The file names its pass (settings, tokens, the embedding's digest) and
records the digest chain of the blocks it has passed, checked again before
it is used, so a file of other weights or a half-written one is never
taken. It is written at most every ``every`` seconds and removed when the
pass ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Callable

import torch

from spikeacc.golden.checkpoint import cache_root

__all__ = ["PassCheckpoint", "tensor_digest"]

SAVE_EVERY = 30.0   # seconds of work between two saves: every block at 7B, hardly ever at 135M


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


class PassCheckpoint:
    """The state of one pass (``key``) over ``model`` after its last finished block, under ``$SPIKEACC_CACHE/resume``."""

    def __init__(self, model, key: dict, every: float | None = None):
        self.model, self.every = model, SAVE_EVERY if every is None else every
        full = json.dumps({**key, "model": model.name, "dtype": str(model.dtype),
                           "embedding": model.checkpoint.digest(["model.embed_tokens.weight"])}, sort_keys=True)
        self.key = full
        self.path = cache_root() / "resume" / f"{hashlib.sha256(full.encode()).hexdigest()[:24]}.pt"
        self.last = time.perf_counter()

    def load(self) -> dict | None:
        """The saved state, if there is one for this very pass and these very weights; else None."""
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
            if saved.get("key") != self.key or saved.get("chain") != self.model.chain(saved["next"]):
                return None
            return saved
        except Exception:   # noqa: BLE001 - a torn or foreign file is a fresh start, never an error
            return None

    def save(self, next_block: int, state: Callable[[], dict]) -> None:
        """Keep the state before ``next_block`` if ``every`` seconds have passed since the last save."""
        now = time.perf_counter()
        if now - self.last < self.every or next_block >= self.model.blocks:
            return
        from spikeacc import workdirs

        buffer = io.BytesIO()
        torch.save({"key": self.key, "next": next_block, "chain": self.model.chain(next_block), **state()},
                   buffer)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            workdirs.write_atomic(self.path, buffer.getvalue())
        except OSError:
            return   # a pass that cannot leave a resume point still runs; it just cannot resume
        self.last = time.perf_counter()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
