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

__all__ = ["write_atomic", "current_umask", "input_file", "foreign_files", "output_dir", "output_file", "build_root", "default_build_root", "BUILD_DIR_ENV", "build_lock", "run_dir", "RunDir", "OWNED_MARKER",
           "record_owned"]

OWNED_MARKER = ".spikeacc-outputs.json"  # lists the files spikeacc wrote into a directory


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, content: str | bytes) -> Path:
    """Write a whole file or none: a temporary file beside it, renamed into place when complete.

    A failure (a full disk, a kill) leaves the old file, or no file, never a
    truncated one; an ``OSError`` names the path.
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())   # as open() would create it: mkstemp's 0600 is for secrets
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    return path


def input_file(path, what: str) -> Path:
    """A file the user names as input: a regular file, or one line saying what the path is instead."""
    path = _name(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a regular file (a pipe or a device): give a file")
    return path


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


def _same_file(a: Path, b: Path) -> bool:
    """The same file by any route: equal resolved paths, or (both existing) the same inode (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def foreign_files(path: Path, names) -> list[str]:
    """Those of ``names`` present in ``path`` that spikeacc did not write (not in its :data:`OWNED_MARKER`).

    A report written before the marker existed is recognized by its content
    (a spikeacc ``report.json``: a JSON object with ``sections`` and
    ``summary``), so an older run's directory is not refused.
    """
    owned = set(_owned(path))
    present = [n for n in names if (Path(path) / n).exists() and n not in owned]
    if present and _spikeacc_report(Path(path) / "report.json") and "report.json" not in owned \
            and not _owned(path):
        return []
    return present


def _spikeacc_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"sections", "summary"} <= set(data)


def output_file(path, what: str = "output file", *, inputs=()) -> Path:
    """Check a file can be written, is not a directory, and is none of ``inputs``; return it."""
    path = _name(path)
    for source in inputs:
        if source is not None and _same_file(Path(source), path):
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


# Characters make (Verilator's generated makefiles, the ccache wrapper) splits or expands in a path.
MAKE_UNSAFE = set("$#:%;\"'\\*?()[]|&<>`=!{}")


def build_root(path=None) -> Path:
    """The shared build directory, checked: writable, and with no character make cannot take in a path.

    ``None`` is :func:`default_build_root`.
    """
    path = _name(default_build_root() if path is None else path)
    bad = sorted({c for c in str(path.resolve()) if c in MAKE_UNSAFE or c.isspace()})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(f"build directory {path} has {shown} in its path ({path.resolve()}), which Verilator's "
                         f"generated makefiles cannot handle; choose a --build-dir (or SPIKEACC_BUILD_DIR) of letters, "
                         f"digits and - _ . / only")
    return output_dir(path, "build directory")


@contextlib.contextmanager
def build_lock(directory: Path, *, say=None, first_notice: float = 3.0, every: float = 30.0):
    """Hold an exclusive lock on ``directory`` while building in it (other processes wait).

    A wait is never silent: after ``first_notice`` seconds, and every
    ``every`` seconds after that, ``say`` (default: a line on stderr) is told
    which process holds the lock on which directory.
    """
    import sys
    import time

    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "a+") as handle:
        started = time.monotonic()
        notice = first_notice
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= notice:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    say(f"spikeacc: waiting {waited:.0f} s for the build lock on {directory} (held by {holder})")
                    notice += every
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        try:
            yield directory
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
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
