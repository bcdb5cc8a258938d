"""The design registry: a new design is one module plus one registration, and nothing else is touched."""

import json

import numpy as np
import pytest

from spikeacc.config import SpikeConfig
from spikeacc.golden.synthetic_vectors import random_vectors
from spikeacc.golden.vectors import save_vectors
from spikeacc.hw import registry
from spikeacc.hw.registry import EnergyRoles, UnclaimedPart

TINY = SpikeConfig(in_features=8, out_features=4, pes=2, lanes=2, out_bits=4, max_tokens=2)


@pytest.fixture
def toy():
    from tests.toy_design import NAME, TOY
    registry.register(TOY)
    yield NAME
    registry.unregister(NAME)


def test_every_builtin_design_is_declared_once_with_what_the_layers_need():
    assert set(registry.names()) == set(registry.tiles()) | set(registry.pes())
    for name in registry.tiles():
        d = registry.design(name)
        assert d.cycles is not None and d.energy is not None and d.datasheet.timing_meaning
        assert d.energy.module_role("top") in d.energy.gate_roles()
    assert registry.spiking_tile().arithmetic == "spiking" and registry.dense_mac().is_mac
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Design(**{**registry.dense_mac().__dict__, "label": "another"}))
    with pytest.raises(ValueError, match="unknown design 'nope'; choose one of"):
        registry.design("nope")


def test_a_net_or_module_no_role_claims_is_an_error_not_control():
    roles = EnergyRoles(modules=(("pe", "PE arithmetic"), ("top", "control")), nets=(("adders", r"^sum\d+$"),),
                        datapath=("adders",), first_pe="pe0", ops_per_read=("current_add",), events={})
    assert roles.net_role("sum3") == "adders" and roles.module_role("pe12.x") == "PE arithmetic"
    with pytest.raises(UnclaimedPart, match="no energy role claims net 'mystery'"):
        roles.net_role("mystery")
    with pytest.raises(UnclaimedPart, match="no energy role claims module 'queues'"):
        roles.module_role("queues")
    # the built-in tiles claim every net of their RTL: classify raises on anything else
    from spikeacc.energy.toggles import classify
    with pytest.raises(UnclaimedPart):
        classify(registry.SPIKING_TILE, "a_net_nobody_declared")


@pytest.mark.verilator
@pytest.mark.gates
def test_a_toy_design_registers_in_one_module_and_runs_generate_regress_and_power(toy, tmp_path):
    from spikeacc.energy.power import run_power
    from spikeacc.hw.generate import generate
    from spikeacc.verif.tile_regress import run_tile_regression

    assert toy in registry.tiles() and toy in registry.macs()
    rtl = generate(toy, TINY, tmp_path / "rtl")
    manifest = json.loads(rtl.manifest.read_text())
    assert rtl.top == f"spikeacc_{toy}_{TINY.tag}" and manifest["design"] == toy
    assert manifest["datasheet"]["timing"]["cycles_exact"] == manifest["timing"]["values"]["cycles_per_token"]

    v = random_vectors(TINY, 2, seed=5)
    path = save_vectors(tmp_path / "v.npz", v)
    _, rep = run_tile_regression(path, build_root=tmp_path / "build", design=toy, progress=False)
    assert rep.passed and rep.compared == v.expected.size and rep.mismatch_count == 0
    assert rep.cycles_per_token == rep.predicted_cycles_per_token

    r = run_power(path, designs=(toy,), out=tmp_path / "power", build_root=tmp_path / "build")
    d = r.designs[toy]
    # the dense MAC reads every weight word: K per block and token, counted from the netlist's enables
    assert d.cycles == rep.cycles and d.weight_reads == TINY.blocks * TINY.in_features * v.shape[0]
    assert set(d.by_role_pj) <= set(registry.design(toy).energy.gate_roles()) and d.logic_pj > 0
    assert "toy MAC" in (tmp_path / "power" / "power.md").read_text()
    assert np.isfinite(d.logic_pj)
