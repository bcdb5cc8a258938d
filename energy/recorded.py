"""Gate-level figures the project measured and recorded, for runs that cannot afford to measure them.

A gate-level run at SmolLM2's real shapes (P = 24, K = 576 and 1536) costs
minutes of synthesis and netlist builds the first time. The main job
measures it when the netlists are built or when asked (``--gate-level``);
otherwise it shows the figure recorded here, marked *recorded*, with the date,
commit and command that reproduce it. A record applies only to the very same
vectors (a digest of every array) and the same hardware configuration, never
to a neighbour: a figure is not borrowed for a shape it was not measured at.

``benchmarks/bench_power_shapes.py --write`` measures and writes the records.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["RECORDED_PATH", "vectors_digest", "summarize", "find_recorded", "write_recorded"]

RECORDED_PATH = Path(__file__).with_name("data") / "recorded_power.json"
_ARRAYS = ("w", "mant", "shift", "theta", "phi", "exponent", "expected")


def vectors_digest(vectors) -> str:
    """SHA-256 over a vector file's arrays and its hardware tag: what a gate-level figure depends on."""
    digest = hashlib.sha256(vectors.config.tag.encode())
    for name in _ARRAYS:
        array = np.ascontiguousarray(getattr(vectors, name), dtype=np.int64)
        digest.update(name.encode() + str(array.shape).encode() + array.tobytes())
    return digest.hexdigest()


def summarize(power: dict, vectors) -> dict:
    """What a record keeps of a ``power.json`` and its vectors: every per-design figure and the input statistics
    the break-even model needs (:mod:`spikeacc.energy.break_even`), not paths or per-module detail."""
    keep = ("cells", "flip_flops", "area_um2", "cycles", "by_class_pj", "by_role_pj", "by_role_class_pj", "logic_pj",
            "logic_without_clock_pj", "weight_reads", "weight_memory_pj", "threshold_memory_pj")
    return {"layer": power["layer"], "model": power["model"], "shape": power["shape"], "tokens": power["tokens"],
            "config": power["config"], "liberty": Path(power["liberty"]).name, "voltage": power["voltage"],
            "memories": power["memories"], "clock_gating": power["clock_gating"],
            "sram_pj_per_bit": power["sram_pj_per_bit"],
            "designs": {d: {k: v for k, v in entry.items() if k in keep} for d, entry in power["designs"].items()},
            "ratio_mac_over_spiking": power["ratio_mac_over_spiking"],
            "nonzero_per_token": float((vectors.mant != 0).sum(axis=1).mean()),
            "magnitude_histogram": np.bincount(np.abs(vectors.mant[np.abs(vectors.mant) < vectors.config.window]).ravel(),
                                               minlength=vectors.config.window)[:vectors.config.window].tolist()}


def _load(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def find_recorded(vectors, path: Path = RECORDED_PATH) -> dict | None:
    """The record measured on exactly these vectors, or None."""
    return _load(path).get(vectors_digest(vectors))


def write_recorded(entries: dict[str, dict], path: Path = RECORDED_PATH) -> Path:
    """Add or replace records (digest -> record with ``measured`` = date, commit, command)."""
    from spikeacc.workdirs import write_atomic

    records = _load(path)
    records.update(entries)
    write_atomic(Path(path), json.dumps(dict(sorted(records.items())), indent=1) + "\n")
    return Path(path)
