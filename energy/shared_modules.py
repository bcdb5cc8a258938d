"""One Verilog module per distinct submodule, so synthesis maps a PE once, not P times.

Amaranth writes every submodule instance as its own Verilog module
(``top.pe0`` … ``top.pe23``), identical but for the module's name and the
names of ports it derives from the parent's signals (``\\port$2281$89``).
Yosys would synthesize each copy separately: at SmolLM2's real shapes
(P = 24) that is most of the gate-level run's time. :func:`share_identical_modules`
keeps the first of each group of identical modules and points every
instance at it, renaming the instance's port connections to the kept
module's port names. Instance names (``pe7``) and hence SAIF scopes and
per-module energy are unchanged; the netlist is the same logic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SharedModules", "share_identical_modules"]

_MODULE = re.compile(r"(?ms)^((?:\(\*[^\n]*\*\)\n)*)module (\\?\S+)\s*\((.*?)\);\n(.*?)^endmodule\n")
_DERIVED_PORT = re.compile(r"\\port\$\d+\$\d+ ")   # a port named after the parent's signal: differs per copy
_BACKEND_COUNTER = re.compile(r"dump_module\$\d+")


@dataclass(frozen=True)
class SharedModules:
    verilog: str
    kept: dict[str, int]     # kept module -> how many instances now use it


def _ports(header: str) -> list[str]:
    return [p.strip() for p in header.split(",")]


def _canonical(header: str, body: str) -> str:
    names: dict[str, str] = {}
    text = header + ");\n" + body
    text = _DERIVED_PORT.sub(lambda mt: names.setdefault(mt.group(0), f"\\P{len(names)} "), text)
    return _BACKEND_COUNTER.sub("dump_module$", text)


def share_identical_modules(verilog: str) -> SharedModules:
    """``verilog`` with each group of identical submodules reduced to one definition."""
    modules = list(_MODULE.finditer(verilog))
    first_of: dict[str, str] = {}                 # canonical text -> kept module name
    kept_as: dict[str, str] = {}                  # module name -> kept module name
    ports_of = {mt.group(2): _ports(mt.group(3)) for mt in modules}
    for mt in modules:
        kept_as[mt.group(2)] = first_of.setdefault(_canonical(mt.group(3), mt.group(4)), mt.group(2))
    if all(kept_as[name] == name for name in kept_as):
        return SharedModules(verilog, {name: 1 for name in kept_as})
    out, kept = [], {}
    for mt in modules:
        name = mt.group(2)
        if kept_as[name] != name:
            continue
        out.append(_retarget_instances(mt.group(0), kept_as, ports_of))
        kept[name] = 0
    for name, target in kept_as.items():
        kept[target] += 1
    head = verilog[:modules[0].start()]
    return SharedModules(head + "\n".join(out), kept)


def _retarget_instances(module_text: str, kept_as: dict[str, str], ports_of: dict[str, list[str]]) -> str:
    """Point each instance of a dropped copy at its kept module, with its port connections renamed."""
    def retarget(mt: re.Match) -> str:
        kind, inst, connections = mt.group(1), mt.group(2), mt.group(3)
        target = kept_as.get(kind, kind)
        if target == kind:
            return mt.group(0)
        rename = dict(zip(ports_of[kind], ports_of[target]))
        connections = re.sub(r"\.(\\?\S+?) ?\(", lambda c: f".{rename.get(c.group(1), c.group(1))} (", connections)
        return f"  {_escaped(target)} {inst} ({connections});"

    return re.sub(r"(?ms)^  (\\\S+)\s+(\S+) \((.*?)\);", retarget, module_text)


def _escaped(name: str) -> str:
    """A Verilog escaped identifier ends at whitespace: keep the space after it."""
    return name + " " if name.startswith("\\") else name
