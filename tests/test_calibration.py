"""What calibrates the golden model: the shipped corpus, a user's file, drawn the same way on every machine."""

import pytest

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.golden.calibration import corpus_text, sampled_windows
from spikeacc.golden.checkpoint import open_checkpoint
from spikeacc.golden.perplexity import config_splits, token_splits, default_text


@pytest.fixture(scope="module")
def tokenizer():
    return open_checkpoint().tokenizer


@pytest.mark.model
def test_the_corpus_holds_at_least_64k_tokens_none_of_them_in_the_evaluation_texts(tokenizer):
    texts = corpus_text()
    ids = [tokenizer(t, return_tensors="pt", verbose=False).input_ids[0] for t in texts]
    assert sum(len(i) for i in ids) >= 65536
    held_out = default_text()
    for text in texts:
        for line in (ln.strip() for ln in text.splitlines()):
            if len(line) > 60:
                assert line not in held_out, f"a corpus line is in the shipped evaluation text: {line[:60]}"


@pytest.mark.model
def test_windows_are_drawn_without_replacement_the_same_every_time(tokenizer):
    texts = corpus_text()
    a = sampled_windows(tokenizer, texts, 8192, 512)
    assert a.shape == (16, 512)
    assert len({tuple(w.tolist()) for w in a}) == 16, "a window drawn twice"
    assert (a == sampled_windows(tokenizer, texts, 8192, 512)).all()
    assert not (a == sampled_windows(tokenizer, texts, 8192, 512, seed=1)).all()
    with pytest.raises(ValueError, match="ask for at most"):
        sampled_windows(tokenizer, ["a short text " * 50], 4096, 512)


@pytest.mark.model
def test_the_configuration_chooses_the_calibration_and_never_moves_the_held_out_tokens(tokenizer, tmp_path):
    default_calib, default_eval = config_splits(tokenizer, PRESETS["default"], 1024)
    head, held_out = token_splits(tokenizer, default_text(), 1024)
    assert (default_calib == head).all() and (default_eval == held_out).all()
    corpus_calib, corpus_eval = config_splits(tokenizer, PRESETS["default"].replace(calibration="corpus",
                                                                                    calibration_tokens=2048), 1024)
    assert corpus_calib.shape == (4, 512) and (corpus_eval == held_out).all()
    own = tmp_path / "own.txt"
    own.write_text("Calibration text of a user's own, long enough for a window. " * 200, encoding="utf-8")
    calib, _ = config_splits(tokenizer, PRESETS["default"].replace(calibration=str(own), calibration_tokens=512), 1024)
    assert calib.shape == (1, 512)
    with pytest.raises(FileNotFoundError):
        config_splits(tokenizer, PRESETS["default"].replace(calibration=str(tmp_path / "missing.txt")), 1024)


@pytest.mark.parametrize("fields, message", [({"calibration": ""}, "calibration must be one of"),
                                             ({"calibration_tokens": 8}, "calibration_tokens must be"),
                                             ({"rotation": "spin"}, "rotation must be one of")])
def test_an_impossible_calibration_is_refused_with_what_to_change(fields, message):
    with pytest.raises(ValueError, match=message):
        SpikeConfig(**fields)


def test_the_calibration_options_set_the_configurations_fields():
    from spikeacc.app.cli import build_parser
    from spikeacc.app.cli_options import config_of

    parser = build_parser()
    args = parser.parse_args(["ppl", "--calib-text", "corpus", "--calib-tokens", "4096", "--rotation", "hadamard"])
    cfg = config_of(args)
    assert (cfg.calibration, cfg.calibration_tokens, cfg.rotation) == ("corpus", 4096, "hadamard")
    assert cfg.replace(calibration="shipped-text", calibration_tokens=1024, rotation="none") == PRESETS["default"]
    assert config_of(parser.parse_args(["ppl"])) == PRESETS["default"]
    with pytest.raises(ValueError, match="calibration_tokens must be"):
        config_of(parser.parse_args(["vectors", "--out", "v.npz", "--calib-tokens", "4"]))
