"""``spikeacc regress --design tile``: one vector file through the tile under Verilator."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spikeacc import workdirs
from spikeacc.config import SpikeConfig
from spikeacc.hw import registry
from spikeacc.golden.vectors import load_vectors
from spikeacc.hw.tile import tile_cycles
from spikeacc.verif.results import VectorFileRun
from spikeacc.verif.runner import BenchRun, build_bench, locked_sources, run_bench
from spikeacc.verif.scoreboard import Scoreboard
from spikeacc.hw.generate import module_name
from spikeacc.verif.tile_harness import harness_name, harness_verilog, write_buffers

__all__ = ["TileRegression", "tile_config_for", "tile_build_dir", "tile_is_built", "build_tile", "run_tile_regression", "regress_tile"]


@dataclass(frozen=True)
class TileRegression(VectorFileRun):
    """One vector file through a tile: the bench's verdict and counts, and the cycle model beside them."""

    design: str                  # a tile of the registry (spikeacc.hw.registry.tiles())
    passed: bool                 # every output integer equal, none missing, the bench's own checks clean
    compared: int
    mismatch_count: int
    missing: int
    mismatches: list             # [{"index": [token, neuron], "expected": e, "got": g}, ...] (the first ones)
    failures: list               # the bench's failed checks besides mismatches, one line each
    cycles: int
    cycles_per_token: list
    wall_seconds: float
    ideal_cycles: int            # the spiking tile's cycle floor: every PE busy on a spike every cycle
    dense_bound_cycles: int
    predicted_cycles: int        # the design's declared cycle model: must equal ``cycles``
    predicted_cycles_per_token: list
    utilization: float
    zero_fraction: float
    salient_ratio: float
    cycles_per_second: float
    prepare_seconds: float
    build_seconds: float
    test_seconds: float
    kept_run_dir: str | None     # the run's working files, kept when it failed
    saif: str | None
    total_seconds: float | None = None


def tile_config_for(vectors, pes: int | None = None, lanes: int | None = None,
                    firing: str | None = None) -> SpikeConfig:
    """The vectors' configuration, with the tile shape (P, L, firing unit) optionally changed (validated).

    None of these change a count, only how the hardware computes it.
    """
    cfg = vectors.config
    m = vectors.shape[0]
    return cfg.replace(pes=cfg.pes if pes is None else pes, lanes=cfg.lanes if lanes is None else lanes,
                       firing=cfg.firing if firing is None else firing, max_tokens=max(cfg.max_tokens, m))


def tile_build_dir(cfg: SpikeConfig, *, build_root=None, design: str = registry.SPIKING_TILE,
                   saif: bool = False, gates=None) -> Path:
    """Where :func:`build_tile` builds ``design`` for ``cfg`` (one directory per configuration and kind)."""
    suffix = ("_saif" if saif else "") + (f"_gates_{gates.tag}" if gates is not None else "")
    return (workdirs.build_root(build_root) / f"{design}_{cfg.tag}_t{cfg.max_tokens}{suffix}").resolve()


def tile_is_built(cfg: SpikeConfig, *, build_root=None, design: str = registry.SPIKING_TILE,
                  saif: bool = False, gates=None) -> bool:
    """True when a :func:`build_tile` of the current RTL finished there: running it costs no build."""
    import tempfile

    from spikeacc.hw.generate import generate
    from spikeacc.verif.runner import BUILD_COMPLETE

    build_dir = tile_build_dir(cfg, build_root=build_root, design=design, saif=saif, gates=gates)
    built = build_dir / "rtl" / f"{module_name(design, cfg)}.v"
    if not (build_dir / BUILD_COMPLETE).is_file() or not built.is_file():
        return False
    with tempfile.TemporaryDirectory(prefix="spikeacc-rtl-") as tmp:
        fresh = generate(design, cfg, tmp).verilog.read_text()
    return built.read_text() == fresh and (gates is None or gates.is_synthesized(built, build_dir / "gates"))


def build_tile(cfg: SpikeConfig, *, build_root=None, design: str = registry.SPIKING_TILE,
               saif: bool = False, gates=None):
    """Generate and build the tile harness for ``cfg`` once; every run of that configuration reuses it.

    Returns ``(build_dir, top, build_seconds, rebuild)``; generation and build
    hold the build directory's lock, so concurrent callers wait, then reuse.
    ``gates`` (a :class:`~spikeacc.energy.gate_power.GateLevel`) simulates the
    design's standard-cell netlist instead of its RTL, in the same harness.
    """
    build_dir = tile_build_dir(cfg, build_root=build_root, design=design, saif=saif, gates=gates)
    top = harness_name(cfg, design)

    def build(always=False) -> float:
        with locked_sources(build_dir, design, cfg, {f"rtl/{top}.v": harness_verilog(cfg, design)}) as (rtl, sources):
            args: tuple[str, ...] = ()
            if gates is not None:
                sources = gates.sources(rtl, build_dir / "gates") + sources[1:]
                args = gates.build_args
            return build_bench(top=top, sources=sources, build_dir=build_dir, ports_only=True,
                               saif=saif, always=always, build_args=args)

    return build_dir, top, build(), lambda: build(always=True)


def run_tile_regression(vectors_path, *, build_root=None, pes=None, lanes=None, config=None,
                        progress: bool = True, design: str = registry.SPIKING_TILE, saif_to: Path | None = None,
                        inject_fault: tuple[int, int] | None = None, gates=None,
                        firing: str | None = None) -> tuple[BenchRun, TileRegression]:
    """Build (or reuse) the tile for the vectors' shape, run every token, and return the run and its report.

    The run's buffers, output dump, report and logs live in a directory of
    their own, so runs of the same configuration at once never mix. With
    ``saif_to`` the run records per-net toggle counts and moves them there.
    ``inject_fault=(token, neuron)`` flips one bit of the RTL's output there,
    to prove the checker reports a wrong count with its index. ``gates`` runs
    the standard-cell netlist instead of the RTL (see :func:`build_tile`).
    """
    t_load = time.perf_counter()
    vectors = load_vectors(vectors_path, config=config)
    fault_env = _fault_env(vectors, inject_fault)  # a bad fault index is refused before the build
    cfg = tile_config_for(vectors, pes, lanes, firing)
    build_dir, top, build_seconds, rebuild = build_tile(cfg, build_root=build_root, design=design,
                                                        saif=saif_to is not None, gates=gates)
    bar = tqdm(total=vectors.shape[0] * cfg.blocks, desc=f"{design} {vectors.shape}", unit="block",
               disable=not progress or None, leave=False)

    def on_progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    with workdirs.run_dir(build_dir) as work:
        files = write_buffers(cfg, vectors, work.path, design)
        expected_path = work / "expected.npy"  # the bench reads this run's own copy
        np.save(expected_path, vectors.expected)
        config_path = work / "config.json"
        config_path.write_text(json.dumps(cfg.to_dict()))
        out_path = work / "out.hex"
        prepare = time.perf_counter() - t_load - build_seconds
        try:
            run = run_bench(top=top, build_dir=build_dir, work_dir=work.path, test_module="spikeacc.verif.tile_bench",
                            env={"SPIKEACC_EXPECTED": str(expected_path), "SPIKEACC_CONFIG": str(config_path),
                                 "SPIKEACC_OUT": str(out_path), **fault_env},
                            plusargs=[f"+{name}={path}" for name, path in files.items()] + [f"+out={out_path}"],
                            on_progress=on_progress, saif=saif_to is not None, rebuild=rebuild)
        finally:
            bar.close()
        run.build_seconds = build_seconds
        work.keep = not run.report.get("passed", False)
        if saif_to is not None:
            Path(saif_to).parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.move(str(work / "dump.saif"), str(saif_to))
            except OSError as exc:   # the destination is the user's (a full disk under --out): name it
                Path(saif_to).unlink(missing_ok=True)
                raise OSError(exc.errno, exc.strerror or str(exc), str(saif_to)) from None
    bench = run.report
    mags = np.abs(vectors.mant.astype(np.int64))
    predicted, ideal = registry.design(design).cycles(cfg, vectors.mant)
    dense_bound = vectors.shape[0] * tile_cycles(cfg, [0] * cfg.window)["dense_bound"]   # K·N/(L·P) + T·N/P a token
    cycles, wall = bench.get("cycles", 0), bench.get("wall_seconds", 0.0)
    result = TileRegression(
        design=design, vectors=str(vectors_path), layer=vectors.meta.get("layer"), model=vectors.meta.get("model"),
        shape=tuple(vectors.shape), config=cfg, passed=bool(bench["passed"]), compared=bench["compared"],
        mismatch_count=bench["mismatch_count"], missing=bench["missing"], mismatches=bench["mismatches"],
        failures=bench.get("failures", []), cycles=cycles, cycles_per_token=bench.get("cycles_per_token", []),
        wall_seconds=wall, ideal_cycles=ideal, dense_bound_cycles=dense_bound,
        predicted_cycles=sum(predicted), predicted_cycles_per_token=predicted,
        utilization=ideal / cycles if cycles else 0.0, zero_fraction=float((mags == 0).mean()),
        salient_ratio=float(vectors.meta.get("salient_ratio", (vectors.shift > 0).mean())),
        cycles_per_second=cycles / wall if wall else 0.0, prepare_seconds=prepare, build_seconds=build_seconds,
        test_seconds=run.test_seconds, kept_run_dir=str(work.path) if work.keep else None,
        saif=str(saif_to) if saif_to is not None else None)
    return run, result


def _fault_env(vectors, fault) -> dict:
    if fault is None:
        return {}
    m, _, n = vectors.shape
    t, i = fault
    if not (0 <= t < m and 0 <= i < n):
        raise ValueError(f"--inject-fault {t},{i} is outside the layer's {m} tokens × {n} outputs")
    return {"SPIKEACC_FLIP": f"{t},{i}"}


def regress_tile(vectors_path, *, build_root=None, report=None, pes=None, lanes=None,
                 design: str = registry.SPIKING_TILE, config: SpikeConfig | None = None,
                 inject_fault=None) -> bool:
    """CLI entry: print the verdict and numbers, write the JSON report; True when bit-exact."""
    t0 = time.perf_counter()
    _, rep = run_tile_regression(vectors_path, build_root=build_root, pes=pes, lanes=lanes, design=design,
                                 config=config, inject_fault=inject_fault)
    rep = dataclasses.replace(rep, total_seconds=time.perf_counter() - t0)
    board = Scoreboard.from_report(rep.to_dict())
    print(f"{design} {list(rep.shape)} ({rep.layer}): {board.summary()}")
    if rep.kept_run_dir:
        print(f"  kept for inspection: {rep.kept_run_dir}")
    print(f"  cycles {rep.cycles:,} (ideal {rep.ideal_cycles:,}, utilization {rep.utilization:.1%}), "
          f"simulation {rep.wall_seconds:.2f} s = {rep.cycles_per_second:,.0f} cycles/s, "
          f"build {rep.build_seconds:.1f} s, total {rep.total_seconds:.1f} s")
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
        print(f"  report {report}")
    return board.passed
