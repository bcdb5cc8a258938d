"""``spikeacc regress --design tile``: one vector file through the tile under Verilator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spikeacc.config import SpikeConfig
from spikeacc.golden.vectors import load_vectors
from spikeacc.hw.generate import generate, write_if_changed
from spikeacc.hw.mac import mac_cycles
from spikeacc.hw.tile import tile_cycles
from spikeacc.verif.runner import BenchRun, run_bench
from spikeacc.verif.scoreboard import Scoreboard
from spikeacc.verif.tile_harness import harness_name, harness_verilog, write_buffers

__all__ = ["tile_config_for", "run_tile_regression", "regress_tile"]


def tile_config_for(vectors, pes: int | None = None, lanes: int | None = None) -> SpikeConfig:
    """The vectors' configuration, with the tile shape optionally changed (validated)."""
    cfg = vectors.config
    m = vectors.shape[0]
    return cfg.replace(pes=pes or cfg.pes, lanes=lanes or cfg.lanes, max_tokens=max(cfg.max_tokens, m))


def run_tile_regression(vectors_path, *, build_root="sim_build", pes=None, lanes=None,
                        progress: bool = True, design: str = "tile", saif: bool = False) -> tuple[BenchRun, dict]:
    """Build the tile for the vectors' shape, run every token, and return the run and its report."""
    t_load = time.perf_counter()
    vectors = load_vectors(vectors_path)
    cfg = tile_config_for(vectors, pes, lanes)
    kind = design
    build_dir = Path(build_root) / f"{kind}_{cfg.tag}_t{cfg.max_tokens}{'_saif' if saif else ''}"
    rtl = generate(kind, cfg, build_dir / "rtl")
    harness = write_if_changed(build_dir / "rtl" / f"{harness_name(cfg, kind)}.v", harness_verilog(cfg, kind))
    files = write_buffers(cfg, vectors, build_dir / "data", kind)
    config_path = build_dir / "config.json"
    config_path.write_text(json.dumps(cfg.to_dict()))
    out_path = (build_dir / "data" / "out.hex").resolve()
    out_path.unlink(missing_ok=True)
    prepare = time.perf_counter() - t_load

    bar = tqdm(total=vectors.shape[0] * cfg.blocks, desc=f"{kind} {vectors.shape}", unit="block",
               disable=not progress, leave=False)

    def on_progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        run = run_bench(top=harness_name(cfg, kind), sources=[rtl.verilog, harness],
                        test_module="spikeacc.verif.tile_bench", build_dir=build_dir,
                        env={"SPIKEACC_VECTORS": str(Path(vectors_path).resolve()),
                             "SPIKEACC_CONFIG": str(config_path.resolve()), "SPIKEACC_OUT": str(out_path)},
                        plusargs=[f"+{name}={path.resolve()}" for name, path in files.items()]
                        + [f"+out={out_path}"],
                        on_progress=on_progress, ports_only=True, saif=saif)
    finally:
        bar.close()
    rep = run.report
    mags = np.abs(vectors.mant.astype(np.int64))
    model = [tile_cycles(cfg, np.bincount(row, minlength=cfg.window)) for row in mags]
    if kind == "tile":
        ideal, predicted = sum(c["ideal"] for c in model), [c["total"] for c in model]
    else:  # the MAC streams every word, zeros included
        ideal, predicted = vectors.shape[0] * cfg.blocks * cfg.k_words, [mac_cycles(cfg)] * vectors.shape[0]
    rep.update({
        "design": kind, "saif": str(build_dir / "dump.saif") if saif else None,
        "vectors": str(vectors_path), "layer": vectors.meta.get("layer"), "model": vectors.meta.get("model"),
        "config": cfg.to_dict(), "ideal_cycles": ideal,
        "dense_bound_cycles": sum(c["dense_bound"] for c in model),
        "predicted_cycles": sum(predicted), "predicted_cycles_per_token": predicted,
        "utilization": ideal / rep["cycles"] if rep.get("cycles") else 0.0,
        "zero_fraction": float((mags == 0).mean()),
        "salient_ratio": float(vectors.meta.get("salient_ratio", (vectors.shift > 0).mean())),
        "cycles_per_second": rep["cycles"] / rep["wall_seconds"] if rep.get("wall_seconds") else 0.0,
        "prepare_seconds": prepare, "build_seconds": run.build_seconds, "test_seconds": run.test_seconds,
    })
    return run, rep


def regress_tile(vectors_path, *, build_root="sim_build", report=None, pes=None, lanes=None,
                 design: str = "tile") -> bool:
    """CLI entry: print the verdict and numbers, write the JSON report; True when bit-exact."""
    t0 = time.perf_counter()
    run, rep = run_tile_regression(vectors_path, build_root=build_root, pes=pes, lanes=lanes, design=design)
    rep["total_seconds"] = time.perf_counter() - t0
    board = Scoreboard.from_report(rep)
    print(f"{design} {rep['shape']} ({rep['layer']}): {board.summary()}")
    print(f"  cycles {rep['cycles']:,} (ideal {rep['ideal_cycles']:,}, utilization {rep['utilization']:.1%}), "
          f"simulation {rep['wall_seconds']:.2f} s = {rep['cycles_per_second']:,.0f} cycles/s, "
          f"build {rep['build_seconds']:.1f} s, total {rep['total_seconds']:.1f} s")
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(rep, indent=2) + "\n")
        print(f"  report {report}")
    return board.passed
