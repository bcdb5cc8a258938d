"""Verification: cocotb benches under Verilator, scoreboards fed by the golden model."""
