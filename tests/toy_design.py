"""A toy design, declared the way a new variant is: one module, one registration.

It is the dense MAC tile under another name, with its own label, cycle model
and energy roles, so the test proves that generate, regress and power need
nothing but this declaration.
"""

from spikeacc.config import SpikeConfig
from spikeacc.hw.design_mac_tile import ENERGY, _check, _cycles, _datasheet
from spikeacc.hw.registry import Design

NAME = "toy_mac"


def _build(cfg: SpikeConfig):
    from spikeacc.hw.mac import MacTile
    return MacTile(cfg)


TOY = Design(name=NAME, label="toy MAC", kind="tile", arithmetic="mac", build=_build, check=_check,
             cycles=_cycles(False), energy=ENERGY,
             datasheet=_datasheet(False, "every word is read for every block, zeros included"))
