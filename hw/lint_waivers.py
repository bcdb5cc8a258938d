"""Verilator lint warnings the generated RTL produces by design, each waived for a stated reason.

The generated packages ship them (manifest, FuseSoC core); the simulator builds use them too.
"""

__all__ = ["LINT_WAIVERS"]

# Warnings Amaranth's Verilog produces by design, each waived for a stated reason:
LINT_WAIVERS = (
    # Amaranth extends operands implicitly (its arithmetic is width-growing by
    # definition); the explicit widths were checked when the design was built.
    "-Wno-WIDTHEXPAND",
    # Amaranth declares every register with its reset value as an initializer
    # and also assigns it in the synchronous reset branch.
    "-Wno-PROCASSINIT",
    # Amaranth emits named debug wires for struct fields and the full width of
    # intermediate results, some bits of which are legitimately unused.
    "-Wno-UNUSEDSIGNAL",
    # Amaranth's FSMs become `casez` statements over the state register whose
    # outputs were given their defaults just before; unreachable encodings need no arm.
    "-Wno-CASEINCOMPLETE",
    # Amaranth writes `x == 0` over a multi-bit x as `!x`, which Verilator reports
    # as a truncation of x to one bit; the meaning is the comparison.
    "-Wno-WIDTHTRUNC",
    # Submodules are emitted into the top's file as `top.sub` modules.
    "-Wno-DECLFILENAME",
)
