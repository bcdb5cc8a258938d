"""What can go wrong, sorted by who can fix it; the CLI maps each kind to one line and an exit code.

====================  ====  ==============================================
kind                  exit  meaning
====================  ====  ==============================================
``VerificationFailed``   1  the hardware disagrees with the golden model
bad input                2  ``ValueError``, ``FileNotFoundError``, ``OSError`` on a user's path
``ToolFailure``          3  a tool is missing or broke (simulator, compiler, yosys)
internal error          70  a bug of ours: one line, ``SPIKEACC_DEBUG=1`` for the traceback
Ctrl-C                 130  interrupted; what was finished is kept
====================  ====  ==============================================
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ToolFailure", "VerificationFailed", "VectorFileError", "build_failure", "EXIT_VERIFY", "EXIT_INPUT",
           "EXIT_TOOL",
           "EXIT_INTERNAL", "EXIT_INTERRUPT"]

EXIT_VERIFY, EXIT_INPUT, EXIT_TOOL, EXIT_INTERNAL, EXIT_INTERRUPT = 1, 2, 3, 70, 130


class VectorFileError(ValueError):
    """A layer vector file that breaks the contract (:mod:`spikeacc.golden.vectors`); the message says where."""


class ToolFailure(RuntimeError):
    """A required tool is missing, too old, or failed; the message names it and the fix."""


class VerificationFailed(RuntimeError):
    """The design under test is not bit-exact; the message names the first mismatch."""


def build_failure(what: str, log: Path, lines: int = 6) -> ToolFailure:
    """A failed build, quoting the last lines of its log (most builds bury the cause there)."""
    log = Path(log)
    try:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    except OSError:
        tail = []
    quoted = " | ".join(line.strip() for line in tail) or "(empty log)"
    return ToolFailure(f"{what} failed; last lines of {log}: {quoted}")
