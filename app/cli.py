"""The ``spikeacc`` command line: generate RTL, regress it, evaluate and export the golden model."""

from __future__ import annotations

import argparse
import os
import sys

from spikeacc.app.cli_options import check_counts, refuse_inert
from spikeacc.app.cmd_energy import add_energy_commands
from spikeacc.app.cmd_golden import add_infer, add_ppl, add_vectors
from spikeacc.app.cmd_hardware import add_generate, add_regress, add_synth
from spikeacc.app.cmd_run import add_run
from spikeacc.errors import (EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPT, EXIT_TOOL, EXIT_VERIFY, ToolFailure,
                             VerificationFailed)

__all__ = ["main", "build_parser"]

# each adds its subcommand (every option with its help) and the function that runs it
COMMANDS = (add_generate, add_regress, add_run, add_synth, add_energy_commands, add_ppl, add_infer, add_vectors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikeacc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run one command; every failure becomes one line on stderr and an exit code (see spikeacc.errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    if os.environ.get("SPIKEACC_DEBUG") == "1":
        check_counts(args)
        refuse_inert(args, command, getattr(args, "modes", ()))
        return args.func(args)
    try:
        check_counts(args)
        refuse_inert(args, command, getattr(args, "modes", ()))
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
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
