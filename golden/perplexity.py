"""Perplexity of FP, RTN and SpikeQuant models, with a bit sweep, on shipped or local text.

Default text: the GNU GPL v3 (``golden/data/gpl-3.txt``, copied from Debian's
``/usr/share/common-licenses/GPL-3``; verbatim copying is permitted by its own
terms). Its first tokens calibrate static ranges; evaluation uses the
held-out tokens after them, in fixed-length windows.
"""

from __future__ import annotations

import json
import math
import time
from importlib import resources
from pathlib import Path

import torch
from tqdm import tqdm

from spikeacc.golden.model import calibrate, convert_model, load_model, quantized_layers
from spikeacc.golden.spiking_linear import QuantSpec

__all__ = ["default_text", "token_splits", "perplexity", "run_ppl_table", "table_rows"]

WINDOW = 512
CALIBRATION_TOKENS = 1024


def default_text() -> str:
    return resources.files("spikeacc.golden").joinpath("data/gpl-3.txt").read_text(encoding="utf-8")


def token_splits(tokenizer, text: str, eval_tokens: int, window: int = WINDOW,
                 calibration_tokens: int = CALIBRATION_TOKENS):
    """``(calibration windows, evaluation windows)``: disjoint, calibration first."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    need = calibration_tokens + window
    if len(ids) < need:
        raise ValueError(f"the text has {len(ids)} tokens; at least {need} are needed "
                         f"({calibration_tokens} calibration + one {window}-token window)")
    calib = ids[:calibration_tokens].reshape(-1, min(window, calibration_tokens))
    rest = ids[calibration_tokens:]
    n = min(eval_tokens, len(rest)) // window
    return calib, rest[: n * window].reshape(n, window)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, desc: str = "ppl") -> float:
    nll, count = 0.0, 0
    for ids in tqdm(windows, desc=desc, leave=False, unit="win"):
        logits = model(ids[None]).logits[0, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="sum")
        nll += float(loss)
        count += len(ids) - 1
    return math.exp(nll / count)


def table_rows(quick: bool) -> list[dict]:
    """The configurations of the table: FP, W4A16, RTN W4A4, SpikeQuant both modes, the bit sweep."""
    rows = [dict(method="fp", w_bits=16, a_bits=16, mode="none"),
            dict(method="rtn", w_bits=4, a_bits=16, mode="none"),
            dict(method="rtn", w_bits=4, a_bits=4, mode="dynamic"),
            dict(method="spikequant", w_bits=4, a_bits=4, mode="static"),
            dict(method="spikequant", w_bits=4, a_bits=4, mode="dynamic")]
    rows += [dict(method="rtn", w_bits=4, a_bits=16, mode="none", w_group=64),
             dict(method="spikequant", w_bits=4, a_bits=4, mode="static", w_group=64),
             dict(method="spikequant", w_bits=4, a_bits=4, mode="dynamic", w_group=64)]
    if not quick:
        rows += [dict(method="spikequant", w_bits=b, a_bits=b, mode="dynamic") for b in (2, 3, 5, 6, 8)]
    return rows


def _spec(row) -> QuantSpec:
    return QuantSpec(method=row["method"], w_bits=min(row["w_bits"], 8),
                     a_bits=None if row["a_bits"] == 16 else row["a_bits"],
                     mode="dynamic" if row["mode"] == "none" else row["mode"], w_group=row.get("w_group"))


def run_ppl_table(model: str | None = None, text: str | None = None, out: str | Path = "out/ppl",
                  tokens: int = 2048, quick: bool = False) -> list[dict]:
    """Evaluate every row; print the table and save ``ppl.json`` and ``ppl.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if text is not None:
        if not Path(text).is_file():
            raise FileNotFoundError(f"text file {text} does not exist")
        body, source = Path(text).read_text(encoding="utf-8"), str(text)
    else:
        body, source = default_text(), "GPL-3 (shipped, golden/data/gpl-3.txt)"
    _, tokenizer, name = load_model(model)
    calib, windows = token_splits(tokenizer, body, tokens)
    results = []
    per_layer: dict[str, dict] = {}
    for row in tqdm(table_rows(quick), desc="ppl table", unit="cfg"):
        t0 = time.perf_counter()
        net, _, _ = load_model(model)
        if row["method"] != "fp":
            convert_model(net, _spec(row))
            if row["mode"] == "static":
                calibrate(net, calib)
        ppl = perplexity(net, windows, desc=f"{row['method']} W{row['w_bits']}A{row['a_bits']}")
        layers = quantized_layers(net).values()
        elements = sum(m.element_count for m in layers)
        salient = sum(m.salient_count for m in layers) / elements if elements else 0.0
        zeros = sum(m.zero_count for m in layers) / elements if elements else 0.0
        if row["method"] == "spikequant" and row["w_bits"] == 4 and not row.get("w_group"):
            per_layer[row["mode"]] = {name: {"salient_ratio": round(m.salient_ratio, 5),
                                             "zero_ratio": round(m.zero_ratio, 5)}
                                      for name, m in quantized_layers(net).items()}
        results.append({"w_group": None, **row, "ppl": round(ppl, 3), "tokens": int(windows.numel()),
                        "salient_ratio": round(salient, 5), "zero_ratio": round(zeros, 5),
                        "seconds": round(time.perf_counter() - t0, 1)})
        del net
    meta = {"model": name, "text": source, "window": WINDOW, "calibration_tokens": int(calib.numel()),
            "kappa": QuantSpec().kappa, "e_max": QuantSpec().e_max}
    (out / "ppl.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "ppl_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "layers.json").write_text(json.dumps(per_layer, indent=2) + "\n")  # per mode, per layer
    _print_table(results, meta)
    _plot(results, out / "ppl.png", meta)
    return results


def _print_table(results, meta) -> None:
    print(f"\nperplexity: {meta['model']} on {meta['text']}, {results[0]['tokens']} held-out tokens")
    print(f"{'method':<11}{'W':>3}{'A':>4}  {'mode':<8}{'w groups':<10}{'PPL':>11}{'salient':>9}{'zeros':>8}{'s':>7}")
    for r in results:
        groups = f"pow2/{r['w_group']}" if r.get("w_group") else "channel"
        print(f"{r['method']:<11}{r['w_bits']:>3}{r['a_bits']:>4}  {r['mode']:<8}{groups:<10}{r['ppl']:>11.2f}"
              f"{100 * r['salient_ratio']:>8.2f}%{100 * r['zero_ratio']:>7.1f}%{r['seconds']:>7.1f}")


def _plot(results, path: Path, meta) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['method']}\nW{r['w_bits']}A{r['a_bits']}\n{r['mode']}" + ("\npow2 groups" if r.get("w_group") else "")
              for r in results if r["a_bits"] in (4, 16) and r["w_bits"] in (4, 16)]
    values = [r["ppl"] for r in results if r["a_bits"] in (4, 16) and r["w_bits"] in (4, 16)]
    ax1.bar(range(len(values)), values, color="tab:blue")
    ax1.set_xticks(range(len(values)), labels, fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylabel("perplexity (log)")
    ax1.set_title("4-bit methods")
    sweep = sorted((r["w_bits"], r["ppl"]) for r in results
                   if r["method"] == "spikequant" and r["mode"] == "dynamic" and r["w_bits"] == r["a_bits"])
    if sweep:
        ax2.plot([b for b, _ in sweep], [p for _, p in sweep], "o-", label="SpikeQuant W=A (dynamic)")
        fp = [r["ppl"] for r in results if r["method"] == "fp"]
        if fp:
            ax2.axhline(fp[0], color="gray", ls="--", label="FP")
        ax2.set_yscale("log")
        ax2.set_xlabel("bits")
        ax2.set_title("bit sweep")
        ax2.legend()
    fig.suptitle(f"{meta['model']} — {meta['text']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
