"""The main job's report: `spikeacc run --steps verify --quick` from a clean output directory."""

import json
from html.parser import HTMLParser

import pytest

from spikeacc.app.cli import main

pytestmark = [pytest.mark.verilator, pytest.mark.model]


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tables = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self.tables += tag == "table"


def test_quick_verify_run_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--steps", "verify", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verify    PASS" in printed and "report.html" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and list(report["sections"]) == ["verify"]
    verify = report["sections"]["verify"]
    assert verify["pe_regression"]["compared"] >= 200 and verify["pe_regression"]["mismatch_count"] == 0
    assert {t["mode"] for t in verify["tiles"]} == {"spikequant", "kirin"}
    for t in verify["tiles"]:
        assert t["passed"] and t["compared"] == 8 * 16 and t["cycles_per_token_layer"] > 0 and 0 < t["utilization"] <= 1
    page = Images()
    page.feed((out / "report.html").read_text())
    assert page.tables >= 2 and len(page.sources) == 2
    assert all(src.startswith("data:image/png;base64,") for src in page.sources), "every image is embedded"
    assert "## Verification (bit-exact)" in (out / "report.md").read_text()
    # a second run reuses the step (its inputs are unchanged) and says so
    assert main(["run", "--steps", "verify", "--quick", "--out", str(out)]) == 0
    assert "reused" in capsys.readouterr().out


def test_unknown_step_is_one_line(tmp_path, capsys):
    assert main(["run", "--steps", "verify,colour", "--out", str(tmp_path)]) == 2
    assert "--steps takes a comma-separated subset of accuracy,verify,energy,synth,infer" in capsys.readouterr().err


def test_quick_energy_step_leads_with_gate_level_and_labels_every_model(tmp_path, capsys):
    """Gate level first (recorded here: its netlists are not built in a fresh build root), models labelled."""
    out = tmp_path / "out"
    assert main(["run", "--steps", "energy", "--quick", "--out", str(out), "--build-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    energy = json.loads((out / "report.json").read_text())["sections"]["energy"]
    gate = energy["gate_level"]["spikequant"]
    assert gate["source"] == "recorded" and gate["measured"]["commit"] and gate["measured"]["date"]
    assert set(gate["designs"]) == {"tile", "mac", "mac_skip"}
    assert energy["headline"].startswith("gate level (recorded ")
    assert "model" in energy["headline"] and "error" in energy["headline"]
    assert list(energy["plots"])[:2] == ["energy_gate", "break_even"]
    markdown = (out / "report.md").read_text()
    markdown = markdown[markdown.index("## Energy"):]     # the section, after the summary table's headline
    assert markdown.index("nJ per token-layer (recorded)") < markdown.index("calibrated toggle model")
    assert "break-even zero fraction (model, worst error" in markdown and "op-count method" in markdown
    assert "reproduce with `python benchmarks/bench_power_shapes.py" in markdown


@pytest.mark.slow
def test_gate_level_flag_measures_the_energy_steps_figure(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--steps", "energy", "--quick", "--gate-level", "--out", str(out),
                 "--build-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    energy = json.loads((out / "report.json").read_text())["sections"]["energy"]
    assert {g["source"] for g in energy["gate_level"].values()} == {"measured"}
    assert energy["headline"].startswith("gate level (measured in this run)")
