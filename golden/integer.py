"""Integer side of SpikeQuant: the bit-exact reference the RTL must match (SPEC §3).

Two independent formulations that must agree:

* :func:`accumulate` + :func:`fire_count` — the closed form
  ``n = clamp(floor(V/Θ), 0, 2^b_out − 1)`` with ``acc = Σ w·m·2^e`` and the
  potential ``V = ⌊2^F·acc / 2^s⌋ + Φ`` (:func:`fire_potential`; s is the token's
  scale shift, 0 for static steps);
* :func:`simulate_ttfs` — a time-stepped TTFS + integrate-and-fire simulation
  (current ramp, membrane, reset-by-subtraction firing), the algorithm the PE runs.

Plain numpy integer code, vectorized over tokens M and neurons N; no torch and no
hardware imports, so every other package can use it as the scoreboard.
"""

from __future__ import annotations

import numpy as np

from spikeacc.config import SpikeConfig, code_max

__all__ = ["accumulate", "fire_potential", "thresholds_for_tokens", "fire_count", "simulate_ttfs", "spike_times", "check_codes", "silence_fire", "is_outlier"]


def check_codes(cfg: SpikeConfig, w: np.ndarray, mant: np.ndarray, shift: np.ndarray) -> None:
    """Refuse codes wider than the configuration declares (SPEC §5)."""
    if w.ndim != 2 or mant.ndim != 2 or shift.shape != mant.shape:
        raise ValueError(f"expected w [N, K], mant and shift [M, K]; got w {w.shape}, "
                         f"mant {mant.shape}, shift {shift.shape}")
    if w.shape[1] != mant.shape[1]:
        raise ValueError(f"w has K = {w.shape[1]} inputs but mant has K = {mant.shape[1]}")
    if w.size and np.abs(w.astype(np.int64)).max() > cfg.weight_max:
        idx = np.unravel_index(np.abs(w.astype(np.int64)).argmax(), w.shape)
        raise ValueError(f"weight code {int(w[idx])} at {tuple(map(int, idx))} exceeds "
                         f"±{cfg.weight_max} (w_bits = {cfg.w_bits})")
    if mant.size and np.abs(mant.astype(np.int64)).max() > cfg.mantissa_max:
        idx = np.unravel_index(np.abs(mant.astype(np.int64)).argmax(), mant.shape)
        width = f"outlier_bits = {cfg.outlier_bits}" if cfg.kirin else f"a_bits = {cfg.a_bits}"
        raise ValueError(f"mantissa {int(mant[idx])} at {tuple(map(int, idx))} exceeds "
                         f"±{cfg.mantissa_max} ({width})")
    if shift.size and (shift.astype(np.int64).min() < 0 or shift.astype(np.int64).max() > cfg.shift_max):
        bad = (shift.astype(np.int64) < 0) | (shift.astype(np.int64) > cfg.shift_max)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"shift {int(shift[idx])} at {idx} is outside 0..{cfg.shift_max} "
                         f"(e_max = {cfg.e_max}, salient = {cfg.salient})")
    if cfg.salient_cap is not None:
        per_token = ((shift > 0) | is_outlier(cfg, mant)).sum(axis=1)
        if per_token.size and per_token.max() > cfg.salient_cap:
            raise ValueError(f"token {int(per_token.argmax())} has {int(per_token.max())} shifted "
                             f"(salient) or outlier elements, more than salient_cap = {cfg.salient_cap}")


def is_outlier(cfg: SpikeConfig, mant: np.ndarray) -> np.ndarray:
    """Elements the Kirin integer path takes: ``|mant| > 2^b_a − 1`` (none in SpikeQuant mode).

    A salient value small enough to spike spikes (with its shift): the sum is
    the same and a spike is cheaper than the outlier's bit planes.
    """
    return np.abs(mant.astype(np.int64)) > cfg.spike_max


def accumulate(w: np.ndarray, mant: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``acc[m, n] = Σ_k w[n, k]·mant[m, k]·2^shift[m, k]`` exactly, as int64.

    Uses a float64 matmul (BLAS speed) only where every partial sum is below
    2^53, which makes it exact; otherwise exact int64 arithmetic.
    """
    v = mant.astype(np.int64) << shift.astype(np.int64)
    w64 = w.astype(np.int64)
    bound = np.abs(v).sum(axis=1).max(initial=0) * np.abs(w64).max(initial=0)
    if bound < 2**53:
        return np.rint(v.astype(np.float64) @ w64.T.astype(np.float64)).astype(np.int64)
    return v @ w64.T


def fire_potential(acc: np.ndarray, phi: np.ndarray, frac_bits: int, scale_shift=0) -> np.ndarray:
    """``V = ⌊2^F·acc / 2^s⌋ + Φ``: the potential a neuron fires from (SPEC §3).

    ``scale_shift`` s (per token, [M, 1] or a scalar) carries the token's
    power-of-two step: the neuron keeps constant Θ, Φ and its accumulator is
    shifted instead, ``acc << (F − s)`` or, for s > F, an arithmetic right shift
    (floor). For s ≥ 0 this is exactly ``floor((2^F·acc + 2^s·Φ)/(2^s·Θ))``, a
    threshold scaled by 2^s; s = 0 is the static case.
    """
    acc = np.asarray(acc, dtype=np.int64)
    s = np.asarray(scale_shift, dtype=np.int64)
    left = np.clip(frac_bits - s, 0, None)
    right = np.clip(s - frac_bits, 0, None)
    return ((acc << left) >> right) + np.asarray(phi, dtype=np.int64)


def thresholds_for_tokens(theta: np.ndarray, phi: np.ndarray, exponent: np.ndarray) -> tuple:
    """Per token: ``(Θ [M, N], Φ [M, N], s [M, 1])`` from constants [R, N] and exponents d [M].

    Token t uses row ``d mod R`` of the constants and the scale shift ``s = ⌊d/R⌋``.
    """
    theta, phi = np.asarray(theta, dtype=np.int64), np.asarray(phi, dtype=np.int64)
    d = np.asarray(exponent, dtype=np.int64).reshape(-1)
    rows = theta.shape[0]
    return theta[d % rows], phi[d % rows], (d // rows)[:, None]


def fire_count(acc: np.ndarray, theta: np.ndarray, phi: np.ndarray, frac_bits: int,
               out_bits: int, scale_shift=0) -> np.ndarray:
    """Spikes fired after the window: ``clamp(floor(V/Θ), 0, 2^b_out − 1)``, V from :func:`fire_potential`."""
    theta = np.asarray(theta, dtype=np.int64)
    if (theta <= 0).any():
        raise ValueError("threshold Θ must be positive everywhere")
    potential = fire_potential(acc, phi, frac_bits, scale_shift)
    return np.clip(np.floor_divide(potential, theta), 0, code_max(out_bits))


def silence_fire(acc: np.ndarray, theta: np.ndarray, phi: np.ndarray, frac_bits: int,
                 out_bits: int, scale_shift=0) -> tuple[np.ndarray, np.ndarray]:
    """Kirin's silence-threshold neuron, step by step (SPEC §4); returns ``(fire_step, count)``.

    The threshold is infinite while the neuron integrates; over the output
    window of ``T_o = 2^b_out`` steps k = 1..T_o − 1 it falls as
    ``θ_k = (T_o − k)·Θ``, and the neuron (potential V of :func:`fire_potential`, no
    reset) fires once, at the first k with ``V ≥ θ_k``, and never again. The
    code is ``n = T_o − k`` (no spike: ``n = 0``, ``fire_step = -1``); the firing
    step k is the TTFS time the next layer expects for magnitude n. The count
    equals :func:`fire_count` for every input (tests prove it); this loop is
    the algorithm the firing unit runs, one compare per step.
    """
    theta = np.asarray(theta, dtype=np.int64)
    if (theta <= 0).any():
        raise ValueError("threshold Θ must be positive everywhere")
    potential = fire_potential(acc, phi, frac_bits, scale_shift)
    window = 1 << out_bits
    fire_step = np.full(np.broadcast(potential, theta).shape, -1, dtype=np.int64)
    for k in range(1, window):
        fires = (fire_step < 0) & (potential >= (window - k) * theta)
        fire_step[fires] = k
    count = np.where(fire_step > 0, window - fire_step, 0)
    return fire_step, count


def spike_times(mant: np.ndarray, window: int) -> np.ndarray:
    """TTFS step of each element: ``T − |m|``; ``-1`` (never) where ``m = 0``."""
    mag = np.abs(mant.astype(np.int64))
    return np.where(mag > 0, window - mag, -1)


def simulate_ttfs(cfg: SpikeConfig, w: np.ndarray, mant: np.ndarray, shift: np.ndarray,
                  theta: np.ndarray, phi: np.ndarray, scale_shift=0) -> tuple[np.ndarray, np.ndarray]:
    """Time-stepped TTFS ramp and IF neuron; returns ``(integral, counts)``.

    At each step t every spike with ``t_k = t`` does ``I += sign(m)·(w << e)``,
    then ``V += I``. A Kirin outlier q (SPEC §4) joins the current in the last
    step, one bit plane j at a time (``I += sign(q)·(w << (e + j))`` for each
    set bit j of |q|), so it is integrated once. After the window the neuron
    starts from the potential of :func:`fire_potential` and fires while the potential is ≥ Θ,
    subtracting Θ each time, at most ``2^b_out − 1`` times. ``integral``
    equals :func:`accumulate` exactly.
    """
    outlier = is_outlier(cfg, mant)
    times = np.where(outlier, -1, spike_times(mant, cfg.window))
    signed_shifted = np.sign(mant).astype(np.int64) << shift.astype(np.int64)  # ±2^e, [M, K]
    magnitude = np.abs(mant.astype(np.int64))
    w64 = w.astype(np.int64)
    m_tokens, n_out = mant.shape[0], w.shape[0]
    current = np.zeros((m_tokens, n_out), dtype=np.int64)
    membrane = np.zeros((m_tokens, n_out), dtype=np.int64)
    for t in range(cfg.window):
        arriving = np.where(times == t, signed_shifted, 0)
        if t == cfg.window - 1:
            for plane in range(cfg.outlier_planes):
                arriving = arriving + np.where(outlier & ((magnitude >> plane) & 1 == 1), signed_shifted << plane, 0)
        current += arriving @ w64.T
        membrane += current
    potential = fire_potential(membrane, phi, cfg.frac_bits, scale_shift)
    theta = np.asarray(theta, dtype=np.int64)
    counts = np.zeros_like(potential)
    for _ in range(cfg.max_count):
        fires = potential >= theta
        potential = potential - np.where(fires, theta, 0)
        counts += fires
    return membrane, counts
