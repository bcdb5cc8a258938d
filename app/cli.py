"""The ``spikeacc`` command line: generate RTL, regress it, evaluate and export the golden model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from spikeacc import workdirs
from spikeacc.config import FIRINGS, PRESETS, SpikeConfig, config_from
from spikeacc.errors import EXIT_INPUT, EXIT_INTERRUPT, EXIT_TOOL, EXIT_VERIFY, ToolFailure, VerificationFailed

__all__ = ["main"]

BUILD_DIR_HELP = "simulator builds, shared by runs (default: $SPIKEACC_BUILD_DIR or sim_build)"


def _config_from(args) -> SpikeConfig:
    """The one configuration of a command: ``--config FILE``, ``--preset NAME`` or the default preset."""
    return config_from(args.preset, args.config)


def _add_config_args(p: argparse.ArgumentParser, what: str = "") -> None:
    """``--config FILE`` / ``--preset NAME``, the same on every command; ``what`` says what it sets there."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", metavar="FILE", help="JSON file of SpikeConfig fields" + (f" ({what})" if what else ""))
    g.add_argument("--preset", choices=sorted(PRESETS), help="named configuration (default: default)")


def _refuse_config_beside_vectors(args) -> None:
    """A vector file carries its own configuration; a second one would be ignored, so it is refused."""
    if args.vectors is not None and (args.config or args.preset):
        raise ValueError("--vectors FILE carries its own configuration; --config/--preset set the arithmetic of "
                         "the default vectors only: give one or the other")


# Options whose meaningless values no later check would catch: refused here, one line, in every command
MINIMUMS = {"workers": 1}


def _check_counts(args) -> None:
    for name, minimum in MINIMUMS.items():
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be at least {minimum}, got {value}")


def _layer_base(cfg: SpikeConfig) -> SpikeConfig:
    """Real projections: ``cfg``'s arithmetic on the tile shape the SmolLM2 preset adapts to each layer."""
    return PRESETS["smollm2"].with_arithmetic_of(cfg)


def cmd_generate(args) -> int:
    from spikeacc.hw.package import write_package
    from spikeacc.verif.toolchain import lint

    cfg = _config_from(args)
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


def _refuse(args, design: str, options: dict[str, object]) -> None:
    """Options that do not apply to ``design`` are refused, not silently ignored."""
    for option, default in options.items():
        if getattr(args, option.lstrip("-").replace("-", "_")) not in (None, default):
            raise ValueError(f"{option} does not apply to --design {design}")


def cmd_regress(args) -> int:
    workdirs.build_root(args.build_dir)
    if args.report:
        workdirs.output_file(args.report, "--report file", inputs=[args.vectors, args.config])
    if args.design == "pe":
        _refuse(args, "pe", {"--vectors": None, "--pes": None, "--lanes": None, "--inject-fault": None})
        from spikeacc.verif.runner import run_pe_regression
        cfg = _config_from(args)
        run = run_pe_regression(cfg, n_random=2000 if args.cases is None else args.cases,
                                seed=args.seed or 0, build_root=args.build_dir)
        ok = _print_run(run, f"PE {cfg.tag}")
        if args.report:
            Path(args.report).write_text(json.dumps(run.report, indent=2))
    else:
        _refuse(args, args.design, {"--cases": None, "--seed": None})
        from spikeacc.verif.tile_regress import regress_tile
        if not args.vectors:
            raise ValueError(f"--design {args.design} needs --vectors FILE.npz (make one with `spikeacc vectors`)")
        # the fields a third-party file cannot say: a JSON object of them, or a preset's arithmetic
        base = SpikeConfig.read_fields(args.config) if args.config else (
            PRESETS[args.preset].arithmetic() if args.preset else None)
        fault = _int_list(args.inject_fault, "--inject-fault") if args.inject_fault else None
        if fault is not None and len(fault) != 2:
            raise ValueError("--inject-fault takes TOKEN,NEURON")
        ok = regress_tile(args.vectors, build_root=args.build_dir, report=args.report,
                          pes=args.pes, lanes=args.lanes, design=args.design, config=base, inject_fault=fault)
    return 0 if ok else 1


def cmd_run(args) -> int:
    """The main job: accuracy, verification, energy, area and the LLM through the RTL, in one report."""
    from spikeacc.app.flow import run_main
    if args.model is not None and not Path(args.model).exists():
        raise FileNotFoundError(f"model path {args.model} does not exist")
    workdirs.build_root(args.build_dir)
    out = workdirs.output_dir(args.out, "--out directory")
    from spikeacc.app.report import REPORT_FILES
    foreign = [] if args.force else workdirs.foreign_files(out, REPORT_FILES)
    if foreign:
        raise ValueError(f"--out directory {out} already holds {', '.join(foreign)}, which spikeacc did not write; "
                         f"choose another --out or pass --force to overwrite")
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    report = run_main(out, steps=steps, quick=args.quick, model=args.model, build_root=args.build_dir,
                      config=_config_from(args), gate_level=args.gate_level)
    return 0 if report["passed"] else 1


def cmd_synth(args) -> int:
    from spikeacc.hw.package import write_package
    from spikeacc.hw.synth import synthesize

    cfg = _config_from(args)
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
    print("\n".join(lines[2:2 + len(rows) + 2]))
    for r in rows:
        if r["note"]:
            print(f"{r['design']}: {r['note']}")
    print(f"wrote {out / 'synth.json'} and {out / 'synth.md'}")
    return 0


def _default_vectors(args) -> str:
    """``--vectors``, or the embedded default: SmolLM2 block 0 q_proj, 8 tokens, in the configuration's arithmetic."""
    _refuse_config_beside_vectors(args)
    if args.vectors is not None:
        return args.vectors
    from spikeacc.golden.vectors import export_vectors
    layer = getattr(args, "layer", None) or "model.layers.0.self_attn.q_proj"
    return export_vectors(layer=layer, tokens=8, base=_layer_base(_config_from(args)),
                          out=Path(args.out) / f"smollm2_{layer.replace('model.layers.', 'l').replace('.', '_')}.npz")


def cmd_power(args) -> int:
    from spikeacc.energy.liberty import DEFAULT_LIBERTY
    from spikeacc.energy.power import run_power

    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    bad = [d for d in designs if d not in ("tile", "mac", "mac_skip")]
    if bad or not designs:
        raise ValueError(f"--designs takes tile, mac and/or mac_skip, got {args.designs!r}")
    if args.vectors is not None and (args.layer or args.full_size):
        raise ValueError("--layer and --full-size choose the SmolLM2 projection to export; --vectors FILE is "
                         "measured as it is: give one or the other")
    liberty = Path(args.liberty) if args.liberty else DEFAULT_LIBERTY
    if not liberty.is_file():
        raise ValueError(f"--liberty {liberty} does not exist"
                         + (" (Debian: apt-get install qflow-tech-osu018)" if not args.liberty else ""))
    workdirs.build_root(args.build_dir)
    workdirs.output_dir(args.out, "--out directory")
    vectors = _default_vectors(args)
    if args.vectors is None and not args.full_size:  # real SmolLM2 data cropped to the configuration's tile shape
        from spikeacc.golden.vectors import crop_vectors, load_vectors, save_vectors
        tile = _config_from(args)
        vectors = save_vectors(Path(vectors).with_name(f"{Path(vectors).stem}_k{tile.in_features}n{tile.out_features}.npz"),
                               crop_vectors(load_vectors(vectors), tile))
    r = run_power(vectors, designs=designs, liberty=liberty, out=args.out,
                  build_root=args.build_dir, pes=args.pes, lanes=args.lanes, sram=args.memories == "sram",
                  gated=not args.no_clock_gating, firing=args.firing)
    print((Path(args.out) / "power.md").read_text())
    print(f"wrote {Path(args.out) / 'power.json'} and power.md; netlist SAIF: "
          + ", ".join(d["saif"] for d in r.designs.values()))
    return 0


def cmd_energy(args) -> int:
    from spikeacc.energy.toggles import run_energy

    workdirs.build_root(args.build_dir)
    workdirs.output_dir(args.out, "--out directory")
    vectors = _default_vectors(args)
    run_energy(vectors, out=args.out, build_root=args.build_dir, pes=args.pes, lanes=args.lanes,
               gate_level=args.gate_level)
    print((Path(args.out) / "energy.md").read_text())
    print(f"wrote {Path(args.out) / 'energy.json'}, energy.md, energy.png")
    return 0


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} needs at least one value")
    return values


def cmd_ppl(args) -> int:
    from spikeacc.golden.perplexity import run_ppl_table
    out = workdirs.output_dir(args.out, "--out directory")
    if args.rtl:
        from spikeacc.app.infer import rtl_perplexity
        rep = rtl_perplexity(64 if args.tokens is None else args.tokens, model=args.model, layers=args.layers,
                             workers=args.workers, scheduler=args.scheduler, build_root=args.build_dir,
                             config=_config_from(args), per_call=args.per_call, split=args.split)
        (out / "ppl_rtl.json").write_text(json.dumps(rep, indent=2) + "\n")
        t = rep["totals"]
        print(f"hardware-faithful PPL on {rep['tokens']} held-out tokens: golden {rep['golden_ppl']:.6f}, "
              f"RTL ({rep['layers_on_rtl']} projections on the tile) {rep['rtl_ppl']:.6f}; "
              f"{t['outputs_compared']:,} counts compared, 0 mismatches, {t['rtl_wall_seconds']} s")
        print(f"wrote {out / 'ppl_rtl.json'}")
        if not rep["equal"]:
            raise VerificationFailed("RTL and golden perplexities differ")
        return 0
    run_ppl_table(model=args.model, text=args.text, out=args.out, quick=args.quick, full=args.full,
                  tokens=2048 if args.tokens is None else args.tokens, out_bits=_int_list(args.out_bits, "--out-bits"),
                  out_policies=tuple(p for p in args.out_policy.split(",") if p),
                  inputs=tuple(i for i in args.inputs.split(",") if i), config=_config_from(args),
                  eval_text=args.eval_text)
    return 0


def cmd_vectors(args) -> int:
    from spikeacc.golden.vectors import export_vectors
    out = Path(args.out) if str(args.out).endswith(".npz") else Path(f"{args.out}.npz")
    workdirs.output_file(out, "--out file", inputs=[args.model])
    cfg = _config_from(args)
    if args.mode == "static" and args.input_step is not None:
        raise ValueError("--mode static has one step per tensor; --input-step chooses per-token steps: give one")
    step = "static" if args.mode == "static" else args.input_step
    base = _layer_base(cfg.in_mode("kirin") if args.kirin else cfg)
    if step is not None:
        base = base.replace(input_step=step)
    path = export_vectors(model=args.model, layer=args.layer, tokens=args.tokens, out=args.out,
                          llama2_shape=args.llama2_shape, seed=args.seed, out_policy=args.out_policy,
                          out_bits=args.out_bits, base=base)
    print(f"wrote {path}")
    return 0


def cmd_infer(args) -> int:
    from spikeacc.app.infer import run_infer
    if args.model is not None and not Path(args.model).exists():
        raise FileNotFoundError(f"model path {args.model} does not exist")
    cfg = _config_from(args)
    fault = None
    if args.inject_fault:
        layer, _, rest = args.inject_fault.partition(",")
        try:
            token, neuron = (int(v) for v in rest.split(","))
        except ValueError:
            raise ValueError(f"--inject-fault takes LAYER,TOKEN,NEURON, got {args.inject_fault!r}") from None
        fault = (layer, token, neuron)
        if args.golden:
            raise ValueError("--inject-fault flips an RTL count; with --golden nothing runs on the RTL")
    rep = run_infer(args.prompt, max_new_tokens=args.max_new_tokens, model=args.model, rtl=not args.golden,
                    layers=args.layers, workers=args.workers, scheduler=args.scheduler, out=args.out,
                    build_root=args.build_dir, config=cfg.in_mode("kirin") if args.kirin else cfg, inject_fault=fault,
                    per_call=args.per_call, split=args.split)
    print(f"prompt: {rep['prompt']!r}")
    print(f"text:   {rep['text']!r}")
    if rep["mode"] == "rtl":
        t = rep["totals"]
        print(f"RTL: {rep['layers_on_rtl']} projections on the spiking tile, {t['calls']} calls, "
              f"{t['outputs_compared']:,} output counts compared, {t['mismatches']} mismatches; "
              f"{t['simulated_cycles']:,} simulated cycles in {t['rtl_wall_seconds']} s "
              f"({t['simulated_cycles_per_wall_second']:,} cycles/s; builds {rep['builds']['seconds']} s)")
        print(f"golden text identical: {rep['identical']}; wall {rep['wall_seconds']} s")
    print(f"wrote {Path(args.out) / 'infer.json'}")
    return 0


def _add_rtl_path_args(p) -> None:
    p.add_argument("--split", type=int, default=1, metavar="S",
                   help="cut each projection's output blocks into up to S equal parts (the most that divide its "
                        "blocks), each a call of its own: one projection over S workers")
    p.add_argument("--per-call", action="store_true",
                   help="one simulator process and buffer files per call (the fallback and cross-check) "
                        "instead of resident simulators")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikeacc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write Verilog and a JSON manifest for a design")
    p.add_argument("design", choices=["pe", "tile", "mac", "mac_skip", "mac_pe"])
    p.add_argument("--out", required=True, help="output directory (empty, or one spikeacc wrote)")
    p.add_argument("--force", action="store_true", help="write into a directory holding other files")
    p.add_argument("--no-lint", dest="lint", action="store_false", help="skip verilator --lint-only -Wall")
    _add_config_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("regress", help="run a bit-exact regression under Verilator")
    p.add_argument("--design", choices=["pe", "tile", "mac", "mac_skip"], default="pe",
                   help="pe, the spiking tile, or the MAC baseline tile")
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
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("run", help="the main job: embedded model to verified spiking RTL, with a report")
    p.add_argument("--out", default="out")
    p.add_argument("--steps", default="accuracy,verify,energy,synth,infer",
                   help="comma-separated subset of accuracy,verify,energy,synth,infer")
    p.add_argument("--quick", action="store_true",
                   help="a reduced variant: tiles cropped to 64x16, PE 200 cases, one block through the RTL")
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
    p.add_argument("--force", action="store_true", help="overwrite report files in --out that spikeacc did not write")
    p.add_argument("--gate-level", action="store_true",
                   help="measure the energy step's gate-level figures at the real q_proj shape even when its "
                        "netlists are not built yet (the first time: tens of minutes); otherwise they are measured "
                        "when built and shown as recorded when not")
    _add_config_args(p, "the arithmetic of every layer; the tile shape of the PE, quick and synthesis steps")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("synth", help="Yosys cell counts, iCE40 LUT/FF and Fmax for each design")
    p.add_argument("--designs", default="pe,mac_pe,tile,mac",
                   help="comma-separated: pe (spiking PE), mac_pe, tile (spiking), mac (MAC tile)")
    p.add_argument("--out", default="out/synth")
    p.add_argument("--no-pnr", action="store_true", help="skip nextpnr place and route (no Fmax)")
    _add_config_args(p)
    p.set_defaults(func=cmd_synth)

    def energy_run(name: str, help_text: str, default_vectors: str = "SmolLM2 block 0 q_proj, 8 tokens"):
        """The options every energy measurement on one vector file shares."""
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--vectors", help=f"layer vector file (default: {default_vectors})")
        p.add_argument("--out", default=f"out/{name}")
        p.add_argument("--pes", type=int, default=None)
        p.add_argument("--lanes", type=int, default=None)
        p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
        _add_config_args(p, "the arithmetic of the default vectors")
        return p

    p = energy_run("energy", "spiking vs MAC energy from RTL toggles on the same vectors")
    p.add_argument("--gate-level", metavar="POWER_JSON",
                   help="a `spikeacc power` result (power.json or its directory) of the same vectors: "
                        "report its ratio and the toggle models' errors against it")
    p.set_defaults(func=cmd_energy)
    p = energy_run("power", "gate-level energy: standard-cell netlists simulated on the vectors",
                   "SmolLM2 block 0 q_proj, 8 tokens, cropped to the default 64×16 tile; see --full-size")
    p.add_argument("--layer", default=None,
                   help="the SmolLM2 projection to export when no --vectors is given "
                        "(default model.layers.0.self_attn.q_proj)")
    p.add_argument("--full-size", action="store_true",
                   help="measure that projection at its real shape (P and L from its size; minutes the first time) "
                        "instead of cropped to the configuration's tile")
    p.add_argument("--designs", default="tile,mac,mac_skip",
                   help="comma-separated: tile (spiking), mac (every weight read and multiplied), "
                        "mac_skip (zero activations skip the weight read and hold the multiplier)")
    p.add_argument("--liberty", help="Liberty file (default: Debian qflow-tech-osu018, OSU 0.18 um)")
    p.add_argument("--memories", choices=("sram", "flops"), default="sram",
                   help="the tile's own memories (event queues): SRAM macros charged per access, or flip-flops")
    p.add_argument("--firing", choices=FIRINGS, default=None,
                   help="the spiking PEs' firing unit (default: the vectors' configuration, division)")
    p.add_argument("--no-clock-gating", action="store_true",
                   help="clock every flip-flop every cycle (default: gate the ones with an enable)")
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("ppl", help="perplexity table: FP, RTN and SpikeQuant, with a bit sweep")
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--text", help="UTF-8 text file to calibrate and evaluate on (default: shipped GPL-3 text)")
    p.add_argument("--eval-text", metavar="FILE",
                   help="UTF-8 text file to evaluate on whole, calibrating on the shipped text (a text never seen)")
    p.add_argument("--out", default="out/ppl")
    p.add_argument("--tokens", type=int, default=None,
                   help="evaluation tokens (default 2048; with --rtl: the window, default 64)")
    p.add_argument("--rtl", action="store_true",
                   help="one short window through the RTL (every selected projection on the tile) beside golden")
    p.add_argument("--layers", default="all", help="--rtl: decoder blocks on the RTL (all, 0,1, 0-3)")
    p.add_argument("--workers", type=int, default=None, help="--rtl: simulators at once")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="--rtl: a Dask cluster")
    _add_rtl_path_args(p)
    p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
    p.add_argument("--quick", action="store_true",
                   help="baselines plus one hardware-faithful row per input mode")
    p.add_argument("--full", action="store_true", help="also the bit sweep and power-of-two weight groups")
    p.add_argument("--out-bits", default="4,6,8", help="tile output widths b_out of the hardware-faithful rows")
    _add_config_args(p, "widths and salient rule of the rows; with --rtl, the tiles' arithmetic")
    p.add_argument("--out-policy", default="channel,tensor",
                   help="output-range policies of the hardware-faithful rows: channel, tensor")
    p.add_argument("--inputs", default="static,dynamic,dynamic-pow2,dynamic-pow2/4",
                   help="activation-step modes of the rows: static, dynamic, dynamic-<pow2|pow2/2|pow2/4>")
    p.set_defaults(func=cmd_ppl)

    p = sub.add_parser("infer", help="generate text with every selected projection computed by the RTL")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rtl", action="store_true", help="the projections on the spiking tile under Verilator (default)")
    g.add_argument("--golden", action="store_true", help="the hardware-faithful golden model only")
    p.add_argument("--layers", default="all", help="decoder blocks on the RTL: all, none, 0,1 or 0-3 (others golden)")
    p.add_argument("--workers", type=int, default=None, help="simulators at once (default: the number of cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the tile calls on a Dask cluster")
    _add_rtl_path_args(p)
    p.add_argument("--kirin", action="store_true", help="Kirin mode: 8-bit integer outliers, silence firing")
    p.add_argument("--inject-fault", metavar="LAYER,TOKEN,NEURON",
                   help="self-test: flip one bit of the RTL's count there; the run must stop there")
    p.add_argument("--out", default="out/infer")
    p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
    _add_config_args(p, "the arithmetic of every projection's tile")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("vectors", help="export one layer's integer vectors for the hardware")
    p.add_argument("--layer", default="model.layers.0.self_attn.q_proj")
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--mode", choices=["dynamic", "static"], default=None,
                   help="activation steps: per token (dynamic) or calibrated per tensor (static, the same as "
                        "--input-step static); default: the configuration's")
    p.add_argument("--input-step", choices=["static", "pow2", "pow2/2", "pow2/4", "any"], default=None,
                   help="per-token steps on the grid 2^(-j/R) (pow2: R = 1; the tile holds R threshold constants "
                        "per neuron and takes each token's exponent) or static; default: the configuration's. "
                        "any (a threshold word per token) is golden-only and refused here")
    p.add_argument("--out-policy", choices=["channel", "tensor", "oracle"], default="channel",
                   help="where the output step comes from (oracle: not realizable, an upper bound)")
    p.add_argument("--out-bits", type=int, default=None, help="tile output width b_out (default: the configuration's)")
    p.add_argument("--kirin", action="store_true",
                   help="Kirin mode (W4A4&8): salient values as 8-bit integer outliers, silence-threshold firing")
    p.add_argument("--llama2-shape", action="store_true",
                   help="synthetic Llama-2-7B decoder layer (hidden 4096, intermediate 11008), seeded")
    p.add_argument("--seed", type=int, default=0)
    _add_config_args(p, "the arithmetic of the exported layer; P and L adapt to its shape")
    p.set_defaults(func=cmd_vectors)
    return parser


def main(argv=None) -> int:
    """Run one command; every failure becomes one line on stderr and an exit code (see spikeacc.errors)."""
    args = build_parser().parse_args(argv)
    if os.environ.get("SPIKEACC_DEBUG") == "1":
        _check_counts(args)
        return args.func(args)
    try:
        _check_counts(args)
        return args.func(args)
    except KeyboardInterrupt:
        print("spikeacc: interrupted; finished files are kept", file=sys.stderr)
        return EXIT_INTERRUPT
    except VerificationFailed as exc:
        print(f"spikeacc: FAIL: {exc}", file=sys.stderr)
        return EXIT_VERIFY
    except ToolFailure as exc:
        print(f"spikeacc: error: {exc}", file=sys.stderr)
        return EXIT_TOOL
    except (ValueError, FileNotFoundError) as exc:
        print(f"spikeacc: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"spikeacc: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # a bug of ours: still one line, and how to see more
        print(f"spikeacc: internal error: {type(exc).__name__}: {exc} (run with SPIKEACC_DEBUG=1 for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
