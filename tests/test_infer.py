"""The whole LLM through the RTL: SmolLM2 writes text with its projections on the spiking tile."""

import json

import pytest

from spikeacc.errors import VerificationFailed
from spikeacc.app.infer import hardware_model, run_infer, select_layers

pytestmark = [pytest.mark.verilator, pytest.mark.model]

PROMPT = "The license is free"   # 4 tokens
PER_BLOCK = 576 + 192 + 192 + 576 + 1536 + 1536 + 576   # outputs of one decoder block's 7 projections, per token


@pytest.fixture(scope="module")
def hardware():
    """The hardware-faithful SmolLM2, calibrated once for every test here."""
    return hardware_model()


def test_two_blocks_on_the_rtl_write_the_golden_text(hardware, tmp_path):
    """Blocks 0 and 1 (14 projections) on the tile, the rest golden: same counts, same text."""
    rep = run_infer(PROMPT, max_new_tokens=3, layers="0-1", out=tmp_path, hardware=hardware, progress=False)
    assert rep["prompt_tokens"] == 4
    assert rep["identical"] and rep["text"] == rep["golden_text"] and rep["text"].strip()
    t = rep["totals"]
    # the prompt in one call per projection, then one call per new token but the last
    assert t["outputs_compared"] == (4 + 2) * 2 * PER_BLOCK and t["mismatches"] == 0
    assert t["calls"] == 14 * 3 and t["simulated_cycles"] > 0
    rows = json.loads((tmp_path / "infer.json").read_text())["per_layer"]
    assert len(rows) == 14 and all(r["utilization"] > 0.5 for r in rows)


def test_dask_local_cluster_runs_the_same_calls(hardware, tmp_path):
    """The Dask path with a LocalCluster of 2 worker processes: each builds or reuses its simulators."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rep = run_infer(PROMPT, max_new_tokens=1, layers="0", scheduler=cluster.scheduler_address, out=tmp_path,
                        hardware=hardware, progress=False)
    assert rep["identical"] and rep["totals"]["outputs_compared"] == 4 * PER_BLOCK
    assert rep["scheduler"].startswith("tcp://")


@pytest.mark.slow
def test_split_projections_on_a_local_cluster_write_the_golden_text(hardware, tmp_path):
    """Every projection of block 0 cut in two (N/2 outputs each, their own builds) over 2 Dask workers."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rep = run_infer(PROMPT, max_new_tokens=2, layers="0", scheduler=cluster.scheduler_address, out=tmp_path,
                        hardware=hardware, progress=False, split=2)
    assert rep["identical"] and rep["split"] == 2 and rep["totals"]["mismatches"] == 0
    assert {r["parts"] for r in rep["per_layer"]} == {2}
    assert rep["totals"]["outputs_compared"] == (4 + 1) * PER_BLOCK


def test_the_per_call_harness_runs_the_same_calls_as_the_resident_simulators(hardware, tmp_path):
    """The fallback path and the default one: same text, same calls, same cycles, layer by layer."""
    runs = {per_call: run_infer(PROMPT, max_new_tokens=2, layers="0", out=tmp_path / str(per_call),
                                hardware=hardware, progress=False, per_call=per_call) for per_call in (False, True)}
    assert runs[True]["path"] == "per-call harness" and runs[False]["path"] == "resident simulators"
    assert runs[True]["text"] == runs[False]["text"] == runs[False]["golden_text"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]   # noqa: E731
    assert strip(runs[True]["per_layer"]) == strip(runs[False]["per_layer"])
    assert runs[True]["totals"]["simulated_cycles"] == runs[False]["totals"]["simulated_cycles"] > 0


def test_a_corrupted_rtl_count_stops_the_run_with_its_indices(hardware, tmp_path):
    layer = "model.layers.1.mlp.down_proj"
    with pytest.raises(VerificationFailed, match=rf"{layer}, token 2, neuron 5: expected \d+, got \d+"):
        run_infer(PROMPT, max_new_tokens=2, layers="0-1", out=tmp_path, hardware=hardware, progress=False,
                  inject_fault=(layer, 2, 5))
    kept = json.loads((tmp_path / "infer.json").read_text())
    assert "token 2, neuron 5" in kept["failure"] and kept["totals"]["mismatches"] == 1
    assert kept["per_layer"], "what ran before the mismatch is kept"


def test_layer_selection_is_checked(hardware):
    net = hardware[0]
    assert len(select_layers(net, "all")) == 210 and len(select_layers(net, "0,2-3")) == 21
    with pytest.raises(ValueError, match="the model has blocks 0..29"):
        select_layers(net, "30")
    with pytest.raises(ValueError, match="--layers takes"):
        select_layers(net, "first")


@pytest.mark.slow
def test_a_32_token_prompt_through_all_210_projections(hardware, tmp_path):
    prompt = ("The GNU General Public License is a free, copyleft license for software and other kinds of works. "
              "The licenses for most software are designed to take away your freedom")
    rep = run_infer(prompt, max_new_tokens=8, out=tmp_path, hardware=hardware, progress=False)
    assert rep["prompt_tokens"] == 32 and rep["layers_on_rtl"] == 210
    assert rep["identical"] and rep["totals"]["outputs_compared"] >= 1.5e6 and rep["totals"]["mismatches"] == 0


def test_perplexity_through_the_rtl_equals_golden(hardware):
    """A short held-out window with block 0 on the tile: the same perplexity to the last digit."""
    from spikeacc.app.infer import rtl_perplexity
    rep = rtl_perplexity(16, layers="0", hardware=hardware, progress=False)
    assert rep["rtl_ppl"] == rep["golden_ppl"] and rep["equal"]
    assert rep["totals"]["outputs_compared"] == 16 * PER_BLOCK


def test_a_scheduler_that_never_speaks_is_a_bounded_wait_that_says_so():
    """A local port that accepts connections and never answers: messages while waiting, then one clear error."""
    import socket
    from spikeacc.app.tile_pools import connect_scheduler
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    said = []
    try:
        with pytest.raises(ValueError, match="did not answer within 6 s"):
            connect_scheduler(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=6, say=said.append)
    finally:
        server.close()
    assert said and "waiting for the Dask scheduler at tcp://127.0.0.1:" in said[0]


def test_a_scheduler_with_no_workers_is_a_bounded_wait_that_says_so():
    """Connected, but no worker ever joins: lines while waiting, then one line naming the scheduler."""
    from types import SimpleNamespace
    from spikeacc.app.tile_pools import wait_for_workers
    said = []
    empty = SimpleNamespace(nthreads=lambda: {})
    with pytest.raises(ValueError, match="the Dask scheduler at tcp://h:1 has no workers \\(waited 2 s\\)"):
        wait_for_workers(empty, "tcp://h:1", timeout=2, say=said.append)
    assert said and "has no workers yet" in said[0]
    assert wait_for_workers(SimpleNamespace(nthreads=lambda: {"w1": 2, "w2": 1}), "tcp://h:1") == 3


def test_zero_workers_is_refused():
    from spikeacc.app.tile_pools import tile_pool
    with pytest.raises(ValueError, match="--workers must be a positive integer, got 0"):
        with tile_pool(workers=0):
            pass


@pytest.mark.parametrize("kwargs, message", [
    (dict(layers="1-0"), "--layers '1-0' is an empty range (its first block is after its last); write it low-high"),
    (dict(layers="none"), "--layers selects no decoder block, so nothing would run on the RTL"),
    (dict(inject_fault=("0,0,0", 0, 0)), "--inject-fault layer '0,0,0' is not a projection on the RTL in this run"),
    (dict(layers="0", inject_fault=("model.layers.1.mlp.up_proj", 0, 0)),
     "--inject-fault layer 'model.layers.1.mlp.up_proj' is not a projection on the RTL in this run"),
    (dict(inject_fault=("model.layers.0.mlp.up_proj", 99, 0)), "--inject-fault token 99 is outside this run's tokens 0..5"),
    (dict(inject_fault=("model.layers.0.mlp.up_proj", 0, 1536)),
     "--inject-fault neuron 1536 is outside model.layers.0.mlp.up_proj's outputs 0..1535"),
    (dict(split=0), "--split must be a positive integer, got 0"),
    (dict(max_new_tokens=9000), "exceed the model's context of 8192 tokens; shorten the prompt or lower --max-new-tokens"),
])
def test_a_run_that_would_test_nothing_is_refused_before_it_starts(tmp_path, hardware, kwargs, message):
    """No silent no-ops: an empty selection, a fault that cannot land, a run past the context."""
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError) as err:
        run_infer(PROMPT, out=tmp_path, hardware=hardware, progress=False, **kwargs)
    assert message in str(err.value)
    assert not list(tmp_path.iterdir()), "nothing may be written before the refusal"


def test_the_cli_refuses_a_fault_with_golden(capsys):
    from spikeacc.app.cli import main
    assert main(["infer", "--prompt", "x", "--golden", "--inject-fault", "model.layers.0.mlp.up_proj,0,0"]) == 2
    assert "--inject-fault has no effect with --golden: nothing runs on the RTL" in capsys.readouterr().err
