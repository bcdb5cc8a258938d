"""Error-compensating weight rounding (GPTQ) into the tile's per-channel weight codes (SPEC §2).

GPTQ (Frantar et al., arXiv 2210.17323) rounds a projection's weights column by
column and pushes each column's rounding error onto the columns not yet
rounded, weighted by the inverse Hessian ``H = X̃ᵀX̃`` of the layer's inputs, so
that ``‖(W − Ŵ)X̃‖`` stays small rather than each weight's own error. It only
changes *which* codes the tile gets: every row keeps one asymmetric b_w-bit
step and zero point, so ``w``, Θ and Φ mean what they always meant and the RTL
does not notice.

Two choices of ours, both measured (docs/measurements.md, "Near-FP weights"):

* ``X̃`` is what the tile really receives: the layer's inputs through its own
  activation quantizer (salient mantissas and shifts included). With float
  inputs GPTQ optimised for activations the tile never sees and made
  SpikeQuant worse (58.1 → 81.0 PPL), while it helped Kirin.
* Each row's range is searched (shrunk from its min/max on a grid) for the
  smallest Hessian-weighted rounding error before GPTQ runs, instead of
  always spanning min..max; a clipped range is still one step and zero point.

Blocks are quantized in order, each on the inputs that the already quantized
earlier blocks produce (weights quantized, as in the paper's sequential
procedure): one block at a time, which is also how the streamed golden model
reads a checkpoint (:mod:`spikeacc.golden.network`). Everything is float64 so
the codes are the same on every CPU.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import torch

from spikeacc.config import code_max
from spikeacc.golden.checkpoint import cache_root, check_writable
from spikeacc.golden.quant import WeightQuant
from spikeacc.golden.stream import release_freed_memory

__all__ = ["gptq_quantize", "search_range", "gptq_block", "apply_codes", "BlockCodeCache", "GPTQ_VERSION"]

# Bump when the algorithm changes: cached codes of an older version are not reused.
GPTQ_VERSION = 2
BLOCK = 128          # columns updated together (the paper's lazy batch)
DAMPING = 0.1        # of the mean Hessian diagonal: 1,024 calibration tokens want more than the paper's 0.01
RANGE_STEPS = 20     # grid of the range search ...
RANGE_SHRINK = 0.5   # ... from the full min..max down to half of it
SEARCH_ROWS = 512    # rows searched at once


def search_range(w: torch.Tensor, importance: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the step and zero point of the shrunk range ``p·[min, max]`` with the least weighted error.

    ``importance`` [K] weighs each column's squared rounding error (the
    Hessian's diagonal). ``p`` runs from 1 down to ``1 − RANGE_SHRINK``; the
    range always includes 0, as :func:`~spikeacc.golden.quant.quantize_weight`'s.
    Rows are searched ``SEARCH_ROWS`` at a time (each row's search is its
    own), so its temporaries stay small beside a 7B Hessian.
    """
    if w.shape[0] > SEARCH_ROWS:
        parts = [_search_rows(w[i:i + SEARCH_ROWS], importance, bits) for i in range(0, w.shape[0], SEARCH_ROWS)]
        return torch.cat([step for step, _ in parts]), torch.cat([zero for _, zero in parts])
    return _search_rows(w, importance, bits)


def _search_rows(w: torch.Tensor, importance: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    qmax = code_max(bits)
    lo0, hi0 = w.amin(dim=1).clamp(max=0), w.amax(dim=1).clamp(min=0)
    best = torch.full_like(lo0, float("inf"))
    best_step, best_zero = torch.zeros_like(lo0), torch.zeros_like(lo0)
    for i in range(RANGE_STEPS + 1):
        p = 1 - RANGE_SHRINK * i / RANGE_STEPS
        step = ((hi0 - lo0) * p / qmax).clamp(min=1e-12)
        zero = torch.round(-lo0 * p / step)
        code = torch.clamp(torch.round(w / step[:, None]) + zero[:, None], 0, qmax) - zero[:, None]
        error = ((code * step[:, None] - w) ** 2 * importance[None, :]).sum(dim=1)
        better = error < best
        best = torch.where(better, error, best)
        best_step = torch.where(better, step, best_step)
        best_zero = torch.where(better, zero, best_zero)
    return best_step, best_zero


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, bits: int, *, own: bool = False) -> WeightQuant:
    """GPTQ codes of ``w`` [N, K] for inputs with Hessian ``hessian`` [K, K] (``X̃ᵀX̃/tokens``).

    Columns go in order of decreasing Hessian diagonal (the paper's
    ``act_order``; with one step per row it needs no regrouping), ``BLOCK``
    at a time, with ``DAMPING`` added to the diagonal. ``own`` lets it work
    in ``hessian`` itself (a float64 tensor nobody else holds) instead of a
    copy. The codes are int8.
    """
    w = w.double().clone()
    h = hessian if own else hessian.double().clone()
    del hessian            # an owned Hessian is freed as soon as its permuted copy exists
    qmax = code_max(bits)
    dead = torch.diag(h) == 0          # an input that never fires: its weights do not matter
    h[dead, dead] = 1
    w[:, dead] = 0
    step, zero = search_range(w, torch.diag(h), bits)
    order = torch.argsort(torch.diag(h), descending=True, stable=True)
    h = h[order[:, None], order[None, :]]
    h.diagonal().add_(DAMPING * torch.diag(h).mean())
    inverse = torch.linalg.cholesky(h)         # one K×K matrix at a time (970 MB each at K = 11,008)
    del h
    inverse = torch.cholesky_inverse(inverse)
    inverse = torch.linalg.cholesky(inverse, upper=True)
    w = w[:, order]                            # permuted after the Hessian's copies are gone
    codes = torch.zeros_like(w, dtype=torch.int8)   # |code| ≤ 2^b − 1 ≤ 127
    k = w.shape[1]
    for start in range(0, k, BLOCK):
        end = min(start + BLOCK, k)
        block, block_inv = w[:, start:end].clone(), inverse[start:end, start:end]
        errors = torch.zeros_like(block)
        for i in range(end - start):
            code = torch.clamp(torch.round(block[:, i] / step) + zero, 0, qmax) - zero
            codes[:, start + i] = code.to(torch.int8)
            errors[:, i] = (block[:, i] - code * step) / block_inv[i, i]
            block[:, i:] -= errors[:, i:i + 1] * block_inv[i, i:][None, :]
        w[:, end:] -= errors @ inverse[start:end, end:]
    return WeightQuant(codes[:, torch.argsort(order)], step)


def gptq_block(layer, run: Callable[[], object], bits: int, input_quantizer: Callable[[torch.Tensor], torch.Tensor],
               projections, *, keep: bool = True, done: Callable[[str], None] | None = None) -> dict[str, WeightQuant]:
    """GPTQ codes of one decoder block's ``projections`` Linears, keyed by their names inside the block.

    ``run()`` passes the block's calibration inputs through ``layer`` once;
    forward hooks keep what the tile would see, ``input_quantizer(x)``
    (dequantized activation codes), once per distinct input; each Hessian
    ``X̃ᵀX̃`` is formed only when its projections are rounded and freed after
    the last of them (at Llama-2-7B the inputs are 190 MB, the four Hessians
    1.4 GB). The block is
    changed in place: its projections end with the quantized weights, so the
    caller's next pass feeds the next block what the quantized one produces
    (the paper's sequential procedure). ``keep=False`` frees each float
    weight once its codes exist instead (the block is not run again): at
    Llama-2-7B that is 1.2 GB less while down_proj's 970 MB Hessian is inverted.
    ``done(name)`` is called as each projection's codes are found (progress).
    """
    linears = {name: layer.get_submodule(name) for name in projections}
    inputs: dict[str, list[torch.Tensor]] = {}   # per distinct input (q/k/v share one, gate/up another): x̃ per window
    leader: dict[str, str] = {}                  # projection -> the first projection that received its input
    last = {"input": None, "leader": None}

    def collect(module, args, output, name):
        if args[0] is not last["input"]:
            leader.setdefault(name, name)
            last.update(input=args[0], leader=leader[name])
            x = input_quantizer(args[0].detach().reshape(-1, module.in_features)).double()
            inputs.setdefault(name, []).append(x)
        else:
            leader.setdefault(name, last["leader"])

    handles = [m.register_forward_hook(lambda mod, a, o, name=name: collect(mod, a, o, name))
               for name, m in linears.items()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    last.clear()
    codes, hessians = {}, {}
    for name, linear in linears.items():
        group = leader[name]
        if group not in hessians:   # X̃ᵀX̃ summed window by window, formed only when its group is rounded
            windows = inputs.pop(group)
            total = None
            for x in windows:
                gram = x.T @ x
                total = gram if total is None else total.add_(gram)
                del gram
            hessians[group] = total.div_(max(sum(x.shape[0] for x in windows), 1))
            del windows
        if [n for n in linears if leader[n] == group and n not in codes] == [name]:
            hessian = hessians.pop(group)   # the group's last projection: rounded in place, then freed
        else:
            hessian = hessians[group].clone()
        quant = gptq_quantize(linear.weight.detach(), hessian, bits, own=True)
        del hessian
        release_freed_memory()   # the inverted Hessian's gigabyte, back before the next one
        codes[name] = quant
        if done is not None:
            done(name)
        if keep:
            apply_codes(linear, quant)
        else:
            linear.weight.data = torch.empty(0, dtype=linear.weight.dtype)
    return codes


def apply_codes(linear, quant: WeightQuant) -> None:
    """Give a float Linear the weights its codes stand for."""
    linear.weight.data = quant.dequant().to(linear.weight.dtype)


class BlockCodeCache:
    """GPTQ codes on disk, one file per decoder block, each carrying the key it was computed under.

    The key of block *i* names what its codes depend on: the settings,
    the calibration tokens, and a chain of digests of the embedding and
    blocks 0..i as stored (:meth:`~spikeacc.golden.checkpoint.Checkpoint.chain`), so a block's codes are reused
    only for these very weights below it. A run killed during GPTQ keeps
    every finished block; an entry that does not load, or whose stored key
    differs from the one asked for (another model's codes renamed into
    place), is a miss and is computed again.
    """

    def __init__(self, key: dict, windows, bits: int, projections):
        self.key = {**key, "version": GPTQ_VERSION, "bits": bits, "projections": list(projections),
                    "settings": [BLOCK, DAMPING, RANGE_STEPS, RANGE_SHRINK],
                    "calibration": hashlib.sha256(torch.cat([w.reshape(-1) for w in windows]).numpy().tobytes()).hexdigest()}
        self.root = cache_root() / "gptq"

    def check_writable(self) -> None:
        """Before the work, not after it: an unwritable cache is named with the way out."""
        check_writable(self.root, "GPTQ code cache")

    def _entry(self, index: int, chain: str) -> tuple[str, Path]:
        full = json.dumps({**self.key, "block": index, "weights": chain}, sort_keys=True)
        return full, self.root / f"{hashlib.sha256(full.encode()).hexdigest()[:24]}.pt"

    def load(self, index: int, chain: str) -> dict[str, WeightQuant] | None:
        full, path = self._entry(index, chain)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, weights_only=True)
            if stored.get("key") != full:
                return None
            return {name: WeightQuant(code, scale) for name, (code, scale) in stored["codes"].items()}
        except Exception:   # noqa: BLE001 - a damaged cache entry is a miss, never an error
            return None

    def store(self, index: int, chain: str, codes: dict[str, WeightQuant]) -> None:
        from spikeacc import workdirs

        full, path = self._entry(index, chain)
        buffer = io.BytesIO()
        torch.save({"key": full, "codes": {name: (q.code.to(torch.int8), q.scale) for name, q in codes.items()}},
                   buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        workdirs.write_atomic(path, buffer.getvalue())
