"""The outside testbenches of the bare PEs: neuron cases driven through the protocol the datasheet states."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeacc.verif.outside_words import bench_head, hex_file, pack

__all__ = ["pe_bench", "mac_pe_bench", "count_check", "case_verdict"]


def count_check(indent: str) -> str:
    """Verilog: log case ``c``'s count and compare it with ``expected_mem[c]``, listing the first mismatches."""
    return "\n".join(indent + line for line in [
        '$fdisplay(log, "%0d", count);',
        "if (count !== expected_mem[c]) begin",
        '  if (bad < 10) $display("MISMATCH case %0d: expected %0d, got %0d", c, expected_mem[c], count);',
        "  bad = bad + 1;",
        "end"])


def case_verdict(n_cases: int) -> str:
    """Verilog: the bench's last line, PASS or FAIL, after every case."""
    return f"""    $fclose(log);
    if (bad == 0) $display("PASS: {n_cases} neuron counts equal the expected ones");
    else $display("FAIL: %0d of {n_cases} counts differ", bad);
    $finish;"""


def pe_bench(manifest: dict, cases, work: Path, reset_cycles: int) -> tuple[str, dict]:
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
    hex_file(work / "stimulus.hex", words, width)
    n_cases = len(cases["expected"])
    hex_file(work / "expected.hex", [int(e) for e in cases["expected"]], ports["count"]["width"])
    fields = "{start, step, fire, wait_done, theta, phi, scale_shift, spikes}"
    memories = f"""  reg [{width - 1}:0] stim [0:{len(words) - 1}];
  reg [{ports['count']['width'] - 1}:0] expected_mem [0:{n_cases - 1}];
  reg wait_done;
  integer i, c, log, guard, bad;"""
    bench = bench_head(sheet, memories) + f"""  initial begin
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
{count_check("        ")}
        c = c + 1;
      end
    end
{case_verdict(n_cases)}
  end
endmodule
"""
    return bench, {"cases": len(cases["expected"])}


def mac_pe_bench(manifest: dict, cases, work: Path, reset_cycles: int) -> tuple[str, dict]:
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
    hex_file(work / "stimulus.hex", words, width)
    hex_file(work / "expected.hex", [int(e) for e in cases["expected"]], ports["count"]["width"])
    fields = "{clear, requant, scale_shift, params, inputs}"
    memories = f"""  reg [{width - 1}:0] stim [0:{len(words) - 1}];
  reg [{ports['count']['width'] - 1}:0] expected_mem [0:{n_cases - 1}];
  integer i, c, log, bad;"""
    bench = bench_head(sheet, memories) + f"""  initial begin
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
{count_check("      ")}
    end
{case_verdict(n_cases)}
  end
endmodule
"""
    return bench, {"cases": n_cases}
