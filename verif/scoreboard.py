"""Scoreboard: compare every output integer with the golden model's and report mismatches."""

from __future__ import annotations

import numpy as np

__all__ = ["Scoreboard", "MismatchError"]

MAX_LISTED = 50


class MismatchError(AssertionError):
    """The design disagreed with the golden model; the message lists where."""


class Scoreboard:
    """Accumulates comparisons; every element counts, nothing is sampled.

    ``names`` optionally labels the first axis (case names); indices are always
    reported in full, as tuples into the expected array.
    """

    def __init__(self, names: list[str] | None = None):
        self.names = names
        self.compared = 0
        self.mismatches: list[dict] = []
        self.missing = 0
        self.failures: list[str] = []

    @classmethod
    def from_report(cls, report: dict) -> "Scoreboard":
        """The scoreboard a bench's JSON report describes (for printing its summary)."""
        board = cls()
        board.compared, board.mismatches, board.missing = report["compared"], report["mismatches"], report["missing"]
        board.failures = list(report.get("failures", []))
        return board

    def compare(self, expected, got) -> int:
        expected = np.asarray(expected, dtype=np.int64)
        got = np.asarray(got, dtype=np.int64)
        if got.size < expected.size and got.ndim == 1 and expected.ndim == 1:
            self.missing += expected.size - got.size
            expected_cmp = expected[:got.size]
        else:
            if got.shape != expected.shape:
                raise MismatchError(f"output shape {got.shape} differs from expected {expected.shape}")
            expected_cmp = expected
        bad = np.argwhere(expected_cmp != got)
        for idx in bad:
            idx = tuple(int(i) for i in idx)
            entry = {"index": list(idx), "expected": int(expected_cmp[idx]), "got": int(got[idx])}
            if self.names is not None:
                entry["case"] = self.names[idx[0]]
            self.mismatches.append(entry)
        self.compared += expected_cmp.size
        return len(bad)

    def require(self, condition: bool, failure: str) -> None:
        """A check beside the outputs (e.g. the design's error flag); a false one fails the run."""
        if not condition:
            self.failures.append(failure)

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.missing and not self.failures

    def summary(self) -> str:
        if self.passed:
            return f"PASS: {self.compared} outputs compared, 0 mismatches"
        lines = [f"FAIL: {len(self.mismatches)} mismatches, {self.missing} outputs missing, "
                 f"{self.compared} compared"]
        lines += [f"  {failure}" for failure in self.failures]
        for m in self.mismatches[:MAX_LISTED]:
            label = f" ({m['case']})" if "case" in m else ""
            lines.append(f"  index {tuple(m['index'])}{label}: expected {m['expected']}, got {m['got']}")
        if len(self.mismatches) > MAX_LISTED:
            lines.append(f"  ... and {len(self.mismatches) - MAX_LISTED} more")
        return "\n".join(lines)

    def report(self, **extra) -> dict:
        return {"passed": self.passed, "compared": self.compared, "mismatch_count": len(self.mismatches),
                "missing": self.missing, "mismatches": self.mismatches, "failures": self.failures, **extra}

    def assert_clean(self) -> None:
        if not self.passed:
            raise MismatchError(self.summary())
