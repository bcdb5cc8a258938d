"""Energy: gate-level power of synthesized netlists, toggle models calibrated to it, and op counts.

Sits above ``verif/``: it runs the same regressions (RTL or netlist) with
activity recording and turns the toggles into joules.
"""
