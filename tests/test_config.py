import json

import pytest

from spikeacc.config import PRESETS, SpikeConfig


@pytest.mark.parametrize("field, value, message", [
    ("w_bits", 1, "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 1"),
    ("w_bits", 8, "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 8"),
    ("a_bits", 8, "a_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 8"),
    ("out_bits", 0, "out_bits must be an integer in 2..8, got 0"),
    ("lanes", 3, "lanes must be a power of two (1, 2, 4, ...), got 3"),
    ("pes", 5, "out_features (16) is not a multiple of pes (5): choose pes dividing 16"),
    ("e_max", 16, "e_max must be an integer in 0..15, got 16"),
    ("kappa", 0, "kappa must be a positive number, got 0"),
    ("kappa", "6", "kappa must be a positive number, got '6'"),
    ("kappa", True, "kappa must be a positive number, got True"),
    ("kappa", float("nan"), "kappa must be a positive number, got nan"),
    ("salient", "no", "salient must be true or false, got 'no'"),
    ("salient_cap", 3.5, "salient_cap must be an integer in 0..64 (in_features) or null, got 3.5"),
    ("salient_cap", "x", "salient_cap must be an integer in 0..64 (in_features) or null, got 'x'"),
    ("w_bits", True, "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got True"),
    ("w_bits", 4.0, "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 4.0"),
    ("pes", 0, "pes must be an integer in 1..256, got 0"),
    ("pes", None, "pes must be an integer in 1..256, got None"),
    ("max_tokens", 0, "max_tokens must be an integer in 1..4096, got 0"),
    ("in_features", 4194304, "in_features must be an integer in 1..16384 (generation time grows with the layer size; larger layers are tiled by the caller), got 4194304"),
    ("encoding", "rate", "encoding must be one of ('ttfs',), got 'rate'"),
])
def test_impossible_config_is_refused_with_the_fix(field, value, message):
    with pytest.raises(ValueError) as err:
        SpikeConfig(**{field: value})
    assert str(err.value) == message


@pytest.mark.parametrize("fields", [dict(w_bits=7, a_bits=7), dict(w_bits=7, a_bits=5, outlier_bits=8),
                                    dict(w_bits=2, a_bits=2)])
def test_every_accepted_width_round_trips_through_the_vector_file(tmp_path, fields):
    """The widest weights, mantissas and outliers a configuration accepts survive the file's int8 arrays."""
    import numpy as np

    from spikeacc.golden.integer import accumulate
    from spikeacc.golden.vectors import load_vectors, save_vectors
    from spikeacc.golden.synthetic_vectors import random_vectors
    cfg = SpikeConfig(**fields)
    v = random_vectors(cfg, 4, seed=3, salient_fraction=0.1)
    v.w[0, 0] = -cfg.weight_max     # the extremes the configuration allows
    v.mant[0, 0], v.shift[0, 0] = cfg.mantissa_max, 0
    v.acc = accumulate(v.w, v.mant, v.shift)
    v.expected = v.golden_counts()
    back = load_vectors(save_vectors(tmp_path / "v.npz", v))
    assert np.array_equal(back.w.astype(np.int64), v.w.astype(np.int64))
    assert np.array_equal(back.mant.astype(np.int64), v.mant.astype(np.int64))
    assert int(np.abs(back.mant.astype(np.int64)).max()) == cfg.mantissa_max


def test_the_configuration_drives_the_golden_quantizer():
    from spikeacc.golden.spiking_linear import QuantSpec
    cfg = SpikeConfig(w_bits=3, a_bits=5, out_bits=6, kappa=4.5, e_max=5, frac_bits=12)
    spec = QuantSpec.from_config(cfg)
    assert (spec.method, spec.w_bits, spec.a_bits, spec.out_bits, spec.kappa, spec.e_max, spec.frac_bits) == \
        ("spikequant", 3, 5, 6, 4.5, 5, 12)
    assert QuantSpec.from_config(cfg, hardware_faithful=False).out_bits is None
    kirin = QuantSpec.from_config(cfg.in_mode("kirin"))
    assert (kirin.method, kirin.outlier_bits) == ("kirin", 8)
    assert QuantSpec.from_config(cfg.replace(salient=False)).e_max == 0
    assert cfg.in_mode("kirin").in_mode("spikequant") == cfg


def test_k_not_covered_by_lanes():
    with pytest.raises(ValueError, match="in_features \\(30\\) is not a multiple of lanes \\(4\\)"):
        SpikeConfig(in_features=30, lanes=4)


def test_membrane_beyond_int64_is_refused():
    with pytest.raises(ValueError, match="membrane needs .* bits .*lower frac_bits"):
        SpikeConfig(in_features=1 << 14, e_max=15, frac_bits=32, lanes=1)


def test_widths_follow_the_spec_bound():
    cfg = SpikeConfig(in_features=4096, out_features=64)
    # |acc| <= K * 15 * 15 * 2^7 (uncapped salient)
    assert cfg.acc_bound == 4096 * 15 * 15 * 128
    assert -(1 << (cfg.acc_bits - 1)) <= -cfg.acc_bound
    assert cfg.acc_bound <= (1 << (cfg.acc_bits - 1)) - 1
    assert cfg.acc_bound >> (cfg.acc_bits - 2) >= 1          # and not wider than needed
    capped = cfg.replace(salient_cap=40)
    assert capped.acc_bound == (4096 - 40) * 225 + 40 * 225 * 128
    assert capped.acc_bits < cfg.acc_bits
    no_salient = cfg.replace(salient=False)
    assert no_salient.shift_max == 0 and no_salient.acc_bound == 4096 * 225
    assert cfg.membrane_bits > cfg.acc_bits + cfg.frac_bits


def test_presets_cover_llama2_shapes():
    assert (PRESETS["llama2-q"].in_features, PRESETS["llama2-q"].out_features) == (4096, 4096)
    assert (PRESETS["llama2-down"].in_features, PRESETS["llama2-down"].out_features) == (11008, 4096)


def test_round_trip_and_unknown_fields(tmp_path):
    cfg = SpikeConfig(in_features=128, pes=8)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert SpikeConfig.from_json(path) == cfg
    path.write_text(json.dumps({"bogus": 1}))
    with pytest.raises(ValueError, match="unknown config field"):
        SpikeConfig.from_json(path)
    with pytest.raises(FileNotFoundError):
        SpikeConfig.from_json(tmp_path / "missing.json")


def test_tag_names_the_configuration():
    assert SpikeConfig().tag != SpikeConfig(frac_bits=12).tag


def test_for_layer_keeps_enough_blocks_per_encode_pass():
    base = PRESETS["smollm2"]
    assert base.for_layer(576, 192).pes == 8        # k/v_proj: 24 blocks
    assert base.for_layer(576, 576).pes == 24
    assert base.for_layer(576, 1536).pes == 32
    assert base.for_layer(11008, 4096).pes == 32 and base.for_layer(11008, 4096).lanes == 2
    assert base.for_layer(7, 5).pes == 5            # no P leaves 24 blocks: the largest divisor
