"""Neuron-evaluation cases for the PE regression: seeded random plus named corners.

Each case is one neuron: K' ≤ K synapses (weight code, mantissa, shift), a
threshold Θ, a start potential Φ and the token's scale shift s. The expected spike count comes from the
golden model (:mod:`spikeacc.golden.integer`); nothing here re-derives it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from spikeacc import workdirs
from spikeacc.config import SpikeConfig
from spikeacc.golden.integer import accumulate, check_codes, fire_count, is_outlier, silence_fire, simulate_ttfs
from spikeacc.golden.output_quant import threshold_pair

__all__ = ["PECases", "make_cases", "schedule", "silence_steps"]


@dataclass
class PECases:
    """Cases padded to K inputs: ``w``, ``mant``, ``shift`` [C, K]; ``theta``, ``phi``, ``scale``, ``expected`` [C]."""

    w: np.ndarray
    mant: np.ndarray
    shift: np.ndarray
    theta: np.ndarray
    phi: np.ndarray
    scale: np.ndarray
    expected: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.expected)

    def save(self, path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, w=self.w, mant=self.mant, shift=self.shift, theta=self.theta, phi=self.phi,
                 scale=self.scale, expected=self.expected, names=np.array(self.names))
        workdirs.write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> "PECases":
        with np.load(path) as f:
            return cls(f["w"], f["mant"], f["shift"], f["theta"], f["phi"], f["scale"], f["expected"],
                       [str(n) for n in f["names"]])


def _expected(cfg: SpikeConfig, w, mant, shift, theta, phi, scale) -> np.ndarray:
    """Per-case golden counts; the time-stepped simulation must agree with the closed form."""
    check_codes(cfg, w, mant, shift)
    acc = np.einsum("ck,ck->c", w.astype(np.int64), mant.astype(np.int64) << shift.astype(np.int64))
    counts = fire_count(acc, theta, phi, cfg.frac_bits, cfg.out_bits, scale)
    for c in range(len(acc)):  # the two golden formulations agree, case by case
        integral, stepped = simulate_ttfs(cfg, w[c:c + 1], mant[c:c + 1], shift[c:c + 1],
                                          theta[c:c + 1, None], phi[c:c + 1, None], scale[c])
        assert integral[0, 0] == accumulate(w[c:c + 1], mant[c:c + 1], shift[c:c + 1])[0, 0] == acc[c]
        assert stepped[0, 0] == counts[c]
    return counts


def _threshold_for(acc: np.ndarray, cfg: SpikeConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Θ and Φ that spread the counts over 0..max, as the golden quantizer would."""
    span = np.maximum(np.abs(acc), 1).astype(np.float64)
    steps = rng.uniform(0.5, 1.5, size=acc.shape) * span / rng.integers(1, cfg.max_count + 3, size=acc.shape)
    steps = np.maximum(steps, 2.0 ** -cfg.frac_bits)  # Θ ≥ 1
    zero_point = rng.integers(0, cfg.max_count + 1, size=acc.shape)
    theta, phi = (t.numpy() for t in threshold_pair(torch.from_numpy(steps), torch.from_numpy(zero_point),
                                                    cfg.frac_bits))
    return np.clip(theta, 1, cfg.theta_max), np.clip(phi, -cfg.phi_bound, cfg.phi_bound)


def make_cases(cfg: SpikeConfig, n_random: int = 2000, seed: int = 0) -> PECases:
    """Corners first (named), then ``n_random`` seeded random neurons."""
    rng = np.random.default_rng(seed)
    k, wmax, mmax, emax = cfg.in_features, cfg.weight_max, cfg.mantissa_max, cfg.shift_max
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, int, int, int]] = []
    one = 1 << cfg.frac_bits

    def add(name, w, mant, shift, theta=one, phi=one // 2, scale=0):
        rows.append((name, np.asarray(w), np.asarray(mant), np.asarray(shift), int(theta), int(phi), int(scale)))

    zeros = np.zeros(k, dtype=np.int64)
    full = np.full(k, 1, dtype=np.int64)
    add("all-zero input", rng.integers(-wmax, wmax + 1, k), zeros, zeros)
    add("all-zero weights", zeros, rng.integers(-mmax, mmax + 1, k), zeros)
    big = cfg.acc_bound << cfg.frac_bits
    theta_big = max(1, min(cfg.theta_max, big // (cfg.max_count + 1)))
    add("all max positive, largest K", full * wmax, full * mmax, full * emax, theta_big, 0)
    add("all max negative weight", -full * wmax, full * mmax, full * emax, theta_big, 0)
    add("all max negative mantissa", full * wmax, -full * mmax, full * emax, theta_big, 0)
    add("saturation at max count", full * wmax, full * mmax, zeros, 1, 0)
    add("theta = 1, phi = 0", rng.integers(-2, 3, k), rng.integers(-1, 2, k), zeros, 1, 0)
    add("negative potential fires nothing", -full * wmax, full * mmax, zeros, one, one // 2)
    # one synapse w·m right on (and one above) the threshold; w and m within this configuration's widths
    w1, m1 = min(3, wmax), min(5, cfg.spike_max)
    first = np.eye(1, k, 0, dtype=np.int64)[0]
    add("exactly on threshold", first * w1, first * m1, zeros, w1 * m1 * one, 0)
    add("one below threshold", first * w1, first * m1, zeros, w1 * m1 * one + 1, 0)
    for e in range(emax + 1):
        w = rng.integers(-wmax, wmax + 1, k)
        mant = rng.integers(-mmax, mmax + 1, k)
        acc = int((w * (mant << e)).sum())
        add(f"every element shift {e}", w, mant, np.full(k, e), max(1, abs(acc) * one // 8), one * 3)
    # the token's scale shift at its extremes and around F, where the membrane shift turns from left to right
    lo, hi = cfg.scale_shift_min, cfg.scale_shift_max
    for s in sorted({lo, -1, 1, cfg.frac_bits, cfg.frac_bits + 1, hi} & set(range(lo, hi + 1)) - {0}):
        w = rng.integers(-wmax, wmax + 1, k)
        mant = rng.integers(-mmax, mmax + 1, k)
        acc = int((w * mant).sum())
        theta = max(1, min(cfg.theta_max, (abs(acc) * one >> max(s, 0)) // 40 + 1))
        add(f"scale shift {s}", w, mant, zeros, theta, theta * 20, s)
    top = cfg.spike_max   # same |m| pairs: same step, both polarities, up to this configuration's largest spike
    mixed = np.resize(np.array([max(top // 2, 1), -max(top // 2, 1), max(top // 4, 1), -max(top // 4, 1), top, -top,
                                1, -1]), k)
    add("mixed polarities in one step", rng.integers(-wmax, wmax + 1, k), mixed, zeros, one * 20, one * 7)

    w = rng.integers(-wmax, wmax + 1, size=(n_random, k))
    mant = rng.integers(-cfg.spike_max, cfg.spike_max + 1, size=(n_random, k))
    mant[rng.random((n_random, k)) < 0.25] = 0                      # zero codes, as measured on SmolLM2
    salient = rng.random((n_random, k)) < 0.05
    shift = np.where(salient, rng.integers(0, emax + 1, size=(n_random, k)), 0)
    if cfg.kirin:                                                   # salient values as integer outliers
        mant = np.where(salient, rng.integers(-mmax, mmax + 1, size=(n_random, k)), mant)
    active = rng.integers(1, k + 1, size=n_random)                  # K' ≤ K synapses used
    unused = np.arange(k)[None, :] >= active[:, None]
    w[unused] = 0
    mant[unused] = 0
    shift[unused] = 0
    acc = np.einsum("ck,ck->c", w, mant << shift)
    # most tokens near the calibrated step, some at other scales (the threshold follows the scale)
    scale = np.where(rng.random(n_random) < 0.3, rng.integers(cfg.scale_shift_min, min(cfg.scale_shift_max, 4) + 1,
                                                              size=n_random), 0)
    theta, phi = _threshold_for(acc >> np.maximum(scale, 0) << np.maximum(-scale, 0), cfg, rng)

    names = [r[0] for r in rows] + [f"random {i}" for i in range(n_random)]
    W = np.concatenate([np.stack([r[1] for r in rows]), w]).astype(np.int8)
    M = np.concatenate([np.stack([r[2] for r in rows]), mant]).astype(np.int8)
    S = np.concatenate([np.stack([r[3] for r in rows]), shift]).astype(np.uint8)
    TH = np.concatenate([[r[4] for r in rows], theta]).astype(np.int64)
    PH = np.concatenate([[r[5] for r in rows], phi]).astype(np.int64)
    SC = np.concatenate([[r[6] for r in rows], scale]).astype(np.int64)
    if (TH < 1).any() or (TH > cfg.theta_max).any():
        raise ValueError("generated Θ outside 1..theta_max")
    return PECases(W, M, S, TH, PH, SC, _expected(cfg, W, M, S, TH, PH, SC), names)


def schedule(cfg: SpikeConfig, mant: np.ndarray, shift: np.ndarray):
    """TTFS schedule of one token as cycles: ``[(step_closes, [(k, negative, shift), ...]), ...]``.

    Spikes of step t (elements with ``T − |m| = t``) are spread over as few
    cycles as the lanes allow; the last cycle of each step closes it. Zero
    mantissas emit nothing. A step without spikes still takes one cycle. A
    Kirin outlier q joins the last step as one spike per set bit j of |q|,
    with shift ``e + j``.
    """
    mag = np.abs(mant.astype(np.int64))
    outlier = is_outlier(cfg, mant)
    cycles = []
    for t in range(cfg.window):
        ks = np.flatnonzero((mag == cfg.window - t) & ~outlier)
        events = [(int(k), bool(mant[k] < 0), int(shift[k])) for k in ks]
        if t == cfg.window - 1:
            events += [(int(k), bool(mant[k] < 0), int(shift[k]) + j)
                       for j in range(cfg.outlier_planes) for k in np.flatnonzero(outlier & ((mag >> j) & 1 == 1))]
        chunks = [events[i:i + cfg.lanes] for i in range(0, len(events), cfg.lanes)] or [[]]
        for i, chunk in enumerate(chunks):
            cycles.append((i == len(chunks) - 1, chunk))
    return cycles


def silence_steps(cfg: SpikeConfig, cases: PECases) -> np.ndarray:
    """Each case's ``fire_step`` port value by the golden silence neuron (0: it stays silent)."""
    acc = np.einsum("ck,ck->c", cases.w.astype(np.int64), cases.mant.astype(np.int64) << cases.shift.astype(np.int64))
    step, _ = silence_fire(acc, cases.theta, cases.phi, cfg.frac_bits, cfg.out_bits, cases.scale)
    return np.where(step < 0, 0, step)
