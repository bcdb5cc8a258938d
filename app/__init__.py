"""What users run: the ``spikeacc`` command line, the main job and its report, the LLM through the RTL.

The top layer: it may use every other package; nothing imports it.
"""
