import numpy as np
import pytest

from spikeacc.golden.integer import accumulate, check_codes, fire_count, silence_fire, simulate_ttfs


def random_layer(cfg, rng, m=5, n=7):
    k = cfg.in_features
    w = rng.integers(-cfg.weight_max, cfg.weight_max + 1, size=(n, k))
    mant = rng.integers(-cfg.mantissa_max, cfg.mantissa_max + 1, size=(m, k))
    shift = np.where(rng.random((m, k)) < 0.1, rng.integers(0, cfg.shift_max + 1, size=(m, k)), 0)
    return w, mant, shift


def test_time_stepped_ttfs_equals_closed_form(cfg, rng):
    w, mant, shift = random_layer(cfg, rng)
    acc = accumulate(w, mant, shift)
    assert np.array_equal(acc, (mant << shift) @ w.T)
    theta = rng.integers(1, 1 << 24, size=acc.shape)
    phi = rng.integers(-(1 << 26), 1 << 26, size=acc.shape)
    integral, counts = simulate_ttfs(cfg, w, mant, shift, theta, phi)
    assert np.array_equal(integral, acc)
    assert np.array_equal(counts, fire_count(acc, theta, phi, cfg.frac_bits, cfg.out_bits))


def test_kirin_outliers_integrate_once_in_the_last_step(rng):
    """Kirin mode: |mant| up to 127 with shifts; the bit-plane integer path gives the same integral and counts."""
    from spikeacc.config import PRESETS
    from spikeacc.golden.integer import is_outlier

    cfg = PRESETS["kirin"]
    w, mant, shift = random_layer(cfg, rng, m=6)
    mant[:, :5] = [127, -127, 16, -16, 15]                      # the edges of both paths
    assert is_outlier(cfg, mant).any() and (~is_outlier(cfg, mant) & (mant != 0)).any()
    acc = accumulate(w, mant, shift)
    theta = rng.integers(1, 1 << 30, size=acc.shape)
    phi = rng.integers(-(1 << 30), 1 << 30, size=acc.shape)
    integral, counts = simulate_ttfs(cfg, w, mant, shift, theta, phi)
    assert np.array_equal(integral, acc)
    assert np.array_equal(counts, fire_count(acc, theta, phi, cfg.frac_bits, cfg.out_bits))
    assert np.abs(acc).max() <= cfg.acc_bound


def test_fire_count_formula():
    # floor((2^F acc + phi) / theta), clamped to 0..15
    assert fire_count(np.array([3]), np.array([1 << 16]), np.array([0]), 16, 4)[0] == 3
    assert fire_count(np.array([-1]), np.array([1]), np.array([0]), 16, 4)[0] == 0
    assert fire_count(np.array([100]), np.array([1 << 16]), np.array([0]), 16, 4)[0] == 15
    assert fire_count(np.array([2]), np.array([3 << 15]), np.array([1 << 15]), 16, 4)[0] == 1


def test_accumulate_is_exact_beyond_float53():
    w = np.full((1, 4), 15)
    mant = np.full((1, 4), 1 << 40)
    assert accumulate(w, mant, np.zeros_like(mant))[0, 0] == 4 * 15 * (1 << 40)


def test_codes_wider_than_declared_are_refused(cfg):
    k = cfg.in_features
    ok = np.zeros((1, k), dtype=np.int64)
    with pytest.raises(ValueError, match=r"weight code 16 at \(0, 3\) exceeds ±15"):
        bad = ok.copy(); bad[0, 3] = 16
        check_codes(cfg, bad, ok, ok)
    with pytest.raises(ValueError, match=r"mantissa -16 at \(0, 1\) exceeds ±15"):
        bad = ok.copy(); bad[0, 1] = -16
        check_codes(cfg, ok, bad, ok)
    with pytest.raises(ValueError, match=r"shift 8 at \(0, 2\) is outside 0..7"):
        bad = ok.copy(); bad[0, 2] = 8
        check_codes(cfg, ok, ok, bad)
    with pytest.raises(ValueError, match="has K = 3 inputs but mant has K = 64"):
        check_codes(cfg, np.zeros((2, 3)), ok, ok)


def test_nonpositive_threshold_is_refused():
    with pytest.raises(ValueError, match="Θ must be positive"):
        fire_count(np.array([1]), np.array([0]), np.array([0]), 16, 4)


# --- Kirin's silence-threshold neuron (SPEC §4) ------------------------------------------------------

@pytest.mark.parametrize("out_bits", [2, 4, 8])
def test_silence_threshold_fires_once_and_counts_like_fire_count(rng, out_bits):
    """Random potentials from below zero to far past saturation: one spike, at step T_o − n."""
    frac = 16
    acc = rng.integers(-5_000, 400_000, size=(64, 33))
    theta = rng.integers(1, 1 << 24, size=acc.shape)
    phi = rng.integers(-(1 << 26), 1 << 26, size=acc.shape)
    step, count = silence_fire(acc, theta, phi, frac, out_bits)
    expected = fire_count(acc, theta, phi, frac, out_bits)
    bad = np.argwhere(count != expected)
    assert bad.size == 0, [(tuple(i), int(expected[tuple(i)]), int(count[tuple(i)])) for i in bad[:5]]
    window = 1 << out_bits
    assert np.array_equal(step > 0, count > 0)                  # no spike exactly when n = 0
    assert np.array_equal(step[step > 0], window - count[step > 0])  # the step is the TTFS time of n
    assert (count == window - 1).any() and (count == 0).any() and ((count > 0) & (count < window - 1)).any()
    potential = (acc << frac) + phi
    assert (count[potential < 0] == 0).all() and (potential < 0).any()


def test_silence_threshold_edges():
    # V exactly at a threshold fires at that step; just below waits one step
    theta = np.array([1 << 16])
    for n in (1, 7, 15):
        step, count = silence_fire(np.array([n]), theta, np.array([0]), 16, 4)
        assert (int(step[0]), int(count[0])) == (16 - n, n)
        step, count = silence_fire(np.array([n]), theta, np.array([-1]), 16, 4)
        assert (int(step[0]), int(count[0])) == (16 - n + 1 if n > 1 else -1, n - 1)
    with pytest.raises(ValueError, match="Θ must be positive"):
        silence_fire(np.array([1]), np.array([0]), np.array([0]), 16, 4)


@pytest.mark.slow  # exports two real layers
@pytest.mark.model
def test_silence_threshold_counts_equal_real_layer_expected(tmp_path):
    """Real SmolLM2 block-0 vectors (q_proj and down_proj, 8 tokens): the silence neuron gives `expected`."""
    from spikeacc.golden.vector_export import export_layers
    from spikeacc.golden.vectors import load_vectors
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"]
    for path in export_layers(layers=names, tokens=8, outs=[tmp_path / "q.npz", tmp_path / "d.npz"]):
        v = load_vectors(path)
        theta, phi, scale = v.token_thresholds()
        _, count = silence_fire(v.acc, theta, phi, v.frac_bits, v.out_bits, scale)
        bad = np.argwhere(count != v.expected)
        assert bad.size == 0, [(tuple(i), int(v.expected[tuple(i)]), int(count[tuple(i)])) for i in bad[:5]]
        assert len(np.unique(v.expected)) > 8


def test_a_scale_shift_of_the_accumulator_is_the_threshold_scaled(rng):
    """For s ≥ 0, floor((⌊2^F·acc/2^s⌋ + Φ)/Θ) = floor((2^F·acc + 2^s·Φ)/(2^s·Θ)): shifting the
    accumulator instead of the per-neuron constants changes no count, so Θ and Φ stay constants."""
    from spikeacc.golden.integer import fire_potential
    frac = 16
    acc = rng.integers(-2**21, 2**21, size=(64, 32))
    theta = rng.integers(1, 2**30, size=(64, 32))
    phi = rng.integers(-2**34, 2**34, size=(64, 32))
    for s in range(0, 24):
        scaled = fire_count(acc, theta << s, phi << s, frac, 8)
        assert np.array_equal(fire_count(acc, theta, phi, frac, 8, s), scaled), s
    # per token, and a negative shift multiplies the accumulator exactly
    s = rng.integers(-2, 40, size=(64, 1))
    assert np.array_equal(fire_potential(acc, phi, frac, s)[s[:, 0] < 0],
                          ((acc << (frac - s)) + phi)[s[:, 0] < 0])
    assert np.array_equal(fire_potential(acc, phi, frac, 40), (acc << frac >> 40) + phi)
