"""``spikeacc infer``: the LLM writes text with its projections computed by the generated tile.

The network is the hardware-faithful golden model (every projection returns
``Δ_i·(n_i − z_y,i)`` from spike counts; attention, norms, SiLU and the residual
stay in float). With ``rtl=True`` every selected projection's counts come from
the spiking tile's RTL under Verilator instead, and each call is also compared
with the golden counts for the same inputs: the first difference stops the run
with the model layer, token, neuron, expected and got.

How the RTL is reached (one job = one projection call on up to
:data:`~spikeacc.app.tile_calls.TILE_TOKENS` tokens):

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
  :data:`~spikeacc.app.tile_calls.TILE_TOKENS` each), so they run at once: on a local pool of
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

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm import tqdm

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.errors import VerificationFailed
from spikeacc.golden.network import HARDWARE_OVERRIDES, hardware_network, quantized_layers
from spikeacc.golden.progress import Throttled
from spikeacc.golden.perplexity import WINDOW, config_splits, perplexity
from spikeacc.golden.spiking_linear import QuantSpec
from spikeacc.golden.stream import streamed_model
from spikeacc.app.rtl_executor import RtlExecutor
from spikeacc.app.tile_calls import check_split
from spikeacc.app.tile_pools import tile_pool

__all__ = ["HardwareModel", "hardware_model", "select_layers", "check_fault", "generate", "run_infer",
           "rtl_perplexity"]


class HardwareModel(NamedTuple):
    """The hardware-faithful network and the configuration its projections' tiles are generated from."""

    net: torch.nn.Module
    tokenizer: object
    name: str
    config: SpikeConfig


def hardware_model(model: str | None = None, config: SpikeConfig = PRESETS["default"]) -> HardwareModel:
    """The hardware-faithful model of ``config``'s arithmetic, calibrated as ``config`` says (default: the shipped text).

    Built by streaming the checkpoint one block at a time; every calibrated
    block then stays resident with its projections as int8 codes and
    thresholds (about 6.5 GB at Llama-2-7B), so decoding reads no weights.
    """
    streamed = streamed_model(model, config.rotation)
    calib, _ = config_splits(streamed.tokenizer, config, WINDOW)
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

    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 2 <= tokens <= WINDOW:
        raise ValueError(f"--tokens with --rtl must be an integer in 2..{WINDOW} (one window), got {tokens!r}")
    net, tokenizer, name, config = hardware if hardware is not None else hardware_model(model, config)
    _, windows = config_splits(tokenizer, config, WINDOW)
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
