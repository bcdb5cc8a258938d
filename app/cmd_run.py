"""``spikeacc run``: the main job, embedded model to verified spiking RTL, with a report."""

from __future__ import annotations

from pathlib import Path

from spikeacc import workdirs
from spikeacc.app.cli_options import BUILD_DIR_HELP, Mode, add_calibration_args, add_config_args, config_of

__all__ = ["add_run"]


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
                      config=config_of(args), gate_level=args.gate_level)
    return 0 if report["passed"] else 1


RUN_MODES = (
    Mode("without the energy step", lambda a: "energy" not in [s.strip() for s in a.steps.split(",")], ("--gate-level",),
         "--gate-level measures the energy step's gate-level figures; add energy to --steps",
         ("--steps", "accuracy")),
)


def add_run(sub) -> None:
    p = sub.add_parser("run", help="the main job: embedded model to verified spiking RTL, with a report")
    p.add_argument("--out", default="out", help="report directory (default: out)")
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
    add_config_args(p, "the arithmetic of every layer; the tile shape of the PE, quick and synthesis steps")
    add_calibration_args(p)
    p.set_defaults(func=cmd_run, modes=RUN_MODES)
