"""The command line explains itself, and a design's name lives only where the design is declared."""

import argparse
import ast
from pathlib import Path

from spikeacc.app.cli import build_parser
from spikeacc.hw import registry

ROOT = Path(__file__).resolve().parent.parent


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in sub.choices.items()
               for a in p._actions if a.dest != "help" and not a.help]
    assert not missing, missing
    assert all(sub.choices[name].description or name in sub._name_parser_map for name in sub.choices)


def test_design_names_are_literals_only_in_the_registry_and_its_designs():
    """Everything else asks the registry: no string constant in the code equals a design's name."""
    names = set(registry.names())
    declared = {ROOT / "hw" / "registry.py", *(ROOT / "hw").glob("design_*.py")}
    found = []
    for folder in ("spikeacc", "golden", "hw", "verif", "energy", "app"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path in declared:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # an f-string's text (an instance name such as f"pe{p}") names a part, not a design
            formatted = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and node.value in names and id(node) not in formatted:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, found


def _sample(action) -> list[str]:
    """The option with a value its parser accepts and that differs from its default."""
    option = action.option_strings[0]
    if action.nargs == 0:
        return [option]
    if action.choices:
        return [option, next(str(c) for c in action.choices if c != action.default)]
    return [option, "3" if action.type is int else "x"]


def test_an_option_without_effect_in_a_mode_is_refused_with_why(capsys):
    """Walk every command's modes: each option that has no effect there is refused, exit 2, one line, naming
    the option and the mode; nothing runs first."""
    from spikeacc.app.cli import main
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, p in sub.choices.items():
        actions = {opt: a for a in p._actions for opt in a.option_strings}
        required = [arg for a in p._actions if a.required and a.option_strings for arg in _sample(a)]
        for mode in p.get_default("modes") or ():
            assert set(mode.inert) <= set(actions), (name, mode.name, set(mode.inert) - set(actions))
            for option in mode.inert:
                argv = [name, *required, *mode.argv, *_sample(actions[option])]
                assert main(argv) == 2, argv
                err = capsys.readouterr().err
                assert f"{option} has no effect {mode.name}: " in err and err.count("\n") == 1, (argv, err)
                checked += 1
    assert checked >= 25
