"""Vector files from another quantizer: the configuration that holds their arrays, and their constant steps.

A file without a spikeacc ``config`` in its ``meta`` is still a vector file
(:mod:`spikeacc.golden.vectors`); what it cannot say is derived here from
its arrays, narrowest first, and a ``--config`` object wins over all of it.
"""

from __future__ import annotations

import numpy as np

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.errors import VectorFileError

__all__ = ["constant_thresholds", "derive_config"]


def constant_thresholds(path, theta: np.ndarray, phi: np.ndarray, tokens: int) -> dict:
    """A file without ``exponent``: one row of constants, or per-token rows that repeat one (a static step)."""
    if theta.shape != phi.shape:
        raise VectorFileError(f"{path}: 'theta' has shape {theta.shape} but 'phi' has shape {phi.shape}")
    if theta.shape[0] not in (1, tokens):
        raise VectorFileError(f"{path}: without an 'exponent' array, 'theta' must be one row [1, N] or one row "
                              f"per token [{tokens}, N]; it has shape {theta.shape}")
    varies = np.argwhere((theta != theta[:1]).any(axis=0) | (phi != phi[:1]).any(axis=0))
    if len(varies):
        n = int(varies[0][0])
        raise VectorFileError(
            f"{path}: 'theta'/'phi' of neuron {n} change from token to token; the tile holds per-neuron constants "
            f"and takes each token's step as an exponent: give 'theta' and 'phi' as constants [R, N] and an "
            f"'exponent' array [M] (see the vector format in docs/user-guide.md)")
    return {"theta": theta[:1].copy(), "phi": phi[:1].copy(), "exponent": np.zeros(tokens, dtype=np.int64)}


def derive_config(v, fields: dict | None = None) -> SpikeConfig:
    """The narrowest configuration that holds a third-party file's arrays (``v``: its LayerVectors).

    K, N and M come from the shapes, ``frac_bits`` and ``out_bits`` from the
    file, ``w_bits``/``a_bits`` from the largest code magnitudes (at least 2),
    salient handling and ``e_max`` from the shifts, the input steps from the
    threshold rows and exponents (one row and no exponent: static; R rows: the
    grid 2^(−j/R)); P and L are adapted to the
    shape from the ``smollm2`` preset. ``fields`` (``--config``: a JSON object of
    SpikeConfig fields, e.g. ``{"kappa": 5, "pes": 4}``) win over all of it.
    """
    from spikeacc.config import unsigned_bits_for

    m, k = v.mant.shape
    n = v.w.shape[0]
    wmax = int(np.abs(v.w.astype(np.int64)).max(initial=0))
    mmax = int(np.abs(v.mant.astype(np.int64)).max(initial=0))
    smax = int(v.shift.max(initial=0)) if v.shift.size else 0
    base = PRESETS["smollm2"]
    rows = v.theta.shape[0]
    steps = {1: "pow2" if v.exponent.any() else "static", 2: "pow2/2", 4: "pow2/4"}
    if rows not in steps:
        raise VectorFileError(f"'theta' has {rows} rows of constants; the tile holds 1, 2 or 4 per neuron "
                              f"(steps per tensor, or on the grids 2^(-j), 2^(-j/2), 2^(-j/4))")
    derived = base.replace(input_step=steps[rows],
        w_bits=max(2, unsigned_bits_for(wmax)), a_bits=max(2, unsigned_bits_for(mmax)),
        salient=smax > 0, e_max=smax if smax > 0 else base.e_max, salient_cap=None,
        frac_bits=v.frac_bits, out_bits=v.out_bits, max_tokens=max(m, 1),
    ).for_layer(k, n)
    return SpikeConfig.from_dict({**derived.to_dict(), **(fields or {})})
