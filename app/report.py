"""The main job's report: ``report.json`` (every number), ``report.md`` and one self-contained ``report.html``.

The HTML page embeds its plots as PNG data URIs, so it can be mailed or
archived as one file. Everything is rendered from the report dict that
:func:`spikeacc.app.flow.run_main` assembles; nothing here measures.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from spikeacc.app.report_sections import SECTIONS
from spikeacc.config import SpikeConfig

__all__ = ["write_report", "step_time", "plot_accuracy", "plot_utilization", "plot_cycles", "report_markdown", "report_html"]

def step_time(summary: dict) -> str:
    """A step's time as the summary shows it: reused, run beside the others, or its wall time."""
    if summary["reused"]:
        return "reused"
    return f"{summary['seconds']:.0f} s" + (" (background)" if summary.get("background") else "")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy(rows: list[dict], path) -> None:
    """Perplexity per configuration: input-only (float outputs) beside hardware-faithful, per mode; FP as a line."""
    plt = _plt()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fp = [r["ppl"] for r in rows if r["method"] == "fp"]
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "fp"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    # one bar per (outputs, weight rounding) the rows have: input-only, hardware-faithful, and the
    # hardware-faithful row with round-to-nearest weights when the configuration uses GPTQ
    series = list(dict.fromkeys((r["hardware_faithful"], r.get("weights", "rtn"), r.get("calibration"))
                                for r in rows if r["method"] != "fp"))
    width = 0.8 / max(len(series), 1)
    for j, (faithful, weights, calibration) in enumerate(series):
        widths = sorted({r["out_bits"] for r in rows if r.get("out_bits")})
        counts = "/".join(map(str, widths)) or "its"
        label = (f"hardware-faithful (tile's {counts}-bit counts)" if faithful else "input-only (outputs float)") \
            + ("" if len({w for _, w, _ in series}) == 1 else
               ", RTN weights, no margin (before)" if weights == "rtn" else f", {weights.upper()} weights") \
            + (f", calibrated on {next(r['calibration_tokens'] for r in rows if r.get('calibration') == calibration):,} "
               f"{calibration} tokens" if calibration else "")
        values = {r["method"]: r["ppl"] for r in rows
                  if (r["hardware_faithful"], r.get("weights", "rtn"), r.get("calibration")) == (faithful, weights,
                                                                                                 calibration)}
        bars = ax.bar([i + j * width for i in range(len(methods))], [values.get(m, 0) for m in methods], width,
                      label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if fp:
        ax.axhline(fp[0], color="0.4", linestyle="--", label=f"FP {fp[0]:.2f}")
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(methods))],
                  ["SpikeQuant W4A4" if m == "spikequant" else "Kirin W4A4&8" if m == "kirin" else m for m in methods])
    ax.set_ylabel("perplexity")
    ax.set_ylim(0, 1.15 * max(r["ppl"] for r in rows))
    ax.set_title("perplexity of what the hardware computes (lower is better)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")   # the legend below the axes included
    plt.close(fig)


def plot_utilization(tiles: list[dict], path) -> None:
    """Tile utilization per layer and mode (ideal cycles ÷ measured cycles)."""
    modes = list(dict.fromkeys(t["mode"] for t in tiles))
    series = [(mode, {t["layer"]: 100 * t["utilization"] for t in tiles if t["mode"] == mode}) for mode in modes]
    _bars_per_layer(tiles, series, path, ylabel="utilization (%)", ylim=(0, 100),
                    title="spiking tile utilization per layer (ideal ÷ measured cycles)",
                    legend={"loc": "upper center", "bbox_to_anchor": (0.5, -0.1), "ncol": len(modes)})


def plot_cycles(tiles: list[dict], path) -> None:
    """Measured cycles per token-layer of the spiking tile in each mode, beside the MAC tile's exact count."""
    modes = list(dict.fromkeys(t["mode"] for t in tiles))
    series = [(f"spiking, {mode}", {t["layer"]: t["cycles_per_token_layer"] for t in tiles if t["mode"] == mode})
              for mode in modes]
    series.append(("MAC baseline", {t["layer"]: t["mac_cycles_per_token_layer"] for t in tiles
                                    if t["mode"] == modes[0]}))
    _bars_per_layer(tiles, series, path, ylabel="cycles per token-layer",
                    title="cycles per token-layer (spiking: measured on the RTL; MAC: its exact cycle count)")


def _bars_per_layer(tiles: list[dict], series: list[tuple[str, dict]], path, *, ylabel: str, title: str,
                    ylim=None, legend: dict | None = None) -> None:
    """One group of bars per layer (in the tiles' order), one bar per (label, {layer: value}) series."""
    plt = _plt()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    layers = list(dict.fromkeys(t["layer"] for t in tiles))
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(series)
    for j, (label, values) in enumerate(series):
        ax.bar([i + j * width for i in range(len(layers))], [values.get(layer, 0) for layer in layers], width,
               label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(layers))],
                  [layer.split(".")[-1] for layer in layers], fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, **(legend or {}))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _has_results(section: dict) -> bool:
    """A section has tables to show unless its step failed before producing any (then only its one line)."""
    return section["status"] == "PASS" or "rows" in section or "tiles" in section


def _md_table(header, rows) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", "⏎")  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def report_markdown(report: dict, out: Path) -> str:
    lines = ["# spikeacc report", "",
             f"Model: {report['model']}. Verdict: **{'PASS' if report['passed'] else 'FAIL'}** "
             f"in {report['wall_seconds']:.0f} s" + (" (quick variant)" if report["quick"] else "") + ".", ""]
    lines += _md_table(["step", "result", "time", "summary"],
                       [[s["step"], s["status"], step_time(s), s["headline"]]
                        for s in report["summary"]])
    cfg = SpikeConfig.from_dict(report["config"])
    for step, section in report["sections"].items():
        kind = SECTIONS[step]
        lines += ["", f"## {kind.title}", "", kind.explain(cfg, section), ""]
        if "baseline" in section:
            lines += [f"Baseline: {section['baseline']}.", ""]
        lines += [line for note in section.get("notes", []) for line in (note, "")]
        if not _has_results(section):
            lines += [f"**FAIL**: {section['headline']}", ""]
            continue
        for header, rows in kind.tables(section):
            lines += _md_table(header, rows) + [""]
        for name, path in section.get("plots", {}).items():
            if Path(path).is_file():
                lines.append(f"![{name}]({Path(path).resolve().relative_to(out.resolve())})")
    return "\n".join(lines) + "\n"


def _img(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


CAPTIONS = {"perplexity": "Perplexity per configuration (one held-out window).",
            "utilization": "Utilization: ideal cycles (every cycle carries L events) ÷ measured cycles.",
            "cycles": "Cycles per token-layer.",
            "energy_gate": "Gate-level energy per token-layer by kind, weight and threshold memory apart.",
            "break_even": "Where spiking pays: MAC ÷ spiking over the inputs' zero fraction (model).",
            "energy_spikequant": "The papers' op-count method on RTL toggles, SpikeQuant mode (q_proj): not gate level.",
            "energy_kirin": "The papers' op-count method on RTL toggles, Kirin mode (q_proj): not gate level."}

# Tables never widen the page: a wide one scrolls inside its own box; headers and long cells wrap.
STYLE = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
         ".scroll{overflow-x:auto;max-width:100%}"
         "table{border-collapse:collapse;margin:.8em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;"
         "text-align:left;vertical-align:top}th{background:#f3f3f3;min-width:4em}"
         "td:last-child{min-width:16em}.PASS{color:#0a7a22;font-weight:bold}"
         ".FAIL,.ERROR{color:#b00020;font-weight:bold}img{max-width:100%;margin:.5em 0}p.note{color:#555}")


def report_html(report: dict) -> str:
    verdict = "PASS" if report["passed"] else "FAIL"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>spikeacc report</title>"
             f"<style>{STYLE}</style></head><body><h1>spikeacc report</h1>",
             f"<p>Model: {html.escape(report['model'])}. Verdict: <span class='{verdict}'>{verdict}</span> in "
             f"{report['wall_seconds']:.0f} s{' (quick variant)' if report['quick'] else ''}.</p>"]
    rows = [[s["step"], s["status"], step_time(s), s["headline"]]
            for s in report["summary"]]
    table = _html_table(["step", "result", "time", "summary"], rows)
    for status in ("PASS", "FAIL", "ERROR"):
        table = table.replace(f"<td>{status}</td>", f"<td class='{status}'>{status}</td>")
    parts.append(table)
    cfg = SpikeConfig.from_dict(report["config"])
    for step, section in report["sections"].items():
        kind = SECTIONS[step]
        parts.append(f"<h2>{html.escape(kind.title)}</h2><p class='note'>{html.escape(kind.explain(cfg, section))}</p>")
        if "baseline" in section:
            parts.append(f"<p class='note'>Baseline: {html.escape(section['baseline'])}.</p>")
        parts += [f"<p class='note'>{html.escape(note)}</p>" for note in section.get("notes", [])]
        if not _has_results(section):
            parts.append(f"<p class='FAIL'>{html.escape(section['headline'])}</p>")
            continue
        parts += [_html_table(h, r) for h, r in kind.tables(section)]
        for name, p in section.get("plots", {}).items():
            if Path(p).is_file():
                parts.append(f"<p class='note'>{html.escape(CAPTIONS.get(name, name))}</p>{_img(p)}")
    parts.append("</body></html>")
    return "\n".join(parts)


REPORT_FILES = ("report.json", "report.md", "report.html")


def write_report(out: Path, report: dict) -> None:
    """The three report files, each written whole or not at all, and recorded as spikeacc's."""
    from spikeacc import workdirs

    out = Path(out)
    workdirs.write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    workdirs.write_atomic(out / "report.md", report_markdown(report, out))
    workdirs.write_atomic(out / "report.html", report_html(report))
    workdirs.record_owned(out, REPORT_FILES)
