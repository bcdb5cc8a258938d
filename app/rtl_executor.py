"""The RTL executor: every selected projection of the network computed by the tile, checked against golden.

It replaces the projections' forward while attached. Projections that share
an input (q/k/v, gate/up) are submitted together; a call of several tokens is
cut into parts, one per worker; the first count that differs from the golden
model's stops the run with the layer, token, neuron, expected and got.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from spikeacc.config import SpikeConfig
from spikeacc.errors import VerificationFailed
from spikeacc.app.tile_calls import (TILE_TOKENS, layer_config, run_tile_call, simulator, split_config, split_parts,
                                     split_projection)
from spikeacc.app.tile_pools import TilePool

__all__ = ["SIBLINGS", "LayerStats", "RtlExecutor", "wait_saying"]

# Projections computed from the same input, submitted at once (the leader is called first).
SIBLINGS = {"self_attn.q_proj": ("self_attn.k_proj", "self_attn.v_proj"), "mlp.gate_proj": ("mlp.up_proj",)}


def wait_saying(futures: dict, what: str, every: float = 10.0, say=None) -> None:
    """Wait for every future (a thread pool's or Dask's), saying when each is ready and, at most every
    ``every`` seconds, what is still pending: a build of minutes is never a silent wait."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    start = last = time.monotonic()
    pending = dict(futures)
    say(f"spikeacc: {what}: waiting for {', '.join(pending.values())}")
    while pending:
        for future in [f for f in pending if f.done()]:
            future.result()
            say(f"spikeacc: {what}: {pending.pop(future)} ready ({time.monotonic() - start:.0f} s)")
            last = time.monotonic()
        if pending and time.monotonic() - last >= every:
            say(f"spikeacc: {what}: still waiting for {', '.join(pending.values())} "
                f"({time.monotonic() - start:.0f} s)")
            last = time.monotonic()
        if pending:
            time.sleep(0.2)


@dataclass
class LayerStats:
    """What one projection did over a run: calls, tokens, cycles, outputs compared, wall."""

    shape: tuple[int, int]
    pes: int
    lanes: int
    parts: int = 1
    calls: int = 0
    tokens: int = 0
    cycles: int = 0
    ideal_cycles: int = 0
    compared: int = 0
    wall: float = 0.0

    def row(self, name: str) -> dict:
        return {"layer": name, "shape": list(self.shape), "pes": self.pes, "lanes": self.lanes, "parts": self.parts,
                "calls": self.calls,
                "tokens": self.tokens, "cycles": self.cycles,
                "utilization": self.ideal_cycles / self.cycles if self.cycles else 0.0,
                "outputs_compared": self.compared, "wall_seconds": round(self.wall, 3)}


@dataclass
class _Pending:
    key: tuple
    result: object            # the golden HardwareResult
    futures: list
    submitted: float


@dataclass
class RtlExecutor:
    """Stands in for ``hardware_forward`` of the selected projections: the tile computes, golden checks.

    ``inject_fault=(layer, token, neuron)`` flips one bit of the RTL's count
    there, as a harness fault would: the run must stop with those indices.
    ``per_call`` and ``split`` choose the path to the RTL (see the module's notes).
    """

    layers: dict
    pool: TilePool
    build_root: str
    config: SpikeConfig
    bar: object = None
    inject_fault: tuple | None = None
    per_call: bool = False
    split: int = 1
    stats: dict = field(default_factory=dict)
    positions: dict = field(default_factory=dict)
    pending: dict = field(default_factory=dict)
    banks: dict = field(default_factory=dict)

    def __post_init__(self):
        self.names = {id(m): name for name, m in self.layers.items()}
        self.configs = {name: layer_config(m, self.config) for name, m in self.layers.items()}
        self.parts = {name: split_parts(cfg, self.split) for name, cfg in self.configs.items()}
        for name, cfg in self.configs.items():
            self.stats[name] = LayerStats((cfg.in_features, cfg.out_features), cfg.pes, cfg.lanes,
                                          parts=self.parts[name])

    def attach(self) -> None:
        for m in self.layers.values():
            m.executor = self

    def detach(self) -> None:
        for m in self.layers.values():
            m.executor = None

    def build_all(self) -> list[SpikeConfig]:
        """Build every distinct simulator once, at once, before the first call."""
        parts = (split_config(cfg, self.parts[name]) for name, cfg in self.configs.items())
        distinct = {cfg.tag: cfg for cfg in parts}
        futures = {self.pool.submit(simulator, cfg, self.build_root): tag for tag, cfg in distinct.items()}
        wait_saying(futures, f"simulators ({len(futures)} configurations, built once with -O3, then reused)")
        return list(distinct.values())

    def __call__(self, module, x: torch.Tensor):
        name = self.names[id(module)]
        key = (x.data_ptr(), tuple(x.shape), x.stride(), x._version)
        entry = self.pending.pop(name, None)
        if entry is None or entry.key != key:
            group = [name] + [s for s in self._siblings(name) if s in self.layers]
            for member in group:
                self.pending[member] = self._submit(member, x, key)
            entry = self.pending.pop(name)
        return self._resolve(name, entry)

    def _siblings(self, name: str) -> list[str]:
        proj = name.rpartition(".layers.")[2].partition(".")[2]
        prefix = name[: len(name) - len(proj)]
        return [prefix + s for s in SIBLINGS.get(proj, ())]

    def _submit(self, name: str, x: torch.Tensor, key: tuple) -> _Pending:
        module = self.layers[name]
        golden = module.hardware_forward(x)
        mant, shift = golden.act.mantissa.numpy(), golden.act.shift.numpy()
        exponent = golden.thresholds.exponent.numpy()   # each token brings its exponent; the rest is banked
        futures = []
        m = mant.shape[0]
        chunk = min(TILE_TOKENS, -(-m // self.pool.workers))   # a prompt alone still keeps every worker busy
        for lo in range(0, m, chunk):
            part = slice(lo, lo + chunk)
            arrays = {"mant": np.ascontiguousarray(mant[part]), "shift": np.ascontiguousarray(shift[part]),
                      "exponent": np.ascontiguousarray(exponent[part])}
            futures.append([self.pool.submit(run_tile_call, cfg.to_dict(), bank, arrays, self.build_root,
                                             self.per_call) for cfg, bank in self._banks(name, golden)])
        return _Pending(key, golden, futures, time.perf_counter())

    def _banks(self, name: str, golden) -> list[tuple[SpikeConfig, object]]:
        """The projection's parts and their banks, made (and shared with the workers) at its first call.

        The per-neuron constants are the module's, equal in every call."""
        if name not in self.banks:
            held = golden.thresholds
            parts = split_projection(self.configs[name], self.layers[name].w_code.numpy(), held.theta.numpy(),
                                     held.phi.numpy(), self.parts[name])
            labelled = [(cfg, {**bank, "label": name if len(parts) == 1 else f"{name} part {i + 1}/{len(parts)}"})
                        for i, (cfg, bank) in enumerate(parts)]
            self.banks[name] = [(cfg, self.pool.share(bank)) for cfg, bank in labelled]
        return self.banks[name]

    def _resolve(self, name: str, entry: _Pending):
        results = [[f.result() for f in parts] for parts in entry.futures]   # [token chunk][output part]
        counts = np.concatenate([np.concatenate([r["counts"] for r in parts], axis=1) for parts in results])
        golden = entry.result
        expected = golden.counts.numpy()
        first = self.positions.get(name, 0)
        if self.inject_fault is not None and self.inject_fault[0] == name:
            token, neuron = self.inject_fault[1] - first, self.inject_fault[2]
            if 0 <= token < counts.shape[0]:
                counts[token, neuron] ^= 1
        cfg, stats = self.configs[name], self.stats[name]
        stats.calls += 1
        stats.tokens += counts.shape[0]
        stats.cycles += sum(r["cycles"] for parts in results for r in parts)
        stats.ideal_cycles += _ideal_cycles(cfg, golden.act.mantissa.numpy())
        stats.compared += counts.size
        stats.wall += time.perf_counter() - entry.submitted
        self.positions[name] = first + counts.shape[0]
        bad = np.argwhere(counts != expected)
        if len(bad):
            t, n = (int(i) for i in bad[0])
            raise VerificationFailed(
                f"RTL and golden counts differ in {name}, token {first + t}, neuron {n}: expected "
                f"{int(expected[t, n])}, got {int(counts[t, n])} ({len(bad)} differences in this call of "
                f"{counts.shape[0]} tokens)")
        if self.bar is not None:
            self.bar.update(1)
        return replace(golden, counts=torch.from_numpy(counts.astype(np.int64)))


def _ideal_cycles(cfg: SpikeConfig, mant: np.ndarray) -> int:
    """(N/P)·⌈K_nz/L⌉ per token: every cycle carries L events (see :func:`~spikeacc.hw.tile.tile_cycles`)."""
    nonzero = (mant != 0).sum(axis=1)
    return int(sum(cfg.blocks * -(-int(k) // cfg.lanes) for k in nonzero))
