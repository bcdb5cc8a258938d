"""Simulation harness of the tile: buffers as Verilog memories loaded with ``$readmemh``.

The tile reads its activation, weight and threshold buffers through
synchronous read ports. Here those buffers are plain memories preloaded from
hex files, and the output buffer is dumped with ``$writememh``, so a whole
token-layer runs inside Verilator with no Python in the cycle loop.

File formats (one word per line, most significant byte first, each field
padded to whole bytes so numpy can write them in one pass):

- ``act.hex``: per (token, word) L lanes × 2 bytes ``[shift, mantissa]``;
- ``weights.hex``: per (block, k) P × 1 byte weight code;
- ``thresholds.hex``: per (block, row r) P × 16 bytes ``[Φ (8), Θ (8)]``, the
  per-neuron constants (the same words for the spiking and MAC tiles);
- ``exponents.hex``: per token its exponent d (two's complement, 4 bytes); the
  harness drives the tile's ``exponent`` port from it with the token;
- ``out.hex``: per (token, block) P × 1 byte spike count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amaranth import Shape
from amaranth.lib import data, wiring

from spikeacc import workdirs
from spikeacc.config import SpikeConfig
from spikeacc.hw import registry
from spikeacc.hw.generate import module_name
from spikeacc.hw.tile import activation_lane_layout

__all__ = ["harness_verilog", "write_buffers", "read_counts", "harness_name", "activation_rows", "weight_rows",
           "threshold_rows", "exponent_rows"]


CLOCK_PERIOD_NS = 10  # the clock the bench drives; activity (SAIF high times) converts to cycles with it


def harness_name(cfg: SpikeConfig, design: str) -> str:
    return f"harness_{design}_{cfg.tag}"


def _thresh_slots(design: str) -> int:
    """64-bit slots per neuron in the threshold file: Φ, Θ (every tile design reads the same words)."""
    if design not in registry.tiles():
        raise ValueError(f"the buffer harness drives tiles ({', '.join(registry.tiles())}), not {design!r}")
    return 2


# Where each field of a buffer word sits in the harness's hex files: (slot bits, byte/slot index per field).
ACT_LANE_SLOT = 16                                 # [shift byte, mantissa byte] per lane
ACT_FIELDS = {"mantissa": 0, "shift": 8}           # bit offset of each field inside its lane slot
THRESH_FIELDS = {"theta": 0, "phi": 64}  # bit offset inside a neuron's 64-bit slots


def _pack(layout: data.StructLayout, source: dict[str, str]) -> str:
    """A Verilog concatenation that packs ``layout``'s fields (first field in the low bits, as Amaranth does)."""
    parts = [source[name].format(width=Shape.cast(field.shape).width)
             for name, field in sorted(layout, key=lambda item: item[1].offset, reverse=True)]
    return "{" + ", ".join(parts) + "}"


def harness_verilog(cfg: SpikeConfig, design: str, resident: bool = False) -> str:
    """Verilog of the harness around the generated tile (module names carry the config).

    Port names, widths and every bit slice come from the component's
    signature and the buffer word layouts, so the harness follows the RTL.
    Each buffer model honours its port's ``en``: a read the tile forgot to
    enable returns stale data and fails the regression. ``resident`` marks the
    five buffer memories public to Verilator's C++, so a long-lived simulator can fill them between tokens instead of ``$readmemh``.
    """
    from spikeacc.hw.generate import port_list
    from spikeacc.hw.tile import threshold_layout, tile_ports

    thresh_layout = threshold_layout(cfg)
    ports = port_list(wiring.Signature(tile_ports(cfg, thresh_layout)))
    slot = 64 * _thresh_slots(design)
    L, P = cfg.lanes, cfg.pes
    widths = {p["name"]: p["width"] for p in ports}
    lane = activation_lane_layout(cfg)
    wb, cb = cfg.weight_bits, cfg.count_bits
    control = {"clk", "rst", "start", "token", "exponent", "busy", "done", "cycles", "block", "error"}
    eb = widths["exponent"]
    decl = []
    for port in ports:
        if port["name"] in control:
            continue
        kind = "reg" if port["direction"] == "input" else "wire"
        decl.append(f"  {kind} [{port['width'] - 1}:0] {port['name']};")
    act_lanes = ", ".join(_pack(lane, {n: f"act_word[{j * ACT_LANE_SLOT + off} +: {{width}}]"
                                       for n, off in ACT_FIELDS.items()}) for j in reversed(range(L)))
    thresh = ", ".join(_pack(thresh_layout, {n: f"thresh_word[{p * slot + off} +: {{width}}]"
                                             for n, off in THRESH_FIELDS.items()}) for p in reversed(range(P)))
    weights = []
    for j in range(L):
        packed = ", ".join(f"weight_word{j}[{p * 8} +: {wb}]" for p in reversed(range(P)))
        weights += [f"  wire [{P * 8 - 1}:0] weight_word{j} = weight_mem[weight__{j}__addr];",
                    f"  always @(posedge clk) if (weight__{j}__en) weight__{j}__data <= {{{packed}}};"]
    outs = ", ".join(f"{8 - cb}'d0, out__data[{p * cb} +: {cb}]" if cb < 8 else f"out__data[{p * cb} +: {cb}]"
                     for p in reversed(range(P)))
    connect = ",\n    ".join(f".{p['name']}({p['name']})" for p in ports)
    public = " /*verilator public_flat_rw*/" if resident else ""
    return f"""// Generated by spikeacc: simulation harness of {module_name(design, cfg)}. Not for synthesis.
`timescale 1ns/1ps
module {harness_name(cfg, design)} (
  input clk, input rst, input start, input [{widths['token'] - 1}:0] token, input dump,
  output busy, output done, output error, output [31:0] cycles, output [{widths['block'] - 1}:0] block
);
  reg [{L * ACT_LANE_SLOT - 1}:0] act_mem [0:{cfg.max_tokens * cfg.k_words - 1}]{public};
  reg [{P * 8 - 1}:0] weight_mem [0:{cfg.blocks * cfg.in_features - 1}]{public};
  reg [{P * slot - 1}:0] thresh_mem [0:{cfg.threshold_words - 1}]{public};
  reg [31:0] exponent_mem [0:{cfg.max_tokens - 1}]{public};
  reg [{P * 8 - 1}:0] out_mem [0:{cfg.max_tokens * cfg.blocks - 1}]{public};
  reg [8*1024-1:0] path;
  integer i;
  initial begin
    for (i = 0; i < {cfg.max_tokens * cfg.blocks}; i = i + 1) out_mem[i] = 0;
    if ($value$plusargs("act=%s", path)) $readmemh(path, act_mem);
    if ($value$plusargs("weights=%s", path)) $readmemh(path, weight_mem);
    if ($value$plusargs("thresholds=%s", path)) $readmemh(path, thresh_mem);
    if ($value$plusargs("exponents=%s", path)) $readmemh(path, exponent_mem);
  end
  wire [{eb - 1}:0] exponent = exponent_mem[token][{eb - 1}:0];

{chr(10).join(decl)}
  wire [{L * ACT_LANE_SLOT - 1}:0] act_word = act_mem[act__addr];
  wire [{P * slot - 1}:0] thresh_word = thresh_mem[thresh__addr];

  // synchronous-read buffers, one cycle of latency, data held while en is low
  always @(posedge clk) if (act__en) act__data <= {{{act_lanes}}};
  always @(posedge clk) if (thresh__en) thresh__data <= {{{thresh}}};
{chr(10).join(weights)}

  always @(posedge clk) begin
    if (out__en) out_mem[out__addr] <= {{{outs}}};
    if (dump && $value$plusargs("out=%s", path)) $writememh(path, out_mem);
  end

  {module_name(design, cfg)} dut (
    {connect}
  );
endmodule
"""


def _hex_lines(rows: np.ndarray) -> bytes:
    """One hex line per row of a 2-D uint8 array (first byte most significant)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    width = rows.shape[1] * 2
    text = rows.tobytes().hex().encode()
    return b"\n".join(np.frombuffer(text, dtype=f"S{width}")) + b"\n"


def activation_rows(cfg: SpikeConfig, mant: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``act_mem`` rows [M·K/L, L·2] of tokens' codes: per lane ``[shift, mantissa]``, lane 0 in the low bytes."""
    m = mant.shape[0]
    lanes = np.stack([np.asarray(shift).astype(np.uint8), np.asarray(mant).astype(np.int8).view(np.uint8)], axis=-1)
    return lanes.reshape(m * cfg.k_words, cfg.lanes, 2)[:, ::-1, :].reshape(m * cfg.k_words, cfg.lanes * 2)


def weight_rows(cfg: SpikeConfig, w: np.ndarray) -> np.ndarray:
    """``weight_mem`` rows [B·K, P]: address block·K + k holds the block's P codes of input k, PE 0 in the low byte."""
    B, P, k = cfg.blocks, cfg.pes, w.shape[1]
    rows = np.asarray(w).astype(np.int8).view(np.uint8).reshape(B, P, k).transpose(0, 2, 1)
    return rows.reshape(B * k, P)[:, ::-1]


def threshold_rows(cfg: SpikeConfig, theta: np.ndarray, phi: np.ndarray, design: str) -> np.ndarray:
    """``thresh_mem`` rows [B·R, P·16]: address block·R + r holds the block's P neurons' ``[Φ, Θ]`` (64 bits each)."""
    R, B, P = cfg.threshold_grid, cfg.blocks, cfg.pes
    columns = [np.asarray(phi).astype(np.int64).view(np.uint64), np.asarray(theta).astype(np.int64).view(np.uint64)]
    slots = _thresh_slots(design)
    words = np.stack(columns, axis=-1).astype(">u8")  # [R, N, slots], all uint64 (two's complement)
    thresh = words.reshape(R, B, P, slots).transpose(1, 0, 2, 3)[:, :, ::-1, :].copy()
    return thresh.view(np.uint8).reshape(B * R, P * 8 * slots)


def exponent_rows(exponent: np.ndarray) -> np.ndarray:
    """``exponent_mem`` rows [M, 4]: each token's exponent d, 32-bit two's complement, most significant byte first."""
    e = np.asarray(exponent, dtype=np.int64).astype(np.int32).astype(">i4").view(np.uint8)
    return e.reshape(-1, 4)


def write_buffers(cfg: SpikeConfig, vectors, directory: Path, design: str) -> dict[str, Path]:
    """Write the harness's hex files for a vector file; returns plusarg name -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = {"act": activation_rows(cfg, vectors.mant, vectors.shift), "weights": weight_rows(cfg, vectors.w),
            "thresholds": threshold_rows(cfg, vectors.theta, vectors.phi, design),
            "exponents": exponent_rows(vectors.exponent)}
    files = {name: directory / f"{name}.hex" for name in rows}
    for name, data_rows in rows.items():
        workdirs.write_atomic(files[name], _hex_lines(data_rows))   # a full disk names the file, never half a buffer
    return files


def read_counts(cfg: SpikeConfig, path: Path, tokens: int) -> np.ndarray:
    """Spike counts [M, N] from the harness's ``$writememh`` dump."""
    words = [line.split("//")[0].strip() for line in Path(path).read_text().splitlines()]
    words = [w for w in words if w and not w.startswith("@")]
    need = tokens * cfg.blocks
    if len(words) < need:
        raise RuntimeError(f"{path} holds {len(words)} output words, expected at least {need}")
    raw = np.frombuffer(bytes.fromhex("".join(w.zfill(cfg.pes * 2) for w in words[:need])), dtype=np.uint8)
    return raw.reshape(tokens, cfg.blocks, cfg.pes)[:, :, ::-1].reshape(tokens, cfg.out_features).astype(np.int64)
