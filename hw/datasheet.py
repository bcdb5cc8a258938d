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

__all__ = ["timing_manifest", "symbols", "tile_cycles_closed_form", "describe_shape", "port_facts", "datasheet_facts", "datasheet_markdown", "example_word"]


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


def _contract(cfg: SpikeConfig, fields, checked: bool = True) -> dict:
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


def _buffers(cfg: SpikeConfig, design: str) -> dict:
    K, L, P, B, M, R = cfg.in_features, cfg.lanes, cfg.pes, cfg.blocks, cfg.max_tokens, cfg.threshold_grid
    thresh_fields = "theta, phi: constants of the neuron, row r of its R = " + str(R)
    reads = {"tile": "read only for inputs whose mantissa is nonzero (a Kirin outlier: once per set bit of |q|), "
                     "once per block",
             "mac": "every word is read for every block, zeros included",
             "mac_skip": "read only for inputs whose mantissa is nonzero, once per block, a cycle after their "
                         "activation word"}[design]
    buffers = {
        "act": {"ports": ["act"], "depth": M * cfg.k_words, "address": f"token·{cfg.k_words} + word",
                "element": f"array element l of word `word` is input k = word·{L} + l",
                "fields": "mantissa, shift: the activation is mantissa · 2^shift"
                          + (f"; a mantissa of magnitude above {cfg.spike_max} is an integer outlier (Kirin), taken by the "
                             f"integer path" if cfg.kirin else "")},
        "weight": {"ports": [f"weight__{j}" for j in range(L)], "depth": B * K, "address": f"block·{K} + k",
                   "element": f"array element p is the weight code of output neuron block·{P} + p for input k",
                   "fields": "weight code w (signed); every lane port reads the same contents",
                   "reads": reads + "; a −2^b_w weight raises `error` only when it is read"},
        "thresh": {"ports": ["thresh"], "depth": cfg.threshold_words, "address": f"block·{R} + r, r = exponent mod {R}",
                   "element": f"array element p belongs to output neuron block·{P} + p",
                   "fields": thresh_fields,
                   "reads": ("one word per block and token, as the block opens" if design == "tile" else
                             "one word per block and token, with the block's last weights")},
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
    "exponent": "the token's step exponent d, captured with `start`: threshold row d mod R, scale shift floor(d/R)",
    "busy": "high while a token is computed, exactly `cycles` cycles",
    "done": "strobes one cycle when the token's last output word has been written",
    "cycles": "cycles since the last `start`, frozen from `done` until the next `start`",
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


FIRING_PROTOCOL = {
    "division": ("`firing = division`: the count is found by restoring division, one bit per cycle; it is final "
                 "at most {fire_cycles} cycles after `fire` (2 when it saturates), and `done` strobes the "
                 "cycle after; `spike_out` strobes with `done` when the count is nonzero."),
    "serial": ("`firing = serial`: the neuron fires while V ≥ Θ, subtracting Θ, one spike per cycle on "
               "`spike_out`, at most 2^b_out − 1 times; `done` strobes n + 1 cycles after `fire` for n spikes."),
    "silence": ("`firing = silence` (Kirin): an output window of steps k = 1..{steps}, one per cycle after `fire`; "
                "the threshold falls as (2^b_out − k)·Θ and the neuron fires once, at the first k with V ≥ θ_k: "
                "`spike_out` strobes in that cycle, `fire_step` = k and `count` = 2^b_out − k (a neuron that "
                "stays silent: both 0). `done` strobes {fire_cycles} cycles after `fire`, always."),
}


def _tile_timing(cfg: SpikeConfig, design: str, component) -> dict:
    if design in MAC_TILES:
        cycles = component.timing()["cycles_per_token"]
        return {"cycles_formula": f"cycles = (N/P)·(K/L) + {component.output_delay + 2} = {cycles}",
                "cycles_exact": cycles,
                "scope": "for every token: the MAC streams every word whatever its value"}
    gap = component.fire_gap
    return {
        "cycles_formula": (f"cycles = (K/L + {component.ENCODE_TAIL}) + (1 + E) + (N/P − 1)·max(1 + E, {gap}) "
                           f"+ {gap + 1 + component.PIPELINE}, "
                           "E (rows of events per block) = Σ_{t=1}^{T−1} max(1, ⌈n_t/L⌉)"
                           + (f" + {cfg.outlier_planes}·⌈n_q/L⌉" if cfg.kirin else "")
                           + ", n_t = number of inputs with |mantissa| = T − t"
                           + (f", n_q = number of integer outliers (|mantissa| > {cfg.spike_max})"
                              if cfg.kirin else "")),
        "encode_cycles": cfg.k_words + component.ENCODE_TAIL,
        "fire_gap": gap,
        "scope": ("for tokens inside the input ranges; a token that raises `error` may take a different number "
                  "of cycles" + (f" (a mantissa of −{cfg.outlier_max + 1} is no outlier to the hardware, though "
                                 f"|−{cfg.outlier_max + 1}| > {cfg.spike_max})" if cfg.kirin else "")),
    }


TIMING_MEANING = {
    "tile": {"pipeline": "stages from the sequencer to the PEs (sequencer → queue read → weight read)",
             "fire_capture_delay": "from a fire to the capture of that block's counts",
             "fire_gap": "fewest cycles between two fires",
             "write_delay": ("from the cycle with `thresh__en` high that opens block b + 1 (for the last block: "
                             "the cycle after its last row of events, which fires it) to the cycle with `out__en` "
                             "high for block b"),
             "encode_cycles": "from the cycle after `start` to the end of the encode pass (K/L reads + 2)",
             "lanes": "L (not a time)", "pes": "P (not a time)"},
    "mac": {"cycles_per_token": "from the cycle after `start` to the cycle before `done`, as `cycles` reports",
            "output_delay": "from the cycle after a block's last `act__en` to its `out__en`: the shared "
                            "requantizer takes one output per cycle",
            "write_delay": "from the cycle with `act__en` high for a block's last word to that block's `out__en`"},
}
TIMING_MEANING["mac_skip"] = TIMING_MEANING["mac"]
MAC_TILES = ("mac", "mac_skip")


def timing_manifest(design: str, component) -> dict:
    """The component's timing constants with their units and reference points (the manifest's ``timing``)."""
    values = dict(component.timing())
    if design in MAC_TILES:
        values["write_delay"] = values["output_delay"] + 1
    return {"units": "cycles of clk (rising edges)", "values": values,
            "meaning": {k: TIMING_MEANING[design][k] for k in values}}


HANDSHAKE = [
    "`start` is sampled on a rising edge while `busy` is low; `token` and `exponent` are captured on that same edge.",
    "`busy` is high from the next cycle for exactly `cycles` cycles; `start` is ignored meanwhile.",
    "`done` is high for one cycle, the cycle after `busy` falls; a `start` in that cycle is accepted.",
    "`cycles` is reset at `start` and holds its final value from `done` until the next `start`.",
    "`error` is cleared at `start`, is valid with `done` and holds its value after `done` until the next `start`.",
    "Every buffer port reads synchronously: data must appear on `*__data` one cycle after a cycle with "
    "`*__en` high, and hold while `en` is low. `out__data` is valid in cycles with `out__en` high.",
]

RESET = ("`rst` is synchronous and active high. Hold it high for at least one rising edge of `clk` after "
         "power-up, with `start` low. It clears the control FSM, the pipeline valid bits, the firing units, "
         "`busy`, `done`, `error` and `cycles`. Reset while `busy` aborts the token cleanly: the design is idle "
         "after it, the aborted token's output words are don't-care, and the next `start` runs normally. "
         "Memories inside the design (the event queues) need no reset: every word is written before it is "
         "read. The design does not rely on Verilog initial values: `<top>_noinit.v` in the package is the same "
         "design with every initial value removed (X-initial), and the example testbench runs it too. "
         "Simulator settings: under Icarus use `-g2005`; with `-g2012` the generated `always @*` blocks wait "
         "for a time-0 event that SystemVerilog semantics never give, so `thresh__en` (and in the Kirin and "
         "MAC tiles more enables) are X from power-up until the first `start`, and a declaration initialiser "
         "on `rst` (`reg rst = 1;`) can leave `out__en` X for up to three cycles. Drive `rst` from the "
         "testbench's reset sequence.")


def _tile_diagram(cfg: SpikeConfig, design: str) -> str:
    from spikeacc.hw.mac import mac_output_delay
    from spikeacc.hw.tile import SpikingTile

    if design in MAC_TILES:
        delay = mac_output_delay(cfg, skip_zeros=design == "mac_skip")
        return "\n".join([
            "clk        _|‾|_|‾|_|‾|_|‾|_|‾|_ ... _|‾|_|‾|_|‾|_|‾|_",
            "start      _/‾‾‾\\_________________ ... ______________",
            "busy       _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾ ... ‾‾‾‾‾‾‾‾‾\\______",
            "act__en    _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾ ... ‾‾‾\\____________   (K/L words per block, every block)",
            "thresh__en _______________/‾‾‾\\__ ... ______________   (with the last word of each block)",
            f"out__en    ____________________ .../‾‾‾\\___________   "
            f"({delay + 1} cycles after the act__en of each block's last word)",
            "done       ____________________ ... _________/‾‾‾\\_",
        ])
    return "\n".join([
        "           |start| encode (K/L + 2) | block 0: open, E rows | block 1: open+fire 0 ... | last fire | drain |",
        "start      _/‾‾‾\\_____________________________________________________________________________________",
        "busy       _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾\\____",
        "act__en    _____/‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾‾\\__________________________________________________________________",
        "thresh__en ________________________/‾\\____________________/‾\\_________________________________________",
        "weight__en __________________________/‾‾\\_/‾‾‾\\_‾‾\\____________/‾‾\\_/‾‾\\___________________________   "
        "(lanes carrying an event)",
        f"out__en    _______________________________________________________/‾\\_____ ... __________/‾\\______   "
        f"(block b: {SpikingTile.write_delay_for(cfg)} cycles after the thresh__en opening block b + 1; "
        "the last block: after the cycle that follows its last row of events)",
        "done       _____________________________________________________________________________________/‾\\",
    ])


def datasheet_facts(design: str, cfg: SpikeConfig, component, top: str) -> dict:
    """Everything an integrator needs, as JSON (the manifest's ``datasheet`` key)."""
    facts = {"top": top, "ports": port_facts(component.signature), "clock": "clk, rising edge",
             "reset": RESET}
    if design in ("tile", *MAC_TILES):
        facts.update({"handshake": HANDSHAKE, "buffers": _buffers(cfg, design),
                      "contract": _contract(cfg, ("mantissa", "shift", "weight", "theta", "phi", "token", "exponent")),
                      "timing": _tile_timing(cfg, design, component), "diagram": _tile_diagram(cfg, design),
                      "symbols": symbols(cfg), "port_roles": PORT_ROLES,
                      "computes": ("for every token t and output neuron i: count[t, i] = "
                                   "clamp(floor((floor(2^F·acc / 2^s) + Φ[r, i]) / Θ[r, i]), 0, 2^b_out − 1), "
                                   "acc = Σ_k w[i, k]·mantissa[t, k]·2^shift[t, k], with the token's exponent d: "
                                   f"r = d mod R, s = floor(d / R); F = {cfg.frac_bits}, b_out = {cfg.out_bits}, "
                                   f"R = {cfg.threshold_grid}. The thresholds are per-neuron constants; the "
                                   "token's step reaches the neurons as the scale shift s, a shift of the "
                                   "accumulator (left by F − s, or arithmetic right by s − F).")})
    elif design == "pe":
        facts["protocol"] = [
            "Assert `start` for one cycle with `theta`, `phi` and `scale_shift` valid: current ← 0, membrane ← 0, "
            "Θ, Φ and s latched.",
            f"For each time step t = 1..{cfg.window - 1}, present the spikes of the inputs with |mantissa| = "
            f"T − t (T = {cfg.window}), up to {cfg.lanes} per cycle on `spikes`, with `step` high on the last "
            "cycle of the step (a step with no spike still takes one cycle with `step` high).",
            "Assert `fire` for one cycle (no spikes, no step): `count` becomes clamp(floor(V/Θ), 0, "
            "2^b_out − 1) for the potential V = floor(2^F·Σ/2^s) + Φ. `fire` may coincide with the next `start`.",
            FIRING_PROTOCOL[cfg.firing].format(fire_cycles=cfg.fire_cycles, steps=cfg.max_count),
            "`count` is valid from `done` until the next `fire`.",
        ]
        if cfg.kirin:
            facts["protocol"].insert(2, (
                f"Kirin integer outliers (|q| in {cfg.spike_max + 1}..{cfg.outlier_max}, shift e): in the cycles of "
                f"step {cfg.window - 1}, after its spikes and before `step`, present one spike per set bit j of |q| "
                f"(j = 0..{cfg.outlier_planes - 1}) with shift e + j and the sign of q: the PE adds w·q·2^e once."))
        facts["contract"] = _contract(cfg, ("shift", "weight", "theta", "phi", "scale_shift"), checked=False)
        facts["reset"] = PE_RESET
    elif design == "mac_pe":
        facts["protocol"] = [
            f"Each cycle, present up to {cfg.lanes} (weight, mantissa, shift) triples on `inputs` with `valid` set; "
            "the PE adds Σ (w·m) << e to its accumulator.",
            "Assert `clear` with the first word of a neuron: the accumulator restarts from that word, and `params` "
            "(Θ, Φ) and `scale_shift` s are sampled.",
            "Assert `requant` with the last word: `count` = clamp(floor(y/Θ), 0, 2^b_out − 1) with "
            "y = floor(2^F·acc/2^s) + Φ, computed by restoring division, is valid from the third cycle after it, "
            "while the next neuron accumulates.",
        ]
        facts["contract"] = _contract(cfg, ("mantissa", "shift", "weight", "theta", "phi", "scale_shift"),
                                      checked=False)
        facts["reset"] = PE_RESET
    facts["example"] = _example(design, cfg, facts["ports"])
    return facts


def _example(design: str, cfg: SpikeConfig, ports: list[dict]) -> list[dict]:
    """One worked word per data port: the value, and the hex an integrator's memory file holds."""
    by_name = {p["name"]: p for p in ports}
    P, L = cfg.pes, cfg.lanes
    if design in ("tile", *MAC_TILES):
        neuron = {"theta": 3 << cfg.frac_bits, "phi": -(1 << (cfg.frac_bits - 1))}   # one constant of row r
        values = {"act__data": [{"mantissa": -3 if j == 0 else j + 1, "shift": min(j, cfg.shift_max)}
                                for j in range(L)],
                  "weight__0__data": [(-1) ** p * (p + 1) for p in range(P)],
                  "thresh__data": [neuron] * P,
                  "out__data": [min(p * 3, cfg.max_count) for p in range(P)]}
    elif design == "mac_pe":
        values = {"inputs": [{"valid": 1, "mantissa": -3 + j, "shift": min(j, cfg.shift_max), "weight": j + 1}
                             for j in range(L)]}
    else:
        values = {"spikes": [{"valid": 1, "negative": j % 2, "shift": min(1, cfg.shift_max), "weight": j - 2}
                             for j in range(L)]}
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
