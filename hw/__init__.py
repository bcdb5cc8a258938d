"""Amaranth generators: circuits built from a SpikeConfig; needs no torch."""
