"""What every result of a run on one vector file carries, so each kind of result says the same about its input."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spikeacc.config import SpikeConfig

__all__ = ["VectorFileRun"]


@dataclass(frozen=True)
class VectorFileRun:
    """The file a result was computed on, its layer and model, its shape and the configuration the run derived."""

    vectors: str
    layer: str | None
    model: str | None
    shape: tuple[int, int, int]  # M tokens, K inputs, N outputs
    config: SpikeConfig

    def to_dict(self) -> dict:
        """Plain JSON (report files, the main job's cache)."""
        return {**dataclasses.asdict(self), "shape": list(self.shape), "config": self.config.to_dict()}
