"""The layout is the architecture: golden/ imports no hardware, hw/ needs no torch."""

import subprocess
import sys


def loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(run.stdout.split())


def test_golden_imports_no_hardware():
    mods = loaded_after("import spikeacc.golden.integer, spikeacc.golden.energy, spikeacc.golden.vectors, "
                        "spikeacc.golden.quant, spikeacc.golden.spiking_linear")
    assert not {m for m in mods if m.startswith(("spikeacc.hw", "spikeacc.verif", "amaranth", "cocotb"))}


def test_hardware_needs_no_torch():
    mods = loaded_after("import spikeacc.hw.pe, spikeacc.hw.tile, spikeacc.hw.mac, spikeacc.hw.generate, "
                        "spikeacc.hw.package, spikeacc.hw.synth")
    assert "torch" not in mods and not {m for m in mods if m.startswith("spikeacc.golden")}
