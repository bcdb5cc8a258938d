"""Where commands may write: outputs checked before slow work, no silent overwrite, isolated runs.

Three rules, each one function:

* :func:`output_dir` / :func:`output_file` check a destination is writable
  *before* any slow work, refuse to write over an input, and refuse a
  non-empty directory that spikeacc did not write (unless forced);
* :func:`build_lock` serializes the one step that must be shared, building a
  simulator for a configuration, across processes;
* :func:`run_dir` gives every run its own working files (buffers, outputs,
  reports) inside a shared build, so two runs of the same configuration at
  once never read each other's data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["output_dir", "output_file", "build_root", "default_build_root", "BUILD_DIR_ENV", "build_lock", "run_dir", "RunDir", "OWNED_MARKER",
           "record_owned"]

OWNED_MARKER = ".spikeacc-outputs.json"  # lists the files spikeacc wrote into a directory


def _name(path) -> Path:
    if path is None or str(path).strip() == "":
        raise ValueError("an output path is empty: name a file or directory")
    return Path(path)


def output_dir(path, what: str = "output directory", *, force: bool = False, owned_only: bool = False) -> Path:
    """Create (if needed) and return a writable directory.

    ``owned_only`` refuses a non-empty directory holding files spikeacc did not
    write (per :data:`OWNED_MARKER`), so a package never lands on a user's files;
    ``force`` allows it.
    """
    path = _name(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} is not writable")
    _probe(path, what)
    if owned_only and not force:
        owned = set(_owned(path))
        foreign = sorted(p.name for p in path.iterdir() if p.name != OWNED_MARKER and p.name not in owned)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ValueError(f"{what} {path} already holds files spikeacc did not write ({shown}); "
                             f"choose an empty directory or pass --force to overwrite")
    return path


def _probe(path: Path, what: str) -> None:
    """Immutable directories pass ``os.access`` as root: try a real write."""
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".spikeacc-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{what} {path} is not writable: {exc.strerror or exc}") from None


def _owned(path: Path) -> list[str]:
    try:
        return list(json.loads((path / OWNED_MARKER).read_text()))
    except (OSError, ValueError, TypeError):
        return []


def record_owned(path: Path, names) -> None:
    """Remember which files in ``path`` spikeacc wrote (for :func:`output_dir`'s ``owned_only``)."""
    names = sorted(set(_owned(path)) | {Path(n).name for n in names})
    (path / OWNED_MARKER).write_text(json.dumps(names, indent=1) + "\n")


def output_file(path, what: str = "output file", *, inputs=()) -> Path:
    """Check a file can be written, is not a directory, and is none of ``inputs``; return it."""
    path = _name(path)
    for source in inputs:
        if source is not None and Path(source).resolve() == path.resolve():
            raise ValueError(f"{what} {path} is also an input of this command; choose another file")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; name a file")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{what} {path}: {parent} is not a directory")
    output_dir(parent, f"directory of the {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path} is not writable")
    return path


BUILD_DIR_ENV = "SPIKEACC_BUILD_DIR"


def default_build_root() -> str:
    """Where simulator builds go when no ``--build-dir`` is given: ``$SPIKEACC_BUILD_DIR``, else ``sim_build``."""
    return os.environ.get(BUILD_DIR_ENV) or "sim_build"


def build_root(path=None) -> Path:
    """The shared build directory, checked: writable, and with no space (Verilator's make flow breaks on one).

    ``None`` is :func:`default_build_root`.
    """
    path = _name(default_build_root() if path is None else path)
    if " " in str(path.resolve()):
        raise ValueError(f"build directory {path} has a space in its path ({path.resolve()}), which "
                         f"Verilator's generated makefiles cannot handle; choose --build-dir without spaces")
    return output_dir(path, "build directory")


@contextlib.contextmanager
def build_lock(directory: Path):
    """Hold an exclusive lock on ``directory`` while building in it (other processes wait)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RunDir:
    """One run's working directory; set ``keep`` to leave it for inspection (e.g. after a mismatch)."""

    def __init__(self, path: Path):
        self.path = path
        self.keep = False

    def __truediv__(self, name) -> Path:
        return self.path / name


@contextlib.contextmanager
def run_dir(build_dir: Path):
    """A fresh :class:`RunDir` under ``build_dir/runs``; removed afterwards unless kept or the run raised."""
    runs = Path(build_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run = RunDir(Path(tempfile.mkdtemp(dir=runs, prefix=f"{os.getpid()}-")).resolve())
    yield run  # an exception propagates here and leaves the directory in place
    if not run.keep:
        shutil.rmtree(run.path, ignore_errors=True)
