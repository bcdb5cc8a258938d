"""Build and run cocotb benches under Verilator through ``cocotb_tools.runner``."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from spikeacc.config import SpikeConfig
from spikeacc.verif.toolchain import BUILD_WAIVERS, use_icarus, use_verilator

__all__ = ["BenchRun", "run_bench", "run_pe_regression"]


@dataclass
class BenchRun:
    report: dict
    build_seconds: float
    test_seconds: float
    log: Path


def run_bench(*, top: str, sources: list[Path], test_module: str, build_dir: Path, env: dict[str, str],
              build_args: tuple[str, ...] = (), plusargs: tuple[str, ...] = (),
              report_name: str = "report.json", on_progress=None, ports_only: bool = False,
              simulator: str = "verilator", saif: bool = False) -> BenchRun:
    """Build (incrementally) and run one bench; return the report the bench wrote.

    The bench communicates through a JSON report, not through cocotb's exit
    status alone, so a failure comes back with its mismatches listed.
    ``ports_only`` hides internal nets from VPI, which lets Verilator optimize
    across the whole design: for benches that touch top-level ports only.
    """
    from cocotb_tools.runner import get_runner

    if simulator == "verilator":
        use_verilator()
        args = [*BUILD_WAIVERS, "-O3", *(PORTS_ONLY if ports_only else ()), *build_args]
        if saif:  # per-bit toggle counts of every net, written to build_dir/dump.saif
            args.append("--trace-saif")
    elif simulator == "icarus":
        use_icarus()
        args = list(build_args)
    else:
        raise ValueError(f"simulator must be 'verilator' or 'icarus', got {simulator!r}")

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    report_path = build_dir / report_name
    report_path.unlink(missing_ok=True)
    log = build_dir / "sim.log"

    runner = get_runner(simulator)
    t0 = time.perf_counter()
    runner.build(sources=[str(s) for s in sources], hdl_toplevel=top, build_dir=str(build_dir),
                 build_args=args, timescale=("1ns", "1ps"), waves=saif,
                 log_file=str(build_dir / "build.log"))
    t1 = time.perf_counter()
    progress_path = build_dir / "progress"
    progress_path.unlink(missing_ok=True)
    stop = threading.Event()
    watcher = None
    if on_progress is not None:
        watcher = threading.Thread(target=_watch_progress, args=(progress_path, on_progress, stop), daemon=True)
        watcher.start()
    try:
        runner.test(hdl_toplevel=top, test_module=test_module, build_dir=str(build_dir),
                    test_dir=str(build_dir), plusargs=list(plusargs),
                    extra_env={**env, "SPIKEACC_REPORT": str(report_path),
                               "SPIKEACC_PROGRESS": str(progress_path)},
                    log_file=str(log), waves=saif)
    except SystemExit:
        pass  # under pytest the runner exits on a failed test; the report says why
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    t2 = time.perf_counter()
    if not report_path.is_file():
        raise RuntimeError(f"the bench {test_module} wrote no report; see {log}")
    if saif and not (build_dir / "dump.saif").is_file():
        raise RuntimeError(f"--trace-saif wrote no {build_dir / 'dump.saif'}; see {log}")
    return BenchRun(json.loads(report_path.read_text()), t1 - t0, t2 - t1, log)


# cocotb's runner passes --public-flat-rw (every net visible to VPI); keep only the top level.
PORTS_ONLY = ("--no-public-flat-rw", "--public-depth", "1")


def _watch_progress(path: Path, on_progress, stop: threading.Event) -> None:
    """Relay the bench's ``done total`` progress file to a callback until told to stop."""
    last = None
    while True:
        finished = stop.wait(0.2)
        try:
            text = path.read_text().split()
            state = (int(text[0]), int(text[1]))
        except (OSError, ValueError, IndexError):
            state = None
        if state is not None and state != last:
            on_progress(*state)
            last = state
        if finished:
            return


def run_pe_regression(cfg: SpikeConfig, *, n_random: int = 2000, seed: int = 0,
                      build_root: str | Path = "sim_build", corrupt: int | None = None,
                      simulator: str = "verilator", saif: bool = False) -> BenchRun:
    """Generate the PE, make golden cases and compare every spike count.

    ``corrupt`` flips the expected count of that case index before the run, to
    prove the scoreboard fails when it should.
    """
    from spikeacc.hw.generate import generate
    from spikeacc.verif.pe_cases import make_cases

    build_dir = Path(build_root) / f"pe_{cfg.tag}" / simulator
    design = generate("pe", cfg, build_dir / "rtl")
    cases = make_cases(cfg, n_random=n_random, seed=seed)
    if corrupt is not None:
        cases.expected[corrupt] = (cases.expected[corrupt] + 1) % (cfg.max_count + 1)
    cases_path = build_dir / "cases.npz"
    cases.save(cases_path)
    config_path = build_dir / "config.json"
    config_path.write_text(json.dumps(cfg.to_dict()))
    return run_bench(top=design.top, sources=[design.verilog], test_module="spikeacc.verif.pe_bench",
                     build_dir=build_dir, env={"SPIKEACC_CONFIG": str(config_path.resolve()),
                                               "SPIKEACC_CASES": str(cases_path.resolve())},
                     simulator=simulator)
