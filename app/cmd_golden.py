"""``spikeacc ppl``, ``vectors`` and ``infer``: the golden model's accuracy, its layer vectors, and its text."""

from __future__ import annotations

import json
from pathlib import Path

from spikeacc import workdirs
from spikeacc.app.cli_options import (BUILD_DIR_HELP, Mode, add_calibration_args, add_config_args, add_rtl_path_args,
                                      config_of, int_list, layer_base)
from spikeacc.config import GOLDEN_INPUT_STEPS
from spikeacc.errors import VerificationFailed

__all__ = ["add_ppl", "add_vectors", "add_infer"]


def cmd_ppl(args) -> int:
    from spikeacc.golden.perplexity import INPUTS, run_ppl_table
    out = workdirs.output_dir(args.out, "--out directory")
    if args.rtl:
        from spikeacc.app.infer import rtl_perplexity
        rep = rtl_perplexity(64 if args.tokens is None else args.tokens, model=args.model, layers=args.layers,
                             workers=args.workers, scheduler=args.scheduler, build_root=args.build_dir,
                             config=config_of(args), per_call=args.per_call, split=args.split)
        (out / "ppl_rtl.json").write_text(json.dumps(rep, indent=2) + "\n")
        t = rep["totals"]
        print(f"hardware-faithful PPL on {rep['tokens']} held-out tokens: golden {rep['golden_ppl']:.6f}, "
              f"RTL ({rep['layers_on_rtl']} projections on the tile) {rep['rtl_ppl']:.6f}; "
              f"{t['outputs_compared']:,} counts compared, 0 mismatches, {t['rtl_wall_seconds']} s")
        print(f"wrote {out / 'ppl_rtl.json'}")
        if not rep["equal"]:
            raise VerificationFailed("RTL and golden perplexities differ")
        return 0
    run_ppl_table(model=args.model, text=args.text, out=args.out, quick=args.quick, full=args.full,
                  tokens=2048 if args.tokens is None else args.tokens, out_bits=int_list(args.out_bits, "--out-bits"),
                  out_policies=tuple(p for p in args.out_policy.split(",") if p),
                  inputs=INPUTS if args.inputs is None else tuple(i for i in args.inputs.split(",") if i),
                  config=config_of(args),
                  eval_text=args.eval_text)
    return 0


def cmd_vectors(args) -> int:
    from spikeacc.golden.vector_export import export_vectors
    out = Path(args.out) if str(args.out).endswith(".npz") else Path(f"{args.out}.npz")
    workdirs.output_file(out, "--out file", inputs=[args.model])
    cfg = config_of(args)
    if args.mode == "static" and args.input_step is not None:
        raise ValueError("--mode static has one step per tensor; --input-step chooses per-token steps: give one")
    step = "static" if args.mode == "static" else args.input_step
    base = layer_base(cfg.in_mode("kirin") if args.kirin else cfg)
    if step is not None:
        base = base.replace(input_step=step)
    path = export_vectors(model=args.model, layer=args.layer, tokens=args.tokens, out=args.out,
                          llama2_shape=args.llama2_shape, seed=args.seed, out_policy=args.out_policy,
                          out_bits=args.out_bits, base=base)
    print(f"wrote {path}")
    return 0


def cmd_infer(args) -> int:
    from spikeacc.app.infer import run_infer
    if args.model is not None and not Path(args.model).exists():
        raise FileNotFoundError(f"model path {args.model} does not exist")
    cfg = config_of(args)
    fault = None
    if args.inject_fault:
        layer, _, rest = args.inject_fault.partition(",")
        try:
            token, neuron = (int(v) for v in rest.split(","))
        except ValueError:
            raise ValueError(f"--inject-fault takes LAYER,TOKEN,NEURON, got {args.inject_fault!r}") from None
        fault = (layer, token, neuron)
    rep = run_infer(args.prompt, max_new_tokens=args.max_new_tokens, model=args.model, rtl=not args.golden,
                    layers=args.layers, workers=args.workers, scheduler=args.scheduler, out=args.out,
                    build_root=args.build_dir, config=cfg.in_mode("kirin") if args.kirin else cfg, inject_fault=fault,
                    per_call=args.per_call, split=args.split)
    print(f"prompt: {rep['prompt']!r}")
    print(f"text:   {rep['text']!r}")
    if rep["mode"] == "rtl":
        t = rep["totals"]
        print(f"RTL: {rep['layers_on_rtl']} projections on the spiking tile, {t['calls']} calls, "
              f"{t['outputs_compared']:,} output counts compared, {t['mismatches']} mismatches; "
              f"{t['simulated_cycles']:,} simulated cycles in {t['rtl_wall_seconds']} s "
              f"({t['simulated_cycles_per_wall_second']:,} cycles/s; builds {rep['builds']['seconds']} s)")
        print(f"golden text identical: {rep['identical']}; wall {rep['wall_seconds']} s")
    print(f"wrote {Path(args.out) / 'infer.json'}")
    return 0


RTL_ONLY = ("--layers", "--workers", "--scheduler", "--split", "--per-call", "--build-dir")   # how the RTL is reached
PPL_MODES = (
    Mode("with --rtl", lambda a: a.rtl, ("--text", "--eval-text", "--quick", "--full", "--out-bits", "--out-policy",
                                         "--inputs"),
         "--rtl measures one held-out window of the shipped text in the configuration's arithmetic, beside golden",
         ("--rtl",)),
    Mode("without --rtl", lambda a: not a.rtl, RTL_ONLY, "the table is the golden model's; nothing runs on the RTL"),
)
INFER_MODES = (
    Mode("with --golden", lambda a: a.golden, RTL_ONLY + ("--inject-fault",), "nothing runs on the RTL",
         ("--golden",)),
)
VECTORS_MODES = (
    Mode("with --llama2-shape", lambda a: a.llama2_shape, ("--model", "--calib-text", "--calib-tokens", "--rotation"),
         "the layer is the seeded synthetic Llama-2-7B one", ("--llama2-shape",)),
    Mode("without --llama2-shape", lambda a: not a.llama2_shape, ("--seed",),
         "only the synthetic layer is seeded; a model's layer is what it is"),
)


def add_ppl(sub) -> None:
    p = sub.add_parser("ppl", help="perplexity table: FP, RTN and SpikeQuant, with a bit sweep")
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--text", help="UTF-8 text file to calibrate and evaluate on (default: shipped GPL-3 text)")
    p.add_argument("--eval-text", metavar="FILE",
                   help="UTF-8 text file to evaluate on whole, never calibrated on (calibration: --calib-text)")
    p.add_argument("--out", default="out/ppl", help="results: ppl.json and ppl.png (ppl_rtl.json with --rtl)")
    p.add_argument("--tokens", type=int, default=None,
                   help="evaluation tokens (default 2048; with --rtl: the window, default 64)")
    p.add_argument("--rtl", action="store_true",
                   help="one short window through the RTL (every selected projection on the tile) beside golden")
    p.add_argument("--layers", default="all", help="--rtl: decoder blocks on the RTL (all, 0,1, 0-3)")
    p.add_argument("--workers", type=int, default=None, help="--rtl: simulators at once")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="--rtl: a Dask cluster")
    add_rtl_path_args(p)
    p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
    p.add_argument("--quick", action="store_true",
                   help="baselines plus one hardware-faithful row per input mode")
    p.add_argument("--full", action="store_true", help="also the bit sweep and power-of-two weight groups")
    p.add_argument("--out-bits", default="4,6,8", help="tile output widths b_out of the hardware-faithful rows")
    add_config_args(p, "widths and salient rule of the rows; with --rtl, the tiles' arithmetic")
    add_calibration_args(p)
    p.add_argument("--out-policy", default="channel,tensor",
                   help="output-range policies of the hardware-faithful rows: channel, tensor")
    p.add_argument("--inputs", default=None,
                   help="activation steps of the rows, as a configuration's input_step: static (one per tensor), "
                        "pow2, pow2/2, pow2/4 (per token on the grid 2^(-j/R)), or any (a float step per token: "
                        "golden-only); default: static, any, pow2 and pow2/4")
    p.set_defaults(func=cmd_ppl, modes=PPL_MODES)


def add_infer(sub) -> None:
    p = sub.add_parser("infer", help="generate text with every selected projection computed by the RTL")
    p.add_argument("--prompt", required=True, help="the text the model continues")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to generate (greedy; default 16)")
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rtl", action="store_true", help="the projections on the spiking tile under Verilator (default)")
    g.add_argument("--golden", action="store_true", help="the hardware-faithful golden model only")
    p.add_argument("--layers", default="all", help="decoder blocks on the RTL: all, none, 0,1 or 0-3 (others golden)")
    p.add_argument("--workers", type=int, default=None, help="simulators at once (default: the number of cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the tile calls on a Dask cluster")
    add_rtl_path_args(p)
    p.add_argument("--kirin", action="store_true", help="Kirin mode: 8-bit integer outliers, silence firing")
    p.add_argument("--inject-fault", metavar="LAYER,TOKEN,NEURON",
                   help="self-test: flip one bit of the RTL's count there; the run must stop there")
    p.add_argument("--out", default="out/infer", help="where infer.json goes")
    p.add_argument("--build-dir", default=None, help=BUILD_DIR_HELP)
    add_config_args(p, "the arithmetic of every projection's tile")
    add_calibration_args(p)
    p.set_defaults(func=cmd_infer, modes=INFER_MODES)


def add_vectors(sub) -> None:
    p = sub.add_parser("vectors", help="export one layer's integer vectors for the hardware")
    p.add_argument("--layer", default="model.layers.0.self_attn.q_proj",
                   help="the projection to export (default: block 0 q_proj)")
    p.add_argument("--tokens", type=int, default=8, help="token positions to export (default 8)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--model", help="local HF folder or .gguf file (default: embedded SmolLM2-135M)")
    p.add_argument("--mode", choices=["dynamic", "static"], default=None,
                   help="activation steps: per token (dynamic) or calibrated per tensor (static, the same as "
                        "--input-step static); default: the configuration's")
    p.add_argument("--input-step", choices=GOLDEN_INPUT_STEPS, default=None,
                   help="per-token steps on the grid 2^(-j/R) (pow2: R = 1; the tile holds R threshold constants "
                        "per neuron and takes each token's exponent) or static; default: the configuration's. "
                        "any (a threshold word per token) is golden-only and refused here")
    p.add_argument("--out-policy", choices=["channel", "tensor", "oracle"], default="channel",
                   help="where the output step comes from (oracle: not realizable, an upper bound)")
    p.add_argument("--out-bits", type=int, default=None, help="tile output width b_out (default: the configuration's)")
    p.add_argument("--kirin", action="store_true",
                   help="Kirin mode (W4A4&8): salient values as 8-bit integer outliers, silence-threshold firing")
    p.add_argument("--llama2-shape", action="store_true",
                   help="synthetic Llama-2-7B decoder layer (hidden 4096, intermediate 11008), seeded")
    p.add_argument("--seed", type=int, default=0, help="--llama2-shape: seed of the synthetic layer")
    add_config_args(p, "the arithmetic of the exported layer; P and L adapt to its shape")
    add_calibration_args(p)
    p.set_defaults(func=cmd_vectors, modes=VECTORS_MODES)
