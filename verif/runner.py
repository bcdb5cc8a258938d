"""Build and run cocotb benches under Verilator through ``cocotb_tools.runner``."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spikeacc import workdirs
from spikeacc.config import SpikeConfig
from spikeacc.hw import registry
from spikeacc.errors import ToolFailure, build_failure
from spikeacc.hw.generate import GeneratedDesign, generate, write_if_changed
from spikeacc.verif.toolchain import BUILD_WAIVERS, use_icarus, use_verilator

__all__ = ["BenchRun", "build_bench", "locked_sources", "run_bench", "run_pe_regression"]


@contextmanager
def locked_sources(build_dir: Path, design: str, cfg: SpikeConfig, extra: dict[str, str] | None = None):
    """Hold ``build_dir``'s lock while its sources are (re)generated and built; yields (design, sources).

    Every simulator build shared between runs goes through here: the RTL goes
    to ``rtl/``, ``extra`` maps paths relative to ``build_dir`` (a harness, a
    C++ main) to their text. Files are rewritten only when they change, so
    builds stay incremental.
    """
    with workdirs.build_lock(build_dir):
        rtl: GeneratedDesign = generate(design, cfg, build_dir / "rtl")
        sources = [rtl.verilog]
        for name, text in (extra or {}).items():
            sources.append(write_if_changed(build_dir / name, text))
        yield rtl, sources


@dataclass
class BenchRun:
    report: dict
    build_seconds: float
    test_seconds: float
    log: Path
    work_dir: Path


def build_bench(*, top: str, sources: list[Path], build_dir: Path, build_args: tuple[str, ...] = (),
                ports_only: bool = False, simulator: str = "verilator", saif: bool = False,
                always: bool = False) -> float:
    """Build (incrementally) one simulator in ``build_dir`` under a cross-process lock; return seconds.

    Callers that share ``build_dir`` with other runs call it inside
    :func:`locked_sources`.
    """
    from cocotb_tools.runner import get_runner

    if simulator == "verilator":
        use_verilator()
        args = [*BUILD_WAIVERS, "-O3", *(PORTS_ONLY if ports_only else ()), *build_args]
        if saif:  # per-bit toggle counts of every net, written to the run directory's dump.saif
            args.append("--trace-saif")
    elif simulator == "icarus":
        use_icarus()
        args = list(build_args)
    else:
        raise ValueError(f"simulator must be 'verilator' or 'icarus', got {simulator!r}")
    build_dir = Path(build_dir).resolve()
    log = build_dir / "build.log"
    stamp = build_dir / BUILD_COMPLETE
    if not stamp.is_file() and _discard_outputs(build_dir, top):
        always = True   # an earlier build stopped half-way (a kill, a full disk): its files cannot be trusted
    if always:  # a corrupt binary can be newer than its objects: make would keep it
        (build_dir / top).unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        get_runner(simulator).build(sources=[str(s) for s in sources], hdl_toplevel=top, build_dir=str(build_dir),
                                    build_args=args, timescale=("1ns", "1ps"), waves=saif,
                                    log_file=str(log), always=always)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        raise build_failure(f"the {simulator} build of {top} ({exc})", log) from None
    stamp.write_text(f"{top}\n")
    return time.perf_counter() - t0


BUILD_COMPLETE = ".build-complete"   # written after a build succeeded; a build without it is redone from scratch


def _discard_outputs(build_dir: Path, top: str) -> bool:
    """Remove what an interrupted build left (generated C++, objects, the binary); True if there was any."""
    leftovers = [p for p in build_dir.glob("*") if p.is_file()
                 and (p.name.startswith(("V", top)) or p.suffix in (".o", ".d", ".a", ".mk", ".cpp", ".h"))]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return bool(leftovers)


def run_bench(*, top: str, build_dir: Path, work_dir: Path, test_module: str, env: dict[str, str],
              plusargs: tuple[str, ...] = (), on_progress=None, simulator: str = "verilator",
              saif: bool = False, rebuild=None) -> BenchRun:
    """Run one built bench with its working files in ``work_dir``; return the report it wrote.

    The bench communicates through a JSON report, not through cocotb's exit
    status alone, so a failure comes back with its mismatches listed. A
    simulator binary that cannot even start (a corrupt build) is rebuilt once
    through ``rebuild()`` and the run repeated.
    """
    from cocotb_tools.runner import get_runner

    build_dir, work_dir = Path(build_dir).resolve(), Path(work_dir).resolve()
    report_path = work_dir / "report.json"
    results_path = work_dir / "results.xml"   # cocotb's own verdict, checked beside the bench's report
    log = work_dir / "sim.log"
    progress_path = work_dir / "progress"
    stop = threading.Event()
    watcher = None
    if on_progress is not None:
        watcher = threading.Thread(target=_watch_progress, args=(progress_path, on_progress, stop), daemon=True)
        watcher.start()
    t0 = time.perf_counter()
    try:
        for attempt in (0, 1):
            try:
                get_runner(simulator).test(hdl_toplevel=top, hdl_toplevel_lang="verilog", test_module=test_module,
                                           build_dir=str(build_dir), results_xml=str(results_path),
                                           test_dir=str(work_dir), plusargs=list(plusargs),
                                           extra_env={**env, "SPIKEACC_REPORT": str(report_path),
                                                      "SPIKEACC_PROGRESS": str(progress_path)},
                                           log_file=str(log), waves=saif)
            except SystemExit:
                pass  # under pytest the runner exits on a failed test; the report and results.xml say why
            except OSError as exc:  # the simulator binary cannot start: rebuild it once
                if attempt or rebuild is None:
                    raise ToolFailure(f"the simulator of {top} in {build_dir} cannot start ({exc.strerror}); "
                                      f"delete {build_dir} and run again") from None
                rebuild()
                continue
            break
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    t1 = time.perf_counter()
    if not report_path.is_file():
        raise ToolFailure(f"the bench {test_module} wrote no report; see {log}")
    if saif and not (work_dir / "dump.saif").is_file():
        raise ToolFailure(f"--trace-saif wrote no {work_dir / 'dump.saif'}; see {log}")
    return BenchRun(with_cocotb_verdict(json.loads(report_path.read_text()), results_path, log),
                    0.0, t1 - t0, log, work_dir)


def with_cocotb_verdict(report: dict, results_path: Path, log: Path) -> dict:
    """The bench's report, failed unless cocotb's results file shows every test run and passed.

    A bench that raised after writing its report, or a simulator that died
    before cocotb closed its tests, leaves a report that may look clean; the
    results file is cocotb's own account, so both must agree.
    """
    from cocotb_tools.check_results import get_results

    try:
        tests, failed = get_results(results_path)
    except RuntimeError:
        tests, failed, why = 0, 0, f"cocotb wrote no results file {results_path.name} (the simulation ended early)"
    else:
        why = f"cocotb: {failed} of {tests} tests failed" if failed else (
            "cocotb ran no test" if not tests else None)
    report = {**report, "cocotb": {"tests": tests, "failed": failed}}
    if why is not None and report.get("passed"):   # a failed report already says why
        report["passed"] = False
        report["failures"] = [*report.get("failures", []), f"{why}; see {log}"]
    return report


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
                      build_root: str | Path | None = None, corrupt: int | None = None,
                      simulator: str = "verilator", saif: bool = False) -> BenchRun:
    """Generate the PE, make golden cases and compare every spike count.

    ``corrupt`` flips the expected count of that case index before the run, to
    prove the scoreboard fails when it should. The simulator build is shared by
    every run of the configuration; cases, report and logs are the run's own.
    """
    from spikeacc.verif.pe_cases import make_cases

    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"--cases must be a non-negative integer, got {n_random!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    build_dir = (workdirs.build_root(build_root) / f"pe_{cfg.tag}" / simulator).resolve()
    cases = make_cases(cfg, n_random=n_random, seed=seed)
    if corrupt is not None:
        cases.expected[corrupt] = (cases.expected[corrupt] + 1) % (cfg.max_count + 1)

    def build(always=False):
        with locked_sources(build_dir, registry.SPIKING_PE, cfg) as (design, sources):
            return build_bench(top=design.top, sources=sources, build_dir=build_dir,
                               simulator=simulator, always=always), design

    build_seconds, design = build()
    with workdirs.run_dir(build_dir) as work:
        cases_path = work / "cases.npz"
        cases.save(cases_path)
        config_path = work / "config.json"
        config_path.write_text(json.dumps(cfg.to_dict()))
        run = run_bench(top=design.top, build_dir=build_dir, work_dir=work.path,
                        test_module="spikeacc.verif.pe_bench",
                        env={"SPIKEACC_CONFIG": str(config_path), "SPIKEACC_CASES": str(cases_path)},
                        simulator=simulator, rebuild=lambda: build(always=True))
        work.keep = not run.report.get("passed", False)
    run.build_seconds = build_seconds
    return run
