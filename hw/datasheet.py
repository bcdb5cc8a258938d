"""The datasheet of a generated design: every port bit, reset, timing and input range.

Everything here is read off the component itself (its ``wiring.Signature``,
the ``amaranth.lib.data`` layouts of its buffer words, its ``timing()``) and
the configuration, so the document cannot drift from the RTL. The same facts
go into the JSON manifest (``datasheet`` key) for scripts, and into
``<top>.md`` for people; :mod:`spikeacc.verif.outside_tb` builds a plain
Verilog testbench from the JSON alone to prove it is enough.
"""

from __future__ import annotations

from amaranth import Shape
from amaranth.lib import data

from spikeacc.config import SpikeConfig

__all__ = ["tile_timing_manifest", "symbols", "tile_cycles_closed_form", "describe_shape", "port_facts", "contract",
           "datasheet_facts", "datasheet_markdown", "example_word", "tile_example", "PE_RESET", "RESET", "HANDSHAKE"]


def describe_shape(shape) -> dict:
    """A port's data shape as JSON: plain ``{width, signed}``, or a struct/array with every bit placed.

    Amaranth's rule, stated here so nobody needs it: a struct's first field
    sits in the lowest bits; array element j occupies bits ``[j·stride, (j+1)·stride)``.
    """
    if isinstance(shape, data.ArrayLayout):
        element = describe_shape(shape.elem_shape)
        return {"width": shape.size, "array": {"length": shape.length, "stride": element["width"], "element": element}}
    if isinstance(shape, data.StructLayout):
        fields = []
        for name, field in shape:
            inner = describe_shape(field.shape)
            fields.append({"name": name, "offset": field.offset, **inner})
        return {"width": shape.size, "struct": fields}
    s = Shape.cast(shape)
    return {"width": s.width, "signed": s.signed}


def _leaves(desc: dict, name: str = "", base: int = 0):
    """(field name, bit offset, width, signed) of every scalar of a struct (or scalar) description."""
    if "struct" in desc:
        for field in desc["struct"]:
            yield from _leaves(field, f"{name}.{field['name']}", base + field["offset"])
    else:
        yield name, base, desc["width"], desc["signed"]


def _bit_rows(desc: dict) -> list[tuple[str, str, str]]:
    """(bits, field, type) rows of a port; an array shows element i by its bit formula."""
    arr = desc.get("array")
    rows = []
    for name, lo, width, signed in _leaves(arr["element"] if arr else desc):
        kind = f"{'signed' if signed else 'unsigned'}({width})"
        if arr is None:
            rows.append((f"[{lo + width - 1}:{lo}]", name, kind))
        elif arr["length"] > 1:
            rows.append((f"[{lo} + {arr['stride']}·i +: {width}]", f"[i]{name}, i = 0..{arr['length'] - 1}", kind))
        else:
            rows.append((f"[{lo + width - 1}:{lo}]", f"[i]{name}, i = 0..0", kind))
    return rows


def port_facts(signature) -> list[dict]:
    """Every top-level Verilog port in order, ``clk``/``rst`` first, with direction and bit layout."""
    ports = [{"name": "clk", "direction": "input", "width": 1, "signed": False},
             {"name": "rst", "direction": "input", "width": 1, "signed": False}]
    for path, member, _ in signature.flatten(signature.create()):
        desc = describe_shape(member.shape)
        desc.setdefault("signed", False)
        ports.append({"name": "__".join(str(p) for p in path),
                      "direction": "input" if member.flow.name.lower() == "in" else "output", **desc})
    return ports


def example_word(desc: dict, value) -> int:
    """Pack a nested Python value (dicts for structs, lists for arrays) as the port's integer."""
    if "array" in desc:
        arr = desc["array"]
        return sum(example_word(arr["element"], v) << (i * arr["stride"]) for i, v in enumerate(value))
    if "struct" in desc:
        return sum(example_word(f, value[f["name"]]) << f["offset"] for f in desc["struct"])
    return int(value) & ((1 << desc["width"]) - 1)


def contract(cfg: SpikeConfig, fields, checked: bool = True) -> dict:
    """Legal values of ``fields``, and what happens outside them.

    ``checked``: the design raises ``error`` on them (the tiles); a bare PE
    has no error flag, the tile around it checks.
    """
    def beyond(field_max: int, width: int, what: str) -> str:
        return "every value of the port is legal" if field_max == (1 << width) - 1 else what

    dont_care = ("raises `error`; the token's counts are then don't-care" if checked
                 else "is not checked; the count is then don't-care")
    when_read = ", when read," if checked else ""
    contract = {
        "mantissa": {"min": -cfg.mantissa_max, "max": cfg.mantissa_max,
                     "outside": f"{-(cfg.mantissa_max + 1)} fits the port but {dont_care}"},
        "shift": {"min": 0, "max": cfg.shift_max,
                  "outside": beyond(cfg.shift_max, cfg.shift_bits, f"a larger value that fits the port {dont_care}")},
        "weight": {"min": -cfg.weight_max, "max": cfg.weight_max,
                   "outside": f"{-(cfg.weight_max + 1)} fits the port but{when_read} {dont_care}"},
        "theta": {"min": 1, "max": cfg.theta_max,
                  "outside": f"Θ = 0 {dont_care} (it would fire 2^b_out − 1 spikes for any potential ≥ 0)"},
        "phi": {"min": -(cfg.phi_bound + 1), "max": cfg.phi_bound, "outside": "every value of the port is legal"},
        "token": {"min": 0, "max": cfg.max_tokens - 1,
                  "outside": beyond(cfg.max_tokens - 1, cfg.token_bits, f"a larger token that fits the port {dont_care}")},
        "exponent": {"min": cfg.exponent_min, "max": cfg.exponent_max,
                     "outside": (f"a value that fits the port but lies outside {cfg.exponent_min}..{cfg.exponent_max} "
                                 f"{dont_care}")},
        "scale_shift": {"min": cfg.scale_shift_min, "max": cfg.scale_shift_max,
                        "outside": "is not checked; the count is then don't-care"},
    }
    return {name: contract[name] for name in fields}


PE_RESET = ("`rst` is synchronous and active high; hold it high for at least one rising edge of `clk` after "
            "power-up. It clears every register of the neuron (accumulator or membrane, firing or requantizing "
            "stages, `count`). The design does not rely on Verilog initial values (the spiking PE's regression "
            "runs it with all of them removed, X-initial under Icarus).")


def _buffers(cfg: SpikeConfig, d) -> dict:
    K, L, P, B, M, R = cfg.in_features, cfg.lanes, cfg.pes, cfg.blocks, cfg.max_tokens, cfg.threshold_grid
    thresh_fields = "theta, phi: constants of the neuron, row r of its R = " + str(R)
    buffers = {
        "act": {"ports": ["act"], "depth": M * cfg.k_words, "address": f"token·{cfg.k_words} + word",
                "element": f"array element l of word `word` is input k = word·{L} + l",
                "fields": "mantissa, shift: the activation is mantissa · 2^shift"
                          + (f"; a mantissa of magnitude above {cfg.spike_max} is an integer outlier (Kirin), taken by the "
                             f"integer path" if cfg.kirin else ""),
                "reads": d.datasheet.activation_reads.format(words=cfg.k_words, blocks=B),
                "words_read_per_token": d.datasheet.activation_words_read(cfg)},
        "weight": {"ports": [f"weight__{j}" for j in range(L)], "depth": B * K, "address": f"block·{K} + k",
                   "element": f"array element p is the weight code of output neuron block·{P} + p for input k",
                   "fields": "weight code w (signed); every lane port reads the same contents",
                   "reads": d.datasheet.weight_reads + "; a −2^b_w weight raises `error` only when it is read"},
        "thresh": {"ports": ["thresh"], "depth": cfg.threshold_words, "address": f"block·{R} + r, r = exponent mod {R}",
                   "element": f"array element p belongs to output neuron block·{P} + p",
                   "fields": thresh_fields,
                   "reads": d.datasheet.threshold_reads},
        "out": {"ports": ["out"], "depth": M * B, "address": f"token·{B} + block",
                "element": f"array element p is the spike count of output neuron block·{P} + p",
                "fields": "count (unsigned)"},
    }
    return buffers


def symbols(cfg: SpikeConfig) -> dict:
    """The letters the datasheet uses, with their values in this configuration."""
    out = {"K": f"inputs per output neuron (in_features) = {cfg.in_features}",
           "N": f"output neurons (out_features) = {cfg.out_features}",
           "P": f"output neurons computed in parallel, one block (pes) = {cfg.pes}",
           "L": f"activation lanes read per cycle (lanes) = {cfg.lanes}",
           "T": f"time steps of a TTFS window, 2^a_bits = {cfg.window} (a mantissa m spikes at step T − |m|)",
           "F": f"fraction bits of Θ and Φ (frac_bits) = {cfg.frac_bits}",
           "b_out": f"output count width (out_bits) = {cfg.out_bits}",
           "R": (f"threshold constants per neuron (threshold_grid) = {cfg.threshold_grid}: token steps on the grid "
                 f"2^(−j/R) (input_step {cfg.input_step})"),
           "d": (f"a token's exponent (the `exponent` input) = R·s + r: row r = d mod R of the constants, scale "
                 f"shift s = floor(d/R), {cfg.scale_shift_min}..{cfg.scale_shift_max}"),
           "M": f"tokens the buffers address (max_tokens) = {cfg.max_tokens}"}
    if cfg.kirin:
        out["B"] = f"Kirin outlier width (outlier_bits) = {cfg.outlier_bits}"
    return out


PORT_ROLES = {
    "clk": "clock, rising edge",
    "rst": "synchronous reset, active high (see Clock and reset)",
    "start": "begin the token `token`: sampled on a rising edge while `busy` is low",
    "token": "the token to compute: selects its activation and output buffer words; captured with `start`",
    "exponent": ("the token's step exponent d (two's complement), captured with `start`: threshold row r = d mod R "
                 "with 0 ≤ r < R for negative d too (floor modulo; C's `%` gives a negative remainder), scale "
                 "shift floor(d/R)"),
    "busy": "high while a token is computed, exactly `cycles` cycles",
    "done": "strobes one cycle when the token's last output word has been written",
    "cycles": ("cycles since the last `start`: counts up by one each cycle while `busy`, frozen from `done` until "
               "the next `start`"),
    "block": ("progress only: the block of P neurons being read or replayed; its value while output words are "
              "written is not the written block (use `out__addr`) and differs between the spiking, Kirin and "
              "MAC tiles"),
    "error": ("a word read for this token was outside the input ranges; cleared at `start`, valid with `done`, "
              "held after `done` until the next `start`"),
}


def tile_cycles_closed_form(cfg: SpikeConfig, nonzero_per_magnitude, outliers: int = 0) -> int:
    """The datasheet's cycle formula for the spiking tile (equal to :func:`~spikeacc.hw.tile.tile_cycles`)."""
    from spikeacc.hw.tile import SpikingTile

    rows = sum(max(1, -(-int(nonzero_per_magnitude[m]) // cfg.lanes)) for m in range(1, cfg.window))
    rows += cfg.outlier_planes * -(-int(outliers) // cfg.lanes)
    gap = SpikingTile.fire_gap_for(cfg)
    return (cfg.k_words + SpikingTile.ENCODE_TAIL + (1 + rows) + (cfg.blocks - 1) * max(1 + rows, gap)
            + gap + 1 + SpikingTile.PIPELINE)


def tile_timing_manifest(d, component) -> dict:
    """The component's timing constants with their units and reference points (the manifest's ``timing``)."""
    values = d.datasheet.timing(component) if d.datasheet.timing else dict(component.timing())
    return {"units": "cycles of clk (rising edges)", "values": values,
            "meaning": {k: d.datasheet.timing_meaning[k] for k in values}}


HANDSHAKE = [
    "`start` is sampled on a rising edge while `busy` is low; `token` and `exponent` are captured on that same edge.",
    "`busy` is high from the next cycle for exactly `cycles` cycles; `start` is ignored meanwhile.",
    "`done` is high for one cycle, the cycle after `busy` falls; a `start` in that cycle is accepted.",
    "`cycles` is reset at `start` and holds its final value from `done` until the next `start`.",
    "`error` is cleared at `start`, is valid with `done` and holds its value after `done` until the next `start`.",
    "A token that raises `error` still runs to the end: it writes every one of its output words (their counts "
    "are don't-care) and strobes `done`; only its `cycles` may differ from the formula.",
    "Every buffer port reads synchronously: data must appear on `*__data` one cycle after a cycle with "
    "`*__en` high, and hold while `en` is low. `out__data` is valid in cycles with `out__en` high.",
]

RESET = ("`rst` is synchronous and active high. Hold it high for at least one rising edge of `clk` after "
         "power-up, with `start` low. It clears the control FSM, the pipeline valid bits, the firing units, "
         "`busy`, `done`, `error` and `cycles`. Reset while `busy` aborts the token cleanly: the design is idle "
         "after it, the aborted token's output words are don't-care, and the next `start` runs normally. "
         "Memories inside the design (the event queues) need no reset: every word is written before it is "
         "read. The design does not rely on Verilog initial values: `<top>_noinit.v` in the package is the same "
         "design with every initial value removed (X-initial); the example testbench runs it when given "
         "`<top>_noinit.v` in place of `<top>.v` (its README says how). "
         "Simulator settings: under Icarus use `-g2005`; with `-g2012` the generated `always @*` blocks wait "
         "for a time-0 event that SystemVerilog semantics never give, so `thresh__en` (and in the Kirin and "
         "MAC tiles more enables) are X from power-up until the first `start`, and a declaration initialiser "
         "on `rst` (`reg rst = 1;`) can leave `out__en` X for up to three cycles. Drive `rst` from the "
         "testbench's reset sequence.")


def datasheet_facts(d, cfg: SpikeConfig, component, top: str) -> dict:
    """Everything an integrator needs, as JSON (the manifest's ``datasheet`` key).

    The sections every tile shares are assembled here; the design's own
    (timing and diagram of a tile, the protocol and ranges of a PE) come from
    its declaration (:class:`~spikeacc.hw.registry.Datasheet`).
    """
    facts = {"top": top, "ports": port_facts(component.signature), "clock": "clk, rising edge",
             "reset": RESET}
    if d.is_tile:
        facts.update({"handshake": HANDSHAKE, "buffers": _buffers(cfg, d),
                      "contract": contract(cfg, ("mantissa", "shift", "weight", "theta", "phi", "token", "exponent"))})
        facts.update(d.datasheet.facts(cfg, component))
        facts.update({"symbols": symbols(cfg), "port_roles": PORT_ROLES,
                      "computes": ("for every token t and output neuron i: count[t, i] = "
                                   "clamp(floor((floor(2^F·acc / 2^s) + Φ[r, i]) / Θ[r, i]), 0, 2^b_out − 1), "
                                   "acc = Σ_k w[i, k]·mantissa[t, k]·2^shift[t, k], with the token's exponent d: "
                                   f"r = d mod R, s = floor(d / R); F = {cfg.frac_bits}, b_out = {cfg.out_bits}, "
                                   f"R = {cfg.threshold_grid}. The thresholds are per-neuron constants; the "
                                   "token's step reaches the neurons as the scale shift s, a shift of the "
                                   "accumulator (left by F − s, or arithmetic right by s − F)."
                                   + (f" Kirin (outlier_bits B = {cfg.outlier_bits}): an activation whose "
                                      f"|mantissa| exceeds {cfg.spike_max} is an integer outlier q, scaled by its "
                                      "shift like any other (it adds w·q·2^shift to acc); the neurons fire by "
                                      "silence threshold, one spike at step k = 2^b_out − count, which gives the "
                                      "same counts as the formula." if cfg.kirin else ""))})
    else:
        facts.update(d.datasheet.facts(cfg, component))
    example = (d.datasheet.example or tile_example)(cfg)
    facts["example"] = _example_words(example, facts["ports"])
    return facts


def tile_example(cfg: SpikeConfig) -> dict:
    """One worked word per buffer port of a tile (every tile has the same buffers)."""
    P, L = cfg.pes, cfg.lanes
    neuron = {"theta": 3 << cfg.frac_bits, "phi": -(1 << (cfg.frac_bits - 1))}   # one constant of row r
    return {"act__data": [{"mantissa": -3 if j == 0 else j + 1, "shift": min(j, cfg.shift_max)} for j in range(L)],
            "weight__0__data": [(-1) ** p * (p + 1) for p in range(P)],
            "thresh__data": [neuron] * P,
            "out__data": [min(p * 3, cfg.max_count) for p in range(P)]}


def _example_words(values: dict, ports: list[dict]) -> list[dict]:
    """One worked word per data port: the value, and the hex an integrator's memory file holds."""
    by_name = {p["name"]: p for p in ports}
    return [{"port": name, "value": value,
             "hex": f"{example_word(by_name[name], value):0{-(-by_name[name]['width'] // 4)}x}"}
            for name, value in values.items()]


def datasheet_markdown(facts: dict, cfg: SpikeConfig) -> str:
    """``<top>.md``: the facts as tables and prose."""
    out = [f"# {facts['top']}: datasheet", "",
           f"Generated by spikeacc from configuration `{cfg.tag}`; regenerate rather than edit. "
           f"The same facts are in `{facts['top']}.json` under `datasheet`.", ""]
    if "computes" in facts:
        out += ["## What it computes", "", facts["computes"], ""]
    if "symbols" in facts:
        out += ["## Symbols", "", "| symbol | meaning |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in facts["symbols"].items()] + [""]
    out += ["## Clock and reset", "", f"Clock: {facts['clock']}. {facts['reset']}", "", "## Ports", "",
            "| port | dir | width | type | role |", "|---|---|---|---|---|"]
    roles = facts.get("port_roles", {})
    for p in facts["ports"]:
        kind = ("struct/array, see layout" if ("struct" in p or "array" in p)
                else ("signed" if p["signed"] else "unsigned"))
        buffer = p["name"].split("__")[0]
        role = roles.get(p["name"], f"buffer port of `{buffer}` (see Buffers)" if "__" in p["name"] else "")
        out.append(f"| `{p['name']}` | {p['direction']} | {p['width']} | {kind} | {role} |")
    out += ["", "## Bit layouts", "",
            "Bits are numbered from 0 (least significant). A struct's first field is in the lowest bits; "
            "array element i starts at bit i·stride.", ""]
    for p in facts["ports"]:
        if "struct" in p or "array" in p:
            out += [f"### `{p['name']}` ({p['width']} bits)", "", "| bits | field | type |", "|---|---|---|"]
            out += [f"| `{bits}` | `{name or p['name']}` | {kind} |" for bits, name, kind in _bit_rows(p)]
            out.append("")
    out += ["Worked examples (the hex is what a `$readmemh` file holds for that word):", ""]
    out += [f"- `{ex['port']}` = `{ex['value']}` → `{ex['hex']}`" for ex in facts["example"]]
    out.append("")
    if "buffers" in facts:
        out += ["## Buffers", "", "| buffer | ports | depth | address | element order | fields | which words are read |",
                "|---|---|---|---|---|---|---|"]
        for name, b in facts["buffers"].items():
            out.append(f"| {name} | {', '.join(f'`{p}`' for p in b['ports'])} | {b['depth']} | "
                       f"`{b['address']}` | {b['element']} | {b['fields']} | {b.get('reads', 'each word once')} |")
        out += ["", "## Handshake and timing", ""] + [f"- {line}" for line in facts["handshake"]]
        out += [f"- {line}" for line in facts.get("schedule", [])]
        t = facts["timing"]
        out += ["", f"Cycles per token, exactly as the `cycles` port reports them ({t['scope']}):", "",
                f"    {t['cycles_formula']}", "",
                "One token (not to scale):", "", "```text", facts["diagram"], "```", ""]
    if "protocol" in facts:
        out += ["## Protocol", ""] + [f"{i + 1}. {line}" for i, line in enumerate(facts["protocol"])] + [""]
    out += ["## Input ranges", "", "| field | min | max | outside the range |", "|---|---|---|---|"]
    for name, c in facts["contract"].items():
        out.append(f"| {name} | {c['min']} | {c['max']} | {c['outside']} |")
    return "\n".join(out) + "\n"
