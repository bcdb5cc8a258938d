"""Layer vectors: the contract between the golden model and the hardware.

One ``.npz`` file per layer with exactly these arrays:

========== ======== ======= ==================================================
name       dtype    shape   meaning
========== ======== ======= ==================================================
w          int8     [N, K]  signed weight codes ``Wq − z_w``
mant       int8     [M, K]  signed activation mantissas, |mant| ≤ 2^b_a − 1; in
                            Kirin mode (config ``outlier_bits`` = B) also the
                            integer outliers, |mant| ≤ 2^(B−1) − 1
shift      uint8    [M, K]  per-element exponent (0 for ordinary values)
theta      int64    [R, N]  fixed-point threshold constants Θ (F fraction bits), R per
                            neuron (config ``threshold_grid``: 4 for steps on 2^(−j/4),
                            1 for static steps)
phi        int64    [R, N]  fixed-point start potentials Φ, likewise
exponent   int64    [M]     each token's step exponent d: it fires against row
                            ``d mod R`` with the scale shift ``s = ⌊d/R⌋``
frac_bits  int      []      F
out_bits   int      []      b_out
acc        int64    [M, N]  expected accumulators ``Σ w·mant·2^shift``
expected   int64    [M, N]  expected output spike counts
                            ``clamp(floor((⌊2^F·acc/2^s⌋ + Φ)/Θ), 0, 2^b_out − 1)``
meta       str      []      JSON: model, layer, token positions, config, scales,
                            output policy (optional: see below)
========== ======== ======= ==================================================

:func:`load_vectors` checks every one of these and explains a violation, and
recomputes ``acc`` and ``expected`` from the inputs. A file with no spikeacc
``config`` in ``meta`` (another quantizer's) is accepted and its configuration
derived from the arrays (:func:`derive_config`); such a file may leave out
``exponent`` when its ``theta``/``phi`` are one row, or one row per token that
repeats the same constant per neuron (a static step).

Kirin mode needs no further array: an element with ``|mant| > 2^b_a − 1`` is
an integer outlier (the tile's integer path takes it, shift-and-add over its
bits); a smaller one spikes, salient or not, with its ``shift``. The golden
Kirin quantizer gives every outlier of a token the same shift.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeacc import workdirs
from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.golden.integer import accumulate, check_codes, fire_count, thresholds_for_tokens

__all__ = ["LayerVectors", "crop_vectors", "load_vectors", "save_vectors", "export_vectors", "export_layers", "derive_config",
           "VectorFileError",
           "vectors_from_hardware", "random_vectors"]

SCHEMA = {
    "w": (np.int8, 2), "mant": (np.int8, 2), "shift": (np.uint8, 2), "theta": (np.int64, 2),
    "phi": (np.int64, 2), "exponent": (np.int64, 1), "frac_bits": (None, 0), "out_bits": (None, 0),
    "acc": (np.int64, 2), "expected": (np.int64, 2), "meta": (None, 0),
}
OPTIONAL = {"meta", "exponent"}   # a third-party file without them: see load_vectors


class VectorFileError(ValueError):
    """A vector file breaks the contract; the message says which array and how."""


@dataclass
class LayerVectors:
    w: np.ndarray
    mant: np.ndarray
    shift: np.ndarray
    theta: np.ndarray      # [R, N] constants
    phi: np.ndarray        # [R, N]
    exponent: np.ndarray   # [M]
    frac_bits: int
    out_bits: int
    acc: np.ndarray
    expected: np.ndarray
    meta: dict

    def token_thresholds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(Θ [M, N], Φ [M, N], s [M, 1])``: what each token fires against (row ``d mod R``, shift ``⌊d/R⌋``)."""
        return thresholds_for_tokens(self.theta, self.phi, self.exponent)

    def golden_counts(self) -> np.ndarray:
        """The fire formula on this file's own accumulators and thresholds."""
        theta, phi, scale = self.token_thresholds()
        return fire_count(self.acc, theta, phi, self.frac_bits, self.out_bits, scale)

    @property
    def config(self) -> SpikeConfig:
        return SpikeConfig.from_dict(self.meta["config"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(M tokens, K inputs, N outputs)."""
        return self.mant.shape[0], self.mant.shape[1], self.w.shape[0]


def save_vectors(path: str | Path, v: LayerVectors) -> Path:
    """Write ``v``; returns the path numpy actually wrote (it appends ``.npz`` when missing)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()   # written whole or not at all (workdirs.write_atomic): never a truncated archive
    np.savez_compressed(buffer, w=v.w.astype(np.int8), mant=v.mant.astype(np.int8),
                        shift=v.shift.astype(np.uint8), theta=v.theta.astype(np.int64),
                        phi=v.phi.astype(np.int64), exponent=np.asarray(v.exponent, dtype=np.int64),
                        frac_bits=np.int64(v.frac_bits),
                        out_bits=np.int64(v.out_bits), acc=v.acc.astype(np.int64),
                        expected=v.expected.astype(np.int64), meta=np.array(json.dumps(v.meta)))
    workdirs.write_atomic(path, buffer.getvalue())
    return path


def load_vectors(path: str | Path, config: dict | None = None) -> LayerVectors:
    """Load and validate a vector file: names, dtypes, shapes, ranges, and the golden formulas.

    A file whose ``meta`` carries no spikeacc ``config`` (written by another
    quantizer, or with no ``meta`` at all) is accepted: its configuration is
    derived from the arrays (see :func:`derive_config`), with ``config`` (a
    dict of SpikeConfig fields) for what the arrays cannot say. A file that
    carries its own configuration refuses a second one.
    """
    path = Path(path)
    if path.is_dir():
        raise VectorFileError(f"vector file {path} is a directory")
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} does not exist")
    try:
        f = np.load(path, allow_pickle=False)
    except Exception:
        raise VectorFileError(f"{path} is not a .npz archive (write one with numpy.savez)") from None
    if not hasattr(f, "files"):
        raise VectorFileError(f"{path} holds a single array, not a .npz archive of named arrays")
    with f:
        missing = sorted(set(SCHEMA) - OPTIONAL - set(f.files))
        if missing:
            raise VectorFileError(f"{path}: missing array(s) {missing}")
        arrays = {}
        for name, (dtype, ndim) in SCHEMA.items():
            if name not in f.files:
                continue
            try:
                a = f[name]
            except Exception as exc:
                raise VectorFileError(f"{path}: array '{name}' cannot be read without pickle "
                                      f"(store plain numbers or a JSON string): {exc}") from None
            if a.ndim != ndim:
                raise VectorFileError(f"{path}: '{name}' must have {ndim} dimensions, has shape {a.shape}")
            if dtype is not None and a.dtype != dtype:
                raise VectorFileError(f"{path}: '{name}' must be {np.dtype(dtype).name}, is {a.dtype}")
            arrays[name] = a
    try:
        meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
        if not isinstance(meta, dict):
            raise ValueError(f"it is a JSON {type(meta).__name__}, not an object")
    except ValueError as exc:
        raise VectorFileError(f"{path}: 'meta' must be a JSON object: {exc}") from None
    for name in ("frac_bits", "out_bits"):
        if arrays[name].dtype.kind not in "iu":
            raise VectorFileError(f"{path}: '{name}' must be an integer, is {arrays[name].dtype}")
    if arrays["mant"].shape[0] == 0:
        raise VectorFileError(f"{path}: no tokens ('mant' has shape {arrays['mant'].shape}); a regression of "
                              f"nothing proves nothing")
    if "exponent" not in arrays:
        arrays.update(_constant_thresholds(path, arrays["theta"], arrays["phi"], arrays["mant"].shape[0]))
    v = LayerVectors(meta=meta, frac_bits=int(arrays.pop("frac_bits")), out_bits=int(arrays.pop("out_bits")),
                     **arrays)
    try:
        if "config" in meta:
            if config is not None:
                raise VectorFileError(f"{path} carries its own spikeacc config; --config/--preset apply to "
                                      f"files without one (from another quantizer)")
            cfg = SpikeConfig.from_dict(meta["config"])
        else:
            try:
                cfg = derive_config(v, config)
            except VectorFileError:
                raise
            except (ValueError, TypeError) as exc:   # the arrays, not a 'meta' the file does not have
                raise VectorFileError(
                    f"{path}: no tile holds these arrays: {exc} (for a file without a spikeacc config the fields "
                    f"come from the arrays: w_bits from 'w', a_bits from 'mant', e_max from 'shift', "
                    f"frac_bits and out_bits from theirs, K, N, M from the shapes; --config gives the rest)") from None
            v.meta = {**meta, "config": cfg.to_dict(), "config_source": "derived from the arrays"}
    except VectorFileError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise VectorFileError(f"{path}: 'meta' must hold a valid 'config': {exc}") from None
    _validate(path, v, cfg)
    return v


def _constant_thresholds(path, theta: np.ndarray, phi: np.ndarray, tokens: int) -> dict:
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


def derive_config(v: LayerVectors, fields: dict | None = None) -> SpikeConfig:
    """The narrowest configuration that holds a third-party file's arrays.

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


def _first_difference(a: np.ndarray, b: np.ndarray) -> str | None:
    bad = np.argwhere(a != b)
    if not len(bad):
        return None
    idx = tuple(int(i) for i in bad[0])
    return f"at {idx}: file has {int(a[idx])}, the formula gives {int(b[idx])} ({len(bad)} such values)"


def _validate(path, v: LayerVectors, cfg: SpikeConfig) -> None:
    m, k = v.mant.shape
    n = v.w.shape[0]
    rows = cfg.threshold_grid
    checks = [
        (v.w.shape[1] == k, f"'w' has K = {v.w.shape[1]} but 'mant' has K = {k}"),
        (v.shift.shape == (m, k), f"'shift' has shape {v.shift.shape}, expected {(m, k)}"),
        *[(getattr(v, a).shape == (rows, n),
           f"'{a}' has shape {getattr(v, a).shape}, expected {(rows, n)} ({rows} constant(s) per neuron for "
           f"input_step {cfg.input_step!r})") for a in ("theta", "phi")],
        (v.exponent.shape == (m,), f"'exponent' has shape {v.exponent.shape}, expected {(m,)} (one per token)"),
        *[(getattr(v, a).shape == (m, n), f"'{a}' has shape {getattr(v, a).shape}, expected {(m, n)}")
          for a in ("acc", "expected")],
        ((k, n) == (cfg.in_features, cfg.out_features),
         f"config is for K = {cfg.in_features}, N = {cfg.out_features} but the arrays are K = {k}, N = {n}"),
        (m <= cfg.max_tokens, f"{m} tokens exceed the config's max_tokens = {cfg.max_tokens}"),
        (v.frac_bits == cfg.frac_bits, f"frac_bits {v.frac_bits} differs from the config's {cfg.frac_bits}"),
        (v.out_bits == cfg.out_bits, f"out_bits {v.out_bits} differs from the config's {cfg.out_bits}"),
    ]
    for ok, message in checks:
        if not ok:
            raise VectorFileError(f"{path}: {message}")
    try:
        check_codes(cfg, v.w, v.mant, v.shift)
    except ValueError as exc:
        raise VectorFileError(f"{path}: {exc}") from None
    ranges = [("theta", v.theta, 1, cfg.theta_max), ("phi", v.phi, -cfg.phi_bound, cfg.phi_bound),
              ("exponent", v.exponent, cfg.exponent_min, cfg.exponent_max),
              ("acc", v.acc, -cfg.acc_bound, cfg.acc_bound), ("expected", v.expected, 0, cfg.max_count)]
    for name, a, lo, hi in ranges:
        bad = np.argwhere((a < lo) | (a > hi))
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            raise VectorFileError(f"{path}: '{name}' value {int(a[idx])} at {idx} is outside {lo}..{hi} "
                                  f"({len(bad)} such values)")
    # the file's own answers must follow from its inputs (SPEC §2, §3): cheap, and catches stale arrays
    diff = _first_difference(v.acc, accumulate(v.w, v.mant, v.shift))
    if diff:
        raise VectorFileError(f"{path}: 'acc' is not Σ w·mant·2^shift {diff}")
    diff = _first_difference(v.expected, v.golden_counts())
    if diff:
        raise VectorFileError(f"{path}: 'expected' is not clamp(floor((⌊2^F·acc/2^s⌋ + Φ)/Θ)) {diff}; "
                              f"regress such a file with the golden counts, or fix the exporter")


def _pick_positions(available: int, tokens: int) -> list[int]:
    if tokens > available:
        raise ValueError(f"asked for {tokens} tokens but only {available} are available")
    return [int(i) for i in np.linspace(0, available - 1, tokens).round()]


def _synthetic_inputs(layer_name: str, tokens: int, seed: int):
    """Inputs of one projection of the synthetic Llama-2-7B layer, through its norms and MLP."""
    import torch

    from spikeacc.golden.model import synthetic_activations, synthetic_llama2_layer

    layer, cfg = synthetic_llama2_layer(seed)
    part = layer_name.split(".")[-1]
    modules = {"q_proj": layer.self_attn.q_proj, "k_proj": layer.self_attn.k_proj,
               "v_proj": layer.self_attn.v_proj, "o_proj": layer.self_attn.o_proj,
               "gate_proj": layer.mlp.gate_proj, "up_proj": layer.mlp.up_proj, "down_proj": layer.mlp.down_proj}
    if part not in modules:
        raise ValueError(f"--llama2-shape takes a projection name ending in one of {sorted(modules)}")

    def inputs(n, s):
        hidden = synthetic_activations(n, cfg.hidden_size, seed=s)
        with torch.no_grad():
            if part in ("q_proj", "k_proj", "v_proj", "o_proj"):
                return layer.input_layernorm(hidden)
            normed = layer.post_attention_layernorm(hidden)
            if part == "down_proj":
                return layer.mlp.act_fn(layer.mlp.gate_proj(normed)) * layer.mlp.up_proj(normed)
            return normed

    return modules[part], inputs(tokens, seed + 1), inputs(64, seed + 2)


def export_vectors(*, layer: str, tokens: int, out: str | Path, model: str | None = None,
                   llama2_shape: bool = False, seed: int = 0, base: SpikeConfig | None = None,
                   out_policy: str = "channel", out_bits: int | None = None) -> Path:
    """Quantize one layer on real (or synthetic 7B-shaped) activations and write its vectors.

    See :func:`export_layers`; ``llama2_shape`` takes a projection of the
    seeded synthetic Llama-2-7B decoder layer instead of the model's.
    """
    if not llama2_shape:
        return export_layers(layers=[layer], tokens=tokens, outs=[out], model=model, base=base,
                             out_policy=out_policy, out_bits=out_bits)[0]
    _check_export_args(tokens, out_policy)
    linear, x, calib_x = _synthetic_inputs(layer, tokens, seed)
    source = f"synthetic Llama-2-7B decoder layer (seed {seed})"
    return _export_one(layer, linear, x, [calib_x], list(range(tokens)), source, out,
                       _export_base(base, out_bits), out_policy)


def export_layers(*, layers: list[str], tokens: int, outs: list, model: str | None = None,
                  base: SpikeConfig | None = None, out_policy: str = "channel",
                  out_bits: int | None = None) -> list[Path]:
    """Quantize several projections of one model on real activations; one model load, one pass.

    Each layer is calibrated alone on the calibration tokens (its inputs taken
    from the float network), then run through
    :meth:`SpikeQuantLinear.hardware_forward`, the same path the
    hardware-faithful perplexity uses: the file's ``expected`` is what that
    model feeds the rest of the network, including its per-projection choices
    (:data:`~spikeacc.golden.network.HARDWARE_OVERRIDES`). The configuration
    ``base`` (default: the ``smollm2`` preset) says the arithmetic, the input
    steps included (default: per-token steps on the grid 2^(−j/4), so each
    neuron holds 4 threshold constants and a token's exponent picks one and a
    scale shift); ``out_policy`` the output ranges (default per channel).
    """
    from spikeacc.golden.network import gptq_codes, layer_inputs
    from spikeacc.golden.perplexity import default_text, token_splits
    from spikeacc.golden.spiking_linear import QuantSpec
    from spikeacc.golden.stream import streamed_model

    _check_export_args(tokens, out_policy)
    base = _export_base(base, out_bits)
    net = streamed_model(model)
    source = net.name
    calib_windows, eval_windows = token_splits(net.tokenizer, default_text(), 512)
    inputs = layer_inputs(net, layers, [eval_windows[:1], calib_windows])
    evaluated = {name: (linear, sets[0]) for name, (linear, sets) in inputs.items()}
    calibration = {name: (linear, sets[1]) for name, (linear, sets) in inputs.items()}
    # GPTQ codes of the blocks up to the highest named (cached per block); the layer's inputs stay the float network's
    top = max(int(name.split(".")[2]) for name in layers)
    codes = gptq_codes(net, QuantSpec.from_config(base), calib_windows, top)
    paths = []
    for layer, out in zip(layers, outs, strict=True):
        linear, (xs,) = evaluated[layer]
        positions = _pick_positions(xs.shape[0], tokens)
        paths.append(_export_one(layer, linear, xs[positions], calibration[layer][1], positions, source, out,
                                 base, out_policy, codes.get(layer)))
    return paths


def _check_export_args(tokens, out_policy) -> None:
    from spikeacc.golden.output_quant import check_policy

    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"--tokens must be a positive integer, got {tokens!r}")
    if check_policy(out_policy) == "oracle":
        raise ValueError("--out-policy oracle takes each token's output range from the output itself, which no "
                         "tile can know before it fires: it is a golden-only bound (spikeacc ppl), not exported")


def _export_base(base, out_bits) -> SpikeConfig:
    from spikeacc.config import check_out_bits

    base = base or PRESETS["smollm2"]
    return base if out_bits is None else base.replace(out_bits=check_out_bits(out_bits))


def _export_one(layer, linear, x, calib, positions, source, out, base, out_policy, codes=None) -> Path:
    import torch

    from spikeacc.golden.network import HARDWARE_OVERRIDES
    from spikeacc.golden.spiking_linear import QuantSpec, SpikeQuantLinear

    if linear.bias is not None:
        raise ValueError(f"{layer} has a bias; the vector contract covers bias-free Llama projections")
    n_out, k_in = linear.weight.shape
    cfg = base.replace(max_tokens=max(len(positions), 1)).for_layer(k_in, n_out)
    projection = ".".join(layer.split(".")[-2:])
    spec = QuantSpec.from_config(cfg, out_policy=out_policy).replace(**HARDWARE_OVERRIDES.get(projection, {}))
    if codes is None:   # a layer outside the network GPTQ saw (the synthetic 7B layer): round to nearest
        spec = spec.replace(weights="rtn")
    q = SpikeQuantLinear(linear, spec, codes)
    q.calibrate_on(calib)
    with torch.no_grad():
        hw = q.hardware_forward(x)
    meta = {"model": source, "layer": layer, "token_positions": positions, "input_step": cfg.input_step,
            "out_policy": out_policy, "out_floor": spec.out_floor, "pow2_j0": q.out_quant.j0,
            "reference_exponent": q.out_quant.reference_exponent, "weights": spec.weights}
    path = save_vectors(out, vectors_from_hardware(cfg, q, hw, meta))
    load_vectors(path)  # what we write must pass our own contract
    return path


def vectors_from_hardware(cfg: SpikeConfig, q, hw, meta: dict) -> LayerVectors:
    """The contract arrays of one :class:`~spikeacc.golden.spiking_linear.HardwareResult`."""
    held = hw.thresholds
    theta, phi, exponent = held.theta.numpy().copy(), held.phi.numpy().copy(), held.exponent.numpy().copy()
    if theta.shape[0] != cfg.threshold_grid:
        raise ValueError(f"these thresholds have {theta.shape[0]} rows per neuron, the tile holds "
                         f"{cfg.threshold_grid} (input_step {cfg.input_step!r}): a per-token threshold is a "
                         f"golden-only evaluation")
    if theta.max() > cfg.theta_max:
        raise ValueError(f"threshold Θ = {int(theta.max())} exceeds {cfg.theta_bits} bits: lower frac_bits")
    acc = hw.acc.numpy()
    w = q.w_code.numpy()
    mant, shift = hw.act.mantissa.numpy(), hw.act.shift.numpy()
    if not np.array_equal(acc, accumulate(w, mant, shift)):
        raise AssertionError("torch and numpy accumulators disagree")  # golden self-check, never a user error
    x_step = hw.act.step.double().numpy()
    meta = {**meta, "config": cfg.to_dict(), "salient_ratio": float(hw.act.salient.float().mean()),
            "zero_ratio": float((hw.act.mantissa == 0).float().mean()),
            "scales": {"w_scale": q.w_scale.double().numpy().tolist(), "x_step": np.ravel(x_step).tolist(),
                       "out_step": np.ravel(hw.out_step.numpy()).tolist(),
                       "out_zero": np.ravel(hw.out_zero.numpy()).tolist()}}
    v = LayerVectors(w=w.astype(np.int8), mant=mant.astype(np.int8), shift=shift.astype(np.uint8),
                     theta=theta, phi=phi, exponent=exponent, frac_bits=cfg.frac_bits, out_bits=cfg.out_bits,
                     acc=acc, expected=np.zeros_like(acc), meta=meta)
    v.expected = v.golden_counts()
    if not np.array_equal(v.expected, hw.counts.numpy()):
        raise AssertionError("torch and numpy fire counts disagree")
    return v


def _range_thresholds(cfg: SpikeConfig, acc: np.ndarray) -> dict:
    """Constants [R, N] and exponents [M] that spread each token's accumulators over the output range.

    The per-token output step Δ/(s_w·s_x) a token needs is its accumulator
    spread over 2^b_out − 1; the tile offers the steps ``ref·2^(d/R)``, so each
    token takes the smallest that covers it (d = R·s + r, clamped to the
    configuration's range; static steps: one step for all tokens). Neurons get
    slightly different constants and the zero point sits mid-range.
    """
    import torch

    from spikeacc.golden.output_quant import threshold_pair

    rows, n = cfg.threshold_grid, acc.shape[1]
    spread = np.maximum(acc.max(axis=1) - acc.min(axis=1), 1).astype(np.float64)
    need = spread / cfg.max_count                                    # Δ/(s_w·s_x) per token
    if cfg.input_step == "static":
        ref, exponent = float(need.max()), np.zeros(len(need), dtype=np.int64)
    else:
        ref = float(np.median(need))
        exponent = np.clip(np.ceil(rows * np.log2(need / ref) - 1e-9), cfg.exponent_min,
                           min(cfg.exponent_max, rows * cfg.frac_bits)).astype(np.int64)
    jitter = 1 + 0.05 * (np.arange(n) % 7) / 7                      # per-neuron constants differ a little
    ratio = ref * np.power(2.0, np.arange(rows) / rows)[:, None] * jitter[None, :]
    zero = np.full((1, n), float(cfg.max_count // 2))
    theta, phi = threshold_pair(torch.from_numpy(ratio), torch.from_numpy(zero), cfg.frac_bits)
    return {"theta": theta.numpy(), "phi": phi.numpy(), "exponent": exponent}


def crop_vectors(v: LayerVectors, cfg: SpikeConfig) -> LayerVectors:
    """The first K inputs and N outputs of a real layer, for a tile of ``cfg``'s shape.

    Weights, mantissas and shifts are the real layer's (its zero and salient
    statistics carry over); the thresholds are recomputed over the cropped
    layer's own per-token range, so the counts use the whole output range, and
    ``acc``/``expected`` come from the golden formula. Gate-level simulation of
    a full 576 × 576 layer is out of reach on a small machine; this is what
    ``spikeacc power`` measures by default.
    """
    m, k, n = v.shape
    if cfg.in_features > k or cfg.out_features > n:
        raise ValueError(f"cannot crop a {k}×{n} layer to {cfg.in_features}×{cfg.out_features}")
    w = v.w[:cfg.out_features, :cfg.in_features]
    mant, shift = v.mant[:, :cfg.in_features], v.shift[:, :cfg.in_features]
    check_codes(cfg, w, mant, shift)
    acc = accumulate(w, mant, shift)
    meta = {**v.meta, "layer": f"{v.meta.get('layer')} [:{cfg.out_features}, :{cfg.in_features}]",
            "cropped_from": [k, n], "thresholds": "recomputed over the cropped layer's per-token range",
            "config": cfg.replace(max_tokens=max(cfg.max_tokens, m)).to_dict()}
    return _with_counts(LayerVectors(w=w.copy(), mant=mant.copy(), shift=shift.copy(), **_range_thresholds(cfg, acc),
                                     frac_bits=cfg.frac_bits, out_bits=cfg.out_bits, acc=acc,
                                     expected=np.zeros_like(acc), meta=meta))


def random_vectors(cfg: SpikeConfig, tokens: int, seed: int = 0, zero_fraction: float = 0.22,
                   salient_fraction: float = 0.025) -> LayerVectors:
    """Seeded random layer vectors in the contract, with SmolLM2-like zero and salient ratios.

    In Kirin mode the salient elements are integer outliers up to ±(2^(B−1) − 1).
    """
    rng = np.random.default_rng(seed)
    k, n = cfg.in_features, cfg.out_features
    w = rng.integers(-cfg.weight_max, cfg.weight_max + 1, size=(n, k))
    mant = rng.integers(-cfg.spike_max, cfg.spike_max + 1, size=(tokens, k))
    mant[rng.random((tokens, k)) < zero_fraction] = 0
    salient = rng.random((tokens, k)) < salient_fraction
    shift = np.where(salient, rng.integers(1, cfg.shift_max + 1, size=(tokens, k)) if cfg.shift_max else 0, 0)
    if cfg.kirin:  # salient values as integer outliers (most too large to spike), with their shifts
        mant = np.where(salient, rng.integers(-cfg.outlier_max, cfg.outlier_max + 1, size=(tokens, k)), mant)
    acc = accumulate(w, mant, shift)
    meta = {"model": f"random (seed {seed})", "layer": "random", "token_positions": list(range(tokens)),
            "input_step": cfg.input_step, "config": cfg.replace(max_tokens=max(cfg.max_tokens, tokens)).to_dict()}
    return _with_counts(LayerVectors(w=w.astype(np.int8), mant=mant.astype(np.int8), shift=shift.astype(np.uint8),
                                     **_range_thresholds(cfg, acc), frac_bits=cfg.frac_bits, out_bits=cfg.out_bits,
                                     acc=acc, expected=np.zeros_like(acc), meta=meta))


def _with_counts(v: LayerVectors) -> LayerVectors:
    v.expected = v.golden_counts()
    return v
