"""An integrator's testbench, built from a generated package's manifest JSON and nothing else.

This module (and its ``outside_*`` siblings) deliberately imports nothing else from spikeacc: it reads the
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

from spikeacc.verif.outside_pe import mac_pe_bench, pe_bench
from spikeacc.verif.outside_words import bench_head, hex_file, leaves, pack, unpack

__all__ = ["leaves", "pack", "run_outside"]


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
        hex_file(work / f"{name}.hex", words, width)
    reads = []
    for name in ("act", "thresh") + tuple(f"weight__{j}" for j in range(L)):
        mem = name.split("__")[0] + "_mem"
        reads.append(f"  always @(posedge clk) if ({name}__en) {name}__data <= {mem}[{name}__addr];")
    guard = _guard(cfg)
    timing = _timing_checks(manifest, mant, work)
    memories = f"""  reg [{ports['act__data']['width'] - 1}:0] act_mem [0:{depth['act'] - 1}];
  reg [{ports['weight__0__data']['width'] - 1}:0] weight_mem [0:{depth['weight'] - 1}];
  reg [{ports['thresh__data']['width'] - 1}:0] thresh_mem [0:{depth['thresh'] - 1}];
  reg [{ports['out__data']['width'] - 1}:0] out_mem [0:{depth['out'] - 1}];
  reg [{ports['out__data']['width'] - 1}:0] expected_mem [0:{tokens * B - 1}];
  reg [{exp_width - 1}:0] exponent_mem [0:{tokens - 1}];
{chr(10).join(reads)}
  always @(posedge clk) if (out__en) out_mem[out__addr] <= out__data;
  integer t, i, log, guard, bad, errors;
{timing["declarations"]}"""
    bench = bench_head(sheet, memories) + f"""  initial begin
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
      begin_token;
      sample;
      while (done !== 1'b1 && guard < {guard}) begin
        @(negedge clk);
        guard = guard + 1;
        sample;
      end
      $fdisplay(log, "%0d %0d %0d %0d", t, cycles, error, guard);
      if (error !== 1'b0) errors = errors + 1;
      else check_timing;
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
    if (bad == 0 && errors == 0 && late == 0)
      $display("PASS: {tokens * B * P} output counts of {tokens} tokens equal the expected ones; reads and write times as the datasheet states");
    else $display("FAIL: %0d of {tokens * B} output words differ, %0d tokens raised error, %0d reads or write times differ from the datasheet",
                  bad, errors, late);
    $finish;
  end
endmodule
"""
    return bench, {"tokens": tokens, "blocks": B, "pes": P}


def _timing_checks(manifest: dict, mant, work: Path) -> dict:
    """Verilog that checks, per token, the datasheet's read pattern and write times, from the manifest alone.

    Every token: `act__en` is high for ``words_read_per_token`` cycles. A tile
    with a fire gap (spiking): block b's `out__en` comes ``write_delay`` cycles
    after the `thresh__en` that opens block b + 1, the last block's
    ``max(1 + E, fire_gap) + write_delay`` after the one that opened it (E from
    the cycle formula's row count, computed here from the token's mantissas).
    A MAC tile: each block's `out__en` comes ``write_delay`` cycles after the
    `act__en` of its last word.
    """
    sheet, cfg, derived = manifest["datasheet"], manifest["config"], manifest["derived"]
    values = manifest["timing"]["values"]
    B, L, k_words = cfg["out_features"] // cfg["pes"], cfg["lanes"], cfg["in_features"] // cfg["lanes"]
    spiking = "fire_gap" in values
    last = []
    if spiking:
        mags = np.abs(np.asarray(mant, dtype=np.int64))
        for row in mags:
            rows = sum(max(1, -(-int((row == m).sum()) // L)) for m in range(1, derived["spike_max"] + 1))
            if cfg.get("outlier_bits"):
                rows += derived["outlier_planes"] * -(-int((row > derived["spike_max"]).sum()) // L)
            last.append(max(1 + rows, values["fire_gap"]) + values["write_delay"])
        hex_file(work / "last_write.hex", last, 32)
    reads = sheet["buffers"]["act"]["words_read_per_token"]
    wd = values["write_delay"]
    per_block = (f"""        for (b = 0; b < {B - 1}; b = b + 1)
          if (out_at[b] - th_at[b + 1] !== {wd}) begin
            late = late + 1;
            $display("TIMING token %0d block %0d: out__en %0d cycles after the thresh__en opening block %0d, the datasheet says {wd}",
                     t, b, out_at[b] - th_at[b + 1], b + 1);
          end
        if (out_at[{B - 1}] - th_at[{B - 1}] !== last_write[t]) begin
          late = late + 1;
          $display("TIMING token %0d last block: out__en %0d cycles after its thresh__en, the datasheet says %0d",
                   t, out_at[{B - 1}] - th_at[{B - 1}], last_write[t]);
        end""" if spiking else f"""        for (b = 0; b < {B}; b = b + 1)
          if (out_at[b] - act_last[b] !== {wd}) begin
            late = late + 1;
            $display("TIMING token %0d block %0d: out__en %0d cycles after its last act__en, the datasheet says {wd}",
                     t, b, out_at[b] - act_last[b]);
          end""")
    declarations = f"""  integer b, cyc, n_act, n_th, n_out, late;
  integer th_at [0:{B - 1}];
  integer out_at [0:{B - 1}];
  integer act_last [0:{B - 1}];
  reg [31:0] last_write [0:{max(len(last), 1) - 1}];
  initial begin late = 0; {'$readmemh("last_write.hex", last_write);' if spiking else ''} end
  task begin_token; begin cyc = 0; n_act = 0; n_th = 0; n_out = 0; end endtask
  // one call per cycle of the token, at its falling edge: what the design drove in that cycle
  task sample; begin
    if (act__en === 1'b1) begin
      n_act = n_act + 1;
      if (n_act % {k_words} == 0 && n_act / {k_words} <= {B}) act_last[n_act / {k_words} - 1] = cyc;
    end
    if (thresh__en === 1'b1) begin if (n_th < {B}) th_at[n_th] = cyc; n_th = n_th + 1; end
    if (out__en === 1'b1) begin if (n_out < {B}) out_at[n_out] = cyc; n_out = n_out + 1; end
    cyc = cyc + 1;
  end endtask
  task check_timing; begin
    if (n_act !== {reads}) begin
      late = late + 1;
      $display("TIMING token %0d: act__en high in %0d cycles, the datasheet says {reads} reads", t, n_act);
    end
    if (n_th !== {B} || n_out !== {B}) begin
      late = late + 1;
      $display("TIMING token %0d: %0d thresh__en and %0d out__en cycles, {B} blocks", t, n_th, n_out);
    end else begin
{per_block}
    end
  end endtask"""
    return {"declarations": declarations}


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


def bench_for(manifest: dict):
    """The bench that drives the design, told from its datasheet alone: buffers make a tile; a PE is told
    by its input port (``spikes`` for the spiking PE, ``inputs`` for the MAC PE)."""
    sheet = manifest["datasheet"]
    if "buffers" in sheet:
        return _tile_bench
    ports = {p["name"] for p in sheet["ports"]}
    for port, bench in (("spikes", pe_bench), ("inputs", mac_pe_bench)):
        if port in ports:
            return bench
    raise ValueError(f"no outside testbench for design {manifest['design']!r}: its datasheet has no buffers "
                     "and no spikes or inputs port")


def write_bench(manifest: dict, vectors: dict, work: Path, reset_cycles: int = 2) -> dict:
    """Write the self-checking testbench ``outside_tb.v`` and its hex files into ``work``; returns its shape."""
    bench, shape = bench_for(manifest)(manifest, vectors, work, reset_cycles)
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
    if "buffers" not in manifest["datasheet"]:    # a PE: one count per case
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
    timing = [ln for ln in run.stdout.splitlines() if ln.startswith("TIMING")]
    return {"passed": not bad and not errors and not timing and not result["undefined_words"] and verdict[-1:] != []
            and verdict[-1].startswith("PASS"), "verdict": verdict[-1] if verdict else None,
            "compared": int(expected.size),
            "mismatches": [{"index": idx, "expected": int(expected[idx]), "got": int(got[idx])} for idx in bad[:20]],
            "mismatch_count": len(bad), "undefined_words": result["undefined_words"], "error_tokens": errors,
            "token_log": result["tokens"], "timing_differences": timing}


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
