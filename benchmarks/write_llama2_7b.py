"""Write a folder shaped exactly like Llama-2-7B's Hugging Face release, with seeded random weights.

    python benchmarks/write_llama2_7b.py DIR [--seed 0]

The release's config.json (hidden 4096, intermediate 11008, 32 blocks, 32
heads, vocabulary 32000), fp16 safetensors in ~2 GB shards with
``model.safetensors.index.json`` (13.5 GB), and a sentencepiece
``tokenizer.model`` with ``tokenizer_config.json`` as the release lays them
out (its vocabulary learnt from the shipped GPL-3 text: the real one is not
reachable offline). Weights are N(0, 0.02), norms 1. ``DIR`` must not exist
yet, or hold an earlier complete run of this script (then nothing is done).
"""

import argparse
import sys
import time
from pathlib import Path

from spikeacc.golden.model import write_sentencepiece_tokenizer, write_synthetic_checkpoint
from spikeacc.golden.perplexity import default_text

DONE = ".spikeacc-synthetic-complete"


def ensure_llama2_7b(folder: Path, seed: int = 0) -> Path:
    """The synthetic checkpoint at ``folder``, written first if it is not there complete."""
    folder = Path(folder)
    if (folder / DONE).is_file():
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} exists and is not a complete synthetic checkpoint of this script; "
                         f"remove it or name another folder")
    t0 = time.perf_counter()
    write_synthetic_checkpoint(folder, seed=seed, say=lambda line: print(line, file=sys.stderr, flush=True))
    write_sentencepiece_tokenizer(folder, default_text())
    (folder / DONE).write_text(f"seed {seed}\n")
    print(f"wrote {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ensure_llama2_7b(args.folder, args.seed)
