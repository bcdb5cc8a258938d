"""A free-running counter: the calibration design for toggle counting (bit i toggles ⌊C/2^i⌋ times)."""

from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Counter"]


class Counter(wiring.Component):
    """``count`` increments on every cycle with ``en`` high; wraps at 2^width.

    Members
    -------
    en : In(1)
    count : Out(width)
    """

    def __init__(self, width: int):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self._width = width
        super().__init__({"en": In(1), "count": Out(unsigned(width))})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m
