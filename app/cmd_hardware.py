"""``spikeacc generate``, ``regress`` and ``synth``: the designs as Verilog, checked bit-exact, and their area."""

from __future__ import annotations

import json
from pathlib import Path

from spikeacc import workdirs
from spikeacc.app.cli_options import BUILD_DIR_HELP, Mode, add_config_args, config_of, int_list
from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.hw import registry

__all__ = ["add_generate", "add_regress", "add_synth"]


def cmd_generate(args) -> int:
    from spikeacc.hw.package import write_package
    from spikeacc.verif.toolchain import lint

    cfg = config_of(args)
    out = workdirs.output_dir(args.out, "--out directory", force=args.force, owned_only=True)
    from spikeacc.hw.generate import module_name
    top = module_name(args.design, cfg)
    try:
        files = write_package(args.design, cfg, out)
    except OSError:   # a full disk: what was written is ours, so the next generate may write over it
        workdirs.record_owned(out, [p for p in out.iterdir() if p.name.startswith(top)
                                    or p.name in ("config.json", "README.md", "example")])
        raise
    from spikeacc.verif.package_example import example_command, write_example
    write_example(files["manifest"], args.design, cfg)
    workdirs.record_owned(out, [*files.values(), out / "example"])
    for kind, path in files.items():
        print(f"wrote {path}  ({kind})")
    print(f"wrote {out / 'example'}/ (a runnable testbench: cd {out / 'example'} && "
          f"{example_command(files['verilog'].stem)})")
    if args.lint:
        lint([files["verilog"]], files["verilog"].stem)
        print("verilator --lint-only -Wall: clean (waivers: see spikeacc.hw.lint_waivers.LINT_WAIVERS)")
    return 0


def _print_run(run, what: str) -> bool:
    rep = run.report
    cycles = rep.get("cycles", 0)
    rate = cycles / rep["wall_seconds"] if rep.get("wall_seconds") else 0.0
    from spikeacc.verif.scoreboard import Scoreboard
    board = Scoreboard.from_report(rep)
    print(f"{what}: {board.summary()}")
    print(f"  build {run.build_seconds:.1f} s, simulation {run.test_seconds:.1f} s, "
          f"{cycles} cycles, {rate:,.0f} simulated cycles/s")
    if not board.passed:
        print(f"  kept for inspection: {run.work_dir} (log {run.log})")
    return board.passed


def cmd_regress(args) -> int:
    workdirs.build_root(args.build_dir)
    if args.report:
        workdirs.output_file(args.report, "--report file", inputs=[args.vectors, args.config])
    if args.design == registry.SPIKING_PE:
        from spikeacc.verif.runner import run_pe_regression
        cfg = config_of(args)
        run = run_pe_regression(cfg, n_random=2000 if args.cases is None else args.cases,
                                seed=args.seed or 0, build_root=args.build_dir)
        ok = _print_run(run, f"PE {cfg.tag}")
        if args.report:
            Path(args.report).write_text(json.dumps(run.report, indent=2))
    else:
        from spikeacc.verif.tile_regress import regress_tile
        if not args.vectors:
            raise ValueError(f"--design {args.design} needs --vectors FILE.npz (make one with `spikeacc vectors`)")
        # the fields a third-party file cannot say: a JSON object of them, or a preset's arithmetic
        base = SpikeConfig.read_fields(args.config) if args.config else (
            PRESETS[args.preset].arithmetic() if args.preset else None)
        fault = int_list(args.inject_fault, "--inject-fault") if args.inject_fault else None
        if fault is not None and len(fault) != 2:
            raise ValueError("--inject-fault takes TOKEN,NEURON")
        ok = regress_tile(args.vectors, build_root=args.build_dir, report=args.report,
                          pes=args.pes, lanes=args.lanes, design=args.design, config=base, inject_fault=fault)
    return 0 if ok else 1


def cmd_synth(args) -> int:
    from spikeacc.hw.package import write_package
    from spikeacc.hw.synth import synthesize

    cfg = config_of(args)
    out = workdirs.output_dir(args.out, "--out directory")
    rows = []
    for design in args.designs.split(","):
        files = write_package(design, cfg, out / design / "rtl")
        print(f"synthesizing {design} ({files['verilog'].stem}) ...", flush=True)
        result = synthesize(files["verilog"], files["verilog"].stem, out / design / "work",
                            place_and_route=not args.no_pnr)
        rows.append({"design": design, **result.to_dict()})
    (out / "synth.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [f"# Synthesis, {cfg.tag}", "",
             "| design | generic cells | iCE40 LUT4 | FF | BRAM | device | fits | Fmax (MHz) | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['design']} | {sum(r['generic_cells'].values())} | {r['luts']} | {r['flip_flops']} | "
                     f"{r['brams']} | {r['device']} | {r['fits']} | {r['fmax_mhz']} | {r['seconds']} |")
    lines += ["", "Generic cells by type:", ""]
    for r in rows:
        lines.append(f"- {r['design']}: " + ", ".join(f"{k} {v}" for k, v in r["generic_cells"].items()))
    (out / "synth.md").write_text("\n".join(lines) + "\n")
    for r in rows:
        fmax = f", Fmax {r['fmax_mhz']} MHz" if r["fmax_mhz"] else ""
        print(f"{r['design']}: {r['luts']} LUT4, {r['flip_flops']} FF, {r['brams']} BRAM on {r['device']}"
              f" ({'fits' if r['fits'] else 'does not fit'}){fmax}; {r['seconds']} s"
              + (f"; {r['note']}" if r["note"] else ""))
    print(f"wrote {out / 'synth.json'} and {out / 'synth.md'}")
    return 0


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="write Verilog and a JSON manifest for a design")
    p.add_argument("design", choices=registry.names(), help="the design to generate")
    p.add_argument("--out", required=True, help="output directory (empty, or one spikeacc wrote)")
    p.add_argument("--force", action="store_true", help="write into a directory holding other files")
    p.add_argument("--no-lint", dest="lint", action="store_false", help="skip verilator --lint-only -Wall")
    add_config_args(p)
    p.set_defaults(func=cmd_generate)


REGRESS_MODES = (
    Mode(f"with --design {registry.SPIKING_PE}", lambda a: a.design == registry.SPIKING_PE,
         ("--vectors", "--pes", "--lanes", "--inject-fault"),
         "the PE regression runs corner and random neurons, not a vector file", ("--design", registry.SPIKING_PE)),
    Mode("with a tile design", lambda a: a.design != registry.SPIKING_PE, ("--cases", "--seed"),
         "a tile runs the vector file given with --vectors", ("--design", registry.SPIKING_TILE)),
)


def add_regress(sub) -> None:
    p = sub.add_parser("regress", help="run a bit-exact regression under Verilator")
    p.add_argument("--design", choices=(registry.SPIKING_PE, *registry.tiles()), default=registry.SPIKING_PE,
                   help="the spiking PE (random and corner cases) or a tile (a vector file)")
    p.add_argument("--vectors", help="layer vector file (.npz) for --design tile or mac")
    p.add_argument("--cases", type=int, default=None, help="pe: random cases besides the corners (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="pe: seed of the random cases (default 0)")
    p.add_argument("--pes", type=int, default=None, help="tile: neurons in parallel (default: from the vectors)")
    p.add_argument("--lanes", type=int, default=None, help="tile: spike events per cycle")
    p.add_argument("--report", help="write the JSON report here (never one of the inputs)")
    p.add_argument("--inject-fault", metavar="TOKEN,NEURON",
                   help="tile/mac self-test: flip one bit of the RTL's output there; the run must FAIL")
    p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", metavar="FILE", help="pe: JSON file of SpikeConfig fields; tile/mac: the fields "
                   "a third-party vector file cannot say (kappa, pes, lanes, ...)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="pe: named configuration (default: default); "
                   "tile/mac: its arithmetic, for a vector file that does not carry its own")
    p.set_defaults(func=cmd_regress, modes=REGRESS_MODES)


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="Yosys cell counts, iCE40 LUT/FF and Fmax for each design")
    p.add_argument("--designs", default=",".join(n for n in (*registry.pes(), *registry.tiles())
                                                 if registry.design(n).in_main_job),
                   help="comma-separated: " + ", ".join(f"{n} ({registry.label(n)})" for n in registry.names()))
    p.add_argument("--out", default="out/synth", help="packages, synthesis logs, synth.json and synth.md")
    p.add_argument("--no-pnr", action="store_true", help="skip nextpnr place and route (no Fmax)")
    add_config_args(p)
    p.set_defaults(func=cmd_synth)
