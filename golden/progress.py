"""Progress lines for long passes: one a block at most every few seconds, with elapsed time and an ETA."""

from __future__ import annotations

import sys
import time
from typing import Callable

__all__ = ["BlockProgress", "Throttled"]


class BlockProgress:
    """``what: block i/n, T tokens, elapsed, ETA`` lines for a pass over the blocks.

    A line at least every ``every`` seconds and at the last block, to ``say``
    (default stderr), so a log file of a 7B run shows it moving without a
    line per block of a small model.
    """

    def __init__(self, what: str, total: int, tokens: int, say: Callable[[str], None] | None = None,
                 every: float = 10.0):
        self.what, self.total, self.tokens = what, total, tokens
        self.throttled = Throttled(say, every)
        self.start = time.perf_counter()

    def done(self, index: int) -> None:
        finished = index + 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished * (self.total - finished)
        line = (f"{self.what}: block {finished}/{self.total}, {self.tokens} tokens, {elapsed:.0f} s"
                + (f", ETA {eta:.0f} s" if finished < self.total else ""))
        self.throttled(line, force=finished == self.total)

    @property
    def say(self) -> Callable[[str], None]:
        return self.throttled.say


class Throttled:
    """``say``, at most once every ``every`` seconds: progress inside a block, silent where blocks are quick."""

    def __init__(self, say: Callable[[str], None] | None = None, every: float = 10.0):
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.every, self.last = every, time.perf_counter()

    def __call__(self, line: str, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self.last >= self.every:
            self.last = now
            self.say(line)
