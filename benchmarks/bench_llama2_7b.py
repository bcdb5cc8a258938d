"""Peak memory and time of spikeacc's commands on a Llama-2-7B-shaped checkpoint (the streamed golden model).

    python benchmarks/bench_llama2_7b.py [--folder DIR] [--steps vectors,ppl,run,decode] [--out out/bench_7b]
    python benchmarks/bench_llama2_7b.py --model-default --steps run     # the embedded SmolLM2's main job

Writes the synthetic checkpoint first if ``--folder`` (default
``$SPIKEACC_CACHE/llama2-7b-synthetic``) does not hold one
(``benchmarks/write_llama2_7b.py``). Each step runs the real command in a
process of its own; the peak is the resident memory of that process and all
its children together, sampled every 0.2 s from /proc. Each command's own
progress lines (block i/n, ETA) go to ``<out>/<step>.log``; the table and a
JSON record go to stdout and ``<out>/bench_7b.json``.

Steps:

* ``vectors``: ``spikeacc vectors --model DIR --layer model.layers.0.self_attn.q_proj --tokens 8``
  (GPTQ of block 0, its float inputs, one vector file);
* ``ppl``: ``spikeacc ppl --model DIR --quick --tokens 128`` (every quick row, GPTQ of all 224 projections);
* ``run``: ``spikeacc run --model DIR`` (the main job);
* ``decode``: ``spikeacc infer --model DIR --golden --max-new-tokens 4`` with round-to-nearest weights
  (``rtn.json``): the hardware network built (every block calibrated, kept resident as int8 codes)
  and four tokens decoded; its ``infer.json`` splits set-up and decoding time.

Empty caches: each step gets a fresh ``SPIKEACC_CACHE`` under ``<out>`` unless ``--keep-cache``.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from write_llama2_7b import ensure_llama2_7b  # noqa: E402

LAYER = "model.layers.0.self_attn.q_proj"


def commands(model: str | None, out: Path) -> dict[str, list[str]]:
    where = [] if model is None else ["--model", model]
    return {"vectors": ["vectors", *where, "--layer", LAYER, "--tokens", "8", "--out", str(out / "q_proj.npz")],
            "ppl": ["ppl", *where, "--quick", "--tokens", "128", "--out", str(out / "ppl")],
            "run": ["run", *where, "--out", str(out / "run")],
            "decode": ["infer", *where, "--golden", "--prompt", "The GNU General Public License is",
                       "--max-new-tokens", "4", "--config", str(out / "rtn.json"), "--out", str(out / "infer")]}


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every descendant (from /proc; a process gone meanwhile counts 0)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def measure(argv: list[str], log: Path, env: dict) -> dict:
    """Run ``spikeacc argv``; its wall time, exit code and the peak resident memory of its process tree."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "spikeacc.app.cli", *argv], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
        peak = [0]

        def sample():
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss(proc.pid))
                time.sleep(0.2)
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        code = proc.wait()
        watcher.join()
    return {"command": "spikeacc " + " ".join(argv), "exit": code, "seconds": round(time.perf_counter() - t0, 1),
            "peak_gb": round(peak[0] / 2**30, 2), "log": str(log)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--model-default", action="store_true", help="measure the embedded SmolLM2 instead")
    ap.add_argument("--steps", default="vectors,ppl,run")
    ap.add_argument("--out", type=Path, default=Path("out/bench_7b"))
    ap.add_argument("--keep-cache", action="store_true", help="reuse the user's SPIKEACC_CACHE (warm caches)")
    args = ap.parse_args()
    steps = args.steps.split(",")
    unknown = set(steps) - {"vectors", "ppl", "run", "decode"}
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; choose from vectors, ppl, run, decode")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rtn.json").write_text(json.dumps({"weight_rounding": "rtn"}) + "\n")
    if args.model_default:
        model = None
    else:
        root = Path(os.environ.get("SPIKEACC_CACHE", Path.home() / ".cache" / "spikeacc"))
        model = str(ensure_llama2_7b(args.folder or root / "llama2-7b-synthetic"))
    rows = []
    for step in steps:
        env = dict(os.environ)
        if not args.keep_cache:
            cache = args.out / f"cache-{step}"
            cache.mkdir(exist_ok=True)
            if model is None:   # the GGUF conversion is not what is measured: start from the converted folder
                from spikeacc.golden.checkpoint import open_checkpoint
                converted = open_checkpoint().folder
                target = cache / converted.name
                if not target.exists():
                    target.symlink_to(converted)
            env["SPIKEACC_CACHE"] = str(cache)
        print(f"{step}: running (log: {args.out / (step + '.log')})", file=sys.stderr, flush=True)
        rows.append({"step": step, **measure(commands(model, args.out)[step], args.out / f"{step}.log", env)})
        print(f"{step}: {rows[-1]['seconds']} s, peak {rows[-1]['peak_gb']} GB, exit {rows[-1]['exit']}", flush=True)
    record = {"model": model or "embedded SmolLM2-135M", "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
              "rows": rows}
    (args.out / "bench_7b.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{'step':<10}{'seconds':>10}{'peak GB':>10}  command")
    for r in rows:
        print(f"{r['step']:<10}{r['seconds']:>10.1f}{r['peak_gb']:>10.2f}  {r['command']}")
    return max(r["exit"] for r in rows)


if __name__ == "__main__":
    raise SystemExit(main())
