"""Resident simulators and split projections: the same counts as the per-call harness and the unsplit tile."""

import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

from spikeacc.app.tile_calls import run_tile_call, simulator, split_config, split_parts, split_projection
from spikeacc.config import PRESETS
from spikeacc.errors import ToolFailure, VerificationFailed
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.verif.native import call_native
from spikeacc.verif.resident import ResidentSimulator, bank_key, resident_simulator

pytestmark = pytest.mark.verilator

CFG = PRESETS["default"]   # 64 -> 16, P = 4: four blocks


def _bank(cfg, v):
    return {"key": bank_key(cfg, v.w, v.theta, v.phi), "w": v.w, "theta": v.theta, "phi": v.phi}


def _arrays(v, tokens=slice(None)):
    return {"mant": v.mant[tokens], "shift": v.shift[tokens], "exponent": v.exponent[tokens]}


def _assert_counts(got, expected, what):
    bad = np.argwhere(got != expected)
    assert not len(bad), (f"{what}: {len(bad)} counts differ, first at (token, neuron) {tuple(bad[0])}: "
                          f"expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}")


def test_resident_calls_switch_banks_and_match_the_per_call_harness(tmp_path):
    """Two projections banked in one process, called alternately on 1 and 16 tokens: every count and cycle
    equals the per-call harness's (same executable from hex files) and the golden counts."""
    exe = simulator(CFG, str(tmp_path))
    a, b = random_vectors(CFG, CFG.max_tokens, seed=1), random_vectors(CFG, CFG.max_tokens, seed=2)
    assert not np.array_equal(a.expected, b.expected)
    sim = ResidentSimulator(CFG, exe)
    try:
        for v in (a, b):
            sim.load(_bank(CFG, v)["key"], v.w, v.theta, v.phi)
        assert sim.load(_bank(CFG, a)["key"], a.w, a.theta, a.phi) == 0, "a bank is loaded once"
        for v, tokens in ((a, 1), (b, 1), (a, CFG.max_tokens), (b, 5), (a, 3)):
            part = slice(0, tokens)
            counts, cycles = sim.run(_bank(CFG, v)["key"], **_arrays(v, part))
            _assert_counts(counts, v.expected[part], f"resident, {tokens} tokens")
            ref = SimpleNamespace(w=v.w, theta=v.theta, phi=v.phi, **_arrays(v, part),
                                  shape=(tokens, CFG.in_features, CFG.out_features))
            per_call, per_call_cycles, _ = call_native(CFG, exe, ref)
            _assert_counts(counts, per_call, f"resident against per-call, {tokens} tokens")
            assert cycles == per_call_cycles
    finally:
        sim.close()


def test_a_simulator_that_dies_is_one_clear_error_and_is_not_reused(tmp_path):
    exe = simulator(CFG, str(tmp_path))
    v = random_vectors(CFG, 2, seed=3)
    bank = _bank(CFG, v)
    with resident_simulator(CFG, exe) as sim:
        sim.load(bank["key"], v.w, v.theta, v.phi)
        first = sim
    with pytest.raises(ToolFailure, match=r"the resident harness .* stopped \(exit -9\)"):
        with resident_simulator(CFG, exe) as sim:
            assert sim is first, "an idle simulator is reused"
            os.kill(sim.proc.pid, signal.SIGKILL)
            sim.proc.wait()
            sim.run(bank["key"], **_arrays(v))
    with resident_simulator(CFG, exe) as sim:
        assert sim is not first
        sim.load(bank["key"], v.w, v.theta, v.phi)
        _assert_counts(sim.run(bank["key"], **_arrays(v))[0], v.expected, "a fresh simulator after a failure")


def test_too_many_tokens_are_refused_before_the_pipe(tmp_path):
    sim = ResidentSimulator(CFG, simulator(CFG, str(tmp_path)))
    try:
        v = random_vectors(CFG, 1, seed=4)
        sim.load("k", v.w, v.theta, v.phi)
        big = np.zeros((CFG.max_tokens + 1, CFG.in_features), dtype=np.int64)
        with pytest.raises(ValueError, match=f"a call takes 1..{CFG.max_tokens} tokens"):
            sim.run("k", big, big, np.zeros(CFG.max_tokens + 1, dtype=np.int64))
    finally:
        sim.close()


def test_split_takes_the_most_parts_up_to_s_that_divide_the_blocks():
    """One --split serves projections of different block counts (Llama-2-7B: 128 and 344)."""
    llama = PRESETS["smollm2"].replace(max_tokens=1)
    assert [split_parts(CFG, s) for s in (1, 2, 3, 4, 64)] == [1, 2, 2, 4, 4]
    assert split_parts(llama.for_layer(4096, 4096), 64) == 64 and split_parts(llama.for_layer(4096, 11008), 64) == 43
    assert split_config(CFG, 2).out_features == 8
    with pytest.raises(ValueError, match=r"--split 3 does not divide 16 outputs into whole blocks of 4 \(4 blocks\); "
                                         r"choose one of \[1, 2, 4\]"):
        split_config(CFG, 3)
    with pytest.raises(ValueError, match="--split must be a positive integer, got 0"):
        split_parts(CFG, 0)


def test_a_projection_split_over_a_local_cluster_joins_to_the_unsplit_counts(tmp_path):
    """Two Dask worker processes, each with its own resident simulator of the part's configuration."""
    from distributed import Client, LocalCluster

    v = random_vectors(CFG, 6, seed=5)
    whole = run_tile_call(CFG.to_dict(), _bank(CFG, v), _arrays(v), str(tmp_path))["counts"]
    _assert_counts(whole, v.expected, "unsplit")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        for parts in (2, 4):
            banks = [(cfg, client.scatter([bank], hash=False)[0])
                     for cfg, bank in split_projection(CFG, v.w, v.theta, v.phi, parts)]
            futures = [client.submit(run_tile_call, cfg.to_dict(), bank, _arrays(v), str(tmp_path), pure=False)
                       for cfg, bank in banks]
            results = client.gather(futures)
            joined = np.concatenate([r["counts"] for r in results], axis=1)
            _assert_counts(joined, whole, f"{parts} parts joined")
            assert all(r["counts"].shape == (6, CFG.out_features // parts) for r in results)


def test_an_out_of_contract_word_fails_both_paths(tmp_path):
    """The tile's error flag (here a mantissa below −mantissa_max in token 0) fails the call, not just the counts."""
    from spikeacc.errors import VerificationFailed

    v = random_vectors(CFG, 2, seed=6)
    v.mant[0, 3] = -(CFG.mantissa_max + 1)
    for per_call in (False, True):
        with pytest.raises(VerificationFailed, match="error flag .* on 1 of 2 tokens"):
            run_tile_call(CFG.to_dict(), _bank(CFG, v), _arrays(v), str(tmp_path), per_call)


def _fake_harness(tmp_path, script: str):
    exe = tmp_path / "Vfake"
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(0o755)
    return exe


def test_a_harness_that_never_answers_is_bounded_and_says_what_it_waits_for(tmp_path, monkeypatch):
    """A +serve process that reads its calls but never replies: progress lines, then one line and a kill."""
    from spikeacc.verif import resident
    monkeypatch.setattr(resident, "REPLY_BASE_S", 1.5)
    monkeypatch.setattr(resident, "SAY_EVERY_S", 0.5)
    lines = []
    sim = ResidentSimulator(CFG, _fake_harness(tmp_path, "exec sleep 600"), say=lines.append)
    v = random_vectors(CFG, 2, seed=3)
    with pytest.raises(ToolFailure, match=r"did not answer loading bank 0 within \d+ s \(it was stopped\)"):
        sim.load("k", v.w, v.theta, v.phi)
    assert lines and all("waiting for the resident harness Vfake (loading bank 0)" in line for line in lines)
    assert sim.proc.poll() is not None   # killed, not left behind
    sim.close()


def test_a_harness_that_answers_garbage_is_a_tool_failure_not_a_verdict(tmp_path):
    """Replies outside the protocol (LOAD must answer 0) are the harness's fault: exit 3, never FAIL."""
    sim = ResidentSimulator(CFG, _fake_harness(tmp_path, "head -c 16 >/dev/null; printf 'garbage!'; exec sleep 600"))
    v = random_vectors(CFG, 2, seed=3)
    with pytest.raises(ToolFailure, match="answered outside its protocol") as err:
        sim.load("k", v.w, v.theta, v.phi)
    assert not isinstance(err.value, VerificationFailed)
    sim.close()


def test_a_harness_that_cannot_start_is_rebuilt_once_then_one_line(tmp_path, monkeypatch, capsys):
    """A truncated executable: removed and rebuilt once; when the rebuild is broken too, a tool failure."""
    from spikeacc.app import tile_calls
    from spikeacc.verif import native
    from spikeacc.verif.resident import SimulatorBroken

    builds = []

    def broken_build(cfg, build_root):
        exe = tmp_path / f"V{len(builds)}"
        if not exe.exists():
            builds.append(exe)
            exe.write_bytes(b"\x7fELF truncated")
            exe.chmod(0o755)
        return exe

    monkeypatch.setattr(native, "build_native", broken_build)
    monkeypatch.setattr(tile_calls, "_SIMULATORS", {})
    v = random_vectors(CFG, 2, seed=3)
    with pytest.raises(SimulatorBroken, match="cannot start"):
        run_tile_call(CFG.to_dict(), _bank(CFG, v), _arrays(v), str(tmp_path))
    assert "rebuilding it once" in capsys.readouterr().err
    assert len(builds) == 2 and not builds[0].exists()   # the broken one was removed before the rebuild
