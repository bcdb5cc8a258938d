"""Each section of the main job's report: its title, its explanation from the run's own configuration, its tables.

One class a step, found by the step's name (:data:`SECTIONS`); the Markdown
and the HTML report both render through it, so a section's keys are known in
one place. The prose is written from the configuration the run used
(``report["config"]``), so ``spikeacc run --config`` reads true.
"""

from __future__ import annotations

from pathlib import Path

from spikeacc.config import SpikeConfig
from spikeacc.hw import registry

__all__ = ["SECTIONS", "Section"]

Table = tuple[list[str], list[list]]


class Section:
    """A report section: ``title``, ``explain(config, section)`` and ``tables(section)``."""

    title = ""

    def explain(self, cfg: SpikeConfig, section: dict) -> str:
        raise NotImplementedError

    def tables(self, section: dict) -> list[Table]:
        return []


class Accuracy(Section):
    title = "Accuracy of what the hardware computes"

    def explain(self, cfg, section):
        from spikeacc.golden.calibration import calibration_label
        calibrated = calibration_label(cfg.calibration, cfg.calibration_tokens) + (
            f", weights rotated ({cfg.rotation})" if cfg.rotation != "none" else "")
        weights = ("GPTQ codes (error-compensating rounding); the round-to-nearest rows, without output-range "
                   "margin, are the earlier default" if cfg.weight_rounding == "gptq" else
                   f"{cfg.weight_rounding.upper()} codes")
        corpus = [r for r in section.get("rows", []) if r.get("calibration")]   # none when the step failed
        return ("Perplexity on held-out GPL-3 text. Input-only rows quantize activations and weights but return "
                "float outputs (what fake-quant papers report); hardware-faithful rows return the tile's spike "
                f"counts through its thresholds ({cfg.out_bits}-bit outputs), as the generated RTL computes them. "
                f"Weights are {weights}; GPTQ and the ranges are calibrated on the {calibrated}"
                + (f"; the rows marked calib corpus are calibrated on {corpus[0]['calibration_tokens']:,} tokens of "
                   "the shipped calibration corpus instead (other kinds of text than the one evaluated: "
                   "docs/measurements.md has them on unseen texts)" if corpus else "") + ".")

    def tables(self, section):
        return [(["configuration", "PPL", "salient"],
                 [[r["label"], f"{r['ppl']:.2f}", f"{r['salient_ratio']:.2%}"] for r in section["rows"]])]


class Verify(Section):
    title = "Verification (bit-exact)"

    def explain(self, cfg, section):
        return ("Every output integer of the generated RTL under Verilator compared with the golden model: the PE on "
                "corner and random neurons, the tile on real SmolLM2 block-0 vectors in SpikeQuant and Kirin mode.")

    def tables(self, section):
        pe = section["pe_regression"]
        return [(["run", "shape M×K×N", "P", "outputs compared", "mismatches", "cycles/token-layer", "utilization"],
                 [["PE regression", "–", "1", f"{pe['compared']:,}", pe["mismatch_count"], "–", "–"]]
                 + [[f"tile {t['mode']} {t['layer']}", "×".join(map(str, t["shape"])), t["pes"], f"{t['compared']:,}",
                     t["mismatches"], f"{t['cycles_per_token_layer']:,.0f}", f"{t['utilization']:.1%}"]
                    for t in section["tiles"]])]


class Energy(Section):
    title = "Energy: spiking vs MAC"

    def explain(self, cfg, section):
        gate = next(iter((section.get("gate_level") or {}).values()), None)
        library = (f"{Path(gate['liberty']).stem} cells ({gate['voltage']} V)" if gate else "standard cells")
        memory = f" ({gate['sram_pj_per_bit']:.1f} pJ/bit SRAM)" if gate else ""
        macs = len(registry.macs())
        return (f"Gate level first: the spiking tile and {macs} MAC tile{'s' if macs > 1 else ''} synthesized to "
                f"{library}, simulated bit-exact on the same real q_proj vectors at SmolLM2's shape, charged from "
                "the Liberty (clock, registers, logic, the tile's own memories, leakage), with the weight and "
                f"threshold memory modelled apart{memory}. A figure marked recorded was measured by the project on "
                "these very vectors (date, commit, command in report.json); `spikeacc run --gate-level` measures it "
                "here. Then the models, each with its measured error: the toggle model calibrated to gate level, "
                "the break-even map (zero fraction where the spiking tile starts to win, K inputs, P PEs), and the "
                "papers' op-count method (45 nm operation energies, no clock or registers), shown for comparison "
                "only.")

    def tables(self, section):
        from spikeacc.app.energy_step import gate_tables
        tables = gate_tables(section.get("gate_level", {}))
        tables.append((["mode", "layer", "calibrated toggle model: MAC ÷ spiking (model)", "its measured error",
                        "the papers' op-count method (45 nm ops)", "45 nm per-bit table on RTL toggles"],
                       [[r["mode"], r["layer"], f"{r['ratio_calibrated']:.2f}x",
                         (f"{r['calibration_error']['error']:+.0%} " if r["calibration_error"]["error"] is not None
                          else "") + r["calibration_error"]["against"],
                         f"{r['ratio_ops']:.2f}x", f"{r['ratio_toggles']:.2f}x"] for r in section["rows"]]))
        be = section.get("break_even") or {}
        if be.get("grid"):
            curves = be["grid"]["curves"].values()
            ks = sorted({c["k"] for c in curves})
            ps = sorted({c["p"] for c in curves})
            zero = {(c["k"], c["p"]): c["break_even_zero_fraction"] for c in curves}
            tables.append(([f"break-even zero fraction (model, worst error {be['model']['worst_error']:.0%})"]
                           + [f"P = {p}" for p in ps],
                           [[f"K = {k}"] + ["never" if zero[k, p] is None else f"{zero[k, p]:.0%}" for p in ps]
                            for k in ks]))
        return tables


class Synth(Section):
    title = "Area (Yosys, iCE40)"

    def explain(self, cfg, section):
        return (f"Yosys synthesis at the run's configuration (K = {cfg.in_features}, N = {cfg.out_features}, "
                f"P = {cfg.pes}, L = {cfg.lanes}, {cfg.tag}), mapped to iCE40.")

    def tables(self, section):
        return [(["design", "generic cells", "iCE40 LUT4", "FF", "BRAM"],
                 [[r["design"], r["generic_cells"], r["luts"], r["flip_flops"], r["brams"]] for r in section["rows"]])]


class Infer(Section):
    title = "The LLM through the RTL"

    def explain(self, cfg, section):
        return ("The model generates text with the projections of its first decoder blocks computed by the spiking "
                "tile's RTL (the RTL's counts feed the network); the text must equal the golden model's.")

    def tables(self, section):
        t = section["totals"]
        return [(["prompt", "RTL text", "golden text", "projections on RTL", "counts compared", "simulated cycles"],
                 [[section["prompt"], section["text"], section["golden_text"], section["projections_on_rtl"],
                   f"{t['outputs_compared']:,}", f"{t['simulated_cycles']:,}"]])]


SECTIONS: dict[str, Section] = {"accuracy": Accuracy(), "verify": Verify(), "energy": Energy(), "synth": Synth(),
                                "infer": Infer()}
