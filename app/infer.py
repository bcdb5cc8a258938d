"""``spikeacc infer``: the LLM writes text with its projections computed by the generated tile.

The network is the hardware-faithful golden model (every projection returns
``Δ_i·(n_i − z_y,i)`` from spike counts; attention, norms, SiLU and the residual
stay in float). With ``rtl=True`` every selected projection's counts come from
the spiking tile's RTL under Verilator instead, and each call is also compared
with the golden counts for the same inputs: the first difference stops the run
with the model layer, token, neuron, expected and got.

How the RTL is reached (one job = one projection call on up to
:data:`TILE_TOKENS` tokens):

* one native Verilator harness per distinct (shape, P, L, ...) configuration,
  built once under the build lock and reused by every call and run
  (:func:`~spikeacc.verif.native.build_native`);
* the harness runs *resident* (:mod:`~spikeacc.verif.resident`): a process
  per configuration and concurrent call, holding each projection's weights and
  thresholds once; a call sends the tokens' codes over a pipe and reads the
  counts, so a decode step costs simulated cycles, not process starts and
  weight copies. ``per_call=True`` runs today's fallback instead, one process
  and a set of buffer files per call (same executable, same counts: tested);
* projections that share an input (q/k/v, gate/up) are submitted together,
  and a call of several tokens is cut into one part per worker (at most
  :data:`TILE_TOKENS` each), so they run at once: on a local pool of
  ``workers`` threads, each driving
  its own simulator process, or on a Dask cluster (``scheduler``), whose
  workers build or reuse the simulators they need; a projection's weights
  travel to a worker once (``client.scatter``);
* ``split=S`` cuts each projection's N/P output blocks into equal parts of
  whole blocks (the most, up to S, that divide its block count), each a call
  of its own on a smaller tile (the same configuration for every part), and
  joins the counts in order: one projection over S workers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.errors import VerificationFailed
from spikeacc.golden.network import HARDWARE_OVERRIDES, Throttled, hardware_network, quantized_layers
from spikeacc.golden.perplexity import default_text, perplexity, token_splits
from spikeacc.golden.spiking_linear import QuantSpec
from spikeacc.golden.stream import streamed_model

__all__ = ["TILE_TOKENS", "HardwareModel", "hardware_model", "select_layers", "check_fault", "RtlExecutor", "run_tile_call",
           "split_config", "split_parts", "split_projection", "TilePool", "tile_pool", "generate", "run_infer", "rtl_perplexity"]

TILE_TOKENS = 32  # tokens per tile call (the harness buffers' depth); longer prefills are split
# Projections computed from the same input, submitted at once (the leader is called first).
SIBLINGS = {"self_attn.q_proj": ("self_attn.k_proj", "self_attn.v_proj"), "mlp.gate_proj": ("mlp.up_proj",)}


class HardwareModel(NamedTuple):
    """The hardware-faithful network and the configuration its projections' tiles are generated from."""

    net: torch.nn.Module
    tokenizer: object
    name: str
    config: SpikeConfig


def hardware_model(model: str | None = None, config: SpikeConfig = PRESETS["default"]) -> HardwareModel:
    """The hardware-faithful model of ``config``'s arithmetic, calibrated on the shipped text.

    Built by streaming the checkpoint one block at a time; every calibrated
    block then stays resident with its projections as int8 codes and
    thresholds (about 6.5 GB at Llama-2-7B), so decoding reads no weights.
    """
    streamed = streamed_model(model)
    calib, _ = token_splits(streamed.tokenizer, default_text(), 512)
    net = hardware_network(streamed, QuantSpec.from_config(config), calib, overrides=HARDWARE_OVERRIDES)
    return HardwareModel(net, streamed.tokenizer, streamed.name, config)


def select_layers(net, spec: str | None) -> dict[str, torch.nn.Module]:
    """The projections of the decoder blocks ``spec`` names (``all``, ``0,1``, ``0-3``), by model name."""
    layers = quantized_layers(net)
    blocks = sorted({int(name.split(".")[2]) for name in layers})
    if spec in (None, "", "all"):
        chosen = set(blocks)
    elif spec == "none":
        chosen = set()
    else:
        chosen = set()
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            try:
                span = range(int(lo), int(hi or lo) + 1)
            except ValueError:
                raise ValueError(f"--layers takes 'all', 'none' or decoder blocks like 0,1 or 0-3; got {spec!r}") from None
            if not span:
                raise ValueError(f"--layers {part.strip()!r} is an empty range (its first block is after its last); "
                                 f"write it low-high, e.g. {hi}-{lo}")
            chosen |= set(span)
        missing = sorted(chosen - set(blocks))
        if missing:
            raise ValueError(f"--layers names block(s) {missing}; the model has blocks {blocks[0]}..{blocks[-1]}")
    return {name: m for name, m in layers.items() if int(name.split(".")[2]) in chosen}


def check_fault(fault: tuple | None, chosen: dict, tokens: int) -> None:
    """Refuse an ``--inject-fault`` that could not land: the self-test must test, or say why it cannot."""
    if fault is None:
        return
    layer, token, neuron = fault
    if layer not in chosen:
        names = sorted(chosen)
        shown = f"{names[0]} .. {names[-1]}" if names else "none (no block is on the RTL)"
        raise ValueError(f"--inject-fault layer {layer!r} is not a projection on the RTL in this run; "
                         f"choose one of the {len(names)} selected ({shown}), e.g. {names[0] if names else '-'}")
    n = chosen[layer].out_features
    if not 0 <= token < tokens:
        raise ValueError(f"--inject-fault token {token} is outside this run's tokens 0..{tokens - 1} "
                         f"(the prompt's tokens, then one per generated token after the first)")
    if not 0 <= neuron < n:
        raise ValueError(f"--inject-fault neuron {neuron} is outside {layer}'s outputs 0..{n - 1}")


def layer_config(module, config: SpikeConfig) -> SpikeConfig:
    """The tile a projection runs on: ``config``'s arithmetic, P and L adapted to its shape (as the exporter does)."""
    base = PRESETS["smollm2"].replace(max_tokens=TILE_TOKENS).with_arithmetic_of(config)
    return base.for_layer(module.in_features, module.out_features)


_SIMULATORS: dict[tuple[str, str], Path] = {}
_SIMULATORS_LOCK = threading.Lock()


def simulator(cfg: SpikeConfig, build_root: str) -> Path:
    """The built harness for ``cfg``, checked once per process (generating the RTL to compare takes seconds)."""
    from spikeacc.verif.native import build_native

    key = (f"{cfg.tag}_t{cfg.max_tokens}", str(build_root))
    with _SIMULATORS_LOCK:
        if key not in _SIMULATORS:
            _SIMULATORS[key] = build_native(cfg, build_root)
        return _SIMULATORS[key]


def run_tile_call(cfg_dict: dict, bank: dict, arrays: dict, build_root: str, per_call: bool = False) -> dict:
    """One projection call on the RTL: build or reuse the simulator, run, return counts, cycles and wall.

    ``bank`` holds the projection's constants (``key``, ``w``, ``theta``,
    ``phi``), ``arrays`` the call's tokens (``mant``, ``shift``,
    ``exponent``). A plain module-level function of plain data, so a Dask
    worker can run it; its resident simulators live as long as its process.
    """
    from spikeacc.verif.native import call_native
    from spikeacc.verif.resident import resident_simulator

    cfg = SpikeConfig.from_dict(cfg_dict)
    exe = simulator(cfg, build_root)
    t0 = time.perf_counter()
    if per_call:
        m, k = arrays["mant"].shape
        vectors = SimpleNamespace(**arrays, w=bank["w"], theta=bank["theta"], phi=bank["phi"],
                                  shape=(m, k, bank["w"].shape[0]))
        counts, cycles, _ = call_native(cfg, exe, vectors)
    else:
        with resident_simulator(cfg, exe) as sim:
            sim.load(bank["key"], bank["w"], bank["theta"], bank["phi"])
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


def connect_scheduler(scheduler, timeout: float = 20.0, say=None):
    """A Dask ``Client`` of ``scheduler``, or one line saying why not, within ``timeout`` seconds.

    A port that accepts connections but never speaks would hold Dask's own
    handshake for minutes, so the connection runs in a thread of its own and
    this waits for it a bounded time, saying every few seconds what it waits for.
    """
    import sys
    import threading

    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install distributed") from None
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    result: dict = {}

    def connect():
        try:
            result["client"] = Client(scheduler, timeout=timeout) if isinstance(scheduler, str) else Client(scheduler)
        except Exception as exc:   # noqa: BLE001 - reported below as the cause
            result["error"] = exc

    thread = threading.Thread(target=connect, daemon=True, name="dask-connect")
    thread.start()
    waited = 0.0
    while thread.is_alive() and waited < timeout:
        thread.join(min(5.0, timeout - waited))
        waited += 5.0
        if thread.is_alive() and waited < timeout:
            say(f"spikeacc: waiting for the Dask scheduler at {scheduler} ({waited:.0f} s of {timeout:.0f} s)")
    if thread.is_alive():
        raise ValueError(f"the Dask scheduler at {scheduler} did not answer within {timeout:.0f} s "
                         f"(is a dask-scheduler listening there?)")
    if "error" in result:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {result['error']}") from None
    return result["client"]


class TilePool(NamedTuple):
    """Where calls run: ``submit(fn, *args) -> future``; ``share(obj)`` hands data sent to many calls
    (a projection's weights) to the workers once, returning what to pass instead."""

    submit: object
    share: object
    workers: int


@contextlib.contextmanager
def tile_pool(workers: int | None = None, scheduler: str | None = None):
    """A :class:`TilePool`: a local pool, or a Dask cluster at ``scheduler`` (an address or a cluster object).

    The local pool runs threads, each waiting on a simulator process of its
    own (the simulation itself is C++), so ``workers`` simulators run at once.
    """
    if scheduler is not None:
        client = connect_scheduler(scheduler)
        try:
            yield TilePool(lambda fn, *args: client.submit(fn, *args, pure=False),
                           lambda obj: client.scatter([obj], hash=False)[0], sum(client.nthreads().values()) or 1)
        finally:
            client.close()
        return
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        yield TilePool(pool.submit, lambda obj: obj, workers)


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
        futures = [self.pool.submit(simulator, cfg, self.build_root) for cfg in distinct.values()]
        for f in futures:
            f.result()
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
            self.banks[name] = [(cfg, self.pool.share(bank)) for cfg, bank in parts]
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


@torch.no_grad()
def generate(net, tokenizer, prompt: str, max_new_tokens: int) -> tuple[str, list[int]]:
    """Greedy decoding with the KV cache: the prompt in one pass, then one token per pass."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise ValueError("--prompt is empty after tokenization; give some text")
    started = time.perf_counter()
    progress = Throttled()   # a 7B network decodes in seconds per token: a line at least every 10 s
    out = net(ids, use_cache=True)
    new = []
    while len(new) < max_new_tokens:
        token = int(out.logits[0, -1].argmax())
        new.append(token)
        if token == tokenizer.eos_token_id or len(new) == max_new_tokens:
            break
        progress(f"generating: {len(new)}/{max_new_tokens} new tokens, {time.perf_counter() - started:.0f} s")
        out = net(torch.tensor([[token]]), cache=out.cache, use_cache=True)
    return tokenizer.decode(new, skip_special_tokens=True), new


def run_infer(prompt: str, *, max_new_tokens: int = 16, model: str | None = None, rtl: bool = True,
              layers: str | None = None, workers: int | None = None, scheduler=None, out: str | Path = "out/infer",
              build_root: str | None = None, config: SpikeConfig = PRESETS["default"],
              inject_fault: tuple | None = None, progress: bool | None = None,
              hardware: HardwareModel | None = None, per_call: bool = False, split: int = 1) -> dict:
    """Generate from ``prompt`` with the golden model, then (``rtl``) with the selected projections on the RTL.

    Writes ``out/infer.json``; raises :class:`VerificationFailed` at the first
    RTL/golden difference (what was produced so far is written first).
    ``hardware`` is a :func:`hardware_model` result to reuse (one model load
    for several runs); it carries its configuration, which then replaces ``config``.
    ``per_call`` and ``split`` choose the path to the RTL (see the module's notes).
    """
    from spikeacc import workdirs

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be a non-negative integer, got {max_new_tokens!r}")
    out = workdirs.output_dir(out, "--out directory")
    t0 = time.perf_counter()
    net, tokenizer, name, config = hardware if hardware is not None else hardware_model(model, config)
    chosen = select_layers(net, layers)
    prompt_tokens = tokenizer(prompt, return_tensors="pt").input_ids.shape[1]
    context = getattr(net.config, "max_position_embeddings", None)
    if context is not None and prompt_tokens + max_new_tokens > context:
        raise ValueError(f"the prompt ({prompt_tokens} tokens) and --max-new-tokens {max_new_tokens} exceed the "
                         f"model's context of {context} tokens; shorten the prompt or lower --max-new-tokens")
    if rtl and not chosen:
        raise ValueError("--layers selects no decoder block, so nothing would run on the RTL and no count would be "
                         "compared; name blocks (e.g. 0,1 or 0-3) or run with --golden")
    if rtl:
        check_fault(inject_fault, chosen, prompt_tokens + max(max_new_tokens - 1, 0))
        check_split(chosen, config, split)
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    golden_text, golden_ids = generate(net, tokenizer, prompt, max_new_tokens)
    report = {"model": name, "prompt": prompt, "method": config.mode, "config": config.to_dict(),
              "max_new_tokens": max_new_tokens,
              "golden_text": golden_text, "golden_wall_seconds": round(time.perf_counter() - t1, 2),
              "model_setup_seconds": round(setup, 2), "mode": "rtl" if rtl else "golden"}
    if not rtl:
        report["text"] = golden_text
        _write(out, report)
        return report
    build_root = str(workdirs.build_root(build_root).resolve())
    report.update(layers_on_rtl=len(chosen), prompt_tokens=prompt_tokens,
                  scheduler=str(scheduler) if scheduler is not None else None,
                  workers=None if scheduler is not None else (workers or os.cpu_count()))
    with tile_pool(workers, scheduler) as pool:
        executor = RtlExecutor(chosen, pool, build_root, config, inject_fault=inject_fault, per_call=per_call,
                               split=split)
        t2 = time.perf_counter()
        built = executor.build_all()
        report["builds"] = {"configurations": [c.tag for c in built], "seconds": round(time.perf_counter() - t2, 2)}
        calls = len(chosen) * (1 + max(len(golden_ids) - 1, 0))
        executor.bar = tqdm(total=calls, desc="infer --rtl", unit="call", disable=not progress if progress is not None
                            else None)
        executor.attach()
        t3 = time.perf_counter()
        try:
            text, ids = generate(net, tokenizer, prompt, max_new_tokens)
        except VerificationFailed as exc:
            report.update(_totals(executor, time.perf_counter() - t3, mismatched=True), failure=str(exc))
            _write(out, report)
            raise
        finally:
            executor.detach()
            executor.bar.close()
    report.update(text=text, identical=text == golden_text and ids == golden_ids,
                  **_totals(executor, time.perf_counter() - t3))
    report["wall_seconds"] = round(time.perf_counter() - t0, 2)
    _write(out, report)
    if not report["identical"]:
        raise VerificationFailed(f"the RTL-fed text differs from the golden text:\n  rtl:    {text!r}\n  golden: {golden_text!r}")
    return report


def _totals(executor: RtlExecutor, wall: float, mismatched: bool = False) -> dict:
    rows = [s.row(name) for name, s in executor.stats.items() if s.calls]
    cycles = sum(r["cycles"] for r in rows)
    return {"path": "per-call harness" if executor.per_call else "resident simulators", "split": executor.split,
            "per_layer": rows,
            "totals": {"outputs_compared": sum(r["outputs_compared"] for r in rows), "mismatches": int(mismatched),
                       "simulated_cycles": cycles, "calls": sum(r["calls"] for r in rows),
                       "rtl_wall_seconds": round(wall, 2),
                       "simulated_cycles_per_wall_second": round(cycles / wall) if wall else 0}}


def _write(out: Path, report: dict) -> None:
    (out / "infer.json").write_text(json.dumps(report, indent=2) + "\n")


@torch.no_grad()
def rtl_perplexity(tokens: int = 64, *, model: str | None = None, layers: str | None = None,
                   workers: int | None = None, scheduler=None, build_root: str | None = None,
                   config: SpikeConfig = PRESETS["default"], hardware: HardwareModel | None = None,
                   progress: bool | None = None, per_call: bool = False, split: int = 1) -> dict:
    """Perplexity of the first ``tokens`` held-out tokens, golden and with the selected projections on the RTL.

    The same window as the perplexity table's first (after the calibration
    tokens of the shipped text). Equal counts give bit-identical logits, so
    the two perplexities are equal to the last digit; the RTL one is computed
    from the RTL's counts, each call also compared with the golden counts.
    """
    from spikeacc import workdirs

    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 2 <= tokens <= 512:
        raise ValueError(f"--tokens with --rtl must be an integer in 2..512 (one window), got {tokens!r}")
    net, tokenizer, name, config = hardware if hardware is not None else hardware_model(model, config)
    _, windows = token_splits(tokenizer, default_text(), 512)
    window = windows[:1, :tokens]   # the perplexity table's own function, on one window

    chosen = select_layers(net, layers)
    check_split(chosen, config, split)
    t0 = time.perf_counter()
    golden = perplexity(net, window, desc="ppl golden")
    golden_wall = time.perf_counter() - t0
    with tile_pool(workers, scheduler) as pool:
        executor = RtlExecutor(chosen, pool, str(workdirs.build_root(build_root).resolve()), config,
                               per_call=per_call, split=split)
        executor.build_all()
        executor.bar = tqdm(total=len(chosen), desc="ppl --rtl", unit="call",
                            disable=not progress if progress is not None else None)
        executor.attach()
        t1 = time.perf_counter()
        try:
            rtl = perplexity(net, window, desc="ppl rtl")
        finally:
            executor.detach()
            executor.bar.close()
    return {"model": name, "config": config.to_dict(), "tokens": tokens, "layers_on_rtl": len(chosen),
            "golden_ppl": golden, "rtl_ppl": rtl,
            "equal": rtl == golden, "golden_wall_seconds": round(golden_wall, 2),
            **_totals(executor, time.perf_counter() - t1)}
