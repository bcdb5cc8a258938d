"""Read Verilator's SAIF (``--trace-saif``): per-bit toggle counts of every net.

SAIF is a small S-expression format: nested ``(INSTANCE name (NET (sig (T0 ..)
(T1 ..) (TC n)) ...) ...)``. This reader keeps, per instance path and signal
(bits summed), the toggle count TC and the time high T1. It is the format ASIC
power tools read (OpenSTA ``read_saif``, Vivado), and the file is kept as an
output for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SaifNet", "read_saif", "timescale_seconds"]

_TOKEN = re.compile(r"\(|\)|\"[^\"]*\"|[^\s()]+")
_BIT = re.compile(r"\\?\[(\d+)\\?\]$")
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12, "fs": 1e-15}


@dataclass
class SaifNet:
    path: tuple[str, ...]   # full instance path ($rootio, then the top module ...)
    name: str               # signal name, bit index removed
    bits: int
    toggles: int
    high_time: int          # T1 summed over bits, in the file's time unit
    bit_toggles: dict = None  # bit index -> TC (bit 0 for a scalar)
    bit_high: dict = None     # bit index -> T1 (time high, in the file's unit)


def timescale_seconds(text: str) -> float:
    m = re.match(r"\s*(\d+)\s*([a-z]+)", text)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"unreadable SAIF timescale {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def read_saif(path: str | Path) -> tuple[dict, list[SaifNet]]:
    """``(header, nets)``: header holds TIMESCALE (seconds) and DURATION (units)."""
    text = Path(path).read_text()
    tokens = _TOKEN.findall(text)
    header: dict = {}
    nets: dict[tuple, SaifNet] = {}
    stack: list[str] = []          # open list heads
    instances: list[str] = []      # instance path
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "(":
            head = tokens[i + 1]
            if head == "INSTANCE":
                instances.append(tokens[i + 2].replace("\\", ""))
                stack.append("INSTANCE")
                i += 3
                continue
            if head in ("TIMESCALE", "DURATION"):
                value = []
                j = i + 2
                while tokens[j] != ")":
                    value.append(tokens[j])
                    j += 1
                header[head] = " ".join(value)
                i = j + 1
                continue
            if stack and stack[-1] == "NET" and head not in ("T0", "T1", "TX", "TZ", "TB", "TC", "IG"):
                # one net: (name (T0 a) (T1 b) ... (TC n))
                name = head.replace("\\", "")
                j = i + 2
                fields = {}
                while tokens[j] != ")":
                    if tokens[j] == "(":
                        fields[tokens[j + 1]] = int(tokens[j + 2])
                        j += 4
                    else:
                        j += 1
                base = _BIT.sub("", name)
                key = (tuple(instances), base)
                net = nets.get(key)
                if net is None:
                    net = nets[key] = SaifNet(key[0], base, 0, 0, 0, {}, {})
                bit = _BIT.search(name)
                index = int(bit.group(1)) if bit else 0
                net.bit_toggles[index] = fields.get("TC", 0)
                net.bit_high[index] = fields.get("T1", 0)
                net.bits += 1
                net.toggles += fields.get("TC", 0)
                net.high_time += fields.get("T1", 0)
                i = j + 1
                continue
            stack.append(head)
            i += 2
            continue
        if tok == ")":
            if stack:
                if stack.pop() == "INSTANCE":
                    instances.pop()
        i += 1
    if "TIMESCALE" in header:
        header["TIMESCALE"] = timescale_seconds(header["TIMESCALE"])
    if "DURATION" in header:
        header["DURATION"] = int(header["DURATION"])
    return header, list(nets.values())
