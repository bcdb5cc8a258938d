"""Which tokens calibrate the golden model: GPTQ's Hessians and the static input and output ranges.

Three sources, named by the configuration's ``calibration`` field:

- ``"shipped-text"``: the first tokens of the shipped evaluation text (GPL-3),
  one contiguous slice before its held-out tokens;
- ``"corpus"``: the calibration corpus shipped in ``golden/data/calibration/``
  (public-domain World Factbook country backgrounds and economic overviews,
  and the Python language reference's topics under the PSF licence; sources
  and licences in ``golden/data/calibration/SOURCES.md``), of other kinds than
  any text the project evaluates on;
- a path to a UTF-8 text file of the user's.

A corpus or file is cut into whole windows, and ``tokens / window`` of them are
drawn without replacement by a seeded integer generator (the same windows on
every machine), many short sequences rather than one slice of one document.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

import torch

from spikeacc import workdirs

__all__ = ["CORPUS_FILES", "read_text", "corpus_text", "sampled_windows", "calibration_windows", "calibration_label"]

CORPUS_FILES = ("factbook.txt", "python-reference.txt")
SEED = 0


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents, or one clear error naming the file."""
    path = workdirs.input_file(path, "text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def corpus_text() -> list[str]:
    """The shipped calibration corpus, one string per source file."""
    folder = resources.files("spikeacc.golden").joinpath("data/calibration")
    return [folder.joinpath(name).read_text(encoding="utf-8") for name in CORPUS_FILES]


def sampled_windows(tokenizer, texts: list[str], tokens: int, window: int, seed: int = SEED) -> torch.Tensor:
    """``tokens / window`` whole windows drawn without replacement from ``texts`` (each cut into windows)."""
    chunks = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", verbose=False).input_ids[0]
        chunks += [ids[i:i + window] for i in range(0, len(ids) - window + 1, window)]
    want = max(1, tokens // window)
    if want > len(chunks):
        raise ValueError(f"the calibration text has {len(chunks)} windows of {window} tokens; "
                         f"{want} were asked for ({tokens} tokens): ask for at most {len(chunks) * window}")
    order = list(range(len(chunks)))
    random.Random(seed).shuffle(order)          # integer draws: the same windows on every CPU
    return torch.stack([chunks[i] for i in sorted(order[:want])])


def calibration_windows(tokenizer, source: str, tokens: int, window: int) -> torch.Tensor:
    """Windows drawn from the corpus (``source == "corpus"``) or from the UTF-8 file at ``source``."""
    texts = corpus_text() if source == "corpus" else [read_text(source)]
    return sampled_windows(tokenizer, texts, tokens, min(window, tokens))


def calibration_label(source: str, tokens: int) -> str:
    """How a calibration reads in tables: its source and size."""
    name = {"shipped-text": "shipped text's head", "corpus": "calibration corpus"}.get(source, source)
    return f"{name}, {tokens} tokens"
