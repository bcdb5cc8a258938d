"""The quantized golden network, built, calibrated and evaluated one decoder block at a time.

Every command that reads a model comes through here: the perplexity table
(:func:`evaluate`), vector export (:func:`gptq_codes`, :func:`layer_inputs`),
and the network that ``infer`` and ``ppl --rtl`` run (:func:`hardware_network`).

One pass over the network reads each decoder block once from the checkpoint
(:class:`~spikeacc.golden.stream.StreamedLlama`) and does everything that
block needs before the next is read, in the order the whole-model procedure
did it, so the numbers are the same to the last bit:

1. GPTQ (``spec.weights == "gptq"``): the block's Hessians from the
   calibration windows as the already quantized blocks below deliver them,
   its codes (cached per block on disk: a killed run resumes at the first
   unfinished block), then those windows through the quantized block;
2. conversion: each projection becomes a :class:`SpikeQuantLinear`;
3. calibration, stage by stage (static input ranges, then output ranges):
   each stage keeps its own hidden states of the calibration windows, as the
   whole-model pass of that stage produced them;
4. the caller's own windows through the finished block.

Only hidden states between blocks are held (a few MB per 512-token window
at 7B). :func:`hardware_network` keeps the calibrated blocks for decoding,
each projection as its int8 codes and thresholds, its float copy released:
Llama-2-7B's resident network is then about 6.5 GB; the float weights are
streamed once, during calibration.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from spikeacc.golden.progress import BlockProgress, Throttled
from spikeacc.golden.gptq import BlockCodeCache, apply_codes, gptq_block
from spikeacc.golden.resume import PassCheckpoint, tensor_digest
from spikeacc.golden.spiking_linear import CALIBRATION_STAGES, QuantSpec, SpikeQuantLinear, calibration_stages
from spikeacc.golden.stream import StreamedLlama, release_freed_memory, run_block

__all__ = ["PROJECTIONS", "HARDWARE_OVERRIDES", "convert_block", "quantized_layers", "QuantizedBlocks", "evaluate",
           "Evaluation", "hardware_network", "HardwareNetwork", "gptq_codes", "layer_inputs", "window_nll",
           "SILU_MIN_X"]

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

# SiLU(x) = x·σ(x) has its minimum at x* = −1.2785 (SiLU(x*) = −0.2785). gate_proj feeds
# SiLU, so its output range need not reach below x*: the tile clamps there (n = 0 is x*)
# and spends every code on the part SiLU resolves. Measured on SmolLM2 (512 held-out
# tokens, dynamic inputs, 8-bit per-channel outputs): no floor 67.8, floor −8 63.3,
# −4 60.6, −2 58.4, x* 55.8, −0.5 65.8 PPL.
SILU_MIN_X = -1.2785
HARDWARE_OVERRIDES = {"mlp.gate_proj": {"out_floor": SILU_MIN_X}}


def quantized_layers(module: nn.Module) -> dict[str, SpikeQuantLinear]:
    return {n: m for n, m in module.named_modules() if isinstance(m, SpikeQuantLinear)}


def convert_block(layer: nn.Module, spec: QuantSpec, *, overrides: dict[str, dict] | None = None,
                  weights: dict | None = None, projections=PROJECTIONS) -> nn.Module:
    """Replace a decoder block's projections by :class:`SpikeQuantLinear` in place.

    ``overrides`` maps a projection name (e.g. ``"mlp.down_proj"``) to
    :class:`QuantSpec` fields that differ for it; ``weights`` maps projection
    names inside the block to precomputed codes (GPTQ's).
    """
    overrides = overrides or {}
    unknown = set(overrides) - set(projections)
    if unknown:
        raise ValueError(f"overrides name unknown projection(s) {sorted(unknown)}; choose from {list(projections)}")
    for name in projections:
        parent_name, attr = name.split(".")
        parent = getattr(layer, parent_name)
        linear = getattr(parent, attr)
        if isinstance(linear, SpikeQuantLinear):
            raise ValueError("the block is already converted; read it again to change the quantization")
        setattr(parent, attr, SpikeQuantLinear(linear, spec.replace(**overrides.get(name, {})),
                                               (weights or {}).get(name)))
    return layer


def _stages(spec: QuantSpec, overrides: dict, projections=PROJECTIONS) -> list[str]:
    """The calibration stages some projection of the network needs, in order."""
    needed = {s for name in projections for s in calibration_stages(spec.replace(**overrides.get(name, {})))}
    return [s for s in CALIBRATION_STAGES if s in needed]


class GptqChain:
    """GPTQ over the blocks in order, each on the calibration windows the quantized blocks below produce.

    The calibration windows' states are followed only once a block's codes
    are missing from the cache: a run whose codes are all cached reads them
    back without a forward pass, and a run resumed at block *i* rebuilds
    block *i*'s inputs through the cached blocks below it once.
    """

    def __init__(self, model: StreamedLlama, spec: QuantSpec, calibration: torch.Tensor, say=None):
        self.model, self.bits, self.quantizer = model, spec.w_bits, spec.input_quantizer()
        self.calibration = calibration
        self.cache = BlockCodeCache(spec.weight_key(), list(calibration), spec.w_bits, PROJECTIONS)
        self.cache.check_writable()
        self.states = None       # the calibration windows entering the next block, once followed
        self.computed = self.reused = 0
        self.say = say

    def _inputs_of(self, index: int) -> list[torch.Tensor]:
        """The calibration windows entering block ``index``, through the cached blocks below it."""
        states = [self.model.embed(w) for w in self.calibration]
        for below in range(index):
            layer = self.model.block(below)
            for name, quant in self.cache.load(below, self.model.chain(below + 1)).items():
                apply_codes(layer.get_submodule(name), quant)
            states = run_block(self.model, layer, states)
        return states

    def step(self, index: int, layer: nn.Module, last: bool = False, projections=PROJECTIONS) -> dict:
        """Codes of block ``index`` (computed, or read back from the cache).

        ``layer`` keeps the quantized weights, unless ``last`` says no block
        follows: then its float weights are freed as they are rounded, and
        ``projections`` may name only the ones wanted. Every projection's
        Hessian comes from one float pass through the block, so a subset's
        codes equal the whole block's; a subset is not cached (an entry is a
        whole block)."""
        chain = self.model.chain(index + 1)
        codes = self.cache.load(index, chain)
        whole = tuple(projections) == PROJECTIONS
        if not whole and not last:
            raise ValueError("only the last block of a pass may be rounded in part")
        if codes is None:
            if self.states is None:
                self.states = self._inputs_of(index)
            states = self.states
            started = time.perf_counter()
            progress = Throttled(self.say)
            codes = gptq_block(layer, lambda: run_block(self.model, layer, states), self.bits, self.quantizer,
                               tuple(projections), keep=not last,
                               done=lambda name: progress(f"GPTQ block {index}: {name} rounded, "
                                                          f"{time.perf_counter() - started:.0f} s into the block"))
            if whole:
                self.cache.store(index, chain, codes)
            self.computed += 1
        else:
            if not last:
                for name, quant in codes.items():
                    apply_codes(layer.get_submodule(name), quant)
            self.reused += 1
        if self.states is not None and not last:
            self.states = run_block(self.model, layer, self.states)
        return codes


class QuantizedBlocks:
    """The network's blocks in order, each read, quantized by ``spec`` and calibrated; iterate for ``(index, block)``.

    ``spec=None`` yields the float blocks (the FP row). ``upto`` stops after
    that block (vector export needs no block above its layer).
    """

    def __init__(self, model: StreamedLlama, spec: QuantSpec | None, calibration: torch.Tensor, *,
                 overrides: dict[str, dict] | None = None, upto: int | None = None, say=None):
        self.model, self.spec, self.overrides = model, spec, overrides or {}
        self.upto = model.blocks - 1 if upto is None else upto
        quantized = spec is not None and spec.method != "fp"
        self.gptq = GptqChain(model, spec, calibration, say) if quantized and spec.weights == "gptq" else None
        self.stages = _stages(spec, self.overrides) if quantized else []
        embedded = [model.embed(w) for w in calibration] if self.stages else []
        self.states = {stage: list(embedded) for stage in self.stages}
        self.tokens = int(calibration.numel())

    def __iter__(self):
        return self.from_block(0)

    def from_block(self, start: int):
        """``(index, block)`` from block ``start`` on (a resumed pass: the states were restored)."""
        for index in range(start, self.upto + 1):
            yield index, self.prepare(index, self.model.block(index))
            release_freed_memory()

    def snapshot(self) -> dict:
        """The hidden states this pass carries between blocks (what a resumed pass needs)."""
        return {"stages": self.states, "gptq": None if self.gptq is None else self.gptq.states}

    def restore(self, saved: dict) -> None:
        self.states = saved["stages"]
        if self.gptq is not None:
            self.gptq.states = saved["gptq"]

    def prepare(self, index: int, layer: nn.Module) -> nn.Module:
        spec = self.spec
        if spec is None or spec.method == "fp":
            return layer
        codes = self.gptq.step(index, layer) if self.gptq is not None else None
        convert_block(layer, spec, overrides=self.overrides, weights=codes)
        projections = quantized_layers(layer).values()
        for stage in self.stages:
            chosen = [m for m in projections if stage in m.calibration_stages]
            for m in chosen:
                m.start_calibration(stage)
            self.states[stage] = run_block(self.model, layer, self.states[stage])
            for m in chosen:
                m.finish_calibration_stage(stage)
        return layer


def window_nll(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int]:
    """Summed next-token negative log-likelihood of one window and how many tokens it scores."""
    loss = torch.nn.functional.cross_entropy(logits[0, :-1].double(), ids[1:], reduction="sum")
    return float(loss), len(ids) - 1


@dataclass
class Evaluation:
    """A streamed pass's perplexity and the per-projection activity its evaluation windows saw."""

    ppl: float
    layers: dict[str, dict] = field(default_factory=dict)   # name -> salient, zero, element counts

    def ratio(self, key: str) -> float:
        elements = sum(v["elements"] for v in self.layers.values())
        return sum(v[key] for v in self.layers.values()) / elements if elements else 0.0


@torch.no_grad()
def evaluate(model: StreamedLlama, spec: QuantSpec | None, calibration: torch.Tensor, windows: torch.Tensor, *,
             overrides: dict[str, dict] | None = None, say=None, what: str = "ppl") -> Evaluation:
    """Perplexity of ``windows`` [n, T] through the network quantized by ``spec`` (None: float), block by block.

    A pass that runs long leaves its state after the last finished block on
    disk (:class:`~spikeacc.golden.resume.PassCheckpoint`); the same pass run
    again after a kill starts there, and the file goes when the pass ends.
    """
    blocks = QuantizedBlocks(model, spec, calibration, overrides=overrides, say=say)
    progress = BlockProgress(what, model.blocks, int(windows.numel()) + blocks.tokens, say)
    checkpoint = PassCheckpoint(model, {"spec": repr(spec), "overrides": repr(sorted((overrides or {}).items())),
                                        "calibration": tensor_digest(calibration), "windows": tensor_digest(windows)})
    states, layers, start = [model.embed(w) for w in windows], {}, 0
    saved = checkpoint.load()
    if saved is not None:
        start, states, layers = saved["next"], saved["states"], saved["layers"]
        blocks.restore(saved["blocks"])
        progress.say(f"{what}: resuming after block {start}/{model.blocks} (a pass left off there)")
    for index, layer in blocks.from_block(start):
        states = run_block(model, layer, states)
        for name, m in quantized_layers(layer).items():
            layers[f"model.layers.{index}.{name}"] = {"salient": m.salient_count, "zeros": m.zero_count,
                                                      "elements": m.element_count}
        del layer
        progress.done(index)
        checkpoint.save(index + 1, lambda: {"states": states, "layers": layers, "blocks": blocks.snapshot()})
    nll, count = 0.0, 0
    for h, ids in zip(states, windows):
        window, scored = window_nll(model.logits(h), ids)
        nll += window
        count += scored
    checkpoint.clear()
    return Evaluation(math.exp(nll / count), layers)


class HardwareNetwork(nn.Module):
    """The calibrated quantized network kept for decoding: blocks resident, projections as codes.

    Called like a transformers causal LM, ``net(ids [1, T], cache=None,
    use_cache=False)`` returns ``.logits`` and ``.cache``; its projections are
    named as in the checkpoint (``model.layers.0.self_attn.q_proj``).
    """

    def __init__(self, streamed: StreamedLlama, layers: list[nn.Module]):
        super().__init__()
        self.streamed = streamed
        self.config = streamed.config
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(layers)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, cache=None, use_cache: bool = False):
        hidden = self.streamed.embed(input_ids)
        if use_cache and cache is None:
            cache = self.streamed.new_cache()
        context = self.streamed.context(hidden, cache)
        for layer in self.model.layers:
            hidden = layer(hidden, **context)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return SimpleNamespace(logits=self.streamed.logits(hidden), cache=cache)


def hardware_network(model: StreamedLlama, spec: QuantSpec, calibration: torch.Tensor, *,
                     overrides: dict[str, dict] | None = None, say=None) -> HardwareNetwork:
    """Every block quantized by ``spec`` and calibrated, kept resident with its float weights released."""
    blocks = QuantizedBlocks(model, spec, calibration, overrides=overrides, say=say)
    progress = BlockProgress("hardware model", model.blocks, blocks.tokens, say)
    kept = []
    for index, layer in blocks:
        for m in quantized_layers(layer).values():
            m.release_float_weights()
        kept.append(layer)
        progress.done(index)
    return HardwareNetwork(model, kept)


def gptq_codes(model: StreamedLlama, spec: QuantSpec, calibration: torch.Tensor, upto: int, say=None,
               only: set[str] | None = None) -> dict:
    """GPTQ codes of blocks 0..``upto`` by full module name (empty unless ``spec`` rounds with GPTQ).

    ``only``: the projections wanted of block ``upto`` (names inside the block);
    the others of that block are not rounded (at Llama-2-7B, q_proj's
    vectors then need no down_proj Hessian, 970 MB)."""
    if spec.method == "fp" or spec.weights != "gptq":
        return {}
    chain = GptqChain(model, spec, calibration, say)
    progress = BlockProgress("GPTQ weights", upto + 1, int(calibration.numel()), say)
    codes = {}
    for index in range(upto + 1):
        layer = model.block(index)
        wanted = PROJECTIONS if index < upto or only is None else tuple(p for p in PROJECTIONS if p in only)
        step = chain.step(index, layer, last=index == upto, projections=wanted)
        codes.update({f"model.layers.{index}.{name}": q for name, q in step.items()})
        del layer
        release_freed_memory()
        progress.done(index)
    return codes


@torch.no_grad()
def layer_inputs(model: StreamedLlama, names: list[str], window_sets: list[torch.Tensor], say=None) -> dict:
    """The float network's inputs to each named projection: ``{name: (float Linear, [inputs [T, K] per window] per set)}``.

    Reads the blocks up to the highest one named, no further.
    """
    wanted = {}
    for name in names:
        parts = name.split(".")
        proj = ".".join(parts[3:])
        if len(parts) != 5 or parts[:2] != ["model", "layers"] or not parts[2].isdigit() or proj not in PROJECTIONS:
            raise ValueError(f"no layer {name!r} in the model; name a projection like "
                             f"model.layers.0.self_attn.q_proj (projections: {', '.join(PROJECTIONS)})")
        index = int(parts[2])
        if index >= model.blocks:
            raise ValueError(f"no layer {name!r} in the model: it has decoder blocks 0..{model.blocks - 1}")
        wanted.setdefault(index, []).append((name, proj))
    top = max(wanted)
    states = [[model.embed(w) for w in windows] for windows in window_sets]
    found = {}
    progress = BlockProgress("layer inputs", top + 1, sum(int(w.numel()) for w in window_sets), say)
    for index in range(top + 1):
        layer = model.block(index)
        handles, current = [], {"set": 0}
        for name, proj in wanted.get(index, []):
            linear = layer.get_submodule(proj)
            found[name] = (linear, [[] for _ in window_sets])
            handles.append(linear.register_forward_hook(
                lambda mod, args, out, name=name: found[name][1][current["set"]].append(args[0].detach()[0])))
        try:
            for i, sts in enumerate(states):
                current["set"] = i
                states[i] = run_block(model, layer, sts)
        finally:
            for handle in handles:
                handle.remove()
        del layer
        release_freed_memory()
        progress.done(index)
    return found
