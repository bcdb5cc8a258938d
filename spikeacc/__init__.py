"""spikeacc: spiking, dequantization-free quantized LLM inference in RTL.

Subpackages: ``spikeacc.golden`` (reference maths), ``spikeacc.hw`` (Amaranth
generators), ``spikeacc.verif`` (cocotb/Verilator regressions).
"""

from spikeacc.config import PRESETS, SpikeConfig

__all__ = ["SpikeConfig", "PRESETS"]
__version__ = "0.1.0"
