"""The designs spikeacc generates, each declared once, and asked for by everything else.

A design is one module that builds a :class:`Design` and one :func:`register`
call. Its declaration says what every other layer needs to know of it: the
generator and its configuration checks (here), the datasheet's words for it
(:mod:`spikeacc.hw.datasheet` assembles them), which harness and bench drive
it (``kind`` and ``arithmetic``: :mod:`spikeacc.verif` picks them), how many
cycles a token takes, and where it spends energy (:class:`EnergyRoles`). The
CLI's choices, the energy tables and the report read the registry, so adding
a PE or tile variant touches nothing else, and forgetting its energy roles is
an error at the first net it cannot place, not a silent "control".

The built-in designs register on import of this module (:data:`BUILTIN`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Callable

from spikeacc.config import SpikeConfig

__all__ = ["Design", "EnergyRoles", "UnclaimedPart", "register", "unregister", "design", "names", "tiles", "pes",
           "spiking_tile", "dense_mac", "macs", "label", "BUILTIN",
           "SPIKING_TILE", "SPIKING_PE", "DENSE_MAC", "SPIKING_ARITHMETIC", "MAC_ARITHMETIC"]

KINDS = ("tile", "pe")               # a tile owns buffers and a token handshake; a PE is one neuron's datapath
ARITHMETICS = SPIKING_ARITHMETIC, MAC_ARITHMETIC = ("spiking", "mac")   # accumulate on spikes, or multiply-accumulate


class UnclaimedPart(ValueError):
    """A module or net of a design that none of its energy roles claims."""


@dataclass(frozen=True)
class EnergyRoles:
    """Where a design spends energy: every module and net belongs to exactly one role.

    Two granularities, because two models read a design: gate level charges
    whole submodules (``modules``: instance-name prefix -> role, ``"top"`` for
    the design's own registers), the RTL toggle model charges named nets
    (``module_nets`` for submodules whose nets share a role, then ``nets``:
    (role, pattern) tried in order). ``datapath`` names the toggle roles that
    are the arithmetic; ``multiplier`` the nets charged as multipliers;
    ``first_pe`` the instance whose lane valids count weight-word reads;
    ``ops_per_read`` what one weight read costs in the op-count model;
    ``events`` the break-even model's event counts per gate role and part.
    """

    modules: tuple[tuple[str, str], ...]
    nets: tuple[tuple[str, str], ...]
    datapath: tuple[str, ...]
    first_pe: str
    ops_per_read: tuple[str, ...]
    events: dict[tuple[str, str], tuple[str, ...]]
    module_nets: dict[str, str] = field(default_factory=dict)
    multiplier: str | None = None

    def module_role(self, module: str) -> str:
        """The gate-level role of instance ``module`` (a dotted path; its first element decides)."""
        head = module.split(".")[0] or "top"
        for prefix, role in self.modules:
            if head == prefix or (prefix != "top" and head.startswith(prefix)):
                return role
        raise UnclaimedPart(f"no energy role claims module {module!r}; add it to the design's EnergyRoles.modules")

    def net_role(self, name: str, module: str = "top") -> str:
        """The toggle-model role of net ``name`` in submodule ``module``."""
        if module in self.module_nets:
            return self.module_nets[module]
        for role, pattern in self.nets:
            if re.search(pattern, name):
                return role
        raise UnclaimedPart(f"no energy role claims net {name!r} of module {module!r}; "
                            "add it to the design's EnergyRoles.nets")

    def is_multiplier(self, name: str) -> bool:
        return self.multiplier is not None and re.match(self.multiplier, name) is not None

    def gate_roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(role for _, role in self.modules))


@dataclass(frozen=True)
class Datasheet:
    """A design's own words in its datasheet; the shared sections are :mod:`spikeacc.hw.datasheet`'s."""

    facts: Callable                  # (cfg, component) -> dict: timing/diagram (tiles) or protocol/contract (PEs)
    timing_meaning: dict[str, str] = field(default_factory=dict)
    weight_reads: str = ""           # tiles: which weight words are read
    activation_reads: str = ""       # tiles: how often each activation word is read ({words}, {blocks} filled in)
    activation_words_read: Callable | None = None   # tiles: (cfg) -> activation words read per token
    threshold_reads: str = ""        # tiles: when threshold words are read
    example: Callable | None = None  # (cfg) -> {port: value}: one worked word per data port (tiles share one)
    timing: Callable | None = None   # (component) -> the manifest's timing values; None: component.timing()


@dataclass(frozen=True)
class Design:
    """One generated design: what it is, how to build it, and what the other layers need of it."""

    name: str                        # the CLI's and the module names' word for it
    label: str                       # how reports name it
    kind: str                        # "tile" or "pe" (:data:`KINDS`)
    arithmetic: str                  # "spiking" or "mac" (:data:`ARITHMETICS`)
    build: Callable[[SpikeConfig], object]
    datasheet: Datasheet
    skip_zeros: bool = False         # weights are read only for nonzero inputs
    check: Callable[[SpikeConfig], None] | None = None   # refuses a configuration it cannot build, saying why
    cycles: Callable | None = None   # tiles: (cfg, mantissa rows) -> (cycles per token, ideal cycles)
    energy: EnergyRoles | None = None
    in_main_job: bool = True         # synthesized by the main job's synth step

    def __post_init__(self):
        if self.kind not in KINDS or self.arithmetic not in ARITHMETICS:
            raise ValueError(f"design {self.name!r}: kind must be one of {KINDS} and arithmetic one of {ARITHMETICS}")
        if self.is_tile and (self.cycles is None or self.energy is None):
            raise ValueError(f"tile design {self.name!r} must declare its cycles and its energy roles")

    @property
    def is_tile(self) -> bool:
        """A tile: buffers, a token handshake, a cycle model and energy roles (else a bare PE)."""
        return self.kind == KINDS[0]

    @property
    def is_mac(self) -> bool:
        """Multiply-accumulate arithmetic: a baseline the spiking designs are compared with."""
        return self.arithmetic == MAC_ARITHMETIC

    def component(self, cfg: SpikeConfig):
        """The Amaranth component for ``cfg``, after the design's own checks."""
        if not isinstance(cfg, SpikeConfig):
            raise TypeError(f"config must be a SpikeConfig, got {cfg!r}")
        if self.check is not None:
            self.check(cfg)
        return self.build(cfg)


_DESIGNS: dict[str, Design] = {}
BUILTIN = ("spikeacc.hw.design_spiking_pe", "spikeacc.hw.design_spiking_tile",
           "spikeacc.hw.design_mac_tile", "spikeacc.hw.design_mac_pe")
# The names the other layers default to: the spiking tile and PE, and the MAC every comparison starts from.
SPIKING_TILE, SPIKING_PE, DENSE_MAC = "tile", "pe", "mac"


def register(d: Design) -> Design:
    """Add a design; its name must be new (re-registering the same declaration is a no-op)."""
    if _DESIGNS.get(d.name, d) is not d:
        raise ValueError(f"a design named {d.name!r} is already registered")
    _DESIGNS[d.name] = d
    return d


def unregister(name: str) -> None:
    """Remove a design registered at run time (a test's toy design); the built-in ones stay."""
    if _DESIGNS.get(name) is not None and _DESIGNS[name].build.__module__ in BUILTIN:
        raise ValueError(f"{name!r} is a built-in design")
    _DESIGNS.pop(name, None)


def _load() -> dict[str, Design]:
    for module in BUILTIN:
        importlib.import_module(module)
    return _DESIGNS


def design(name: str) -> Design:
    """The design called ``name``; an unknown name is refused with the known ones."""
    designs = _load()
    if name not in designs:
        raise ValueError(f"unknown design {name!r}; choose one of {', '.join(designs)}")
    return designs[name]


def names() -> tuple[str, ...]:
    """Every registered design, in registration order."""
    return tuple(_load())


def tiles() -> tuple[str, ...]:
    return tuple(n for n, d in _load().items() if d.is_tile)


def pes() -> tuple[str, ...]:
    return tuple(n for n, d in _load().items() if not d.is_tile)


def spiking_tile() -> Design:
    return design(SPIKING_TILE)


def dense_mac() -> Design:
    return design(DENSE_MAC)


def macs() -> tuple[str, ...]:
    """The MAC tiles, the baselines a spiking tile is compared with."""
    return tuple(n for n in tiles() if design(n).is_mac)


def label(name: str) -> str:
    designs = _load()
    return designs[name].label if name in designs else name
