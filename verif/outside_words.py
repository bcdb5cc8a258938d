"""Buffer words from a datasheet alone: a port's fields packed and unpacked, hex files, the bench's head.

Like every ``outside_*`` module this imports nothing from spikeacc but its
siblings: what it knows of a design it reads from the manifest's datasheet.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["leaves", "pack", "unpack", "hex_file", "declarations", "bench_head"]


def leaves(desc: dict, path=(), base: int = 0):
    """Yield (path, bit offset, width, signed) for every scalar field of a port's layout description."""
    if "array" in desc:
        arr = desc["array"]
        for i in range(arr["length"]):
            yield from leaves(arr["element"], path + (i,), base + i * arr["stride"])
    elif "struct" in desc:
        for f in desc["struct"]:
            yield from leaves(f, path + (f["name"],), base + f["offset"])
    else:
        yield path, base, desc["width"], desc["signed"]


def pack(desc: dict, value) -> int:
    """The port word holding ``value`` (nested lists/dicts mirroring the layout), two's complement fields."""
    word = 0
    for path, offset, width, signed in leaves(desc):
        v = value
        for key in path:
            v = v[key]
        v = int(v)
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"field {'.'.join(map(str, path))} = {v} does not fit {width} bits")
        word |= (v & ((1 << width) - 1)) << offset
    return word


def unpack(desc: dict, word: int) -> dict:
    """path -> value for every scalar field of ``word``."""
    out = {}
    for path, offset, width, signed in leaves(desc):
        v = (word >> offset) & ((1 << width) - 1)
        out[path] = v - (1 << width) if signed and v >> (width - 1) else v
    return out


def hex_file(path: Path, words, width: int) -> None:
    digits = -(-width // 4)
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))


def declarations(ports, skip=("clk",)) -> tuple[str, str]:
    decl, connect = [], []
    for p in ports:
        connect.append(f".{p['name']}({p['name']})")
        if p["name"] in skip:
            continue
        kind = "reg" if p["direction"] == "input" else "wire"
        decl.append(f"  {kind} [{p['width'] - 1}:0] {p['name']};")
    return "\n".join(decl), ",\n    ".join(connect)


def bench_head(sheet: dict, memories: str) -> str:
    """``module outside_tb``: the design's ports as regs/wires, ``memories``, the instance and a 100 MHz clock."""
    decl, connect = declarations(sheet["ports"])
    return f"""`timescale 1ns/1ps
module outside_tb;
  reg clk;
{decl}
{memories}

  {sheet['top']} dut (
    {connect}
  );

  initial begin
    clk = 0;
    forever #5 clk = ~clk;
  end
"""
