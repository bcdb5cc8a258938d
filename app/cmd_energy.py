"""``spikeacc energy`` and ``power``: spiking against MAC energy on the same vectors, from RTL toggles or gates."""

from __future__ import annotations

from pathlib import Path

from spikeacc import workdirs
from spikeacc.app.cli_options import BUILD_DIR_HELP, add_config_args, config_of, default_vectors
from spikeacc.config import FIRINGS
from spikeacc.hw import registry

__all__ = ["add_energy_commands"]


def cmd_power(args) -> int:
    from spikeacc.energy.liberty import DEFAULT_LIBERTY
    from spikeacc.energy.power import run_power

    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    bad = [d for d in designs if d not in registry.tiles()]
    if bad or not designs:
        *others, last = registry.tiles()
        raise ValueError(f"--designs takes {', '.join(others)} and/or {last}, got {args.designs!r}")
    if args.vectors is not None and (args.layer or args.full_size):
        raise ValueError("--layer and --full-size choose the SmolLM2 projection to export; --vectors FILE is "
                         "measured as it is: give one or the other")
    liberty = Path(args.liberty) if args.liberty else DEFAULT_LIBERTY
    if not args.liberty and not liberty.is_file():
        raise ValueError(f"the default Liberty {liberty} is not installed (Debian: apt-get install qflow-tech-osu018)")
    workdirs.input_file(liberty, "--liberty")
    workdirs.build_root(args.build_dir)
    workdirs.output_dir(args.out, "--out directory")
    vectors = default_vectors(args)
    if args.vectors is None and not args.full_size:  # real SmolLM2 data cropped to the configuration's tile shape
        from spikeacc.golden.synthetic_vectors import crop_vectors
        from spikeacc.golden.vectors import load_vectors, save_vectors
        tile = config_of(args)
        vectors = save_vectors(Path(vectors).with_name(f"{Path(vectors).stem}_k{tile.in_features}n{tile.out_features}.npz"),
                               crop_vectors(load_vectors(vectors), tile))
    r = run_power(vectors, designs=designs, liberty=liberty, out=args.out,
                  build_root=args.build_dir, pes=args.pes, lanes=args.lanes, sram=args.memories == "sram",
                  gated=not args.no_clock_gating, firing=args.firing)
    print((Path(args.out) / "power.md").read_text())
    print(f"wrote {Path(args.out) / 'power.json'} and power.md; netlist SAIF: "
          + ", ".join(d.saif for d in r.designs.values()))
    return 0


def cmd_energy(args) -> int:
    from spikeacc.energy.toggles import run_energy

    workdirs.build_root(args.build_dir)
    workdirs.output_dir(args.out, "--out directory")
    vectors = default_vectors(args)
    run_energy(vectors, out=args.out, build_root=args.build_dir, pes=args.pes, lanes=args.lanes,
               gate_level=args.gate_level)
    print((Path(args.out) / "energy.md").read_text())
    print(f"wrote {Path(args.out) / 'energy.json'}, energy.md, energy.png")
    return 0


def add_energy_commands(sub) -> None:
    def energy_run(name: str, help_text: str, default_vectors: str = "SmolLM2 block 0 q_proj, 8 tokens"):
        """The options every energy measurement on one vector file shares."""
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--vectors", help=f"layer vector file (default: {default_vectors})")
        p.add_argument("--out", default=f"out/{name}", help=f"results: {name}.json, {name}.md and the SAIF files")
        p.add_argument("--pes", type=int, default=None, help="neurons in parallel, P (default: from the vectors)")
        p.add_argument("--lanes", type=int, default=None, help="activation lanes per cycle, L (default: from the vectors)")
        p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
        add_config_args(p, "the arithmetic of the default vectors")
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
    p.add_argument("--designs", default=",".join(registry.tiles()),
                   help="comma-separated tiles: " + ", ".join(f"{n} ({registry.label(n)})" for n in registry.tiles()))
    p.add_argument("--liberty", help="Liberty file (default: Debian qflow-tech-osu018, OSU 0.18 um)")
    p.add_argument("--memories", choices=("sram", "flops"), default="sram",
                   help="the tile's own memories (event queues): SRAM macros charged per access, or flip-flops")
    p.add_argument("--firing", choices=FIRINGS, default=None,
                   help="the spiking PEs' firing unit (default: the vectors' configuration, division)")
    p.add_argument("--no-clock-gating", action="store_true",
                   help="clock every flip-flop every cycle (default: gate the ones with an enable)")
    p.set_defaults(func=cmd_power)
