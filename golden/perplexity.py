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

from spikeacc import workdirs
from spikeacc.config import MODES, PRESETS, ROTATIONS, SpikeConfig, check_out_bits, step_grid
from spikeacc.golden.calibration import calibration_label, calibration_windows, read_text
from spikeacc.golden.network import HARDWARE_OVERRIDES, PROJECTIONS, evaluate, window_nll
from spikeacc.golden.output_quant import check_policy
from spikeacc.golden.spiking_linear import QuantSpec
from spikeacc.golden.stream import streamed_model

__all__ = ["default_text", "token_splits", "perplexity", "run_ppl_table", "table_rows"]

WINDOW = 512
CALIBRATION_TOKENS = 1024
MIN_TOKENS = 16   # below a window, one window of this many tokens


def default_text() -> str:
    return resources.files("spikeacc.golden").joinpath("data/gpl-3.txt").read_text(encoding="utf-8")


def token_splits(tokenizer, text: str, eval_tokens: int, window: int = WINDOW,
                 calibration_tokens: int = CALIBRATION_TOKENS):
    """``(calibration windows, evaluation windows)``: disjoint, calibration first."""
    ids = tokenizer(text, return_tensors="pt", verbose=False).input_ids[0]
    need = calibration_tokens + window
    if len(ids) < need:
        raise ValueError(f"the text has {len(ids)} tokens; at least {need} are needed "
                         f"({calibration_tokens} calibration + one {window}-token window)")
    calib = ids[:calibration_tokens].reshape(-1, min(window, calibration_tokens))
    rest = ids[calibration_tokens:]
    eval_window = min(window, eval_tokens)   # fewer tokens than a window: one shorter window
    n = min(eval_tokens, len(rest)) // eval_window
    return calib, rest[: n * eval_window].reshape(n, eval_window)


def config_splits(tokenizer, config: SpikeConfig, eval_tokens: int, text: str | None = None,
                  window: int = WINDOW) -> tuple[torch.Tensor, torch.Tensor]:
    """``(calibration windows, evaluation windows)`` of ``config``'s calibration, evaluating ``text`` (default: shipped).

    With ``"shipped-text"`` calibration the text's first ``calibration_tokens``
    calibrate and the rest is evaluated; with a corpus or file the evaluation
    windows stay where they are with the default head (the same held-out
    tokens whatever calibrates), and the calibration windows are drawn from it.
    """
    body = default_text() if text is None else text
    if config.calibration == "shipped-text":
        return token_splits(tokenizer, body, eval_tokens, window, config.calibration_tokens)
    _, windows = token_splits(tokenizer, body, eval_tokens, window)
    return calibration_windows(tokenizer, config.calibration, config.calibration_tokens, window), windows


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, desc: str = "ppl") -> float:
    """Perplexity of ``windows`` through a network called like a causal LM (the resident hardware network)."""
    nll, count = 0.0, 0
    for ids in tqdm(windows, desc=desc, leave=False, unit="win", disable=None):
        window, scored = window_nll(model(ids[None]).logits, ids)
        nll += window
        count += scored
    return math.exp(nll / count)


# The activation-step policies of the table's rows, in the configuration's one vocabulary
# (spikeacc.config.GOLDEN_INPUT_STEPS): one step per tensor, any float step per token (golden-only),
# per-token steps on the grids 2^(−j) and 2^(−j/4).
INPUTS = ("static", "any", "pow2", "pow2/4")


def _input(step: str) -> dict:
    """A row's step policy: ``input_step`` in the configuration's vocabulary, and its ``mode`` (for labels)."""
    step_grid(step)
    return dict(mode="static" if step == "static" else "dynamic", input_step=step)


def step_label(row: dict) -> str:
    """How a row's step policy reads in tables and plots: static, dynamic (any float step), dynamic-<grid>."""
    step = row.get("input_step") or "any"
    return "static" if row["mode"] == "static" else "dynamic" if step == "any" else f"dynamic-{step}"


# Row keys that change what calibrates a row, and the model's rotation (the configuration's fields of the same names)
CALIBRATION_FIELDS = ("calibration", "calibration_tokens", "rotation")

FLOAT_BITS = 16   # a row's width of 16 means "left in float" (FP16-class), not a quantizer width
FP_ROW = dict(method="fp", w_bits=FLOAT_BITS, a_bits=FLOAT_BITS, mode="none")


def spec_row(spec: QuantSpec, **extra) -> dict:
    """A table row (plain JSON, as ``ppl.json`` records it) of a QuantSpec; :func:`_spec` reads it back."""
    row = dict(method=spec.method, w_bits=spec.w_bits, a_bits=FLOAT_BITS if spec.a_bits is None else spec.a_bits,
               mode=spec.mode, input_step=spec.input_step, kappa=spec.kappa, e_max=spec.e_max,
               frac_bits=spec.frac_bits, weights=spec.weights)
    if spec.method == "kirin":
        row["outlier_bits"] = spec.outlier_bits
    if spec.hardware_faithful:
        row.update(out_bits=spec.out_bits, out_policy=spec.out_policy, out_margin=spec.out_margin)
    return {**row, **extra}


def hardware_rows(config: SpikeConfig) -> list[dict]:
    """FP, then SpikeQuant and Kirin in ``config``'s arithmetic: each input-only, then hardware-faithful.

    When ``config`` rounds weights with GPTQ, each mode's hardware-faithful row
    is followed by the same row with round-to-nearest weights (the earlier
    default), so the report shows the gain beside what it replaced.
    """
    rows = [FP_ROW]
    for mode in MODES:
        cfg = config.in_mode(mode)
        rows += [spec_row(QuantSpec.from_config(cfg, hardware_faithful=False)),
                 spec_row(QuantSpec.from_config(cfg), overrides="silu-floor")]
        if cfg.weight_rounding != "rtn":
            rows.append(spec_row(QuantSpec.from_config(cfg.replace(weight_rounding="rtn"), out_margin=0.0),
                                 overrides="silu-floor"))
    return rows + corpus_rows(config)


# The calibration the corpus rows use (benchmarks/bench_calibration.py measures 1k, 8k and 64k tokens)
CORPUS_ROW_TOKENS = 8192


def corpus_rows(config: SpikeConfig, rotations: tuple[str, ...] = ()) -> list[dict]:
    """Each mode's hardware-faithful row calibrated on the shipped corpus, unrotated and then with ``rotations``.

    GPTQ's Hessians and the output ranges then come from many windows of
    varied text instead of the evaluated text's own head: the rows show what
    a calibration that has not seen the evaluated kind of text gives, and what
    a rotation folded into the weights adds to it. Rows that would repeat
    ``config``'s own calibration are left out.
    """
    rows = []
    for rotation in (config.rotation, *rotations):
        if config.calibration == "corpus" and rotation == config.rotation:
            continue
        rows += [spec_row(QuantSpec.from_config(config.in_mode(mode)), overrides="silu-floor", calibration="corpus",
                          calibration_tokens=CORPUS_ROW_TOKENS, rotation=rotation) for mode in MODES]
    return rows


def table_rows(quick: bool = False, full: bool = False, out_bits=(4, 6, 8),
               out_policies=("channel", "tensor"), inputs=INPUTS,
               config: SpikeConfig = PRESETS["default"]) -> list[dict]:
    """The configurations of the table.

    Input-only rows (outputs in float: what a fake-quant paper reports) come
    first, then the hardware-faithful rows (every projection returns the tile's
    spike counts through its thresholds, ``Δ_i·(n_i − z_y,i)``) for each input
    mode × output policy × ``b_out``, with the SiLU floor on ``gate_proj``
    (:data:`spikeacc.golden.model.HARDWARE_OVERRIDES`), then the measured
    alternatives (no floor, clipped ranges, mixed widths) and the labelled
    per-token oracle. ``quick`` keeps one hardware-faithful row per input mode;
    ``full`` adds the per-tensor grid, the bit sweep and power-of-two weight groups.
    Widths and the salient rule are ``config``'s; ``out_bits`` is the sweep of tile output widths.
    """
    for b in out_bits:
        check_out_bits(b)
    for policy in out_policies:
        check_policy(policy)
    top = max(out_bits)
    weights = config.weight_rounding
    arithmetic = dict(w_bits=config.w_bits, a_bits=config.a_bits, kappa=config.kappa, e_max=config.shift_max,
                      frac_bits=config.frac_bits, weights=weights)
    sq = dict(method="spikequant", **arithmetic)
    modes = {name: _input(name) for name in inputs}
    w_only = [dict(method="rtn", w_bits=config.w_bits, a_bits=FLOAT_BITS, mode="none", weights=w)
              for w in dict.fromkeys(("rtn", weights))]
    rows = [FP_ROW, *w_only,
            dict(method="rtn", w_bits=config.w_bits, a_bits=config.a_bits, **_input("any"))]
    rows += [dict(sq, **i) for i in modes.values()]
    hw = dict(overrides="silu-floor")
    # the same spikes; outliers as integers (SPEC §4)
    kirin = dict(sq, method="kirin", outlier_bits=config.in_mode("kirin").outlier_bits)
    kirin_hw = [dict(kirin, **i, **hw, out_bits=top, out_policy=out_policies[0]) for i in modes.values()]
    # each hardware-faithful default row again with round-to-nearest weights, when GPTQ is the default
    rtn_hw = [dict(r, weights="rtn", out_margin=0.0) for r in
              [dict(sq, **i, **hw, out_bits=top, out_policy=out_policies[0]) for i in modes.values()] + kirin_hw] \
        if weights != "rtn" else []
    if quick:
        return rows + [dict(sq, **i, **hw, out_bits=top, out_policy=out_policies[0]) for i in modes.values()] \
            + kirin_hw + rtn_hw
    rows += [dict(kirin, **i) for i in modes.values()] + kirin_hw
    for policy in out_policies:
        widths = out_bits if policy == "channel" or full else (min(out_bits), top)
        rows += [dict(sq, **i, **hw, out_bits=b, out_policy=policy) for i in modes.values()
                 for b in sorted(set(widths))]
    plain = [modes[n] for n in ("static", "any") if n in modes]
    if "channel" in out_policies:
        rows += [dict(sq, **i, out_bits=top, out_policy="channel") for i in plain]             # no floor
        if "any" in modes:
            rows += [dict(sq, **modes["any"], **hw, out_bits=top, out_policy="channel", out_clip=2)]
        if "pow2" in modes:                                                                   # widths
            rows += [dict(sq, **modes["pow2"], out_bits=6, out_policy="channel", overrides="mixed")]
    rows += [dict(sq, **i, **hw, out_bits=top, out_policy="oracle") for i in plain]
    rows += rtn_hw + corpus_rows(config, tuple(r for r in ROTATIONS if r != config.rotation))
    if full:
        rows += [dict(method="rtn", w_bits=config.w_bits, a_bits=FLOAT_BITS, mode="none", w_group=64),
                 dict(sq, **_input("static"), w_group=64), dict(sq, **_input("any"), w_group=64)]
        rows += [dict(method="spikequant", w_bits=b, a_bits=b, **_input("any")) for b in (2, 3, 5, 6, 8)]
    return rows


# Per-projection spec changes a row can name (``overrides``); see HARDWARE_OVERRIDES.
OVERRIDES = {
    "silu-floor": HARDWARE_OVERRIDES,
    "mixed": {**HARDWARE_OVERRIDES,
              "mlp.gate_proj": {**HARDWARE_OVERRIDES["mlp.gate_proj"], "out_bits": 8},
              "mlp.down_proj": {"out_bits": 8}},
}


# Ablations: the hardware-faithful network with one projection kind left in float, weights included
# (which layer types keep the gap to FP; benchmarks/bench_calibration.py --ablate)
for _name in PROJECTIONS:
    OVERRIDES[f"float-{_name.split('.')[1]}"] = {**HARDWARE_OVERRIDES,
                                                 _name: {"method": "fp", "out_bits": None, "a_bits": None}}


def row_label(row: dict) -> str:
    """Short text naming a row's configuration, as printed and plotted."""
    if row["method"] == "fp":
        return "FP"
    text = f"{row['method']} W{row['w_bits']}A{row['a_bits']}" + (
        f"&{row.get('outlier_bits', QuantSpec.outlier_bits)}" if row["method"] == "kirin" else "")
    if row.get("weights", "rtn") != "rtn":
        text += f" {row['weights'].upper()}"
    if row["mode"] != "none":
        text += f" {step_label(row)}"
    if row.get("rotation", "none") != "none":
        text += f" rotated ({row['rotation']})"
    if "calibration" in row:
        text += f" calib {row['calibration']}/{row.get('calibration_tokens', '')}"
    if row.get("w_group"):
        text += f" pow2-groups/{row['w_group']}"
    if row.get("out_bits"):
        text += f" → out {row['out_bits']}b {row.get('out_policy', 'channel')}"
        if row.get("overrides") == "mixed":
            text += " (gate, down 8b)"
        elif row.get("overrides"):
            text += f" {row['overrides']}"
        if row.get("out_clip"):
            text += f" clip{row['out_clip']}"
        if row.get("out_margin", QuantSpec.out_margin) != QuantSpec.out_margin:
            text += f" margin {row['out_margin']:g}"
    elif row["a_bits"] != 16:
        text += " (outputs float)"
    return text


def _spec(row) -> QuantSpec:
    return QuantSpec(method=row["method"], w_bits=min(row["w_bits"], 8),
                     kappa=row.get("kappa", QuantSpec.kappa), e_max=row.get("e_max", QuantSpec.e_max),
                     frac_bits=row.get("frac_bits", QuantSpec.frac_bits),
                     a_bits=None if row["a_bits"] == FLOAT_BITS else row["a_bits"],
                     input_step="static" if row["mode"] == "static" else row.get("input_step") or "any",
                     w_group=row.get("w_group"), out_bits=row.get("out_bits"),
                     out_policy=row.get("out_policy", "channel"), out_clip=row.get("out_clip", 0),
                     outlier_bits=row.get("outlier_bits", QuantSpec.outlier_bits),
                     weights=row.get("weights", "rtn"), out_margin=row.get("out_margin", QuantSpec.out_margin))


def unseen_windows(tokenizer, text: str, tokens: int, window: int = WINDOW) -> torch.Tensor:
    """Up to ``tokens`` of ``text`` in whole windows, from its start: a text nothing was calibrated on."""
    ids = tokenizer(text, return_tensors="pt", verbose=False).input_ids[0]
    n = min(tokens, len(ids)) // window
    if n == 0:
        raise ValueError(f"the evaluation text has {len(ids)} tokens; at least one {window}-token window is needed")
    return ids[: n * window].reshape(n, window)


def run_ppl_table(model: str | None = None, text: str | None = None, out: str | Path = "out/ppl",
                  tokens: int = 2048, quick: bool = False, full: bool = False, out_bits=(4, 6, 8),
                  out_policies=("channel", "tensor"), inputs=INPUTS, rows: list[dict] | None = None,
                  config: SpikeConfig = PRESETS["default"], eval_text: str | None = None) -> list[dict]:
    """Evaluate every row (default: :func:`table_rows` of ``config``); print the table, save ``ppl.json`` and ``ppl.png``.

    ``text`` is calibrated on (its first tokens) and evaluated on (the rest);
    ``eval_text`` is evaluated on whole, with the calibration taken from the
    shipped text, so no row has seen a token of it.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < MIN_TOKENS:
        raise ValueError(f"--tokens must be an integer of at least {MIN_TOKENS}, got {tokens!r}")
    if text is not None and eval_text is not None:
        raise ValueError("give --text (calibrate and evaluate on it) or --eval-text (evaluate only), not both")
    rows = rows if rows is not None else table_rows(quick, full, out_bits, out_policies, inputs, config)
    out = Path(out)
    if text is not None:
        body, source = read_text(text), str(text)
    else:
        body, source = default_text(), "GPL-3 (shipped, golden/data/gpl-3.txt)"
    unseen = read_text(eval_text) if eval_text is not None else None
    net = streamed_model(model, config.rotation)
    name, tokenizer = net.name, net.tokenizer
    calib, windows = config_splits(tokenizer, config, tokens, body)
    if unseen is not None:
        windows = unseen_windows(tokenizer, unseen, tokens)
        source = f"{eval_text} (never calibrated on)"

    drawn: dict[tuple, torch.Tensor] = {}   # calibration windows per (source, tokens): each corpus tokenized once

    def calibration_of(row):   # a row may name its own calibration and rotation (before/after rows)
        cfg = config.replace(**{k: row[k] for k in CALIBRATION_FIELDS if k in row})
        key = cfg.calibration, cfg.calibration_tokens
        if key not in drawn:
            drawn[key] = config_splits(tokenizer, cfg, tokens, body)[0]
        return streamed_model(model, cfg.rotation), drawn[key]
    out.mkdir(parents=True, exist_ok=True)
    results = []
    per_layer: dict[str, dict] = {}
    bar = tqdm(rows, desc="ppl table", unit="cfg", disable=None)
    say = bar.write if not bar.disable else (lambda m: print(m, flush=True))
    for row in bar:
        t0 = time.perf_counter()
        spec = None if row["method"] == "fp" else _spec(row)
        row_net, row_calib = calibration_of(row) if any(k in row for k in CALIBRATION_FIELDS) else (net, calib)
        result = evaluate(row_net, spec, row_calib, windows, overrides=OVERRIDES.get(row.get("overrides")), say=say,
                          what=row_label(row))
        ppl = result.ppl
        if row["method"] == "spikequant" and row["w_bits"] == config.w_bits and not row.get("w_group") \
                and not row.get("out_bits") and row.get("input_step", "any") in ("static", "any"):
            per_layer[row["mode"]] = {name: {"salient_ratio": round(v["salient"] / v["elements"], 5) if v["elements"] else 0.0,
                                             "zero_ratio": round(v["zeros"] / v["elements"], 5) if v["elements"] else 0.0}
                                      for name, v in result.layers.items()}
        results.append({"w_group": None, "out_bits": None, "out_policy": None, "input_step": None,
                        "overrides": None, "out_clip": 0, **row, "label": row_label(row), "ppl": round(ppl, 3),
                        "tokens": int(windows.numel()), "salient_ratio": round(result.ratio("salient"), 5),
                        "zero_ratio": round(result.ratio("zeros"), 5), "seconds": round(time.perf_counter() - t0, 1)})
        # each finished row is kept at once: a later failure (or Ctrl-C) loses only the row it was on
        workdirs.write_atomic(out / "ppl.json", json.dumps(results, indent=2) + "\n")
        line = f"{row_label(row)}: {ppl:.2f} ({results[-1]['seconds']:.0f} s)"
        if bar.disable:
            print(line, flush=True)  # a log file gets one line per row
        else:
            bar.write(line)
    meta = {"model": name, "text": source, "window": int(windows.shape[1]), "calibration_tokens": int(calib.numel()),
            "calibration": calibration_label(config.calibration, int(calib.numel())), "rotation": config.rotation,
            "config": config.to_dict(),
            "overrides": OVERRIDES}
    workdirs.write_atomic(out / "ppl.json", json.dumps(results, indent=2) + "\n")
    (out / "ppl_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "layers.json").write_text(json.dumps(per_layer, indent=2) + "\n")  # per mode, per layer
    _print_table(results, meta)
    _plot(results, out / "ppl.png", meta)
    return results


def _print_table(results, meta) -> None:
    print(f"\nperplexity: {meta['model']} on {meta['text']}, {results[0]['tokens']} held-out tokens; "
          f"calibrated on the {meta['calibration']}, rotation {meta['rotation']} (unless a row says otherwise)")
    print("input-only rows return float outputs (fake quantization); 'out Nb' rows return the tile's "
          "spike counts (hardware-faithful); 'oracle' needs the output's own range (not realizable)")
    print(f"{'configuration':<62}{'PPL':>11}{'salient':>9}{'zeros':>8}{'s':>7}")
    for r in results:
        print(f"{r['label']:<62}{r['ppl']:>11.2f}{100 * r['salient_ratio']:>8.2f}%{100 * r['zero_ratio']:>7.1f}%"
              f"{r['seconds']:>7.1f}")


def _plot(results, path: Path, meta) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    widths = meta["config"]["w_bits"], meta["config"]["a_bits"]
    baseline = [r for r in results if not r.get("out_bits") and r["w_bits"] in (widths[0], FLOAT_BITS)
                and r["a_bits"] in (widths[1], FLOAT_BITS)]
    ax1.bar(range(len(baseline)), [r["ppl"] for r in baseline], color="tab:blue")
    ax1.set_xticks(range(len(baseline)), [r["label"].replace(" (outputs float)", "").replace(" ", "\n")
                                          for r in baseline], fontsize=6)
    ax1.set_yscale("log")
    ax1.set_ylabel("perplexity (log)")
    ax1.set_title("input-only (outputs float)")
    for mode, style in zip(map(step_label, map(_input, INPUTS)), ("o-", "s-", "^-", "v-")):
        for policy, color in (("channel", "tab:green"), ("tensor", "tab:red")):
            pts = sorted((r["out_bits"], r["ppl"]) for r in results
                         if r.get("out_bits") and r.get("out_policy") == policy
                         and r.get("overrides") == "silu-floor" and not r.get("out_clip")
                         and step_label(r) == mode)
            if pts:
                ax2.plot([b for b, _ in pts], [p for _, p in pts], style, color=color, label=f"{mode}, {policy}")
    for r in results:
        if r["method"] == "spikequant" and not r.get("out_bits") and r["a_bits"] == widths[1] and not r.get("w_group") \
                and r.get("input_step") in (None, "any") and r["mode"] == "dynamic":
            ax2.axhline(r["ppl"], color="gray", ls=":", label="dynamic, outputs float")
        if r["method"] == "fp":
            ax2.axhline(r["ppl"], color="gray", ls="--", label="FP")
    ax2.set_yscale("log")
    ax2.set_xlabel("tile output bits b_out")
    ax2.set_xticks(sorted({r["out_bits"] for r in results if r.get("out_bits")}) or [8])
    ax2.set_ylabel("perplexity (log)")
    ax2.set_title("hardware-faithful W4A4 (tile outputs in the loop)")
    ax2.legend(fontsize=6)
    fig.suptitle(f"{meta['model']} — {meta['text']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
