"""What every ``spikeacc`` command shares: the configuration options, refusals and default vectors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spikeacc.config import PRESETS, ROTATIONS, SpikeConfig, config_from

__all__ = ["BUILD_DIR_HELP", "config_of", "add_config_args", "add_calibration_args", "refuse_config_beside_vectors", "check_counts",
           "layer_base", "Mode", "refuse_inert", "int_list", "default_vectors", "add_rtl_path_args"]

BUILD_DIR_HELP = "simulator builds, shared by runs (default: $SPIKEACC_BUILD_DIR or sim_build)"


def config_of(args) -> SpikeConfig:
    """The one configuration of a command: ``--config FILE``, ``--preset NAME`` or the default preset.

    The calibration options (:func:`add_calibration_args`), where a command
    has them, change the fields of the same names.
    """
    cfg = config_from(args.preset, args.config)
    changes = {field: getattr(args, dest) for dest, field in CALIBRATION_OPTIONS.items()
               if getattr(args, dest, None) is not None}
    return cfg.replace(**changes) if changes else cfg


# option dest -> SpikeConfig field, for the commands that calibrate the golden model
CALIBRATION_OPTIONS = {"calib_text": "calibration", "calib_tokens": "calibration_tokens", "rotation": "rotation"}


def add_calibration_args(p: argparse.ArgumentParser) -> None:
    """``--calib-text``, ``--calib-tokens``, ``--rotation``: what calibrates the golden model (config fields)."""
    p.add_argument("--calib-text", metavar="SOURCE",
                   help="what calibrates GPTQ and the static ranges: shipped-text (the shipped text's first tokens), "
                        "corpus (the shipped calibration corpus) or a UTF-8 file; default: the configuration's")
    p.add_argument("--calib-tokens", type=int, metavar="N",
                   help="calibration tokens (whole 512-token windows drawn from a corpus or file); "
                        "default: the configuration's (1024)")
    p.add_argument("--rotation", choices=ROTATIONS,
                   help="rotations folded into the weights before quantization (hadamard: R1 on the residual "
                        "stream, R2 per head); default: the configuration's (none)")


def add_config_args(p: argparse.ArgumentParser, what: str = "") -> None:
    """``--config FILE`` / ``--preset NAME``, the same on every command; ``what`` says what it sets there."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", metavar="FILE", help="JSON file of SpikeConfig fields" + (f" ({what})" if what else ""))
    g.add_argument("--preset", choices=sorted(PRESETS), help="named configuration (default: default)")


def refuse_config_beside_vectors(args) -> None:
    """A vector file carries its own configuration; a second one would be ignored, so it is refused."""
    if args.vectors is not None and (args.config or args.preset):
        raise ValueError("--vectors FILE carries its own configuration; --config/--preset set the arithmetic of "
                         "the default vectors only: give one or the other")


# Options whose meaningless values no later check would catch: refused here, one line, in every command
MINIMUMS = {"workers": 1}


def check_counts(args) -> None:
    for name, minimum in MINIMUMS.items():
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be at least {minimum}, got {value}")


def layer_base(cfg: SpikeConfig) -> SpikeConfig:
    """Real projections: ``cfg``'s arithmetic on the tile shape the SmolLM2 preset adapts to each layer."""
    return PRESETS["smollm2"].with_arithmetic_of(cfg)


@dataclass(frozen=True)
class Mode:
    """A mode of a command in which some options have no effect: giving one there is refused, never dropped.

    ``argv`` selects the mode (the test that walks the parser uses it), ``why``
    says what the mode does instead.
    """

    name: str                                  # "with --golden", "without --rtl", ...
    active: Callable[[argparse.Namespace], bool]
    inert: tuple[str, ...]
    why: str
    argv: tuple[str, ...] = ()


def refuse_inert(args: argparse.Namespace, parser: argparse.ArgumentParser, modes: tuple[Mode, ...]) -> None:
    """Refuse, in one line, an option given a value in a mode where it has no effect."""
    dests = {opt: a.dest for a in parser._actions for opt in a.option_strings}
    for mode in modes:
        if not mode.active(args):
            continue
        for option in mode.inert:
            dest = dests[option]
            if getattr(args, dest) != parser.get_default(dest):
                raise ValueError(f"{option} has no effect {mode.name}: {mode.why}")


def int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} needs at least one value")
    return values


def default_vectors(args) -> str:
    """``--vectors``, or the embedded default: SmolLM2 block 0 q_proj, 8 tokens, in the configuration's arithmetic."""
    refuse_config_beside_vectors(args)
    if args.vectors is not None:
        return args.vectors
    from spikeacc.golden.vector_export import export_vectors
    layer = getattr(args, "layer", None) or "model.layers.0.self_attn.q_proj"
    return export_vectors(layer=layer, tokens=8, base=layer_base(config_of(args)),
                          out=Path(args.out) / f"smollm2_{layer.replace('model.layers.', 'l').replace('.', '_')}.npz")


def add_rtl_path_args(p) -> None:
    p.add_argument("--split", type=int, default=1, metavar="S",
                   help="cut each projection's output blocks into up to S equal parts (the most that divide its "
                        "blocks), each a call of its own: one projection over S workers")
    p.add_argument("--per-call", action="store_true",
                   help="one simulator process and buffer files per call (the fallback and cross-check) "
                        "instead of resident simulators")
