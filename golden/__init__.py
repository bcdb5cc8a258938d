"""Golden SpikeQuant model: the maths (SPEC §2–§4); imports no hardware.

The integer reference (:mod:`spikeacc.golden.integer`) needs only numpy; the
model-level pieces (quantizers, spiking linear layers, perplexity) need torch
and are imported from their own modules.
"""

from spikeacc.golden.integer import accumulate, fire_count, simulate_ttfs

__all__ = ["accumulate", "fire_count", "simulate_ttfs"]
