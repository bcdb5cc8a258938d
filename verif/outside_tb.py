"""An integrator's testbench, built from a generated package's manifest JSON and nothing else.

This module deliberately imports nothing from spikeacc: it reads the
``datasheet`` facts of ``<top>.json`` (port names, widths, bit layouts,
buffer address rules), packs the buffer words of a vector file with plain
integer arithmetic, writes a plain Verilog testbench (no cocotb), runs it
under Icarus and compares every output count. If the datasheet left out a
fact, this script could not be written; that is the point of it.

``--no-initial-values`` simulates the package's ``<top>_noinit.v`` instead,
the design with every Verilog initialiser removed, so registers start as X and
only ``rst`` can make them defined, as on an ASIC.

Usage::

    python -m spikeacc.verif.outside_tb MANIFEST.json VECTORS.npz [--work DIR] [--no-initial-values]

``VECTORS.npz`` is a layer vector file (tile, MAC: arrays ``w``, ``mant``,
``shift``, ``theta`` and ``phi`` [R, N], ``exponent`` [M], ``expected``) or a
PE case file (PE: per case ``theta``, ``phi``, ``scale``). The bench checks
itself: it compares every output word with the expected one in Verilog and
prints ``PASS: …`` or ``FAIL: …`` as its last line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["leaves", "pack", "run_outside"]


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


def _hex_file(path: Path, words, width: int) -> None:
    digits = -(-width // 4)
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))


def _declarations(ports, skip=("clk",)) -> tuple[str, str]:
    decl, connect = [], []
    for p in ports:
        connect.append(f".{p['name']}({p['name']})")
        if p["name"] in skip:
            continue
        kind = "reg" if p["direction"] == "input" else "wire"
        decl.append(f"  {kind} [{p['width'] - 1}:0] {p['name']};")
    return "\n".join(decl), ",\n    ".join(connect)


def _bench_head(sheet: dict, memories: str) -> str:
    """``module outside_tb``: the design's ports as regs/wires, ``memories``, the instance and a 100 MHz clock."""
    decl, connect = _declarations(sheet["ports"])
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


def _tile_bench(manifest: dict, vectors, work: Path, reset_cycles: int) -> tuple[str, dict]:
    """Verilog testbench and hex buffers of a tile (spiking or MAC) for a layer vector file."""
    sheet, cfg = manifest["datasheet"], manifest["config"]
    ports = {p["name"]: p for p in sheet["ports"]}
    K, N, P, L = cfg["in_features"], cfg["out_features"], cfg["pes"], cfg["lanes"]
    B, k_words = N // P, K // L
    mant, shift, w = vectors["mant"], vectors["shift"], vectors["w"]
    theta, phi = vectors["theta"], vectors["phi"]
    tokens = mant.shape[0]
    exponents = vectors.get("exponent", np.zeros(tokens, dtype=np.int64))
    rows = sheet["buffers"]["thresh"]["depth"] // B    # threshold constants per neuron
    if tokens > cfg["max_tokens"]:
        raise ValueError(f"{tokens} tokens but the design holds {cfg['max_tokens']}")
    act = [pack(ports["act__data"], [{"mantissa": mant[t, wd * L + j], "shift": shift[t, wd * L + j]}
                                     for j in range(L)]) for t in range(tokens) for wd in range(k_words)]
    weight = [pack(ports["weight__0__data"], [w[b * P + p, k] for p in range(P)]) for b in range(B) for k in range(K)]
    thresh = []   # address block·R + r: row r of each neuron's constants
    for b in range(B):
        for r in range(rows):
            neurons = []
            for p in range(P):
                th, ph = int(theta[r, b * P + p]), int(phi[r, b * P + p])
                neurons.append({"theta": th, "phi": ph})
            thresh.append(pack(ports["thresh__data"], neurons))
    depth = {name: b["depth"] for name, b in sheet["buffers"].items()}
    expected = np.asarray(vectors["expected"], dtype=np.int64)
    out_words = [pack(ports["out__data"], [expected[t, b * P + p] for p in range(P)])
                 for t in range(tokens) for b in range(B)]
    exp_width = ports["exponent"]["width"]
    for name, words, width in (("act", act, ports["act__data"]["width"]),
                               ("weight", weight, ports["weight__0__data"]["width"]),
                               ("thresh", thresh, ports["thresh__data"]["width"]),
                               ("exponent", [int(e) & ((1 << exp_width) - 1) for e in exponents], exp_width),
                               ("expected", out_words, ports["out__data"]["width"])):
        _hex_file(work / f"{name}.hex", words, width)
    reads = []
    for name in ("act", "thresh") + tuple(f"weight__{j}" for j in range(L)):
        mem = name.split("__")[0] + "_mem"
        reads.append(f"  always @(posedge clk) if ({name}__en) {name}__data <= {mem}[{name}__addr];")
    guard = _guard(cfg)
    memories = f"""  reg [{ports['act__data']['width'] - 1}:0] act_mem [0:{depth['act'] - 1}];
  reg [{ports['weight__0__data']['width'] - 1}:0] weight_mem [0:{depth['weight'] - 1}];
  reg [{ports['thresh__data']['width'] - 1}:0] thresh_mem [0:{depth['thresh'] - 1}];
  reg [{ports['out__data']['width'] - 1}:0] out_mem [0:{depth['out'] - 1}];
  reg [{ports['out__data']['width'] - 1}:0] expected_mem [0:{tokens * B - 1}];
  reg [{exp_width - 1}:0] exponent_mem [0:{tokens - 1}];
{chr(10).join(reads)}
  always @(posedge clk) if (out__en) out_mem[out__addr] <= out__data;
  integer t, i, log, guard, bad, errors;"""
    bench = _bench_head(sheet, memories) + f"""  initial begin
    $readmemh("act.hex", act_mem);
    $readmemh("weight.hex", weight_mem);
    $readmemh("thresh.hex", thresh_mem);
    $readmemh("exponent.hex", exponent_mem);
    $readmemh("expected.hex", expected_mem);
    log = $fopen("tokens.txt", "w");
    bad = 0; errors = 0;
    rst = 1; start = 0; token = 0; exponent = 0;
    repeat ({reset_cycles}) @(negedge clk);
    rst = 0;
    for (t = 0; t < {tokens}; t = t + 1) begin
      @(negedge clk);
      start = 1; token = t; exponent = exponent_mem[t];
      @(negedge clk);
      start = 0;
      guard = 0;
      while (done !== 1'b1 && guard < {guard}) begin
        @(negedge clk);
        guard = guard + 1;
      end
      $fdisplay(log, "%0d %0d %0d %0d", t, cycles, error, guard);
      if (error !== 1'b0) errors = errors + 1;
    end
    @(negedge clk);
    $writememh("out.hex", out_mem, 0, {tokens * B - 1});
    $fclose(log);
    for (i = 0; i < {tokens * B}; i = i + 1)
      if (out_mem[i] !== expected_mem[i]) begin
        if (bad < 10) $display("MISMATCH token %0d block %0d: expected %h, got %h", i / {B}, i % {B},
                               expected_mem[i], out_mem[i]);
        bad = bad + 1;
      end
    if (bad == 0 && errors == 0) $display("PASS: {tokens * B * P} output counts of {tokens} tokens equal the expected ones");
    else $display("FAIL: %0d of {tokens * B} output words differ, %0d tokens raised error", bad, errors);
    $finish;
  end
endmodule
"""
    return bench, {"tokens": tokens, "blocks": B, "pes": P}


def _guard(cfg: dict) -> int:
    """Cycles after which a token is declared hung: far above the datasheet's worst case."""
    K, N, P, L = cfg["in_features"], cfg["out_features"], cfg["pes"], cfg["lanes"]
    window, fire = 1 << cfg["a_bits"], 1 << cfg["out_bits"]
    return 4 * (K // L + (N // P) * (K // L + window + fire + 8)) + 1000


def _tile_results(manifest: dict, work: Path, shape: dict) -> dict:
    ports = {p["name"]: p for p in manifest["datasheet"]["ports"]}
    tokens, B, P = shape["tokens"], shape["blocks"], shape["pes"]
    lines = [ln.strip() for ln in (work / "out.hex").read_text().splitlines()
             if ln.strip() and not ln.startswith("//")]
    got = np.full((tokens, B * P), -1, dtype=np.int64)
    undefined = []
    for a, line in enumerate(lines[:tokens * B]):
        t, b = divmod(a, B)
        if re.search(r"[xXzZ]", line):
            undefined.append((t, b))
            continue
        fields = unpack(ports["out__data"], int(line, 16))
        for p in range(P):
            got[t, b * P + p] = fields[(p,)]
    tokens_log = [ln.split() for ln in (work / "tokens.txt").read_text().splitlines()]
    return {"got": got, "undefined_words": undefined, "tokens": tokens_log}


def _count_check(indent: str) -> str:
    """Verilog: log case ``c``'s count and compare it with ``expected_mem[c]``, listing the first mismatches."""
    return "\n".join(indent + line for line in [
        '$fdisplay(log, "%0d", count);',
        "if (count !== expected_mem[c]) begin",
        '  if (bad < 10) $display("MISMATCH case %0d: expected %0d, got %0d", c, expected_mem[c], count);',
        "  bad = bad + 1;",
        "end"])


def _case_verdict(n_cases: int) -> str:
    """Verilog: the bench's last line, PASS or FAIL, after every case."""
    return f"""    $fclose(log);
    if (bad == 0) $display("PASS: {n_cases} neuron counts equal the expected ones");
    else $display("FAIL: %0d of {n_cases} counts differ", bad);
    $finish;"""


def _pe_bench(manifest: dict, cases, work: Path, reset_cycles: int) -> tuple[str, dict]:
    """Stimulus words per cycle, from the datasheet's PE protocol, and a testbench that replays them."""
    sheet, cfg = manifest["datasheet"], manifest["config"]
    ports = {p["name"]: p for p in sheet["ports"]}
    L, T = cfg["lanes"], 1 << cfg["a_bits"]
    idle = [{"valid": 0, "negative": 0, "shift": 0, "weight": 0}] * L
    cycles = []  # (start, step, fire, wait, theta, phi, scale, spikes)

    def cycle(start=0, step=0, fire=0, wait=0, theta=0, phi=0, scale=0, spikes=idle):
        cycles.append((start, step, fire, wait, theta, phi, scale, pack(ports["spikes"], spikes)))

    w, mant, shift = cases["w"], cases["mant"], cases["shift"]
    scales = cases.get("scale", np.zeros(len(cases["expected"]), dtype=np.int64))
    for c in range(len(cases["expected"])):
        cycle(start=1, theta=cases["theta"][c], phi=cases["phi"][c], scale=scales[c])
        for t in range(1, T):
            ks = np.flatnonzero(np.abs(mant[c]) == T - t)
            rows = [ks[i:i + L] for i in range(0, len(ks), L)] or [ks]
            for r, row in enumerate(rows):
                spikes = [{"valid": 1, "negative": int(mant[c, k] < 0), "shift": shift[c, k], "weight": w[c, k]}
                          for k in row] + idle[len(row):]
                cycle(step=int(r == len(rows) - 1), spikes=spikes)
        cycle(fire=1, wait=1)
    tw, pw, cw, sw = (ports[n]["width"] for n in ("theta", "phi", "scale_shift", "spikes"))
    words = [((((((((s << 1 | st) << 1 | f) << 1 | wt) << tw | int(th)) << pw) | (int(ph) & ((1 << pw) - 1))) << cw
               | (int(sc) & ((1 << cw) - 1))) << sw) | sp
             for s, st, f, wt, th, ph, sc, sp in cycles]
    width = 4 + tw + pw + cw + sw
    _hex_file(work / "stimulus.hex", words, width)
    n_cases = len(cases["expected"])
    _hex_file(work / "expected.hex", [int(e) for e in cases["expected"]], ports["count"]["width"])
    fields = "{start, step, fire, wait_done, theta, phi, scale_shift, spikes}"
    memories = f"""  reg [{width - 1}:0] stim [0:{len(words) - 1}];
  reg [{ports['count']['width'] - 1}:0] expected_mem [0:{n_cases - 1}];
  reg wait_done;
  integer i, c, log, guard, bad;"""
    bench = _bench_head(sheet, memories) + f"""  initial begin
    $readmemh("stimulus.hex", stim);
    $readmemh("expected.hex", expected_mem);
    log = $fopen("counts.txt", "w");
    bad = 0; c = 0;
    rst = 1; {fields} = 0;
    repeat ({reset_cycles}) @(negedge clk);
    rst = 0;
    for (i = 0; i < {len(words)}; i = i + 1) begin
      @(negedge clk);
      {fields} = stim[i];
      if (wait_done) begin
        @(negedge clk);
        {fields} = 0;
        guard = 0;
        while (done !== 1'b1 && guard < {2 * (1 << cfg["out_bits"]) + 10}) begin
          @(negedge clk);
          guard = guard + 1;
        end
{_count_check("        ")}
        c = c + 1;
      end
    end
{_case_verdict(n_cases)}
  end
endmodule
"""
    return bench, {"cases": len(cases["expected"])}


def _mac_pe_bench(manifest: dict, cases, work: Path, reset_cycles: int) -> tuple[str, dict]:
    """The MAC PE's protocol from the datasheet: K/L words per neuron, ``clear`` with the first, ``requant`` with the last."""
    sheet, cfg = manifest["datasheet"], manifest["config"]
    ports = {p["name"]: p for p in sheet["ports"]}
    K, L = cfg["in_features"], cfg["lanes"]
    w, mant, shift = cases["w"], cases["mant"], cases["shift"]
    scales = cases.get("scale", np.zeros(len(cases["expected"]), dtype=np.int64))
    iw, pw, cw = (ports[n]["width"] for n in ("inputs", "params", "scale_shift"))
    words = []   # {clear, requant, scale_shift, params, inputs} per cycle
    for c in range(len(cases["expected"])):
        th, ph = int(cases["theta"][c]), int(cases["phi"][c])
        params = pack(ports["params"], {"theta": th, "phi": ph})
        for word in range(K // L):
            lanes = [{"valid": 1, "mantissa": mant[c, word * L + j], "shift": shift[c, word * L + j],
                      "weight": w[c, word * L + j]} for j in range(L)]
            clear, requant = int(word == 0), int(word == K // L - 1)
            words.append((((((clear << 1 | requant) << cw | (int(scales[c]) & ((1 << cw) - 1))) << pw) | params) << iw)
                         | pack(ports["inputs"], lanes))
    width = 2 + cw + pw + iw
    n_cases = len(cases["expected"])
    per_case = K // L
    _hex_file(work / "stimulus.hex", words, width)
    _hex_file(work / "expected.hex", [int(e) for e in cases["expected"]], ports["count"]["width"])
    fields = "{clear, requant, scale_shift, params, inputs}"
    memories = f"""  reg [{width - 1}:0] stim [0:{len(words) - 1}];
  reg [{ports['count']['width'] - 1}:0] expected_mem [0:{n_cases - 1}];
  integer i, c, log, bad;"""
    bench = _bench_head(sheet, memories) + f"""  initial begin
    $readmemh("stimulus.hex", stim);
    $readmemh("expected.hex", expected_mem);
    log = $fopen("counts.txt", "w");
    bad = 0;
    rst = 1; {fields} = 0;
    repeat ({reset_cycles}) @(negedge clk);
    rst = 0;
    for (c = 0; c < {n_cases}; c = c + 1) begin
      for (i = 0; i < {per_case}; i = i + 1) begin
        @(negedge clk);
        {fields} = stim[c * {per_case} + i];
      end
      @(negedge clk);
      {fields} = 0;
      repeat (3) @(negedge clk);   // count is valid from the third cycle after requant
{_count_check("      ")}
    end
{_case_verdict(n_cases)}
  end
endmodule
"""
    return bench, {"cases": n_cases}


BENCHES = {"tile": _tile_bench, "mac": _tile_bench, "pe": _pe_bench, "mac_pe": _mac_pe_bench}


def write_bench(manifest: dict, vectors: dict, work: Path, reset_cycles: int = 2) -> dict:
    """Write the self-checking testbench ``outside_tb.v`` and its hex files into ``work``; returns its shape."""
    design = manifest["design"]
    if design not in BENCHES:
        raise ValueError(f"no outside testbench for design {design!r}")
    bench, shape = BENCHES[design](manifest, vectors, work, reset_cycles)
    (work / "outside_tb.v").write_text(bench)
    return shape


def run_outside(manifest_path, vectors_path, work=None, no_initial_values=False, reset_cycles=2,
                iverilog="iverilog") -> dict:
    """Build and run the testbench; returns {"passed", "compared", "mismatches", ...}. Needs Icarus.

    ``reset_cycles`` is how long ``rst`` is held at the start (the datasheet
    asks for at least one); 0 shows what X-initial registers do without it.
    """
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    if "datasheet" not in manifest:
        raise ValueError(f"{manifest_path} has no datasheet; regenerate the package with spikeacc generate")
    with np.load(vectors_path) as f:
        vectors = {k: f[k] for k in f.files}
    own_tmp = work is None
    work = Path(tempfile.mkdtemp(prefix="spikeacc-outside-") if own_tmp else work)
    work.mkdir(parents=True, exist_ok=True)
    design = manifest["design"]
    rtl_path = manifest_path.parent / (f"{manifest['top']}_noinit.v" if no_initial_values else f"{manifest['top']}.v")
    if not rtl_path.is_file():
        raise ValueError(f"{rtl_path} is not in the package; regenerate it with spikeacc generate")
    (work / "dut.v").write_text(rtl_path.read_text())
    shape = write_bench(manifest, vectors, work, reset_cycles)
    build = subprocess.run([iverilog, "-g2005", "-o", "tb.vvp", "-s", "outside_tb", "outside_tb.v", "dut.v"],
                           cwd=work, capture_output=True, text=True)
    if build.returncode:
        raise RuntimeError(f"iverilog failed in {work}:\n{build.stderr[-2000:]}")
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=work, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"vvp failed in {work}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    verdict = [ln for ln in run.stdout.splitlines() if ln.startswith(("PASS:", "FAIL:"))]
    expected = np.asarray(vectors["expected"], dtype=np.int64)
    if design in ("pe", "mac_pe"):
        lines = (work / "counts.txt").read_text().split()
        got = np.array([int(x) if x.isdigit() else -1 for x in lines], dtype=np.int64)
        result = {"undefined_words": [i for i, x in enumerate(lines) if not x.isdigit()], "tokens": []}
        if got.shape != expected.shape:
            raise RuntimeError(f"{len(got)} counts from the testbench, {len(expected)} cases")
    else:
        result = _tile_results(manifest, work, shape)
        got = result["got"]
    bad = [tuple(int(i) for i in idx) for idx in np.argwhere(got != expected)]
    errors = [row for row in result["tokens"] if row[2] != "0"]
    if own_tmp:
        shutil.rmtree(work, ignore_errors=True)
    return {"passed": not bad and not errors and not result["undefined_words"] and verdict[-1:] != []
            and verdict[-1].startswith("PASS"), "verdict": verdict[-1] if verdict else None,
            "compared": int(expected.size),
            "mismatches": [{"index": idx, "expected": int(expected[idx]), "got": int(got[idx])} for idx in bad[:20]],
            "mismatch_count": len(bad), "undefined_words": result["undefined_words"], "error_tokens": errors,
            "token_log": result["tokens"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest")
    ap.add_argument("vectors")
    ap.add_argument("--work", help="keep the testbench and hex files here")
    ap.add_argument("--no-initial-values", action="store_true", help="strip Verilog initialisers (X-initial)")
    args = ap.parse_args(argv)
    try:
        r = run_outside(args.manifest, args.vectors, args.work, args.no_initial_values)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for m in r["mismatches"]:
        print(f"mismatch at {m['index']}: expected {m['expected']}, got {m['got']}")
    verdict = "PASS" if r["passed"] else "FAIL"
    print(f"{verdict}: {r['compared']} outputs compared, {r['mismatch_count']} mismatches, "
          f"{len(r['undefined_words'])} undefined words, {len(r['error_tokens'])} tokens with error")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
