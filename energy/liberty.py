"""A Liberty (.lib) reader for gate-level power, and functional Verilog models of its cells.

Only what energy needs: per cell its area, leakage, flip-flops, pins (direction,
capacitance, ``function``) and ``internal_power`` tables (per output transition,
indexed by load and input slew; per input transition for passive pins such as a
flip-flop's clock). The OSU 0.18 µm library's own ``.v`` models use primitives
Verilator rejects, so :func:`cell_models` writes plain ``assign``/``always``
models from the Liberty ``function``/``ff`` attributes instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeacc.workdirs import input_file

__all__ = ["Group", "parse_liberty", "Library", "Cell", "Pin", "load_library", "cell_models", "DEFAULT_LIBERTY"]

DEFAULT_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")  # Debian qflow-tech-osu018


@dataclass
class Group:
    """``kind (args) { attrs; groups }`` of the Liberty syntax."""

    kind: str
    args: list[str]
    attrs: dict[str, str] = field(default_factory=dict)
    groups: list["Group"] = field(default_factory=list)

    def all(self, kind: str) -> list["Group"]:
        return [g for g in self.groups if g.kind == kind]


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}();:,]|[^\s{}();:,"]+')


def parse_liberty(text: str) -> Group:
    """The top ``library`` group of a Liberty file."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S).replace("\\\n", " ")
    tokens = _TOKEN.findall(text)
    pos = 0

    def group(kind: str, args: list[str]) -> Group:
        nonlocal pos
        g = Group(kind, args)
        while tokens[pos] != "}":
            name = tokens[pos]
            pos += 1
            if tokens[pos] == ":":          # simple attribute
                value = tokens[pos + 1]
                pos += 2
                while tokens[pos] != ";" and tokens[pos] != "}" and not tokens[pos + 1] in (":", "("):
                    value += " " + tokens[pos]
                    pos += 1
                if tokens[pos] == ";":
                    pos += 1
                g.attrs[name] = value.strip('"')
            elif tokens[pos] == "(":         # group or complex attribute
                pos += 1
                args_: list[str] = []
                while tokens[pos] != ")":
                    if tokens[pos] != ",":
                        args_.append(tokens[pos].strip('"'))
                    pos += 1
                pos += 1
                if pos < len(tokens) and tokens[pos] == "{":
                    pos += 1
                    g.groups.append(group(name, args_))
                    pos += 1                  # the closing brace
                else:
                    if pos < len(tokens) and tokens[pos] == ";":
                        pos += 1
                    g.attrs.setdefault(name, ", ".join(args_))
            else:
                raise ValueError(f"Liberty syntax: unexpected {tokens[pos]!r} after {name!r}")
        return g

    while tokens[pos] != "library":
        pos += 1
    name = tokens[pos + 2].strip('"')
    pos += 5  # library ( name ) {
    return group("library", [name])


def _floats(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.replace('"', " ").replace(",", " ").split()])


@dataclass
class PowerTable:
    """Energy per transition (pJ); 2-D over (load pF, input slew ns), or 1-D over slew."""

    index_1: np.ndarray
    index_2: np.ndarray | None
    values: np.ndarray
    load_first: bool = True

    def at(self, load: float, slew: float) -> float:
        if self.index_2 is None:
            return float(np.interp(slew, self.index_1, self.values))
        a, b = (load, slew) if self.load_first else (slew, load)
        rows = np.array([np.interp(b, self.index_2, row) for row in self.values.reshape(len(self.index_1), -1)])
        return float(np.interp(a, self.index_1, rows))


@dataclass
class Pin:
    name: str
    direction: str
    capacitance: float = 0.0
    function: str | None = None
    clock: bool = False
    # related pin (or "" for a passive input pin) -> (rise, fall) energy tables
    power: dict[str, tuple[PowerTable | None, PowerTable | None]] = field(default_factory=dict)


@dataclass
class Cell:
    name: str
    area: float
    leakage_nw: float
    pins: dict[str, Pin]
    ff: dict | None = None       # {"state": .., "next_state": .., "clocked_on": .., "clear": .., "preset": ..}
    latch: bool = False

    @property
    def clock_pin(self) -> str | None:
        """The pin a flip-flop is clocked on (``clocked_on`` without its inversion), or None."""
        return re.sub(r"[!()' ]", "", self.ff["clocked_on"]) if self.ff else None

    @property
    def outputs(self) -> list[str]:
        return [p for p, pin in self.pins.items() if pin.direction == "output"]

    @property
    def inputs(self) -> list[str]:
        return [p for p, pin in self.pins.items() if pin.direction == "input"]


@dataclass
class Library:
    name: str
    voltage: float
    cells: dict[str, Cell]
    path: Path


def _table(g: Group, templates: dict[str, Group]) -> PowerTable:
    template = templates.get(g.args[0]) if g.args else None
    i1 = _floats(g.attrs["index_1"]) if "index_1" in g.attrs else _floats(template.attrs["index_1"])
    i2_text = g.attrs.get("index_2") or (template.attrs.get("index_2") if template else None)
    values = _floats(g.attrs["values"])
    load_first = True
    if template is not None:
        load_first = template.attrs.get("variable_1", "total_output_net_capacitance") == "total_output_net_capacitance"
    return PowerTable(i1, _floats(i2_text) if i2_text else None, values, load_first)


def load_library(path: str | Path = DEFAULT_LIBERTY) -> Library:
    """Read a Liberty file; refuses one without cells, with a message naming the file."""
    path = input_file(path, "Liberty file")
    try:
        lib = parse_liberty(path.read_text(errors="replace"))
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"Liberty file {path} cannot be read as Liberty ({type(exc).__name__}: {exc})") from None
    templates = {g.args[0]: g for g in lib.groups if g.kind == "power_lut_template" and g.args}
    voltage = float(lib.attrs.get("nom_voltage", "1.8"))
    cells = {}
    for c in lib.all("cell"):
        pins = {}
        for p in c.all("pin"):
            pin = Pin(p.args[0], p.attrs.get("direction", "input"), float(p.attrs.get("capacitance", 0) or 0),
                      p.attrs.get("function"), p.attrs.get("clock") == "true")
            for ip in p.all("internal_power"):
                rise = next((_table(t, templates) for t in ip.all("rise_power")), None)
                fall = next((_table(t, templates) for t in ip.all("fall_power")), None)
                pin.power[ip.attrs.get("related_pin", "")] = (rise, fall)
            pins[pin.name] = pin
        ff = None
        for f in c.all("ff"):
            ff = {"state": f.args[0], "state_n": f.args[1] if len(f.args) > 1 else None,
                  **{k: f.attrs.get(k) for k in ("next_state", "clocked_on", "clear", "preset")}}
        cells[c.args[0]] = Cell(c.args[0], float(c.attrs.get("area", 0)), float(c.attrs.get("cell_leakage_power", 0)),
                                pins, ff, bool(c.all("latch")))
    if not cells:
        raise ValueError(f"{path} has no cells; is it a Liberty file?")
    return Library(lib.args[0], voltage, cells, path)


def _verilog_expr(function: str) -> str:
    """A Liberty boolean ``function`` as a Verilog expression (``!``/``'`` not, ``*``/``&``/space and, ``+``/``|`` or)."""
    tokens = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[()!'^*&|+]", function)
    out: list[str] = []
    prev_operand = False
    for tok in tokens:
        is_operand_start = tok == "(" or tok == "!" or re.match(r"[A-Za-z_]", tok)
        if prev_operand and is_operand_start:
            out.append("&")                   # juxtaposition is AND
        if tok == "'":
            # postfix NOT applies to the previous operand (a name or a parenthesised group)
            if out[-1] == ")":
                depth, i = 0, len(out) - 1
                while True:
                    depth += out[i] == ")"
                    depth -= out[i] == "("
                    if depth == 0:
                        break
                    i -= 1
                out.insert(i, "~")
            else:
                out.insert(len(out) - 1, "~")
            prev_operand = True
            continue
        out.append({"!": "~", "*": "&", "+": "|"}.get(tok, tok))
        prev_operand = tok == ")" or bool(re.match(r"[A-Za-z_]", tok))
    return " ".join(out)


def cell_models(library: Library) -> str:
    """Verilog modules for every cell a netlist may use: functions as ``assign``, ``ff`` groups as ``always``."""
    modules = [f"// Functional models of {library.path.name}, generated by spikeacc from its Liberty attributes."]
    for cell in library.cells.values():
        if cell.latch:
            continue  # never mapped: yosys is told not to use latches
        ports = cell.inputs + cell.outputs
        lines = [f"module {cell.name} ({', '.join(ports)});"]
        lines += [f"  input {p};" for p in cell.inputs]
        lines += [f"  output {p};" for p in cell.outputs]
        if cell.ff:
            st, st_n = cell.ff["state"], cell.ff["state_n"]
            edge = "negedge" if cell.ff["clocked_on"].strip().startswith(("!", "(!")) else "posedge"
            lines.append(f"  reg {st};")
            sens = [f"{edge} {cell.clock_pin}"]
            body = []
            clear, preset = cell.ff.get("clear"), cell.ff.get("preset")
            for cond, value in ((clear, "1'b0"), (preset, "1'b1")):
                if cond:
                    pin = re.sub(r"[!()' ]", "", cond)
                    active_low = "!" in cond or "'" in cond
                    sens.append(f"{'negedge' if active_low else 'posedge'} {pin}")
                    body.append((f"({_verilog_expr(cond)})", value))
            chain = "    "
            for cond, value in body:
                chain += f"if {cond} {st} <= {value};\n    else "
            chain += f"{st} <= {_verilog_expr(cell.ff['next_state'])};"
            lines.append(f"  always @({' or '.join(sens)})\n{chain}")
            if st_n:
                lines.append(f"  wire {st_n} = ~{st};")
        for p in cell.outputs:
            fn = cell.pins[p].function
            if fn is None:
                continue
            lines.append(f"  assign {p} = {_verilog_expr(fn)};")
        lines.append("endmodule")
        modules.append("\n".join(lines))
    return "\n\n".join(modules) + "\n"
