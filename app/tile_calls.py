"""One projection call on the spiking tile's RTL, whole or split into parts of whole output blocks.

A call is plain data in and out (:func:`run_tile_call`), so a Dask worker can
run it; the harness it runs on is built once per configuration and process.
``split`` cuts a projection's N/P output blocks into equal parts, each a call
of its own on a smaller tile, whose counts join in order.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from spikeacc.config import PRESETS, SpikeConfig

__all__ = ["TILE_TOKENS", "layer_config", "simulator", "run_tile_call", "split_config", "split_parts", "check_split",
           "split_projection"]

TILE_TOKENS = 32  # tokens per tile call (the harness buffers' depth); longer prefills are split


def layer_config(module, config: SpikeConfig) -> SpikeConfig:
    """The tile a projection runs on: ``config``'s arithmetic, P and L adapted to its shape (as the exporter does)."""
    base = PRESETS["smollm2"].replace(max_tokens=TILE_TOKENS).with_arithmetic_of(config)
    return base.for_layer(module.in_features, module.out_features)


_SIMULATORS: dict[tuple[str, str], Path] = {}
_SIMULATORS_LOCK = threading.Lock()


def simulator(cfg: SpikeConfig, build_root: str, rebuild: bool = False) -> Path:
    """The built harness for ``cfg``, checked once per process (generating the RTL to compare takes seconds).

    ``rebuild``: the executable is broken; remove it, so the build makes it again.
    """
    from spikeacc.verif.native import build_native

    key = (f"{cfg.tag}_t{cfg.max_tokens}", str(build_root))
    with _SIMULATORS_LOCK:
        if rebuild:
            broken = _SIMULATORS.pop(key, None) or build_native(cfg, build_root)
            broken.unlink(missing_ok=True)
        if key not in _SIMULATORS:
            _SIMULATORS[key] = build_native(cfg, build_root)
        return _SIMULATORS[key]


def run_tile_call(cfg_dict: dict, bank: dict, arrays: dict, build_root: str, per_call: bool = False) -> dict:
    """One projection call on the RTL: build or reuse the simulator, run, return counts, cycles and wall.

    ``bank`` holds the projection's constants (``key``, ``w``, ``theta``,
    ``phi``), ``arrays`` the call's tokens (``mant``, ``shift``,
    ``exponent``). A plain module-level function of plain data, so a Dask
    worker can run it; its resident simulators live as long as its process.
    A harness that cannot start (a truncated or foreign executable) is rebuilt
    once; a second failure is a one-line tool failure.
    """
    from spikeacc.verif.resident import SimulatorBroken

    cfg = SpikeConfig.from_dict(cfg_dict)
    try:
        return _call(cfg, simulator(cfg, build_root), bank, arrays, per_call)
    except SimulatorBroken as exc:
        print(f"spikeacc: {exc}; rebuilding it once", file=sys.stderr, flush=True)
        exe = simulator(cfg, build_root, rebuild=True)
        return _call(cfg, exe, bank, arrays, per_call)


def _call(cfg: SpikeConfig, exe: Path, bank: dict, arrays: dict, per_call: bool) -> dict:
    from spikeacc.verif.native import call_native
    from spikeacc.verif.resident import resident_simulator

    t0 = time.perf_counter()
    if per_call:
        m, k = arrays["mant"].shape
        vectors = SimpleNamespace(**arrays, w=bank["w"], theta=bank["theta"], phi=bank["phi"],
                                  shape=(m, k, bank["w"].shape[0]))
        counts, cycles, _ = call_native(cfg, exe, vectors)
    else:
        with resident_simulator(cfg, exe) as sim:
            sim.load(bank["key"], bank["w"], bank["theta"], bank["phi"], label=bank.get("label"))
            counts, cycles = sim.run(bank["key"], arrays["mant"], arrays["shift"], arrays["exponent"])
    return {"counts": counts, "cycles": cycles, "wall": time.perf_counter() - t0}


def _check_split_value(split) -> None:
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise ValueError(f"--split must be a positive integer, got {split!r}")


def split_config(cfg: SpikeConfig, parts: int) -> SpikeConfig:
    """The tile of one of ``parts`` equal shares of ``cfg``'s output blocks; refused unless they divide."""
    _check_split_value(parts)
    if cfg.blocks % parts:
        divisors = [d for d in range(1, cfg.blocks + 1) if cfg.blocks % d == 0]
        raise ValueError(f"--split {parts} does not divide {cfg.out_features} outputs into whole blocks of "
                         f"{cfg.pes} ({cfg.blocks} blocks); choose one of {divisors}")
    return cfg.replace(out_features=cfg.out_features // parts)


def split_parts(cfg: SpikeConfig, split: int) -> int:
    """How many parts ``--split S`` cuts ``cfg``'s tile into: the most, up to S, that divide its blocks.

    Projections of one model have different block counts (Llama-2-7B: 128 and
    344), so one S serves them all: 64 gives 64 parts of q_proj and 43 of gate_proj.
    """
    _check_split_value(split)
    return max(d for d in range(1, min(split, cfg.blocks) + 1) if cfg.blocks % d == 0)


def check_split(chosen: dict, config: SpikeConfig, split: int) -> None:
    """Refuse a bad ``split`` before anything runs."""
    for module in chosen.values():
        split_parts(layer_config(module, config), split)


def split_projection(cfg: SpikeConfig, w: np.ndarray, theta: np.ndarray, phi: np.ndarray,
                     parts: int) -> list[tuple[SpikeConfig, dict]]:
    """``parts`` tiles of N/parts outputs each (whole blocks of P), with their banks, in output order.

    Every part has the same configuration, so every worker runs the same
    simulator; a part's counts are those neurons' counts of the whole tile
    (neurons are independent), and joined in order they are the whole call's.
    """
    from spikeacc.verif.resident import bank_key

    part_cfg = split_config(cfg, parts)
    n = part_cfg.out_features
    out = []
    for i in range(parts):
        cols = slice(i * n, (i + 1) * n)
        bank = {"w": np.ascontiguousarray(w[cols]), "theta": np.ascontiguousarray(theta[:, cols]),
                "phi": np.ascontiguousarray(phi[:, cols])}
        out.append((part_cfg, {"key": bank_key(part_cfg, **bank), **bank}))
    return out
