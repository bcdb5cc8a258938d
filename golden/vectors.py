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
derived from the arrays (:func:`~spikeacc.golden.third_party.derive_config`); such a file may leave out
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
from spikeacc.config import SpikeConfig
from spikeacc.errors import VectorFileError
from spikeacc.golden.integer import accumulate, check_codes, fire_count, thresholds_for_tokens

__all__ = ["LayerVectors", "load_vectors", "save_vectors", "VectorFileError"]

SCHEMA = {
    "w": (np.int8, 2), "mant": (np.int8, 2), "shift": (np.uint8, 2), "theta": (np.int64, 2),
    "phi": (np.int64, 2), "exponent": (np.int64, 1), "frac_bits": (None, 0), "out_bits": (None, 0),
    "acc": (np.int64, 2), "expected": (np.int64, 2), "meta": (None, 0),
}
OPTIONAL = {"meta", "exponent"}   # a third-party file without them: see load_vectors


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
    derived from the arrays (see :func:`~spikeacc.golden.third_party.derive_config`), with ``config`` (a
    dict of SpikeConfig fields) for what the arrays cannot say. A file that
    carries its own configuration refuses a second one.
    """
    from spikeacc.golden.third_party import constant_thresholds, derive_config

    path = workdirs.input_file(path, "vector file")
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
        arrays.update(constant_thresholds(path, arrays["theta"], arrays["phi"], arrays["mant"].shape[0]))
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
