"""Content keys of input files: a cached verdict must be the verdict of these very bytes.

A folder's own size and mtime do not change when a file inside it is
replaced in place (``cp`` over it), so every key here is a hash of the
files' contents. Hashing a model of hundreds of megabytes on every run would
cost seconds, so each file's digest is remembered in a small table keyed by
its device, inode, size and modification time: a file that was rewritten gets
a new mtime and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["content_key"]

CHUNK = 1 << 20


def _file_digest(path: Path, memo: dict) -> str:
    st = path.stat()
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    if memo.get(str(path), {}).get("stat") == key:
        return memo[str(path)]["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    memo[str(path)] = {"stat": key, "sha256": digest.hexdigest()}
    return memo[str(path)]["sha256"]


def content_key(path: str | Path, memo_file: Path | None = None) -> str:
    """SHA-256 over a file's bytes, or over every file of a folder (relative names and contents).

    ``memo_file`` (JSON) remembers digests between runs; an unreadable memo is
    ignored and rewritten, never an error.
    """
    path = Path(path).resolve()
    memo: dict = {}
    if memo_file is not None:
        try:
            memo = json.loads(Path(memo_file).read_text())
            if not isinstance(memo, dict):
                memo = {}
        except (OSError, ValueError):
            memo = {}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = hashlib.sha256()
    for f in files:
        total.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        total.update(_file_digest(f, memo).encode())
    if memo_file is not None:
        _write_memo(Path(memo_file), memo)
    return total.hexdigest()


def _write_memo(path: Path, memo: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(memo, f)
        os.replace(tmp, path)
    except OSError:
        pass    # a memo that cannot be written costs a re-hash next time, nothing else
