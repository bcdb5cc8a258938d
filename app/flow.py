"""The main job: the embedded model to verified spiking RTL, and one report that tells the story.

``spikeacc run`` runs five steps, each writing its own section of
``report.json`` (and files under ``out/``):

1. accuracy: a short hardware-faithful perplexity, SpikeQuant and Kirin, FP and input-only rows beside them;
2. verify: the PE regression, then the spiking tile in both modes on all seven projections of decoder block 0;
3. energy: gate-level energy of the spiking and MAC tiles at the real q_proj shape (measured or recorded),
   then the models: calibrated RTL toggles, the break-even map, the papers' op-count method;
4. synth: Yosys/iCE40 numbers for the PE, MAC PE and tiles at the default configuration;
5. infer: SmolLM2 writes text with the projections of its first blocks computed by the RTL.

A step whose inputs have not changed (same options, same spikeacc sources,
same model file; for synthesis, the same Verilog) is reused from
``out/.cache`` and says so. A failing step stops the run with one line; what
earlier steps produced stays, and the report is written with what exists.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from spikeacc.hw import registry
from spikeacc import workdirs
from spikeacc.config import MODES, PRESETS, SpikeConfig
from spikeacc.app.report import step_time, write_report
from spikeacc.app.step_cache import StepCache
from spikeacc.errors import ToolFailure, VerificationFailed

__all__ = ["STEPS", "run_main"]

STEPS = ("accuracy", "verify", "energy", "synth", "infer")
INFER_PROMPT = "The GNU General Public License is a free license for"


def _log(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class RunContext:
    """What every step of one main job shares: where it writes, its options, and the one configuration.

    ``config`` sets the arithmetic of every layer (widths, salient rule, Kirin
    outliers) and the tile shape of the PE regression, the cropped ``quick``
    tiles and synthesis; the real projections keep that arithmetic on the
    shape :meth:`SpikeConfig.for_layer` derives from the SmolLM2 tile preset.
    """

    out: Path
    quick: bool
    model: str | None
    build_root: str
    config: SpikeConfig
    gate_level: bool = False   # measure gate-level energy at the real q_proj shape even when its netlists are not built

    def layer_base(self, mode: str) -> SpikeConfig:
        """The configuration real projections are exported and verified with, in ``mode``."""
        return PRESETS["smollm2"].with_arithmetic_of(self.config.in_mode(mode))


# --- the steps: each returns its report section (plain JSON), with "status" and "headline" ---------------

def step_accuracy(run: RunContext) -> dict:
    out, model, config = run.out, run.model, run.config
    from spikeacc.golden.perplexity import WINDOW, hardware_rows, run_ppl_table
    from spikeacc.app.report import plot_accuracy

    rows = hardware_rows(config)
    results = run_ppl_table(model=model, out=out / "accuracy", tokens=WINDOW, rows=rows, config=config)
    table = [{"label": r["label"], "ppl": r["ppl"], "method": r["method"], "weights": r.get("weights", "rtn"),
              "hardware_faithful": bool(r.get("out_bits")), "out_bits": r.get("out_bits"),
              "calibration": r.get("calibration"), "calibration_tokens": r.get("calibration_tokens"),
              "salient_ratio": r["salient_ratio"]} for r in results]
    # the configuration's own rows; the round-to-nearest and corpus-calibrated rows beside them are comparisons
    own = [r for r in table if r["calibration"] is None]
    by = {(r["method"], r["hardware_faithful"]): r["ppl"] for r in own
          if r["method"] == "fp" or r["weights"] == config.weight_rounding}
    before = {r["method"]: r["ppl"] for r in own if r["hardware_faithful"] and r["weights"] != config.weight_rounding}
    corpus = {r["method"]: r for r in table if r["calibration"] is not None}
    plot = str(out / "accuracy" / "perplexity.png")
    plot_accuracy(table, plot)
    return {"status": "PASS", "tokens": results[0]["tokens"], "rows": table,
            "headline": (f"PPL FP {by[('fp', False)]:.2f}; hardware-faithful SpikeQuant {by[('spikequant', True)]:.2f}, "
                         f"Kirin {by[('kirin', True)]:.2f} ({results[0]['tokens']} tokens, "
                         f"{config.weight_rounding.upper()} weights"
                         + (f"; round-to-nearest {before['spikequant']:.2f} / {before['kirin']:.2f}" if before else "")
                         + (f"; calibrated on {corpus['spikequant']['calibration_tokens']:,} corpus tokens "
                            f"{corpus['spikequant']['ppl']:.2f} / {corpus['kirin']['ppl']:.2f}" if corpus else "")
                         + ")"),
            "plots": {"perplexity": plot}, "files": [str(out / "accuracy" / "ppl.json"), plot]}


def _vectors(run: RunContext) -> dict[str, dict[str, Path]]:
    """Block-0 vectors of every projection in both modes (quick: q_proj and down_proj cropped to 64×16)."""
    from spikeacc.golden.network import PROJECTIONS
    from spikeacc.golden.synthetic_vectors import crop_vectors
    from spikeacc.golden.vector_export import export_layers
    from spikeacc.golden.vectors import load_vectors, save_vectors

    projections = ("self_attn.q_proj", "mlp.down_proj") if run.quick else PROJECTIONS
    paths = {}
    for mode in MODES:
        layers = [f"model.layers.0.{p}" for p in projections]
        outs = [run.out / "vectors" / mode / f"{p}.npz" for p in projections]
        exported = export_layers(layers=layers, tokens=8, outs=outs, model=run.model, base=run.layer_base(mode))
        if run.quick:
            tile = run.config.in_mode(mode)
            exported = [save_vectors(p.with_name(p.stem + "_64x16.npz"), crop_vectors(load_vectors(p), tile))
                        for p in exported]
        paths[mode] = dict(zip(projections, exported))
    return paths


def _builds_first(jobs: list[tuple]) -> list[tuple]:
    """The tile jobs with one job of every distinct tile first: a job whose tile another job is building
    waits for that build's lock, and a core would sit idle behind it."""
    from spikeacc.golden.vectors import load_vectors
    from spikeacc.verif.tile_regress import tile_config_for

    seen, first, later = set(), [], []
    for job in jobs:
        tag = tile_config_for(load_vectors(job[2])).tag
        (later if tag in seen else first).append(job)
        seen.add(tag)
    return first + later


def step_verify(run: RunContext) -> dict:
    out, quick, build_root, config = run.out, run.quick, run.build_root, run.config
    from spikeacc.hw.mac import mac_cycles
    from spikeacc.verif.runner import run_pe_regression
    from spikeacc.verif.tile_regress import run_tile_regression

    cfg = config

    def verify_pe() -> dict:
        pe_run = run_pe_regression(cfg, n_random=200 if quick else 2000, build_root=build_root)
        pe = {k: pe_run.report[k] for k in ("passed", "compared", "mismatch_count", "cycles")}
        _log(f"  PE {cfg.tag}: {'PASS' if pe['passed'] else 'FAIL'}, {pe['compared']} cases")
        return pe

    def verify_tile(mode: str, proj: str, path: Path) -> dict:
        # q_proj and o_proj (the same tile) run on the activity-recording build that the energy
        # step needs anyway: one simulator build per mode fewer, the same bit-exact check
        on_activity_build = proj in ("self_attn.q_proj", "self_attn.o_proj")
        saif = out / "verify" / "activity" / f"{mode}_{path.stem}.saif" if on_activity_build else None
        _, rep = run_tile_regression(path, build_root=build_root, progress=False, saif_to=saif)
        m, k, n = rep.shape
        _log(f"  tile {mode:<10} {proj:<17} {m}x{k}x{n}: {'PASS' if rep.passed else 'FAIL'}, "
             f"{rep.compared} outputs, {rep.cycles / m:,.0f} cycles/token-layer, "
             f"utilization {rep.utilization:.1%}")
        return {"mode": mode, "layer": proj, "shape": [m, k, n], "pes": rep.config.pes, "passed": rep.passed,
                "compared": rep.compared, "mismatches": rep.mismatch_count,
                "cycles_per_token_layer": rep.cycles / m, "utilization": rep.utilization,
                "mac_cycles_per_token_layer": mac_cycles(rep.config), "vectors": str(path)}

    jobs = _builds_first([(mode, proj, path) for mode, layers in _vectors(run).items() for proj, path in layers.items()])
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # one simulator per core
        pe_job = pool.submit(verify_pe)   # its per-cycle Python driver holds one core: the tiles take the other
        tiles = list(pool.map(lambda job: verify_tile(*job), jobs))
        pe = pe_job.result()
    passed = pe["passed"] and all(t["passed"] for t in tiles)
    compared = pe["compared"] + sum(t["compared"] for t in tiles)
    plots = {"utilization": str(out / "verify" / "utilization.png"), "cycles": str(out / "verify" / "cycles.png")}
    from spikeacc.app.report import plot_cycles, plot_utilization
    plot_utilization(tiles, plots["utilization"])
    plot_cycles(tiles, plots["cycles"])
    section = {"status": "PASS" if passed else "FAIL", "pe_regression": pe, "tiles": tiles, "plots": plots,
               "headline": (f"{compared:,} outputs compared, {sum(t['mismatches'] for t in tiles) + pe['mismatch_count']} "
                            f"mismatches: PE + {len(tiles)} tile runs (SpikeQuant and Kirin"
                            f"{', cropped to 64×16' if quick else ', all 7 block-0 projections'})"),
               "files": list(plots.values())}
    if not passed:
        raise StepFailed(section)
    return section


def step_energy(run: RunContext) -> dict:
    from spikeacc.app.energy_step import energy_section

    name = "self_attn.q_proj_64x16.npz" if run.quick else "self_attn.q_proj.npz"
    paths = {mode: run.out / "vectors" / mode / name for mode in MODES}
    if not all(p.is_file() for p in paths.values()):
        paths = {mode: layers["self_attn.q_proj"] for mode, layers in _vectors(run).items()}
    return energy_section(run, paths)


def synth_packages(run: RunContext) -> list[dict]:
    """Each design's generated package, Verilog hash, and cached synthesis result if one matches that hash."""
    from spikeacc.hw.package import write_package

    packages = []
    chosen = [n for n in (*registry.pes(), *registry.tiles()) if registry.design(n).in_main_job]
    for design in [n for n in chosen if not registry.design(n).is_tile] if run.quick else chosen:
        files = write_package(design, run.config, run.out / "synth" / design / "rtl")
        digest = hashlib.sha256(Path(files["verilog"]).read_bytes()).hexdigest()
        # kept beside the simulator builds, so every --out directory reuses it while the Verilog is unchanged
        cached = workdirs.build_root(run.build_root) / "synth" / f"{design}_{digest[:16]}.json"
        packages.append({"design": design, "verilog": Path(files["verilog"]), "digest": digest, "cache": cached,
                         "row": _cached_synthesis(cached, digest)})
    return packages


def _cached_synthesis(path: Path, digest: str) -> dict | None:
    """A cached synthesis row of exactly this Verilog; missing, torn or foreign is a miss, never an error."""
    try:
        row = json.loads(path.read_text())
        return row if isinstance(row, dict) and row.get("verilog_sha256") == digest else None
    except (OSError, ValueError):
        return None


def step_synth(run: RunContext, quiet: bool = False, packages: list[dict] | None = None) -> dict:
    """Synthesis per design, reused while the design's Verilog is unchanged (keyed by its hash).

    ``quiet``: running in the background beside other steps, at the lowest
    CPU priority (the foreground steps keep both cores; synthesis takes what
    they leave); the section's rows say what was reused instead of printing. ``packages``:
    :func:`synth_packages` already generated.
    """
    log = (lambda message: None) if quiet else _log
    started = time.perf_counter()
    from spikeacc.hw.synth import synthesize

    packages = packages if packages is not None else synth_packages(run)
    out = run.out
    rows = []
    for p in packages:
        design = p["design"]
        if p["row"] is not None:
            row = {**p["row"], "reused": True}
            log(f"  synth {design}: reused (Verilog unchanged)")
        else:
            result = synthesize(p["verilog"], p["verilog"].stem, out / "synth" / design / "work",
                                place_and_route=False, background=quiet)
            row = {"design": design, "verilog_sha256": p["digest"], **result.to_dict()}
            p["cache"].parent.mkdir(parents=True, exist_ok=True)
            workdirs.write_atomic(p["cache"], json.dumps(row, indent=1) + "\n")
        rows.append({k: row[k] for k in ("design", "luts", "flip_flops", "brams", "seconds")}
                    | {"reused": row.get("reused", False)}
                    | {"generic_cells": sum(row["generic_cells"].values())})
        log(f"  synth {design}: {rows[-1]['luts']} LUT4, {rows[-1]['flip_flops']} FF, {rows[-1]['brams']} BRAM")
    by = {r["design"]: r for r in rows}
    return {"status": "PASS", "config": run.config.tag, "rows": rows,
            "seconds": round(time.perf_counter() - started, 1),
            "headline": _synth_headline(by),
            "files": [str(out / "synth" / p["design"] / "rtl") for p in packages]}


def _synth_headline(by: dict) -> str:
    """iCE40 LUT4 of each PE by name, then the tiles side by side."""
    def luts(tile: bool):
        return [(d, by[d]["luts"]) for d in by if registry.design(d).is_tile == tile]

    tiles = luts(True)
    return ("iCE40 LUT4: " + ", ".join(f"{registry.label(d)} {n}" for d, n in luts(False))
            + (f"; tiles {' vs '.join(str(n) for _, n in tiles)}" if tiles else ""))


def step_infer(run: RunContext) -> dict:
    out, quick, model, build_root, config = run.out, run.quick, run.model, run.build_root, run.config
    from spikeacc.app.infer import run_infer

    layers = "0" if quick else "0-1"
    rep = run_infer(INFER_PROMPT, max_new_tokens=2 if quick else 6, model=model, layers=layers, config=config,
                    out=out / "infer", build_root=build_root)
    t = rep["totals"]
    return {"status": "PASS" if rep["identical"] else "FAIL", "prompt": rep["prompt"], "text": rep["text"],
            "golden_text": rep["golden_text"], "blocks_on_rtl": layers, "projections_on_rtl": rep["layers_on_rtl"],
            "totals": t, "headline": (f"{rep['layers_on_rtl']} projections on the RTL, text identical to golden, "
                                      f"{t['outputs_compared']:,} counts compared"),
            "files": [str(out / "infer" / "infer.json")]}


STEP_FUNCTIONS = {"accuracy": step_accuracy, "verify": step_verify, "energy": step_energy, "synth": step_synth,
                  "infer": step_infer}


class StepFailed(Exception):
    """A step ran and its checks failed; carries the section for the report."""

    def __init__(self, section: dict):
        super().__init__(section.get("headline", "failed"))
        self.section = section


def run_main(out: Path, *, steps=STEPS, quick: bool = False, model: str | None = None,
             build_root: str | None = None, config: SpikeConfig = PRESETS["default"], gate_level: bool = False) -> dict:
    """Run ``steps`` in order; write report.json/.md/.html; return the report. Raises on the first failure."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise ValueError(f"--steps takes a comma-separated subset of {','.join(STEPS)}; got {','.join(steps) or 'nothing'}")
    steps = [s for s in STEPS if s in steps]   # in the story's order, each once
    out = Path(out)
    run = RunContext(out, quick, model, build_root, config, gate_level)
    cache = StepCache(out, model)
    report = {"model": model or "embedded SmolLM2-135M-Instruct", "quick": quick, "steps": list(steps),
              "config": config.to_dict(), "sections": {}, "summary": []}
    t_run = time.perf_counter()
    failure = None
    error = None   # what stopped the run when it was not a check: the user's input or environment, a tool, a bug
    params = {"quick": quick, "config": config.to_dict(), "gate_level": gate_level}
    # Synthesis (Yosys, a process of its own) overlaps the other steps instead of waiting for them,
    # when there is any to do; results cached for every design's Verilog make it a step of seconds.
    background = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    early = None
    functions = dict(STEP_FUNCTIONS)
    if "synth" in steps and cache.get("synth", params) is None:
        try:
            packages = synth_packages(run)
        except Exception:  # noqa: BLE001 - the synth step runs it again and reports the failure in its place
            packages = None
        if packages is not None:
            functions["synth"] = functools.partial(step_synth, packages=packages)
            if any(p["row"] is None for p in packages):
                early = background.submit(step_synth, run, quiet=True, packages=packages)
    for i, step in enumerate(steps):
        _log(f"[{i + 1}/{len(steps)}] {step} ...")
        t0 = time.perf_counter()
        section = cache.get(step, params)
        reused = section is not None
        if not reused:
            if step == "synth" and early is not None and not early.done():
                _log("  (synthesis has been running in the background since the start; waiting for it)")
            try:
                if step == "synth" and early:
                    section = early.result()
                else:
                    section = functions[step](run)
                cache.put(step, params, section)
            except StepFailed as exc:
                section = exc.section
                failure = f"{step}: {section['headline']}"
            except Exception as exc:  # the report keeps what earlier steps produced
                error = _not_a_verdict(exc)
                # a check that failed is FAIL; anything else (a full disk, a broken tool, a bug) is no verdict
                section = {"status": "FAIL" if error is None else "ERROR", "headline": _one_line(exc)}
                failure = f"{step}: {section['headline']}"
        seconds = time.perf_counter() - t0
        beside = step == "synth" and early is not None and "seconds" in section
        if beside:   # it ran in the background beside the earlier steps: its own time, not the wait
            seconds = section["seconds"]
        report["sections"][step] = section
        report["summary"].append({"step": step, "status": section["status"], "headline": section["headline"],
                                  "seconds": round(seconds, 1), "reused": reused, "background": beside})
        _log(f"[{i + 1}/{len(steps)}] {step}: {section['status']}{' (reused: inputs unchanged)' if reused else ''}"
             f" in {seconds:.0f} s: {section['headline']}")
        if failure:
            break
    background.shutdown(wait=True)  # after a failure: the background synthesis finishes first (its results are cached)
    report["wall_seconds"] = round(time.perf_counter() - t_run, 1)
    report["passed"] = failure is None and all(s["status"] == "PASS" for s in report["summary"])
    write_report(out, report)
    print_summary(report, out)
    if failure and error is not None:
        raise error(f"step {failure} (earlier steps' results are kept in {out})")
    if failure:
        raise VerificationFailed(f"step {failure} (earlier steps' results are kept in {out})")
    return report


def _one_line(exc: BaseException) -> str:
    """A step's exception as the report's one line; an OS error names its path and its cause."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _not_a_verdict(exc: BaseException):
    """The exception class a failed step is re-raised as when it is not a verification verdict (None when it is):
    the user's input or environment (exit 2), a tool (exit 3), or a bug of ours (exit 70)."""
    if isinstance(exc, VerificationFailed):
        return None
    if isinstance(exc, ToolFailure):
        return ToolFailure
    if isinstance(exc, (ValueError, OSError)):
        return ValueError
    return RuntimeError


def print_summary(report: dict, out: Path) -> None:
    print(f"\n{'step':<10}{'result':<8}{'time':>17}  summary")
    for s in report["summary"]:
        when = step_time(s)
        print(f"{s['step']:<10}{s['status']:<8}{when:>17}  {s['headline']}")
    print(f"{'all':<10}{'PASS' if report['passed'] else 'FAIL':<8}{report['wall_seconds']:>15.0f} s  "
          f"report: {out / 'report.html'} ({out / 'report.md'}, {out / 'report.json'})")

